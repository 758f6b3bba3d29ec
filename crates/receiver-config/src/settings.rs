//! Validated settings: what the config file, the environment and the flags
//! become once every problem has been ruled out. Each component is built from
//! these; nothing downstream reads the raw YAML.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use direktiv_broadcast::{Auth, AuthHeader, SinkConfig};
use event_dedupe::Baseline;
use metal_cloudevents::MapOptions;
use metal_events::{Client, ClientBuilder, RateGate};
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

pub use receiver_engine::Levels;
use receiver_engine::{DeadLetterLocation, EngineOptions, EventTypes};

/// Everything the receiver needs to run, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Equinix Metal side.
    pub equinix: EquinixSettings,
    /// The Direktiv side.
    pub direktiv: DirektivSettings,
    /// Where the dedupe state lives.
    pub state: StateSettings,
    /// Logging.
    pub log: LogSettings,
    /// The health and metrics server.
    pub server: ServerSettings,
    /// How long in-flight deliveries may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Settings {
    /// Every configured secret, for the [`Scrubber`](receiver_engine::Scrubber)
    /// that keeps them out of logs and forwarded text. A new secret (a
    /// database password) is added here.
    pub fn secrets(&self) -> Vec<&SecretString> {
        let mut secrets = vec![&self.equinix.token];
        secrets.extend(&self.direktiv.token);
        if let Some(postgres) = &self.state.postgres {
            secrets.push(&postgres.url);
            secrets.extend(&postgres.passwords);
        }
        secrets
    }

    /// The engine's options from `equinix.*`, `direktiv.*`, `state.*` and
    /// `shutdownGrace`.
    pub fn engine_options(&self) -> EngineOptions {
        let (e, d) = (&self.equinix, &self.direktiv);
        EngineOptions::default()
            .with_organization_id(e.organization_id.clone())
            .with_poll_interval(e.poll_interval)
            .with_max_poll_interval(e.max_poll_interval)
            .with_covered_poll_interval(e.covered_poll_interval)
            .with_sweep_timeout(e.sweep_timeout)
            .with_inventory_refresh(e.inventory_refresh)
            .with_shutdown_grace(self.shutdown_grace)
            .with_levels(e.levels)
            .with_per_page(e.per_page)
            .with_max_pages(e.max_pages)
            .with_api_concurrency(e.concurrency)
            .with_delivery_concurrency(d.concurrency)
            .with_max_retries(d.max_retries)
            .with_poison_after(d.poison_after)
            .with_overlap(self.state.overlap)
            .with_error_events(d.event_on_error.then_some(d.error_event_interval))
            .with_event_types(e.event_types.clone())
    }

    /// The Metal API client's builder from `equinix.*`: its rate gate paces
    /// every request at `equinix.requestRate` when it is set.
    pub fn client_builder(&self) -> ClientBuilder {
        let e = &self.equinix;
        let gate = e
            .request_rate
            .map_or_else(RateGate::default, RateGate::with_rate);
        Client::builder(e.token.clone())
            .rate_gate(Arc::new(gate))
            .base_url(e.api_url.as_str())
            .timeout(e.request_timeout)
            .max_response_size(e.max_response_size)
    }

    /// The Direktiv sink's config from `direktiv.*`.
    pub fn sink_config(&self) -> SinkConfig {
        let d = &self.direktiv;
        let mut config = SinkConfig::new(d.endpoint.clone());
        config.insecure_skip_verify = d.insecure_skip_verify;
        config.ca_file = d.ca_file.clone();
        config.request_timeout = d.timeout;
        if let Some(token) = &d.token {
            config = config.with_auth(Auth::with_headers(
                d.auth_headers.iter().cloned(),
                token.expose_secret(),
            ));
        }
        config
    }
}

/// The Equinix Metal side (`equinix.*`).
#[derive(Debug, Clone)]
pub struct EquinixSettings {
    /// `equinix.organizationId`.
    pub organization_id: String,
    /// `equinix.packetAuthToken`, `packetAuthTokenFile` or `METAL_AUTH_TOKEN`.
    pub token: SecretString,
    /// `equinix.apiUrl`, default `https://api.equinix.com/metal/v1`.
    pub api_url: Url,
    /// `equinix.pollInterval`, default 10 s: sweeps start this far apart.
    pub poll_interval: Duration,
    /// `equinix.maxPollInterval`, default 60 s (at least `poll_interval`):
    /// a quiet device list is read at least this often.
    pub max_poll_interval: Duration,
    /// `equinix.coveredPollInterval`, default 10 min (at least
    /// `max_poll_interval`): the same where the project's list shows its
    /// devices' events.
    pub covered_poll_interval: Duration,
    /// `equinix.requestRate`: Metal API requests per second at most, all
    /// together; `None` (the default) for no limit of our own.
    pub request_rate: Option<f64>,
    /// `equinix.perPage`, default 100, at most 1000.
    pub per_page: u32,
    /// `equinix.maxPages`, default 10: pages read per list per sweep at most.
    pub max_pages: u32,
    /// `equinix.concurrency`, default 8: API requests in flight at most.
    pub concurrency: usize,
    /// `equinix.levels`, default project and device.
    pub levels: Levels,
    /// `equinix.startFrom`, default `now`: the baseline of a new state.
    pub start_from: Baseline,
    /// `equinix.inventoryRefresh`, default 5 min.
    pub inventory_refresh: Duration,
    /// `equinix.timeout`, default 30 s: one API request at most.
    pub request_timeout: Duration,
    /// `equinix.sweepTimeout`, default 5 min: one sweep at most.
    pub sweep_timeout: Duration,
    /// `equinix.maxResponseSize`, default 32 MiB: the largest answer body
    /// read from the Metal API.
    pub max_response_size: u64,
    /// `equinix.eventTypes`, default every type: which events are delivered.
    pub event_types: EventTypes,
}

/// The Direktiv side (`direktiv.*`).
#[derive(Debug, Clone)]
pub struct DirektivSettings {
    /// `direktiv.endpoint`: the full broadcast URL.
    pub endpoint: Url,
    /// The token, from `token`, `tokenFile`, `DIREKTIV_TOKEN` or `apikey`.
    /// `None` sends no auth header.
    pub token: Option<SecretString>,
    /// The headers the token goes in: the one `direktiv.authHeader` names;
    /// `apikey` when only `direktiv.apikey` was given; else
    /// `Direktiv-Token` and `Direktiv-Api-Key` ([`Auth::DEFAULT_HEADERS`]).
    ///
    /// [`Auth::DEFAULT_HEADERS`]: direktiv_broadcast::Auth::DEFAULT_HEADERS
    pub auth_headers: Vec<AuthHeader>,
    /// `direktiv.insecureSkipVerify`, default false.
    pub insecure_skip_verify: bool,
    /// `direktiv.caFile`: an extra PEM bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// `direktiv.timeout`, default 10 s: one delivery request at most.
    pub timeout: Duration,
    /// `direktiv.concurrency`, default 8: deliveries in flight at most.
    pub concurrency: usize,
    /// `direktiv.maxRetries`, default 5: retries of one event within a sweep.
    pub max_retries: u32,
    /// `direktiv.poisonAfter`, default 15 min (`None`: `0`, never): how long
    /// an event may fail with retryable answers while later events of its
    /// device wait, before it is kept as a dead letter.
    pub poison_after: Option<Duration>,
    /// `direktiv.event-on-error`, default false.
    pub event_on_error: bool,
    /// `direktiv.errorEventInterval`, default 5 min.
    pub error_event_interval: Duration,
    /// `direktiv.typePrefix` (default none) and `direktiv.sourcePrefix`
    /// (default `direktiv/listener/equinix`), validated.
    pub map_options: MapOptions,
}

/// Where the dedupe state lives (`state.*`).
#[derive(Debug, Clone)]
pub struct StateSettings {
    /// `state.path`; `None` when not configured (the default location is
    /// tried, and memory is used with a loud warning when it is not writable).
    pub path: Option<PathBuf>,
    /// `state.overlap`, default 10 min: how long ids are kept below a floor.
    pub overlap: Duration,
    /// `state.deadLetterPath`; `None` puts the dead-letter file beside the
    /// state file (`<state file>.dead-letter.jsonl`).
    pub dead_letter_path: Option<PathBuf>,
    /// `state.deadLetterMax`, default 1,000: refused events kept at most.
    pub dead_letter_max: u32,
    /// `--reset-state`: start fresh when the state file is corrupt.
    pub reset_corrupt: bool,
    /// `state.postgres.*`: the state and the leader lease in PostgreSQL
    /// (high availability); `None` keeps the state in a file.
    pub postgres: Option<PostgresSettings>,
}

/// The shared state and the leader lease (`state.postgres.*`).
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `STATE_POSTGRES_URL`, `state.postgres.urlFile` or `state.postgres.url`.
    pub url: SecretString,
    /// The URL's password as written and percent-decoded, for the scrubber.
    pub passwords: Vec<SecretString>,
    /// `state.postgres.leaseDuration`, default 15 s, at least 2 s.
    pub lease_duration: Duration,
    /// `state.postgres.schema`, default `equinix_receiver`.
    pub schema: String,
}

/// The state's directory when neither `state.path` nor `$STATE_DIRECTORY`
/// says where.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/equinix-receiver";
/// The state file's name in a state directory.
pub const STATE_FILE: &str = "state.json";

impl StateSettings {
    /// The state file: `state.path`, else [`STATE_FILE`] in `state_directory`
    /// (`$STATE_DIRECTORY`, which systemd sets), else in
    /// [`DEFAULT_STATE_DIR`]. The second value says whether `state.path`
    /// configured it.
    pub fn file(&self, state_directory: Option<&OsStr>) -> (PathBuf, bool) {
        match &self.path {
            Some(path) => (path.clone(), true),
            None => {
                let dir = state_directory.map_or(Path::new(DEFAULT_STATE_DIR), Path::new);
                (dir.join(STATE_FILE), false)
            }
        }
    }

    /// Where refused events go: `state.deadLetterPath`, else beside a
    /// `persistent` state file, else memory. With `dry_run` the file is read
    /// (when configured or beside an existing state file) and never written.
    pub fn dead_letter_location(
        &self,
        state_file: &Path,
        persistent: bool,
        dry_run: bool,
    ) -> DeadLetterLocation {
        let configured = self.dead_letter_path.is_some();
        let path = self.dead_letter_file(state_file);
        if dry_run && (configured || state_file.is_file()) {
            DeadLetterLocation::File {
                path,
                read_only: true,
            }
        } else if !dry_run && (persistent || configured) {
            DeadLetterLocation::File {
                path,
                read_only: false,
            }
        } else {
            DeadLetterLocation::Memory
        }
    }

    /// The dead-letter file: `state.deadLetterPath`, else beside
    /// `state_file` (`<state file>.dead-letter.jsonl`).
    pub fn dead_letter_file(&self, state_file: &Path) -> PathBuf {
        self.dead_letter_path
            .clone()
            .unwrap_or_else(|| receiver_engine::DeadLetters::default_path(state_file))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging (`log.*`).
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `log.format`, default `text`.
    pub format: LogFormat,
    /// `log.level`, default `info`: a level or a tracing filter directive.
    pub level: String,
}

/// The health and metrics server (`server.*`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `server.enabled`, default true.
    pub enabled: bool,
    /// `server.listen`, default `0.0.0.0:9464`.
    pub listen: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(path: Option<&str>, dead_letter_path: Option<&str>) -> StateSettings {
        StateSettings {
            path: path.map(PathBuf::from),
            overlap: Duration::from_secs(600),
            dead_letter_path: dead_letter_path.map(PathBuf::from),
            dead_letter_max: 1000,
            reset_corrupt: false,
            postgres: None,
        }
    }

    #[test]
    fn the_state_file_is_the_configured_one_else_in_the_state_directory() {
        let dir = Some(OsStr::new("/run/state"));
        let configured = state(Some("/data/s.json"), None);
        assert_eq!(configured.file(dir), (PathBuf::from("/data/s.json"), true));
        let default = state(None, None);
        assert_eq!(
            default.file(dir),
            (PathBuf::from("/run/state/state.json"), false)
        );
        assert_eq!(
            default.file(None),
            (PathBuf::from("/var/lib/equinix-receiver/state.json"), false)
        );
    }

    #[test]
    fn the_dead_letter_file_is_the_configured_one_else_beside_the_state() {
        let state_file = Path::new("/data/s.json");
        assert_eq!(
            state(None, None).dead_letter_file(state_file),
            Path::new("/data/s.json.dead-letter.jsonl")
        );
        assert_eq!(
            state(None, Some("/dl.jsonl")).dead_letter_file(state_file),
            Path::new("/dl.jsonl")
        );
    }
}
