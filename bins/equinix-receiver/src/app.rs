//! The running receiver: builds every component from [`Settings`], then runs
//! sweeps on a fixed cadence until it is told to stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use anyhow::Context as _;
use cloudevents::AttributesReader as _;
use direktiv_broadcast::{Auth, Sink, SinkConfig};
use event_dedupe::{
    Baseline, FileOptions, FileTracker, MemoryTracker, ReadOnly, Tracker, TrackerOptions,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use metal_events::{Client, ListOptions, OrganizationId, RequestRecord};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetters, Location};
use crate::deliver::{Delivered, Target};
use crate::error_events::{ErrorEvents, ErrorKind, Occurrence};
use crate::future::FutureDated;
use crate::health::Health;
use crate::inventory::{DeviceInfo, Inventory, ProjectInfo};
use crate::metrics::{ApiLabels, EndpointLabel, HttpCode, Metrics};
use crate::poll::PollOptions;
use crate::scrub::{ScrubbedStdout, Scrubber};
use crate::server::{Limits, Server};
use crate::settings::{Settings, StateSettings};
use crate::sweep::{Hooks, Pipeline, SweepReport};

/// What the log says when the Metal API answers 401 or 403.
const TOKEN_REFUSED: &str = "the Metal API refused the token: check equinix.packetAuthToken, \
     packetAuthTokenFile or METAL_AUTH_TOKEN";

/// The exit code of `--once` when something found was not delivered.
pub(crate) const EXIT_UNDELIVERED: u8 = 3;

/// Where the state lives when `state.path` is not set: `$STATE_DIRECTORY`
/// (systemd) or this directory.
const DEFAULT_STATE_DIR: &str = "/var/lib/equinix-receiver";
const STATE_FILE: &str = "state.json";

/// Pages read per list when listing projects and devices at most.
const INVENTORY_MAX_PAGES: usize = 1000;

/// How often the main loop beats while it waits (between sweeps, or for the
/// rate-limit gate while loading the inventory).
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// How the pipeline runs, from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    /// `--once`: one sweep, then exit.
    pub(crate) once: bool,
    /// `--dry-run`: print CloudEvents on stdout instead of sending them.
    pub(crate) dry_run: bool,
}

/// Told about each finished sweep, with the metrics.
pub(crate) type SweepCallback = Arc<dyn Fn(&SweepReport, &Metrics) + Send + Sync>;

/// Told the address the health and metrics server bound.
pub(crate) type ListenCallback = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// What the demo (or a test) plugs into a run.
#[derive(Clone, Default)]
pub(crate) struct Extras {
    /// Told about each delivered event.
    pub(crate) hooks: Option<Arc<dyn Hooks>>,
    /// Told about each finished sweep.
    pub(crate) on_sweep: Option<SweepCallback>,
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
    let metrics = Arc::new(Metrics::new(settings.equinix.sweep_timeout));
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
    health: &Health,
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

    let pipeline = Pipeline {
        client,
        tracker,
        dead_letters,
        target,
        metrics: Arc::clone(metrics),
        poll: PollOptions {
            per_page: settings.equinix.per_page,
            max_pages: settings.equinix.max_pages,
        },
        levels: settings.equinix.levels,
        api_concurrency: settings.equinix.concurrency,
        delivery_concurrency: settings.direktiv.concurrency,
        max_retries: settings.direktiv.max_retries,
        overlap: settings.state.overlap,
        map_options: settings.direktiv.map_options.clone(),
        event_types: settings.equinix.event_types.clone(),
        hooks: extras.hooks.clone(),
        newest_delivered_ms: AtomicI64::new(0),
        future_dated: FutureDated::default(),
    };

    let result = main_loop(settings, options, &pipeline, extras, health, stop, scrubber).await;

    // What was acknowledged is recorded; what was not stays new and goes out
    // after a restart.
    match pipeline.tracker.persist().await {
        Ok(()) => tracing::info!(
            tracked = pipeline.tracker.stats().tracked_ids,
            "state saved; exiting"
        ),
        Err(error) => {
            pipeline.metrics.state_persist_failures.inc();
            pipeline.metrics.error(ErrorKind::State);
            tracing::error!(%error, "could not write the state at exit; events delivered \
                since the last save may be sent again after a restart");
        }
    }
    result
}

/// The loop's view of error events: off, or the rate limiter and the org's
/// name for the source.
struct ErrorReporting {
    events: Option<ErrorEvents>,
    org_id: String,
    org_name: Option<String>,
}

impl ErrorReporting {
    fn note(&mut self, occurrence: Occurrence) {
        if let Some(events) = &mut self.events {
            events.note(occurrence, chrono::Utc::now());
        }
    }

    /// Sends the reports that are due (nothing while shutting down). Each is
    /// tried once: a failure is Direktiv's own trouble, logged and counted,
    /// and its occurrences go into the next report.
    async fn flush(&mut self, pipeline: &Pipeline, stop: &CancellationToken) {
        let Some(events) = &mut self.events else {
            return;
        };
        if stop.is_cancelled() {
            return;
        }
        let source = crate::error_events::source(
            &self.org_id,
            self.org_name.as_deref(),
            &pipeline.map_options,
        );
        let now = Instant::now();
        for report in events.due(now, chrono::Utc::now(), &source) {
            match pipeline
                .target
                .deliver(&report.event, 0, &pipeline.metrics, stop)
                .await
            {
                Delivered::Acknowledged { .. } => {
                    pipeline.metrics.error_events_sent.inc();
                    tracing::debug!(id = report.event.id(), "error event sent");
                }
                Delivered::Rejected { reason, .. } | Delivered::Deferred { reason, .. } => {
                    tracing::warn!(%reason, "could not send an error event to Direktiv; \
                        it is counted in the next report");
                    events.requeue(report);
                }
                Delivered::Cancelled => {
                    tracing::warn!(
                        reason = Delivered::CANCELLED_REASON,
                        "could not send an error event to Direktiv; \
                        it is counted in the next report"
                    );
                    events.requeue(report);
                }
            }
        }
        events.prune(now);
    }
}

async fn main_loop(
    settings: &Settings,
    options: &RunOptions,
    pipeline: &Pipeline,
    extras: &Extras,
    health: &Health,
    stop: &CancellationToken,
    scrubber: Arc<Scrubber>,
) -> anyhow::Result<ExitCode> {
    let org = OrganizationId::new(settings.equinix.organization_id.clone());
    let interval = settings.equinix.poll_interval;
    let grace = settings.shutdown_grace;
    let mut inventory: Option<(Inventory, Instant)> = None;
    let mut failures = 0u32;
    let mut errors = ErrorReporting {
        events: settings
            .direktiv
            .event_on_error
            .then(|| ErrorEvents::new(settings.direktiv.error_event_interval, scrubber)),
        org_id: settings.equinix.organization_id.clone(),
        org_name: None,
    };
    loop {
        let started = Instant::now();
        health.beat();

        // Inventory: at start, on its schedule, and when a list answered 404.
        let due = inventory
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= settings.equinix.inventory_refresh);
        if due {
            let loaded = tokio::select! {
                () = stop.cancelled() => return Ok(ExitCode::SUCCESS),
                loaded = load_inventory(pipeline, &org, settings, health, stop) => loaded,
            };
            health.beat();
            match loaded {
                Ok(fresh) => {
                    if let Some((old, _)) = &inventory {
                        forget_gone(pipeline, old, &fresh).await;
                    }
                    pipeline
                        .metrics
                        .inventory_projects
                        .set(fresh.projects.len() as i64);
                    pipeline
                        .metrics
                        .inventory_devices
                        .set(fresh.devices.len() as i64);
                    tracing::info!(org = %fresh.org_name, projects = fresh.projects.len(),
                        devices = fresh.devices.len(), "inventory loaded");
                    errors.org_name = Some(fresh.org_name.clone());
                    inventory = Some((fresh, Instant::now()));
                }
                Err(error) => {
                    // A 429 paused the client's rate gate: the next attempt
                    // waits for it, like the lists.
                    let auth = error.is_unauthorized();
                    let status = error.status().map(|s| s.as_u16());
                    let kind = if auth {
                        ErrorKind::Auth
                    } else {
                        ErrorKind::of_api_status(status)
                    };
                    pipeline.metrics.error(kind);
                    if auth {
                        tracing::error!(%error, "{TOKEN_REFUSED}");
                    } else {
                        tracing::warn!(%error, "could not list the organization's projects and devices");
                    }
                    errors.note(Occurrence {
                        kind,
                        target: if auth { "equinix" } else { "inventory" }.to_owned(),
                        message: format!("loading the inventory: {error}"),
                        status,
                        project: None,
                        device: None,
                    });
                    if inventory.is_none() && options.once {
                        return Err(anyhow::Error::new(error).context("loading the inventory"));
                    }
                }
            }
        }

        if let Some((current, _)) = &inventory {
            health.beat();
            let report = match sweep_within_grace(pipeline, current, settings, stop, grace).await {
                SweepEnd::Done(report) => {
                    health.set_ready();
                    *report
                }
                SweepEnd::TimedOut { after } => {
                    tracing::warn!(
                        timeout_s = settings.equinix.sweep_timeout.as_secs_f64(),
                        "the sweep ran out of time; what was not delivered goes out next sweep"
                    );
                    pipeline.metrics.sweep_duration.observe(after.as_secs_f64());
                    pipeline.metrics.sweep_failures.inc();
                    pipeline.update_lag();
                    SweepReport {
                        timed_out: true,
                        duration: after,
                        ..SweepReport::default()
                    }
                }
                SweepEnd::GraceOver => {
                    tracing::warn!(
                        grace_s = grace.as_secs_f64(),
                        "shutdownGrace ran out with deliveries in flight; events not \
                         acknowledged stay new and go out after a restart"
                    );
                    return Ok(ExitCode::SUCCESS);
                }
            };
            health.beat();
            log_sweep(&report, pipeline);
            if let Some(on_sweep) = &extras.on_sweep {
                on_sweep(&report, &pipeline.metrics);
            }
            for occurrence in crate::error_events::from_sweep(&report, current) {
                errors.note(occurrence);
            }
            if report.stale_inventory
                && let Some((_, loaded_at)) = inventory.as_mut()
            {
                // Refresh before the next sweep.
                *loaded_at = Instant::now() - settings.equinix.inventory_refresh;
            }
            if options.once {
                errors.flush(pipeline, stop).await;
                return Ok(if report.all_delivered() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_UNDELIVERED)
                });
            }
            failures = if report.auth_failed { failures + 1 } else { 0 };
        } else {
            failures += 1;
        }
        errors.flush(pipeline, stop).await;
        if stop.is_cancelled() {
            return Ok(ExitCode::SUCCESS);
        }

        // The next sweep starts one interval after this one started; after
        // repeated failures (no inventory, a refused token) the wait grows,
        // up to ten intervals, so a broken setup is never hammered. The loop
        // beats while it waits.
        let deadline = started + interval * failures.clamp(1, 10);
        loop {
            health.beat();
            let next = (Instant::now() + BEAT_EVERY).min(deadline);
            tokio::select! {
                () = stop.cancelled() => return Ok(ExitCode::SUCCESS),
                () = tokio::time::sleep_until(next) => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    }
}

/// How a sweep ended.
enum SweepEnd {
    /// It ran to its end (possibly cut short by a shutdown, within the grace).
    Done(Box<SweepReport>),
    /// `equinix.sweepTimeout` ran out.
    TimedOut {
        /// How long the sweep ran.
        after: Duration,
    },
    /// A shutdown began and `shutdownGrace` ran out before the sweep ended.
    GraceOver,
}

/// Runs one sweep under `equinix.sweepTimeout`; once `stop` is cancelled the
/// sweep (which starts nothing new) gets at most `grace` more to finish its
/// in-flight deliveries and save the state.
async fn sweep_within_grace(
    pipeline: &Pipeline,
    inventory: &Inventory,
    settings: &Settings,
    stop: &CancellationToken,
    grace: Duration,
) -> SweepEnd {
    let started = Instant::now();
    let sweep = tokio::time::timeout(
        settings.equinix.sweep_timeout,
        pipeline.sweep(inventory, stop),
    );
    let grace_over = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        ended = sweep => match ended {
            Ok(report) => SweepEnd::Done(Box::new(report)),
            Err(_) => SweepEnd::TimedOut {
                after: started.elapsed(),
            },
        },
        () = grace_over => SweepEnd::GraceOver,
    }
}

/// One info line per sweep; nothing per event at info level.
fn log_sweep(report: &SweepReport, pipeline: &Pipeline) {
    let stats = pipeline.tracker.stats();
    if report.auth_failed {
        tracing::error!(
            lists = report.lists,
            error = report.first_list_error.as_deref().unwrap_or(""),
            "{TOKEN_REFUSED}"
        );
    }
    if let Some(problem) = &report.first_delivery_problem {
        tracing::warn!(deferred = report.deferred, rejected = report.rejected, %problem,
            "some events were not delivered");
    }
    tracing::info!(
        lists = report.lists,
        pages = report.pages,
        list_errors = report.list_errors,
        new = report.new,
        delivered = report.delivered,
        already = report.already,
        rejected = report.rejected,
        deferred = report.deferred,
        unmappable = report.unmappable,
        filtered = report.filtered,
        tracked = stats.tracked_ids,
        duration_ms = report.duration.as_millis() as u64,
        "sweep done"
    );
}

/// The Metal API client, reporting every request to the metrics. The client
/// keeps the rate-limit gate itself (429s and `X-RateLimit-Remaining: 0`).
fn metal_client(settings: &Settings, metrics: &Arc<Metrics>) -> anyhow::Result<Client> {
    let metrics = Arc::clone(metrics);
    let observer = move |record: &RequestRecord| {
        let endpoint = record.endpoint.as_str();
        let code = HttpCode(record.status.map(|s| s.as_u16()));
        metrics
            .api_requests
            .get_or_create(&ApiLabels { endpoint, code })
            .inc();
        metrics
            .api_request_duration
            .get_or_create(&EndpointLabel { endpoint })
            .observe(record.duration.as_secs_f64());
        if let Some(limit) = record.rate_limit {
            metrics.observe_rate_limit(&limit, std::time::SystemTime::now());
        }
    };
    let e = &settings.equinix;
    Client::builder(e.token.clone())
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

/// Lists the organization, its projects and their devices.
async fn load_inventory(
    pipeline: &Pipeline,
    org: &OrganizationId,
    settings: &Settings,
    health: &Health,
    stop: &CancellationToken,
) -> Result<Inventory, metal_events::Error> {
    let client = &pipeline.client;
    let options = ListOptions::new().with_per_page(settings.equinix.per_page);
    wait_gate(pipeline.client.rate_gate(), health).await;
    let organization = client.organization(org).await?;
    let org_name = organization
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| org.to_string());
    wait_gate(pipeline.client.rate_gate(), health).await;
    let projects: Vec<ProjectInfo> = client
        .project_pages(org, &options)
        .collect_all(INVENTORY_MAX_PAGES)
        .await?
        .into_iter()
        .filter_map(|p| {
            let id = p.id?;
            let name = p
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| id.to_string());
            Some(ProjectInfo { id, name })
        })
        .collect();

    // Devices are listed for every level: an organization list names a
    // device only in an event's relationships, and its hostname comes from here.
    let levels = settings.equinix.levels;
    let devices = if levels.device || levels.project || levels.organization {
        stream::iter(projects.iter().map(|project| {
            let options = options.clone();
            async move {
                if stop.is_cancelled() {
                    return Ok(Vec::new());
                }
                wait_gate(pipeline.client.rate_gate(), health).await;
                let devices = client
                    .device_pages(&project.id, &options)
                    .collect_all(INVENTORY_MAX_PAGES)
                    .await;
                match devices {
                    Ok(devices) => Ok(devices
                        .into_iter()
                        .filter_map(|d| {
                            Some(DeviceInfo {
                                id: d.id?,
                                hostname: d.hostname,
                                project: project.id.clone(),
                            })
                        })
                        .collect::<Vec<_>>()),
                    // A project deleted since it was listed has no devices.
                    Err(error) if error.is_not_found() => Ok(Vec::new()),
                    Err(error) => Err(error),
                }
            }
        }))
        .buffer_unordered(settings.equinix.concurrency.max(1))
        .try_concat()
        .await?
    } else {
        Vec::new()
    };
    Ok(Inventory {
        org_id: org.clone(),
        org_name,
        projects,
        devices: devices.into_iter().map(|d| (d.id.clone(), d)).collect(),
    })
}

/// Waits for the client's rate-limit gate, beating meanwhile: a rate-limit
/// pause is a wait, not a stall, and must not fail the liveness probe. (The
/// client waits at it too, before every request; waiting here first keeps
/// the probe alive.)
async fn wait_gate(gate: &metal_events::RateGate, health: &Health) {
    let wait = gate.wait();
    tokio::pin!(wait);
    loop {
        tokio::select! {
            () = &mut wait => return,
            () = tokio::time::sleep(BEAT_EVERY) => health.beat(),
        }
    }
}

/// Tells the tracker about lists that are gone, so they stop holding back
/// pruning.
async fn forget_gone(pipeline: &Pipeline, old: &Inventory, new: &Inventory) {
    let gone_devices = old
        .devices
        .keys()
        .filter(|id| !new.devices.contains_key(*id));
    let gone_projects = old.projects.iter().filter(|p| new.project(&p.id).is_none());
    let keys: Vec<String> = gone_devices
        .map(|id| format!("device:{id}"))
        .chain(gone_projects.map(|p| format!("project:{}", p.id)))
        .collect();
    for key in keys {
        if let Err(error) = pipeline.tracker.forget_source(&key).await {
            tracing::debug!(%key, %error, "could not forget a source");
        }
    }
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
