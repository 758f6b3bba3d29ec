//! The equinix-receiver binary: reads the config, then runs the pipeline.
//!
//! `main` only wires things together: parse the flags ([`cli`]), load and
//! validate the config ([`config`]), install the logger ([`logging`]), then hand
//! the [`settings::Settings`] to [`app::run`].

mod app;
mod cli;
#[cfg(feature = "demo")]
mod demo;
mod ha;
mod logging;
mod redeliver;
mod server;

// The config library's modules, under the names the binary's modules use.
use receiver_config as config;
use receiver_config::{mountinfo, settings};

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use receiver_engine::{ScrubbedStdout, Scrubber};

use crate::cli::{Cli, EXIT_CONFIG, EXIT_FAILURE, Mode};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match cli.mode() {
        Ok(Mode::Config(path)) => path,
        #[cfg(feature = "demo")]
        Ok(Mode::Demo) => return finish(demo::run(cli.demo_options()).await),
        Err((message, code)) => {
            report(&[message]);
            return code;
        }
    };

    let env = |name: &str| std::env::var(name).ok();
    let overrides = config::Overrides {
        reset_state: cli.reset_state,
    };
    let loaded = match config::load_file(&path, &env, overrides) {
        Ok(loaded) => loaded,
        Err(problems) => {
            let mut lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            let count = match problems.len() {
                1 => "1 problem".to_owned(),
                n => format!("{n} problems"),
            };
            lines.push(format!(
                "{count} in `{}`; nothing was requested (see docs/configuration.md)",
                path.display()
            ));
            report(&lines);
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    // Every configured secret is kept out of what leaves the process.
    let scrubber = Arc::new(Scrubber::new(loaded.settings.secrets()));
    if cli.check {
        return check_ok(&loaded, &scrubber);
    }

    let rust_log = std::env::var("RUST_LOG").ok();
    if let Err(err) = logging::init(
        &loaded.settings.log,
        rust_log.as_deref(),
        Arc::clone(&scrubber),
    ) {
        report(&[format!("{err:#}")]);
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(message) = ha_conflict(&cli, &loaded.settings) {
        tracing::error!("{message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let (Some(path), Some(postgres)) = (&cli.import_state, &loaded.settings.state.postgres) {
        let stdout = ScrubbedStdout::new(Arc::clone(&scrubber));
        let imported = ha::import(&loaded.settings, postgres, path, &stdout).await;
        return finish(imported.map(|()| ExitCode::SUCCESS));
    }
    if cli.redeliver_refused {
        return finish(redeliver::run(&loaded.settings).await);
    }
    let options = app::RunOptions {
        once: cli.once,
        dry_run: cli.dry_run,
    };
    finish(app::run(loaded.settings, options).await)
}

/// The flags that need a state file, or `--import-state` without a database:
/// what is wrong (exit 78).
fn ha_conflict(cli: &Cli, settings: &settings::Settings) -> Option<String> {
    let postgres = settings.state.postgres.is_some();
    if cli.import_state.is_some() && !postgres {
        return Some(
            "--import-state copies into the database of state.postgres, and the config has \
             none: set state.postgres.url (or STATE_POSTGRES_URL) and leave out state.path \
             (docs/ha.md)"
                .to_owned(),
        );
    }
    let flag = [
        (cli.once, "--once"),
        (cli.dry_run, "--dry-run"),
        (cli.redeliver_refused, "--redeliver-refused"),
        (cli.reset_state, "--reset-state"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag));
    match flag {
        Some(flag) if postgres => Some(format!(
            "{flag} works on a state file, and this config keeps the state in PostgreSQL \
             (state.postgres): run the replicas without it (docs/ha.md)"
        )),
        _ => None,
    }
}

/// `--check` succeeded: warnings on stderr, a one-line summary on stdout,
/// both scrubbed.
fn check_ok(loaded: &config::Loaded, scrubber: &Arc<Scrubber>) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    for warning in &loaded.warnings {
        let _ = writeln!(stderr, "warning: {}", scrubber.scrub(warning));
    }
    let summary = format!("config OK: {}", config::summary(&loaded.settings));
    match ScrubbedStdout::new(Arc::clone(scrubber)).write_line(&summary) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_FAILURE),
    }
}

/// Prints each line to stderr as an error (before the logger exists).
#[expect(clippy::print_stderr, reason = "the logger is not installed yet")]
fn report(lines: &[String]) {
    for line in lines {
        eprintln!("error: {line}");
    }
}

/// Turns the pipeline's result into the exit code, logging a failure with its chain.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            if tracing::dispatcher::has_been_set() {
                tracing::error!("{err:#}");
            } else {
                report(&[format!("{err:#}")]);
            }
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
