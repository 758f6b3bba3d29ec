//! The harness of the pipeline's end-to-end tests: a wiremock Metal API that
//! serves paged, newest-first event lists from a store the test can change
//! between runs, a wiremock Direktiv whose answers the test scripts, a config
//! file in a temporary directory, and the built binary run as a user runs it.

#![allow(dead_code, reason = "each test file uses part of the harness")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::MockServer;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_equinix-receiver");
// The wiremock servers, shared with the engine's in-process tests.
#[path = "../../../../crates/receiver-engine/tests/support/servers.rs"]
mod servers;
pub(crate) use servers::*;

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) took: Duration,
}

impl Run {
    /// Asserts the exit code, showing stderr when it differs.
    pub(crate) fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr,
            self.stdout
        );
        self
    }
}

/// Both mock servers, the state directory, and the config.
pub(crate) struct World {
    pub(crate) metal_server: MockServer,
    pub(crate) direktiv_server: MockServer,
    pub(crate) metal: Metal,
    pub(crate) direktiv: Direktiv,
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    /// Starts both servers: every known Metal route is served from the
    /// store, `/projects` and any other route must never be requested, and
    /// Direktiv accepts everything until told otherwise.
    pub(crate) async fn start() -> Self {
        let Servers {
            metal_server,
            direktiv_server,
            metal,
            direktiv,
        } = Servers::start().await;

        Self {
            metal_server,
            direktiv_server,
            metal,
            direktiv,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub(crate) fn api_url(&self) -> String {
        format!("{}/metal/v1", self.metal_server.uri())
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("{}{BROADCAST}", self.direktiv_server.uri())
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// A complete config; `equinix` and `direktiv` are extra lines for those
    /// sections (each indented by two spaces).
    pub(crate) fn config(&self, equinix: &[&str], direktiv: &[&str]) -> String {
        let mut text = format!(
            "equinix:\n  organizationId: {ORG}\n  packetAuthToken: {METAL_TOKEN}\n  apiUrl: {}\n",
            self.api_url()
        );
        if !equinix.iter().any(|line| line.starts_with("perPage:")) {
            text.push_str("  perPage: 10\n");
        }
        for line in equinix {
            text.push_str(&format!("  {line}\n"));
        }
        text.push_str(&format!(
            "direktiv:\n  endpoint: {}\n  token: {DIREKTIV_TOKEN}\n  maxRetries: 2\n",
            self.endpoint()
        ));
        for line in direktiv {
            text.push_str(&format!("  {line}\n"));
        }
        text.push_str(&format!(
            "state:\n  path: {}\nserver:\n  enabled: false\n",
            self.state_path().display()
        ));
        text
    }

    /// Writes `text` as the config file and returns its path.
    pub(crate) fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, text).expect("write the config");
        path
    }

    /// Runs the binary with `args` and the config path, in a clean
    /// environment, off the async runtime.
    pub(crate) async fn run(&self, config: &Path, args: &[&str]) -> Run {
        self.run_with_env(config, args, &[]).await
    }

    /// [`World::run`] with extra environment variables.
    pub(crate) async fn run_with_env(
        &self,
        config: &Path,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Run {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg(config)
            .env_remove("METAL_AUTH_TOKEN")
            .env_remove("DIREKTIV_TOKEN")
            .env_remove("STATE_DIRECTORY")
            .env("RUST_LOG", "info,equinix_receiver=debug")
            .envs(env.iter().copied());
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the runner")
            .expect("the binary runs");
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            took: started.elapsed(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "the binary panicked:\n{}",
            run.stderr
        );
        run
    }

    /// Writes the standard config with these extra lines and runs `--once`.
    pub(crate) async fn once(&self, equinix: &[&str], direktiv: &[&str]) -> Run {
        let config = self.write_config(&self.config(equinix, direktiv));
        self.run(&config, &["--once"]).await
    }

    /// Checks every `.expect(n)` of both servers.
    pub(crate) async fn verify(&self) {
        self.metal_server.verify().await;
        self.direktiv_server.verify().await;
    }
}

/// The accepted event with this id; panics when there is none.
pub(crate) fn by_id<'a>(events: &'a [Value], id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no event {id} among {events:#?}"))
}
