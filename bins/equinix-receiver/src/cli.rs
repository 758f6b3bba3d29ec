//! The command line: flags, the config path, and the exit codes `--help` documents.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Exit code for a bad config, before any request is made (EX_CONFIG).
pub(crate) const EXIT_CONFIG: u8 = 78;
/// Exit code for a failure at run time.
pub(crate) const EXIT_FAILURE: u8 = 1;

const AFTER_HELP: &str = "\
Examples:
  equinix-receiver /config/config.yaml           run the receiver (as the old image did)
  equinix-receiver --check config.yaml           validate the config, make no request
  equinix-receiver --once --dry-run config.yaml  print what one sweep would send
  equinix-receiver --redeliver-refused config.yaml
                                                 send the events Direktiv refused again
  equinix-receiver --import-state state.json config.yaml
                                                 copy a file state into state.postgres once
  equinix-receiver --demo                        run the built-in local demo
  equinix-receiver --demo --demo-outage 10       ... with Direktiv down for 10 s

Environment:
  METAL_AUTH_TOKEN  the Equinix Metal API token; wins over equinix.packetAuthTokenFile
                    and equinix.packetAuthToken
  DIREKTIV_TOKEN    the Direktiv token; wins over direktiv.tokenFile and direktiv.token
  STATE_POSTGRES_URL
                    the PostgreSQL URL of high availability (docs/ha.md); wins over
                    state.postgres.urlFile and state.postgres.url
  RUST_LOG          a log filter that overrides log.level (e.g. info,equinix_receiver=debug)
  STATE_DIRECTORY   where the state file goes when state.path is not set
                    (default /var/lib/equinix-receiver)

Exit codes:
  0   success (with --once: everything found was delivered)
  1   failure at run time (with --demo: also when an event was lost or sent twice; with
      --import-state: the file could not be read or the database refused it)
  2   bad command-line usage (also --demo in a build without the demo, such as the image)
  3   with --once: some events were not delivered (they are retried on the next run);
      with --redeliver-refused: some refused events are still kept (refused again, or
      not tried because Direktiv refused every event or was unreachable)
  78  bad config (EX_CONFIG); nothing was requested (also --once, --dry-run,
      --redeliver-refused or --reset-state with state.postgres)
  130 a second SIGINT/SIGTERM (Ctrl-C) while shutting down: exits at once, without waiting
      for deliveries in flight or saving the state (the next start uses the last saved one)

Logs go to stderr; stdout carries only --check's summary, --dry-run's CloudEvents,
--redeliver-refused's summary and the demo's display (docs/demo.md). A configured
token that an upstream echoes back shows there as [REDACTED] (docs/operations.md).
Every config key is described in docs/configuration.md.";

/// Polls Equinix Metal events and delivers them to Direktiv as CloudEvents.
#[derive(Debug, Parser)]
#[command(name = "equinix-receiver", version, about, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// The YAML config file (the same as --config).
    #[arg(value_name = "CONFIG")]
    pub(crate) config_path: Option<PathBuf>,

    /// The YAML config file.
    #[arg(short, long = "config", value_name = "PATH")]
    pub(crate) config_flag: Option<PathBuf>,

    /// Validate the config and exit (0 when valid, 78 when not), making no request.
    #[arg(long, conflicts_with_all = ["once", "dry_run", "demo"])]
    pub(crate) check: bool,

    /// Run one sweep (discover, poll, deliver), then exit: 0 when everything found was
    /// delivered, 3 when some events were not.
    #[arg(long)]
    pub(crate) once: bool,

    /// Poll as usual, but print each CloudEvent as one JSON object per line on stdout
    /// instead of sending it. Reads the state file into memory and writes nothing anywhere
    /// (no copy, no lock), so `--once --dry-run` previews exactly what the next real run
    /// would send, even beside the running receiver.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Send the events Direktiv refused for good and the poison events (direktiv.poisonAfter),
    /// kept in the dead-letter file beside the state, again, then exit. Removes each one Direktiv accepts, keeps each one it refuses
    /// again, stops at a refusal of every event (401, 403, 404 ...), and prints `redelivered N,
    /// still refused M, left K` on stdout. Exit 0 when none is kept any more, 3 when some
    /// are, 1 when a receiver is running on the state (stop it first). Makes no Metal API
    /// request.
    #[arg(long, conflicts_with_all = ["once", "dry_run", "check", "demo", "reset_state"])]
    pub(crate) redeliver_refused: bool,

    /// Copy an existing state file (the state.json of a single replica) into the PostgreSQL
    /// database of state.postgres once, then exit: 0 when copied (or already there, identical),
    /// 1 when the file cannot be read or the database already holds another state for the
    /// organization, 78 when the config has no state.postgres. Stop the single replica first.
    /// Makes no Metal API or Direktiv request (docs/ha.md).
    #[arg(long, value_name = "STATE_FILE",
          conflicts_with_all = ["once", "dry_run", "check", "demo", "reset_state", "redeliver_refused"])]
    pub(crate) import_state: Option<PathBuf>,

    /// Start with a fresh state when the state file is corrupt (bad JSON, an unknown version,
    /// a time outside the years 0000 to 9999): it is renamed to `<path>.corrupt-<time>`.
    /// Events already sent may be sent again; without this flag a corrupt state stops the
    /// receiver.
    #[arg(long)]
    pub(crate) reset_state: bool,

    /// Run the built-in local demo: a simulated Metal API and Direktiv on 127.0.0.1, the
    /// real pipeline between them, one line per delivered CloudEvent. Needs no config and
    /// no credentials; Ctrl-C ends it with a summary (see docs/demo.md). The receiver's
    /// warnings are `!!!` lines of the display; RUST_LOG puts its full log on stderr. A build
    /// without the default cargo feature `demo` (the container image) has no demo and
    /// answers --demo with exit 2.
    #[arg(
        long,
        help_heading = "Demo",
        conflicts_with_all = ["config_path", "config_flag", "reset_state", "once", "dry_run"]
    )]
    pub(crate) demo: bool,

    /// With --demo: stop by itself after N events were delivered.
    #[arg(long, value_name = "N", requires = "demo", help_heading = "Demo",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) demo_events: Option<u64>,

    /// With --demo: new Metal events per second across the fleet (0 for none; default 1.5).
    #[arg(long, value_name = "PER_SECOND", requires = "demo", help_heading = "Demo",
          value_parser = parse_rate)]
    pub(crate) demo_rate: Option<f64>,

    /// With --demo: take the simulated Direktiv down (503) for SECS seconds after the first
    /// deliveries, then bring it back; watch pending rise and fall, and nothing get lost.
    #[arg(long, value_name = "SECS", requires = "demo", help_heading = "Demo",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) demo_outage: Option<u64>,

    /// With --demo: make the simulated Metal API answer some requests with 429
    /// (Retry-After: 1) and 503, as a busy API does.
    #[arg(long, requires = "demo", help_heading = "Demo")]
    pub(crate) demo_api_faults: bool,
}

/// New events per second in the demo without `--demo-rate`.
#[cfg(feature = "demo")]
const DEFAULT_DEMO_RATE: f64 = 1.5;

/// `--demo-rate`: a finite, non-negative number of events per second, at most 1000.
fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if rate.is_finite() && (0.0..=1000.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("`{value}` is not between 0 and 1000"))
    }
}

/// The demo's options, from the `--demo-*` flags.
#[cfg(feature = "demo")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DemoOptions {
    /// `--demo-events`: stop after this many delivered events.
    pub(crate) events: Option<u64>,
    /// `--demo-rate`: new events per second.
    pub(crate) rate: f64,
    /// `--demo-outage`: how long Direktiv is down.
    pub(crate) outage: Option<std::time::Duration>,
    /// `--demo-api-faults`: 429s and 503s from the Metal API.
    pub(crate) api_faults: bool,
}

/// `--demo` in a build without the `demo` feature.
#[cfg(not(feature = "demo"))]
const NO_DEMO: &str = "this build has no demo: it was built with --no-default-features, as the \
                       container image is; run the demo from the source with `cargo run -p \
                       equinix-receiver -- --demo` (docs/demo.md)";

/// What to do, once the arguments agree with each other.
#[derive(Debug)]
pub(crate) enum Mode {
    /// `--demo`.
    #[cfg(feature = "demo")]
    Demo,
    /// Load the config at this path, then check or run.
    Config(PathBuf),
}

impl Cli {
    /// The `--demo-*` options.
    #[cfg(feature = "demo")]
    pub(crate) fn demo_options(&self) -> DemoOptions {
        DemoOptions {
            events: self.demo_events,
            rate: self.demo_rate.unwrap_or(DEFAULT_DEMO_RATE),
            outage: self.demo_outage.map(std::time::Duration::from_secs),
            api_faults: self.demo_api_faults,
        }
    }

    /// Resolves the config path and the mode, or says what is wrong and which
    /// exit code to use.
    pub(crate) fn mode(&self) -> Result<Mode, (String, ExitCode)> {
        if self.demo {
            #[cfg(feature = "demo")]
            return Ok(Mode::Demo);
            #[cfg(not(feature = "demo"))]
            return Err((NO_DEMO.to_owned(), ExitCode::from(2)));
        }
        // clap lets `requires = "demo"` pass when a config path (which
        // conflicts with --demo) is given, so say it here.
        if self.demo_events.is_some()
            || self.demo_rate.is_some()
            || self.demo_outage.is_some()
            || self.demo_api_faults
        {
            return Err((
                "--demo-events, --demo-rate, --demo-outage and --demo-api-faults only go with \
                 --demo"
                    .to_owned(),
                ExitCode::from(2),
            ));
        }
        match (&self.config_path, &self.config_flag) {
            (Some(positional), Some(flag)) if positional != flag => Err((
                format!(
                    "two different config files given: `{}` and --config `{}`; give one",
                    positional.display(),
                    flag.display()
                ),
                ExitCode::from(2),
            )),
            (Some(path), _) | (None, Some(path)) => Ok(Mode::Config(path.clone())),
            (None, None) => Err((
                format!(
                    "no config file given: run `equinix-receiver /path/to/config.yaml` (or \
                     --config PATH){}\n\n{}",
                    if cfg!(feature = "demo") {
                        ", or `equinix-receiver --demo` to try it without one"
                    } else {
                        ""
                    },
                    Cli::command().render_usage()
                ),
                ExitCode::from(EXIT_CONFIG),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("equinix-receiver").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn positional_and_flag_paths_are_the_same_thing() {
        let positional = parse(&["/config/config.yaml"]).unwrap().mode().unwrap();
        let flag = parse(&["--config", "/config/config.yaml"])
            .unwrap()
            .mode()
            .unwrap();
        for mode in [positional, flag] {
            assert!(matches!(mode, Mode::Config(p) if p == Path::new("/config/config.yaml")));
        }
        let both = parse(&["a.yaml", "--config", "a.yaml"]).unwrap().mode();
        assert!(matches!(both, Ok(Mode::Config(_))));
    }

    #[test]
    fn two_different_paths_are_refused() {
        let err = parse(&["a.yaml", "--config", "b.yaml"])
            .unwrap()
            .mode()
            .unwrap_err();
        assert!(
            err.0.contains("a.yaml") && err.0.contains("b.yaml"),
            "{}",
            err.0
        );
    }

    #[cfg(feature = "demo")]
    #[test]
    fn no_path_is_a_config_error_that_mentions_demo() {
        let err = parse(&[]).unwrap().mode().unwrap_err();
        assert!(err.0.contains("--demo"), "{}", err.0);
        assert!(err.0.contains("Usage"), "{}", err.0);
        assert_eq!(err.1, ExitCode::from(EXIT_CONFIG));
    }

    #[cfg(feature = "demo")]
    #[test]
    fn demo_needs_no_config_and_refuses_one() {
        assert!(matches!(parse(&["--demo"]).unwrap().mode(), Ok(Mode::Demo)));
        assert!(parse(&["--demo", "c.yaml"]).is_err());
        assert!(parse(&["--check", "--once", "c.yaml"]).is_err());
    }

    #[test]
    fn redeliver_refused_goes_alone() {
        let cli = parse(&["--redeliver-refused", "c.yaml"]).unwrap();
        assert!(cli.redeliver_refused);
        assert!(matches!(cli.mode(), Ok(Mode::Config(_))));
        for other in ["--once", "--dry-run", "--check", "--demo", "--reset-state"] {
            assert!(
                parse(&["--redeliver-refused", other, "c.yaml"]).is_err(),
                "{other} was accepted with --redeliver-refused"
            );
        }
    }

    #[test]
    fn import_state_takes_a_file_and_goes_alone() {
        let cli = parse(&["--import-state", "state.json", "c.yaml"]).unwrap();
        assert_eq!(cli.import_state.as_deref(), Some(Path::new("state.json")));
        assert!(matches!(cli.mode(), Ok(Mode::Config(p)) if p == Path::new("c.yaml")));
        for other in ["--once", "--dry-run", "--check", "--redeliver-refused"] {
            assert!(
                parse(&["--import-state", "s.json", other, "c.yaml"]).is_err(),
                "{other} was accepted with --import-state"
            );
        }
    }

    #[cfg(not(feature = "demo"))]
    #[test]
    fn without_the_demo_feature_demo_is_a_usage_error() {
        for args in [&["--demo"][..], &["--demo", "--demo-rate", "2"]] {
            let err = parse(args).unwrap().mode().unwrap_err();
            assert!(
                err.0.contains("this build has no demo"),
                "{args:?}: {}",
                err.0
            );
            assert_eq!(err.1, ExitCode::from(2));
        }
        // The flags keep their rules: a config path still goes without --demo.
        let err = parse(&["--demo-rate", "2", "c.yaml"])
            .unwrap()
            .mode()
            .unwrap_err();
        assert!(err.0.contains("only go with --demo"), "{}", err.0);
        let err = parse(&[]).unwrap().mode().unwrap_err();
        assert!(!err.0.contains("--demo"), "{}", err.0);
        assert_eq!(err.1, ExitCode::from(EXIT_CONFIG));
    }

    #[cfg(feature = "demo")]
    #[test]
    fn demo_options_need_demo_and_sane_values() {
        let cli = parse(&[
            "--demo",
            "--demo-events",
            "5",
            "--demo-rate",
            "4",
            "--demo-outage",
            "10",
            "--demo-api-faults",
        ])
        .unwrap();
        assert_eq!(
            cli.demo_options(),
            DemoOptions {
                events: Some(5),
                rate: 4.0,
                outage: Some(std::time::Duration::from_secs(10)),
                api_faults: true,
            }
        );
        let defaults = parse(&["--demo"]).unwrap().demo_options();
        assert_eq!(
            (defaults.events, defaults.rate, defaults.outage),
            (None, 1.5, None)
        );
        for args in [
            &["--demo-outage", "3", "c.yaml"][..],
            &["--demo-api-faults", "--config", "c.yaml"],
            &["--demo-rate", "2", "c.yaml"],
        ] {
            let err = parse(args).unwrap().mode().unwrap_err();
            assert!(err.0.contains("only go with --demo"), "{args:?}: {}", err.0);
            assert_eq!(err.1, ExitCode::from(2));
        }
        for args in [
            &["--demo-events", "5"][..],
            &["--demo", "--demo-events", "0"],
            &["--demo", "--demo-rate", "-1"],
            &["--demo", "--demo-rate", "NaN"],
            &["--demo", "--once"],
            &["--demo", "--dry-run"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn help_documents_exit_codes_and_environment() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "  78  ",
            "  130 ",
            "METAL_AUTH_TOKEN",
            "DIREKTIV_TOKEN",
            "RUST_LOG",
            "--check",
            "--demo",
            "--demo-events",
            "--demo-rate",
            "--demo-outage",
            "--demo-api-faults",
            "--redeliver-refused",
            "some refused events are still kept",
            "--import-state",
            "STATE_POSTGRES_URL",
        ] {
            assert!(help.contains(needle), "help lacks {needle}:\n{help}");
        }
    }
}
