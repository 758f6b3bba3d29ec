//! Validated settings: what the config file, the environment and the flags
//! become once every problem has been ruled out. Each component is built from
//! these; nothing downstream reads the raw YAML.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use direktiv_broadcast::AuthHeader;
use event_dedupe::Baseline;
use metal_cloudevents::MapOptions;
use secrecy::SecretString;
use url::Url;

use crate::event_types::EventTypes;
pub(crate) use receiver_engine::poll::Levels;

/// Everything the receiver needs to run, validated.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The Equinix Metal side.
    pub(crate) equinix: EquinixSettings,
    /// The Direktiv side.
    pub(crate) direktiv: DirektivSettings,
    /// Where the dedupe state lives.
    pub(crate) state: StateSettings,
    /// Logging.
    pub(crate) log: LogSettings,
    /// The health and metrics server.
    pub(crate) server: ServerSettings,
    /// How long in-flight deliveries may take to finish after SIGTERM.
    pub(crate) shutdown_grace: Duration,
}

impl Settings {
    /// Every configured secret, for the [`Scrubber`](crate::scrub::Scrubber)
    /// that keeps them out of logs and forwarded text. A new secret (a
    /// database password) is added here.
    pub(crate) fn secrets(&self) -> Vec<&SecretString> {
        let mut secrets = vec![&self.equinix.token];
        secrets.extend(&self.direktiv.token);
        secrets
    }
}

/// The Equinix Metal side (`equinix.*`).
#[derive(Debug, Clone)]
pub(crate) struct EquinixSettings {
    /// `equinix.organizationId`.
    pub(crate) organization_id: String,
    /// `equinix.packetAuthToken`, `packetAuthTokenFile` or `METAL_AUTH_TOKEN`.
    pub(crate) token: SecretString,
    /// `equinix.apiUrl`, default `https://api.equinix.com/metal/v1`.
    pub(crate) api_url: Url,
    /// `equinix.pollInterval`, default 10 s: sweeps start this far apart.
    pub(crate) poll_interval: Duration,
    /// `equinix.maxPollInterval`, default 60 s (at least `poll_interval`):
    /// a quiet device list is read at least this often.
    pub(crate) max_poll_interval: Duration,
    /// `equinix.coveredPollInterval`, default 10 min (at least
    /// `max_poll_interval`): the same where the project's list shows its
    /// devices' events.
    pub(crate) covered_poll_interval: Duration,
    /// `equinix.requestRate`: Metal API requests per second at most, all
    /// together; `None` (the default) for no limit of our own.
    pub(crate) request_rate: Option<f64>,
    /// `equinix.perPage`, default 100, at most 1000.
    pub(crate) per_page: u32,
    /// `equinix.maxPages`, default 10: pages read per list per sweep at most.
    pub(crate) max_pages: u32,
    /// `equinix.concurrency`, default 8: API requests in flight at most.
    pub(crate) concurrency: usize,
    /// `equinix.levels`, default project and device.
    pub(crate) levels: Levels,
    /// `equinix.startFrom`, default `now`: the baseline of a new state.
    pub(crate) start_from: Baseline,
    /// `equinix.inventoryRefresh`, default 5 min.
    pub(crate) inventory_refresh: Duration,
    /// `equinix.timeout`, default 30 s: one API request at most.
    pub(crate) request_timeout: Duration,
    /// `equinix.sweepTimeout`, default 5 min: one sweep at most.
    pub(crate) sweep_timeout: Duration,
    /// `equinix.maxResponseSize`, default 32 MiB: the largest answer body
    /// read from the Metal API.
    pub(crate) max_response_size: u64,
    /// `equinix.eventTypes`, default every type: which events are delivered.
    pub(crate) event_types: EventTypes,
}

/// The Direktiv side (`direktiv.*`).
#[derive(Debug, Clone)]
pub(crate) struct DirektivSettings {
    /// `direktiv.endpoint`: the full broadcast URL.
    pub(crate) endpoint: Url,
    /// The token, from `token`, `tokenFile`, `DIREKTIV_TOKEN` or `apikey`.
    /// `None` sends no auth header.
    pub(crate) token: Option<SecretString>,
    /// The headers the token goes in: the one `direktiv.authHeader` names;
    /// `apikey` when only `direktiv.apikey` was given; else
    /// `Direktiv-Token` and `Direktiv-Api-Key` ([`Auth::DEFAULT_HEADERS`]).
    ///
    /// [`Auth::DEFAULT_HEADERS`]: direktiv_broadcast::Auth::DEFAULT_HEADERS
    pub(crate) auth_headers: Vec<AuthHeader>,
    /// `direktiv.insecureSkipVerify`, default false.
    pub(crate) insecure_skip_verify: bool,
    /// `direktiv.caFile`: an extra PEM bundle to trust.
    pub(crate) ca_file: Option<PathBuf>,
    /// `direktiv.timeout`, default 10 s: one delivery request at most.
    pub(crate) timeout: Duration,
    /// `direktiv.concurrency`, default 8: deliveries in flight at most.
    pub(crate) concurrency: usize,
    /// `direktiv.maxRetries`, default 5: retries of one event within a sweep.
    pub(crate) max_retries: u32,
    /// `direktiv.event-on-error`, default false.
    pub(crate) event_on_error: bool,
    /// `direktiv.errorEventInterval`, default 5 min.
    pub(crate) error_event_interval: Duration,
    /// `direktiv.typePrefix` (default none) and `direktiv.sourcePrefix`
    /// (default `direktiv/listener/equinix`), validated.
    pub(crate) map_options: MapOptions,
}

/// Where the dedupe state lives (`state.*`).
#[derive(Debug, Clone)]
pub(crate) struct StateSettings {
    /// `state.path`; `None` when not configured (the default location is
    /// tried, and memory is used with a loud warning when it is not writable).
    pub(crate) path: Option<PathBuf>,
    /// `state.overlap`, default 10 min: how long ids are kept below a floor.
    pub(crate) overlap: Duration,
    /// `state.deadLetterPath`; `None` puts the dead-letter file beside the
    /// state file (`<state file>.dead-letter.jsonl`).
    pub(crate) dead_letter_path: Option<PathBuf>,
    /// `state.deadLetterMax`, default 1,000: refused events kept at most.
    pub(crate) dead_letter_max: u32,
    /// `--reset-state`: start fresh when the state file is corrupt.
    pub(crate) reset_corrupt: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging (`log.*`).
#[derive(Debug, Clone)]
pub(crate) struct LogSettings {
    /// `log.format`, default `text`.
    pub(crate) format: LogFormat,
    /// `log.level`, default `info`: a level or a tracing filter directive.
    pub(crate) level: String,
}

/// The health and metrics server (`server.*`).
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    /// `server.enabled`, default true.
    pub(crate) enabled: bool,
    /// `server.listen`, default `0.0.0.0:9464`.
    pub(crate) listen: SocketAddr,
}
