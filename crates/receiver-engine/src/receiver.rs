//! [`Receiver`]: the main loop around the sweeps, and the engine's public
//! API. Built from typed parts ([`Receiver::new`] and its `with_` setters),
//! then [`Receiver::run`] until a token fires or [`Receiver::run_once`] for
//! one sweep.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use cloudevents::AttributesReader as _;
use event_dedupe::Tracker;
use futures_util::{StreamExt, TryStreamExt, stream};
use metal_cloudevents::MapOptions;
use metal_events::{Client, ListOptions, OrganizationId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetters, Location};
use crate::deliver::{Delivered, SendGate, Target};
use crate::error_events::{ErrorEvents, ErrorKind, Occurrence};
use crate::event_types::EventTypes;
use crate::future::FutureDated;
use crate::health::Health;
use crate::inventory::{DeviceInfo, Inventory, ProjectInfo};
use crate::metrics::Metrics;
use crate::observer::{NoObserver, Observer};
use crate::poll::{Levels, PollOptions};
use crate::schedule::{Cadence, ListSeen, Schedule, pass_budget};
use crate::scrub::Scrubber;
use crate::source_key::SourceKey;
use crate::sweep::{Pipeline, SweepReport};

/// What the log says when the Metal API answers 401 or 403.
const TOKEN_REFUSED: &str = "the Metal API refused the token: check equinix.packetAuthToken, \
     packetAuthTokenFile or METAL_AUTH_TOKEN";

/// Pages read per list when listing projects and devices at most: far past
/// any real organization (a hundred thousand devices at a page size of 1),
/// only a guard against a server that pages forever. A list longer than
/// this fails the inventory load, which keeps the inventory it had.
const INVENTORY_MAX_PAGES: usize = 100_000;

/// A difference between this host's clock and the API's beyond this is
/// reported (once, and always in `equinix_receiver_clock_skew_seconds`).
const SKEW_WARNING: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// How often the main loop beats while it waits (between sweeps, or for the
/// rate-limit gate while loading the inventory).
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// How the engine polls and delivers: every knob of the receiver's
/// `equinix.*`, `direktiv.*` and `state.*` config that is not a connection
/// setting. `Default` holds the receiver's documented defaults; the `with_`
/// setters change one each.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    /// The organization whose projects, devices and events are read.
    pub organization_id: String,
    /// Sweeps start this far apart; hot lists, project and organization
    /// lists are read every sweep (default 10 s).
    pub poll_interval: Duration,
    /// A quiet device list's interval doubles at each quiet read up to this
    /// (default 60 s; equal to `poll_interval`, every list is read every
    /// sweep).
    pub max_poll_interval: Duration,
    /// The same, in a project whose list shows its devices' events (default
    /// 10 min; at least `max_poll_interval`). Keep both well under the
    /// tracker's `source_expiry` (default 6 h): a list whose floor does not
    /// move for that long is forgotten.
    pub covered_poll_interval: Duration,
    /// One sweep at most (default 5 min).
    pub sweep_timeout: Duration,
    /// How often the projects and devices are listed again (default 5 min).
    pub inventory_refresh: Duration,
    /// Once stopped, how long in-flight deliveries get to finish (default 20 s).
    pub shutdown_grace: Duration,
    /// Which event lists are polled (default project and device).
    pub levels: Levels,
    /// Events per page (default 100).
    pub per_page: u32,
    /// Pages read per list per sweep at most (default 10).
    pub max_pages: u32,
    /// API requests in flight at most (default 8).
    pub api_concurrency: usize,
    /// Deliveries in flight at most (default 8).
    pub delivery_concurrency: usize,
    /// Retries of one event within a sweep (default 5).
    pub max_retries: u32,
    /// The tracker's overlap (default 10 min): a quiet list's floor stops
    /// this far before now.
    pub overlap: Duration,
    /// `Some(interval)`: send `equinix.receiver.error` CloudEvents, one per
    /// kind and target per interval at most (default `None`: off).
    pub error_events: Option<Duration>,
    /// Which event types are delivered (default every type).
    pub event_types: EventTypes,
    /// How long an event may fail with retryable answers while later events
    /// of its device wait before it is kept as a dead letter (default
    /// 15 min; `None` or zero: never).
    pub poison_after: Option<Duration>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            organization_id: String::new(),
            poll_interval: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(60),
            covered_poll_interval: Duration::from_secs(600),
            sweep_timeout: Duration::from_secs(300),
            inventory_refresh: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(20),
            levels: Levels::default(),
            per_page: 100,
            max_pages: 10,
            api_concurrency: 8,
            delivery_concurrency: 8,
            max_retries: 5,
            overlap: Duration::from_secs(600),
            error_events: None,
            event_types: EventTypes::default(),
            poison_after: Some(Duration::from_secs(15 * 60)),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        impl EngineOptions {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Options for the organization `id`, defaults otherwise.
    with_organization_id: organization_id: String;
    /// Sets [`EngineOptions::poll_interval`].
    with_poll_interval: poll_interval: Duration;
    /// Sets [`EngineOptions::max_poll_interval`].
    with_max_poll_interval: max_poll_interval: Duration;
    /// Sets [`EngineOptions::covered_poll_interval`].
    with_covered_poll_interval: covered_poll_interval: Duration;
    /// Sets [`EngineOptions::sweep_timeout`].
    with_sweep_timeout: sweep_timeout: Duration;
    /// Sets [`EngineOptions::inventory_refresh`].
    with_inventory_refresh: inventory_refresh: Duration;
    /// Sets [`EngineOptions::shutdown_grace`].
    with_shutdown_grace: shutdown_grace: Duration;
    /// Sets [`EngineOptions::levels`].
    with_levels: levels: Levels;
    /// Sets [`EngineOptions::per_page`].
    with_per_page: per_page: u32;
    /// Sets [`EngineOptions::max_pages`].
    with_max_pages: max_pages: u32;
    /// Sets [`EngineOptions::api_concurrency`].
    with_api_concurrency: api_concurrency: usize;
    /// Sets [`EngineOptions::delivery_concurrency`].
    with_delivery_concurrency: delivery_concurrency: usize;
    /// Sets [`EngineOptions::max_retries`].
    with_max_retries: max_retries: u32;
    /// Sets [`EngineOptions::overlap`].
    with_overlap: overlap: Duration;
    /// Sets [`EngineOptions::error_events`].
    with_error_events: error_events: Option<Duration>;
    /// Sets [`EngineOptions::event_types`].
    with_event_types: event_types: EventTypes;
    /// Sets [`EngineOptions::poison_after`].
    with_poison_after: poison_after: Option<Duration>;
}

/// The polling engine: reads the organization's event lists, delivers what
/// is new and records it once acknowledged. See the crate documentation for
/// the order of a sweep.
pub struct Receiver {
    pipeline: Pipeline,
    options: EngineOptions,
    health: Arc<Health>,
    scrubber: Arc<Scrubber>,
    /// The dead letters are the default store in memory, rebuilt when the
    /// metrics or the scrubber change.
    own_dead_letters: bool,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// How [`Receiver::run_loop`] ended.
enum Ended {
    /// The stop token fired (or the shutdown grace ran out).
    Stopped,
    /// One sweep ran (`once`).
    Swept(Box<SweepReport>),
}

impl Receiver {
    /// A receiver that reads with `client`, remembers in `tracker`, delivers
    /// to `target` (a Direktiv sink, or stdout for a dry run) and maps with
    /// `map_options`. Refused events are kept in memory, metrics and health
    /// are its own, nothing observes it and nothing is scrubbed; the `with_`
    /// setters change that.
    pub fn new(
        client: Client,
        tracker: Arc<dyn Tracker>,
        target: Target,
        map_options: MapOptions,
        options: EngineOptions,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(options.sweep_timeout));
        let scrubber = Arc::new(Scrubber::default());
        let dead_letters = memory_dead_letters(&metrics, &scrubber);
        let health = Arc::new(Health::new(Health::budget(
            options.poll_interval,
            options.sweep_timeout,
        )));
        let pipeline = Pipeline {
            client,
            tracker,
            dead_letters,
            target,
            metrics,
            poll: PollOptions {
                per_page: options.per_page,
                max_pages: options.max_pages,
                overlap: options.overlap,
            },
            api_concurrency: options.api_concurrency,
            delivery_concurrency: options.delivery_concurrency,
            max_retries: options.max_retries,
            overlap: options.overlap,
            map_options,
            event_types: options.event_types.clone(),
            observer: Arc::new(NoObserver),
            newest_delivered_ms: AtomicI64::new(0),
            future_dated: FutureDated::default(),
            send_gate: None,
            poison: crate::poison::PoisonClock::new(options.poison_after),
        };
        Self {
            pipeline,
            options,
            health,
            scrubber,
            own_dead_letters: true,
        }
    }

    /// Records into `metrics` (shared with a `/metrics` handler, or with the
    /// client's request observer) instead of its own. A store given to
    /// [`Receiver::with_dead_letters`] keeps the metrics it was opened with;
    /// the default store in memory moves to `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.pipeline.metrics = metrics;
        self.renew_dead_letters();
        self
    }

    /// Keeps health and readiness in `health` (shared with probes that start
    /// before the receiver is built) instead of its own.
    #[must_use]
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = health;
        self
    }

    /// Keeps the events Direktiv refuses for good in `dead_letters`.
    #[must_use]
    pub fn with_dead_letters(mut self, dead_letters: Arc<DeadLetters>) -> Self {
        self.pipeline.dead_letters = dead_letters;
        self.own_dead_letters = false;
        self
    }

    /// Scrubs the messages of error events and dead letters with `scrubber`.
    #[must_use]
    pub fn with_scrubber(mut self, scrubber: Arc<Scrubber>) -> Self {
        self.scrubber = scrubber;
        self.renew_dead_letters();
        self
    }

    /// The default dead-letter store again, with the current metrics and
    /// scrubber.
    fn renew_dead_letters(&mut self) {
        if self.own_dead_letters {
            self.pipeline.dead_letters =
                memory_dead_letters(&self.pipeline.metrics, &self.scrubber);
        }
    }

    /// Tells `observer` what the engine does.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.pipeline.observer = observer;
        self
    }

    /// Asks `gate` right before each send to Direktiv (events and error
    /// events); when it says no, the event is not sent and stays new. A
    /// leading replica (high availability) passes whether its lease is still
    /// its own.
    #[must_use]
    pub fn with_send_gate(mut self, gate: SendGate) -> Self {
        self.pipeline.send_gate = Some(gate);
        self
    }

    /// Liveness and readiness, as probes read them.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The metrics the engine records; [`Metrics::encode`] gives the
    /// Prometheus text.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.pipeline.metrics
    }

    /// The tracker the engine records into.
    pub fn tracker(&self) -> &Arc<dyn Tracker> {
        &self.pipeline.tracker
    }

    /// Sweeps every poll interval until `stop` is cancelled, then lets the
    /// sweep in flight finish within the shutdown grace and saves the state.
    /// Errors are logged, counted, reported and retried; none ends the run.
    pub async fn run(&self, stop: CancellationToken) {
        let _ = self.run_loop(false, &stop).await;
        self.save().await;
    }

    /// Loads the inventory and runs one sweep, then saves the state.
    /// `Ok(None)` when `stop` fired before the sweep ended.
    ///
    /// # Errors
    ///
    /// The inventory could not be loaded (the Metal API refused the token,
    /// or did not answer).
    pub async fn run_once(
        &self,
        stop: &CancellationToken,
    ) -> Result<Option<SweepReport>, metal_events::Error> {
        let ended = self.run_loop(true, stop).await;
        self.save().await;
        Ok(match ended? {
            Ended::Stopped => None,
            Ended::Swept(report) => Some(*report),
        })
    }

    /// What was acknowledged is recorded; what was not stays new and goes
    /// out after a restart.
    async fn save(&self) {
        let pipeline = &self.pipeline;
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
    }

    /// The main loop: inventory when due, a sweep, error events, the wait.
    async fn run_loop(
        &self,
        once: bool,
        stop: &CancellationToken,
    ) -> Result<Ended, metal_events::Error> {
        let pipeline = &self.pipeline;
        let settings = &self.options;
        let health = &*self.health;
        let org = OrganizationId::new(settings.organization_id.clone());
        let interval = settings.poll_interval;
        let grace = settings.shutdown_grace;
        let mut inventory: Option<(Inventory, Instant)> = None;
        let mut schedule = Schedule::new(
            Cadence::new(
                interval,
                settings.max_poll_interval,
                settings.covered_poll_interval,
            ),
            settings.overlap,
        );
        let mut failures = 0u32;
        // When this pass was due: the next is due one interval later, however
        // late this one started or long it ran, so every list that is due
        // each interval is read once per interval.
        let mut scheduled = Instant::now();
        let mut start_aligned = false;
        let mut skew_warned = false;
        let mut errors = ErrorReporting {
            events: settings
                .error_events
                .map(|every| ErrorEvents::new(every, Arc::clone(&self.scrubber))),
            org_id: settings.organization_id.clone(),
            org_name: None,
        };
        loop {
            let now = Instant::now();
            // Far behind (a long sweep, a suspended process): start afresh.
            if now.saturating_duration_since(scheduled) > interval {
                scheduled = now;
            }
            let started = scheduled;
            health.beat();

            // Inventory: at start, on its schedule, and when a list answered 404.
            let due = inventory
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= settings.inventory_refresh);
            if due {
                let loaded = tokio::select! {
                    () = stop.cancelled() => return Ok(Ended::Stopped),
                    loaded = self.load_inventory(&org, stop) => loaded,
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
                        schedule.sync(&fresh, settings.levels, started);
                        inventory = Some((fresh, Instant::now()));
                        if !start_aligned {
                            start_aligned = true;
                            self.align_start().await;
                        }
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
                        if inventory.is_none() && once {
                            return Err(error);
                        }
                    }
                }
            }

            if let Some((current, _)) = &inventory {
                health.beat();
                pipeline.observer.sweep_started();
                // `--once` reads every list; otherwise the lists due, the
                // most overdue first, as many as the request budget allows.
                let sources = if once {
                    schedule.all_with_cursors()
                } else {
                    let budget = pass_budget(
                        pipeline.client.rate_gate().rate(),
                        pipeline.client.last_rate_limit(),
                        interval,
                        std::time::SystemTime::now(),
                    );
                    schedule.due_with_cursors(started, budget)
                };
                let read: std::collections::HashSet<String> =
                    sources.iter().map(|(s, _)| s.key.clone()).collect();
                let report = match self.sweep_within_grace(current, sources, stop).await {
                    SweepEnd::Done(report, seen) => {
                        health.set_ready();
                        for seen in &seen {
                            if let Some(staleness) = schedule.on_read(seen, started) {
                                pipeline
                                    .metrics
                                    .list_staleness
                                    .observe(staleness.as_secs_f64());
                            }
                        }
                        pipeline.metrics.set_bands(schedule.bands());
                        self.keep_alive(&schedule, &read).await;
                        *report
                    }
                    SweepEnd::TimedOut { after } => {
                        tracing::warn!(
                            timeout_s = settings.sweep_timeout.as_secs_f64(),
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
                        return Ok(Ended::Stopped);
                    }
                };
                health.beat();
                pipeline.metrics.lists_stalled.set(
                    // As of this pass's start: what it read to the end is not stalled.
                    i64::try_from(schedule.stalled(started, settings.max_poll_interval * 3))
                        .unwrap_or(i64::MAX),
                );
                self.note_skew(&mut skew_warned);
                log_sweep(&report, pipeline);
                pipeline.observer.sweep_ended(&report);
                for occurrence in crate::error_events::from_sweep(&report, current) {
                    errors.note(occurrence);
                }
                if report.stale_inventory
                    && let Some((_, loaded_at)) = inventory.as_mut()
                {
                    // Refresh before the next sweep.
                    *loaded_at = Instant::now() - settings.inventory_refresh;
                }
                if once {
                    errors.flush(pipeline, stop).await;
                    return Ok(Ended::Swept(Box::new(report)));
                }
                failures = if report.auth_failed { failures + 1 } else { 0 };
            } else {
                failures += 1;
            }
            errors.flush(pipeline, stop).await;
            if stop.is_cancelled() {
                return Ok(Ended::Stopped);
            }

            // The next sweep starts one interval after this one started; after
            // repeated failures (no inventory, a refused token) the wait grows,
            // up to ten intervals, so a broken setup is never hammered. The loop
            // beats while it waits.
            let deadline = started + interval * failures.clamp(1, 10);
            scheduled = deadline;
            loop {
                health.beat();
                let next = (Instant::now() + BEAT_EVERY).min(deadline);
                tokio::select! {
                    () = stop.cancelled() => return Ok(Ended::Stopped),
                    () = tokio::time::sleep_until(next) => {}
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }

    /// Runs one sweep under the sweep timeout; once `stop` is cancelled the
    /// sweep (which starts nothing new) gets at most the shutdown grace more
    /// to finish its in-flight deliveries and save the state.
    async fn sweep_within_grace(
        &self,
        inventory: &Inventory,
        sources: Vec<(crate::poll::Source, crate::cursor::Cursor)>,
        stop: &CancellationToken,
    ) -> SweepEnd {
        let started = Instant::now();
        let sweep = tokio::time::timeout(
            self.options.sweep_timeout,
            self.pipeline.sweep(inventory, sources, stop),
        );
        let grace_over = async {
            stop.cancelled().await;
            tokio::time::sleep(self.options.shutdown_grace).await;
        };
        tokio::select! {
            ended = sweep => match ended {
                Ok((report, seen)) => SweepEnd::Done(Box::new(report), seen),
                Err(_) => SweepEnd::TimedOut {
                    after: started.elapsed(),
                },
            },
            () = grace_over => SweepEnd::GraceOver,
        }
    }

    /// Marks every list of the schedule that this pass did not read as
    /// alive in the tracker, so that a list waiting on the schedule, the
    /// request budget or a failing API is never forgotten (and one not read
    /// yet holds the horizon below its events): only a list whose project or
    /// device left the inventory is forgotten.
    async fn keep_alive(&self, schedule: &Schedule, read: &std::collections::HashSet<String>) {
        let line = self.pipeline.initial_line();
        let floors: Vec<(&str, chrono::DateTime<chrono::Utc>)> = schedule
            .keys()
            .filter(|key| !read.contains(*key))
            .map(|key| (key, line))
            .collect();
        for (source, error) in self.pipeline.tracker.advance_floors(&floors).await {
            tracing::debug!(source, %error, "could not mark a list alive");
        }
    }

    /// Moves a fresh state's start point onto the API's clock (see
    /// [`Tracker::align_start`]).
    async fn align_start(&self) {
        let Some(api_now) = self.pipeline.client.api_now() else {
            return;
        };
        if let Err(error) = self.pipeline.tracker.align_start(api_now).await {
            tracing::warn!(%error, "could not move the start point onto the API's clock");
        }
    }

    /// Publishes the difference between this host's clock and the API's,
    /// and warns once when it is large.
    fn note_skew(&self, warned: &mut bool) {
        let Some(skew) = self.pipeline.client.clock_skew() else {
            return;
        };
        self.pipeline
            .metrics
            .clock_skew
            .set(skew.num_milliseconds() as f64 / 1000.0);
        if skew.abs() > SKEW_WARNING && !*warned {
            *warned = true;
            tracing::warn!(
                skew_s = skew.num_seconds(),
                "this host's clock differs from the Metal API's (its Date header); nothing is \
                 lost, since floors and the start point follow the API's clock, but check the \
                 host's time synchronisation (NTP)"
            );
        }
    }

    /// Lists the organization, its projects and their devices.
    async fn load_inventory(
        &self,
        org: &OrganizationId,
        stop: &CancellationToken,
    ) -> Result<Inventory, metal_events::Error> {
        let pipeline = &self.pipeline;
        let health = &*self.health;
        let client = &pipeline.client;
        let options = ListOptions::new().with_per_page(self.options.per_page);
        wait_gate(pipeline.client.rate_gate(), health).await;
        let organization = client.organization(org).await?;
        let org_name = organization
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| org.to_string());
        wait_gate(pipeline.client.rate_gate(), health).await;
        let projects: Vec<ProjectInfo> = client
            .project_pages(org, &options)
            .collect_complete(INVENTORY_MAX_PAGES)
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
        let levels = self.options.levels;
        let devices = if levels.device || levels.project || levels.organization {
            // Collected first: a stream over a closure that borrows would make
            // the run's future not `Send` for `tokio::spawn` (rust#102211).
            let lookups: Vec<_> = projects
                .iter()
                .map(|project| {
                    let options = options.clone();
                    async move {
                        if stop.is_cancelled() {
                            return Ok(Vec::new());
                        }
                        wait_gate(pipeline.client.rate_gate(), health).await;
                        let devices = client
                            .device_pages(&project.id, &options)
                            .collect_complete(INVENTORY_MAX_PAGES)
                            .await;
                        match devices {
                            Ok(devices) => Ok(devices
                                .into_iter()
                                .filter_map(|d| {
                                    Some(DeviceInfo {
                                        id: d.id?,
                                        hostname: d.hostname,
                                        project: project.id.clone(),
                                        state: d.state,
                                        updated_at: d.updated_at,
                                    })
                                })
                                .collect::<Vec<_>>()),
                            // A project deleted since it was listed has no devices.
                            Err(error) if error.is_not_found() => Ok(Vec::new()),
                            Err(error) => Err(error),
                        }
                    }
                })
                .collect();
            stream::iter(lookups)
                .buffer_unordered(self.options.api_concurrency.max(1))
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
}

/// A dead-letter store in memory that holds the default number of events.
fn memory_dead_letters(metrics: &Arc<Metrics>, scrubber: &Arc<Scrubber>) -> Arc<DeadLetters> {
    let max = usize::try_from(DeadLetters::DEFAULT_MAX).unwrap_or(usize::MAX);
    let store = DeadLetters::open(
        Location::Memory,
        max,
        Arc::clone(metrics),
        Arc::clone(scrubber),
    )
    .expect("a dead-letter store in memory opens without IO");
    Arc::new(store)
}

/// How a sweep ended.
enum SweepEnd {
    /// It ran to its end (possibly cut short by a shutdown, within the grace),
    /// with what each list read showed.
    Done(Box<SweepReport>, Vec<ListSeen>),
    /// The sweep timeout ran out.
    TimedOut {
        /// How long the sweep ran.
        after: Duration,
    },
    /// A shutdown began and the shutdown grace ran out before the sweep ended.
    GraceOver,
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
                .deliver_gated(
                    &report.event,
                    0,
                    &pipeline.metrics,
                    stop,
                    pipeline.send_gate.as_ref(),
                )
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

/// One info line per sweep; nothing per event at info level.
fn log_sweep(report: &SweepReport, pipeline: &Pipeline) {
    let stats = pipeline.tracker.stats();
    if report.auth_failed {
        tracing::error!(
            lists = report.lists,
            error = report
                .first_list_error
                .as_ref()
                .map_or("", |problem| problem.message.as_str()),
            "{TOKEN_REFUSED}"
        );
    }
    if let Some(problem) = &report.first_delivery_problem {
        let problem = &problem.message;
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
        .map(|id| SourceKey::Device(id.clone()).to_string())
        .chain(gone_projects.map(|p| SourceKey::Project(p.id.clone()).to_string()))
        .collect();
    for key in keys {
        if let Err(error) = pipeline.tracker.forget_source(&key).await {
            tracing::debug!(%key, %error, "could not forget a source");
        }
    }
}
