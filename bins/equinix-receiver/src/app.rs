//! The running receiver: builds every component from [`Settings`], then runs
//! sweeps on a fixed cadence until it is told to stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use direktiv_broadcast::{Auth, Sink, SinkConfig};
use event_dedupe::{
    Baseline, FileOptions, FileTracker, MemoryTracker, ReadOnly, Tracker, TrackerOptions,
};
use metal_events::{Client, RateGate, RequestRecord};
use receiver_engine::{EngineOptions, Observer, Receiver};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetters, Location};
use crate::deliver::Target;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::scrub::{ScrubbedStdout, Scrubber};
use crate::server::{Limits, Server};
use crate::settings::{Settings, StateSettings};

/// The exit code of `--once` when something found was not delivered.
pub(crate) const EXIT_UNDELIVERED: u8 = 3;

/// Where the state lives when `state.path` is not set: `$STATE_DIRECTORY`
/// (systemd) or this directory.
const DEFAULT_STATE_DIR: &str = "/var/lib/equinix-receiver";
const STATE_FILE: &str = "state.json";

/// How the pipeline runs, from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    /// `--once`: one sweep, then exit.
    pub(crate) once: bool,
    /// `--dry-run`: print CloudEvents on stdout instead of sending them.
    pub(crate) dry_run: bool,
}

/// Told the address the health and metrics server bound.
pub(crate) type ListenCallback = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// What the demo (or a test) plugs into a run.
#[derive(Clone, Default)]
pub(crate) struct Extras {
    /// Told what the engine does.
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// The metrics to record into (the demo reads them as it runs).
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// Cancelled to stop the run (in addition to SIGINT and SIGTERM).
    pub(crate) stop: Option<CancellationToken>,
    /// Told the address the health and metrics server bound (useful with
    /// `server.listen: 127.0.0.1:0`).
    pub(crate) on_listen: Option<ListenCallback>,
    /// The state is scratch on purpose (the demo's temporary directory): no
    /// warning that it lies on the container's own filesystem.
    pub(crate) scratch_state: bool,
}

/// Runs the receiver until it is told to stop (or after one sweep with `--once`).
pub(crate) async fn run(settings: Settings, options: RunOptions) -> anyhow::Result<ExitCode> {
    run_with(settings, options, Extras::default()).await
}

/// [`run`] with hooks for the demo.
pub(crate) async fn run_with(
    settings: Settings,
    options: RunOptions,
    extras: Extras,
) -> anyhow::Result<ExitCode> {
    let metrics = extras
        .metrics
        .clone()
        .unwrap_or_else(|| Arc::new(Metrics::new(settings.equinix.sweep_timeout)));
    let health = Arc::new(Health::new(crate::health::budget(
        settings.equinix.poll_interval,
        settings.equinix.sweep_timeout,
    )));
    // The server comes first: a busy port is a start-up error, and probes
    // get answers (503 for readiness) while the state and inventory load.
    // `--once` is a one-shot run with nothing to probe: no server.
    let server = if settings.server.enabled && !options.once {
        let server = Server::start(
            settings.server.listen,
            Limits::default(),
            Arc::clone(&health),
            Arc::clone(&metrics),
        )
        .await?;
        tracing::info!(address = %server.addr(), "serving /healthz, /readyz and /metrics on http://{}", server.addr());
        if let Some(on_listen) = &extras.on_listen {
            on_listen(server.addr());
        }
        Some(server)
    } else {
        None
    };
    let stop = extras.stop.clone().unwrap_or_default();
    let watcher = spawn_signal_handler(stop.clone(), Arc::clone(&health));

    let result = run_pipeline(&settings, &options, &extras, &metrics, &health, &stop).await;

    // Readiness stays 503 until the process is gone; the server stops last.
    health.set_stopping();
    if let Some(server) = server {
        server.shutdown(settings.shutdown_grace).await;
    }
    watcher.abort();
    let _ = watcher.await;
    result
}

/// Everything after the server is up: open the state, build the pipeline,
/// run the loop, persist the state.
async fn run_pipeline(
    settings: &Settings,
    options: &RunOptions,
    extras: &Extras,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let scrubber = Arc::new(Scrubber::new(settings.secrets()));
    let client = metal_client(settings, metrics)?;
    // Where the state's directory is mounted (Linux only; elsewhere the file
    // counts as persistent).
    let mountinfo = if extras.scratch_state {
        None
    } else {
        std::fs::read_to_string(crate::mountinfo::PATH).ok()
    };
    let (tracker, persistent) = open_tracker(
        &settings.state,
        settings.equinix.start_from,
        options.dry_run,
        mountinfo.as_deref(),
    )
    .await?;
    let dead_letters = Arc::new(open_dead_letters(
        &settings.state,
        persistent,
        options.dry_run,
        metrics,
        Arc::clone(&scrubber),
    )?);
    metrics.state_persistent.set(i64::from(persistent));
    metrics.tls_insecure_skip_verify.set(i64::from(
        settings.direktiv.insecure_skip_verify && !options.dry_run,
    ));
    metrics
        .tracked_events
        .set(i64::try_from(tracker.stats().tracked_ids).unwrap_or(i64::MAX));
    let target = if options.dry_run {
        Target::Stdout(ScrubbedStdout::new(Arc::clone(&scrubber)))
    } else {
        Target::Direktiv(sink(settings)?)
    };
    log_startup(settings, options, persistent, tracker.as_ref());
    let held = dead_letters.held().await;
    if held > 0 {
        tracing::warn!(held, file = %dead_letters.location(),
            "events Direktiv refused for good are kept; resend them with --redeliver-refused \
             once Direktiv accepts them");
    }

    let engine = EngineOptions::default()
        .with_organization_id(settings.equinix.organization_id.clone())
        .with_poll_interval(settings.equinix.poll_interval)
        .with_max_poll_interval(settings.equinix.max_poll_interval)
        .with_covered_poll_interval(settings.equinix.covered_poll_interval)
        .with_sweep_timeout(settings.equinix.sweep_timeout)
        .with_inventory_refresh(settings.equinix.inventory_refresh)
        .with_shutdown_grace(settings.shutdown_grace)
        .with_levels(settings.equinix.levels)
        .with_per_page(settings.equinix.per_page)
        .with_max_pages(settings.equinix.max_pages)
        .with_api_concurrency(settings.equinix.concurrency)
        .with_delivery_concurrency(settings.direktiv.concurrency)
        .with_max_retries(settings.direktiv.max_retries)
        .with_overlap(settings.state.overlap)
        .with_error_events(
            settings
                .direktiv
                .event_on_error
                .then_some(settings.direktiv.error_event_interval),
        )
        .with_event_types(settings.equinix.event_types.clone());
    let mut receiver = Receiver::new(
        client,
        tracker,
        target,
        settings.direktiv.map_options.clone(),
        engine,
    )
    // The dead letters first: given a store, the receiver keeps it (and the
    // gauge it set) when the metrics change.
    .with_dead_letters(dead_letters)
    .with_metrics(Arc::clone(metrics))
    .with_health(Arc::clone(health))
    .with_scrubber(scrubber);
    if let Some(observer) = &extras.observer {
        receiver = receiver.with_observer(Arc::clone(observer));
    }

    if !options.once {
        receiver.run(stop.clone()).await;
        return Ok(ExitCode::SUCCESS);
    }
    let report = receiver
        .run_once(stop)
        .await
        .context("loading the inventory")?;
    Ok(match report {
        Some(report) if !report.all_delivered() => ExitCode::from(EXIT_UNDELIVERED),
        _ => ExitCode::SUCCESS,
    })
}

/// The Metal API client, reporting every request to the metrics. The client
/// keeps the rate-limit gate itself (429s and `X-RateLimit-Remaining: 0`),
/// pacing every request at `equinix.requestRate` when it is set.
fn metal_client(settings: &Settings, metrics: &Arc<Metrics>) -> anyhow::Result<Client> {
    let metrics = Arc::clone(metrics);
    let observer = move |record: &RequestRecord| metrics.observe_request(record);
    let e = &settings.equinix;
    let gate = e
        .request_rate
        .map_or_else(RateGate::default, RateGate::with_rate);
    Client::builder(e.token.clone())
        .rate_gate(Arc::new(gate))
        .base_url(e.api_url.as_str())
        .timeout(e.request_timeout)
        .max_response_size(e.max_response_size)
        .observer(observer)
        .build()
        .context("building the Metal API client")
}

/// The Direktiv sink from `direktiv.*`.
pub(crate) fn sink(settings: &Settings) -> anyhow::Result<Sink> {
    let d = &settings.direktiv;
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
    Sink::new(config).context("setting up delivery to Direktiv (direktiv.*)")
}

/// The state path: `state.path`, else `$STATE_DIRECTORY/state.json`, else the
/// default directory. The second value says whether it was configured.
pub(crate) fn state_path(state: &StateSettings) -> (PathBuf, bool) {
    match &state.path {
        Some(path) => (path.clone(), true),
        None => {
            let dir = std::env::var_os("STATE_DIRECTORY")
                .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from);
            (dir.join(STATE_FILE), false)
        }
    }
}

/// Opens the dedupe state. A configured path must work; the default location
/// may fall back to memory (the old receiver's behaviour) with a loud warning.
/// `--dry-run` never touches the file: it uses memory. The second value says
/// whether the state outlives the container: not when it is in memory, nor
/// when `mountinfo` (the text of `/proc/self/mountinfo`) shows its directory
/// on the container's own root filesystem.
async fn open_tracker(
    state: &StateSettings,
    start_from: Baseline,
    dry_run: bool,
    mountinfo: Option<&str>,
) -> anyhow::Result<(Arc<dyn Tracker>, bool)> {
    let mut tracker_options = TrackerOptions::default();
    tracker_options.baseline = start_from;
    tracker_options.overlap = state.overlap;
    let (path, configured) = state_path(state);
    if dry_run {
        return Ok((
            dry_run_tracker(&path, configured, tracker_options).await?,
            false,
        ));
    }
    let mut options = FileOptions::default();
    options.tracker = tracker_options.clone();
    options.reset_corrupt = state.reset_corrupt;
    match FileTracker::open(&path, options).await {
        Ok(tracker) => {
            let persistent = !state_on_container_root(&path, mountinfo);
            Ok((Arc::new(tracker), persistent))
        }
        Err(error) if !configured && !error.is_corrupt() && !error.is_locked() => {
            tracing::warn!(path = %path.display(), %error,
                "NO PERSISTENT STATE: the default state location is not writable, so the \
                 receiver keeps its state in memory and events that happen while it is down \
                 will be missed; events Direktiv refuses are kept in memory only (unless \
                 state.deadLetterPath is set) and lost at exit. Set state.path to a writable \
                 file (a volume) to fix this");
            Ok((Arc::new(MemoryTracker::new(tracker_options)), false))
        }
        Err(error) => Err(state_error(&path, error)),
    }
}

/// Where refused events go: `state.deadLetterPath`, else beside a
/// persistent state file, else memory. `--dry-run` reads the file and never
/// writes it.
fn open_dead_letters(
    state: &StateSettings,
    persistent: bool,
    dry_run: bool,
    metrics: &Arc<Metrics>,
    scrubber: Arc<Scrubber>,
) -> anyhow::Result<DeadLetters> {
    let state_file = state_path(state).0;
    let configured = state.dead_letter_path.is_some();
    let path = state
        .dead_letter_path
        .clone()
        .unwrap_or_else(|| crate::dead_letter::default_path(&state_file));
    let location = if dry_run {
        if configured || state_file.is_file() {
            Location::File {
                path,
                read_only: true,
            }
        } else {
            Location::Memory
        }
    } else if persistent || configured {
        Location::File {
            path,
            read_only: false,
        }
    } else {
        Location::Memory
    };
    let max = usize::try_from(state.dead_letter_max).unwrap_or(usize::MAX);
    let store = DeadLetters::open(location, max, Arc::clone(metrics), scrubber)?;
    Ok(store)
}

/// Whether the state file's directory lies on the container's own root
/// filesystem ([`crate::mountinfo::on_container_root`]), with a loud warning
/// when it does. The file is used all the same: it survives a restart of the
/// process, only not a new container.
fn state_on_container_root(path: &Path, mountinfo: Option<&str>) -> bool {
    let Some(mountinfo) = mountinfo else {
        return false;
    };
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return false;
    };
    if !crate::mountinfo::on_container_root(mountinfo, &dir) {
        return false;
    }
    tracing::warn!(path = %path.display(),
        "NO PERSISTENT STATE: the state directory {} lies on the container's own filesystem, \
         not on a volume, so the state is lost with the container (a new pod, an upgrade) and \
         events that happen meanwhile will be missed. Mount a volume there: a \
         PersistentVolumeClaim (deploy/kubernetes/pvc.yaml) or a Docker named volume",
        dir.display());
    true
}

/// The tracker of `--dry-run`: the state file loaded into memory when one
/// exists, so the preview shows what the next real run would send. Nothing is
/// created, locked or written, there or anywhere else (a receiver may be
/// using the file, and a copy under a predictable path could be redirected).
/// An unreadable default location gives a fresh state, as a real run would.
async fn dry_run_tracker(
    path: &Path,
    configured: bool,
    tracker_options: TrackerOptions,
) -> anyhow::Result<Arc<dyn Tracker>> {
    let tracker = match MemoryTracker::from_state_file(path, tracker_options.clone()).await {
        Ok(tracker) => tracker,
        Err(error) if !configured && !error.is_corrupt() => {
            tracing::warn!(path = %path.display(), %error,
                "the default state location is not readable; previewing from a fresh state");
            MemoryTracker::new(tracker_options)
        }
        Err(error) => return Err(state_error(path, error)),
    };
    Ok(Arc::new(ReadOnly::new(tracker)))
}

pub(crate) fn state_error(path: &Path, error: event_dedupe::Error) -> anyhow::Error {
    let hint = if error.is_corrupt() {
        "move the file aside and start again, or run once with --reset-state to set it aside \
         automatically (events since the last run may then be missed)"
    } else if error.is_locked() {
        "another receiver is using this state file; run one receiver per state file"
    } else {
        "check that the directory exists and is writable by this user (state.path)"
    };
    anyhow::Error::new(error).context(format!("opening the state file {}: {hint}", path.display()))
}

fn log_startup(settings: &Settings, options: &RunOptions, persistent: bool, tracker: &dyn Tracker) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %crate::config::summary(settings),
        api = %settings.equinix.api_url,
        baseline = %tracker.baseline(),
        persistent,
        event_on_error = settings.direktiv.event_on_error,
        server = %if settings.server.enabled && !options.once {
            settings.server.listen.to_string()
        } else {
            "off".to_owned()
        },
        shutdown_grace_s = settings.shutdown_grace.as_secs_f64(),
        dry_run = options.dry_run,
        once = options.once,
        "equinix-receiver {} starting", env!("CARGO_PKG_VERSION")
    );
    if settings.direktiv.insecure_skip_verify && !options.dry_run {
        tracing::warn!(
            "direktiv.insecureSkipVerify is on: Direktiv's TLS certificate is not verified"
        );
    }
    if settings.direktiv.token.is_none() && !options.dry_run {
        tracing::warn!("no Direktiv token is configured: events are sent without an auth header");
    }
    if !persistent && !options.dry_run {
        tracing::warn!(
            "no persistent state: events that happen while the receiver is down will be missed \
             (equinix_receiver_state_persistent is 0)"
        );
    }
}

/// SIGINT or SIGTERM cancels `stop`; a second one exits at once. Readiness
/// goes to 503 as soon as `stop` is cancelled, by a signal or by the caller.
/// The task is aborted when the run ends.
fn spawn_signal_handler(stop: CancellationToken, health: Arc<Health>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut signals = Signals::new();
        tokio::select! {
            () = signals.next() => {
                tracing::info!(
                    "shutting down: finishing in-flight deliveries (a second signal exits at once)"
                );
                stop.cancel();
            }
            () = stop.cancelled() => tracing::info!("shutting down"),
        }
        health.set_stopping();
        signals.next().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    })
}

/// SIGTERM and SIGINT, registered once so that no signal slips between two
/// waits.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.streams {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const POD_WITHOUT_PVC: &str = include_str!("../../../fixtures/mountinfo/pod-without-pvc.txt");
    const BARE_METAL: &str = include_str!("../../../fixtures/mountinfo/bare-metal-ext4.txt");

    fn state_in(dir: &Path) -> StateSettings {
        StateSettings {
            path: Some(dir.join(STATE_FILE)),
            overlap: Duration::from_secs(600),
            reset_corrupt: false,
            dead_letter_path: None,
            dead_letter_max: 1000,
        }
    }

    async fn persistent(mountinfo: Option<&str>) -> (bool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (tracker, persistent) =
            open_tracker(&state_in(dir.path()), Baseline::Now, false, mountinfo)
                .await
                .unwrap();
        tracker
            .record_delivered("device:d1", "e1", None)
            .await
            .unwrap();
        tracker.persist().await.unwrap();
        (persistent, dir)
    }

    #[tokio::test]
    async fn a_state_on_the_containers_overlay_root_is_used_but_not_persistent() {
        // Every path of the test's temporary directory lies on `/` for this
        // fixture, which is an overlay: the old Deployment with a new image.
        let (persistent, dir) = persistent(Some(POD_WITHOUT_PVC)).await;
        assert!(
            !persistent,
            "state_persistent must be 0 on the container root"
        );
        assert!(
            dir.path().join(STATE_FILE).is_file(),
            "the file is still written: it survives a restart of the process"
        );
    }

    #[tokio::test]
    async fn a_state_on_a_real_filesystem_or_without_mountinfo_is_persistent() {
        for mountinfo in [Some(BARE_METAL), None] {
            let (persistent, dir) = persistent(mountinfo).await;
            assert!(persistent, "{mountinfo:?}");
            assert!(dir.path().join(STATE_FILE).is_file());
        }
    }
}
