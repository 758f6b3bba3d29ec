//! One sweep: poll the lists the scheduler found due (every list the levels
//! ask for, for `--once`), pick the new events (each
//! once, with its device's context), deliver them oldest first per device or
//! list, record each after Direktiv acknowledged it, then move each fully read
//! list's floor and persist the state.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use event_dedupe::{Baseline, Tracker, Verdict};
use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, stream};
use metal_cloudevents::{Context, DeviceRef, MapOptions, OrganizationRef, ProjectRef};
use metal_events::{Client, Event, EventId};
use tokio_util::sync::CancellationToken;

use crate::cursor::{Cursor, Reached};
use crate::dead_letter::DeadLetters;
use crate::deliver::{Delivered, SendGate, Target};
use crate::error_events::ErrorKind;
use crate::event_types::EventTypes;
use crate::future::FutureDated;
use crate::inventory::Inventory;
use crate::metrics::{Metrics, unix_now};
use crate::observer::Observer;
use crate::poison::PoisonClock;
use crate::poll::{Level, Levels, ListEnd, ListPoll, PollOptions, Source, poll_list};
use crate::schedule::ListSeen;
use crate::source_key::SourceKey;

/// Everything a sweep needs, built once from the settings.
pub(crate) struct Pipeline {
    /// The Metal API client (its rate gate included).
    pub client: Client,
    /// What was delivered or settled, and the floors of the lists.
    pub tracker: Arc<dyn Tracker>,
    /// Where events Direktiv refused for good are kept.
    pub dead_letters: Arc<DeadLetters>,
    /// Where CloudEvents go: Direktiv, or stdout for a dry run.
    pub target: Target,
    /// The metrics the sweep records.
    pub metrics: Arc<Metrics>,
    /// How one list is read: page size and cap, attempts.
    pub poll: PollOptions,
    /// API requests in flight at most.
    pub api_concurrency: usize,
    /// Deliveries in flight at most.
    pub delivery_concurrency: usize,
    /// Retries of one delivery before it is left for the next sweep.
    pub max_retries: u32,
    /// The tracker's overlap: a quiet list's floor stops this far before now.
    pub overlap: Duration,
    /// How events become CloudEvents.
    pub map_options: MapOptions,
    /// `equinix.eventTypes`: events of other types are settled unsent.
    pub event_types: EventTypes,
    /// Told what the pipeline does.
    pub observer: Arc<dyn Observer>,
    /// `created_at` (Unix milliseconds) of the newest event delivered so far.
    pub newest_delivered_ms: AtomicI64,
    /// The lists that showed an event dated in the future.
    pub future_dated: FutureDated,
    /// Asked before each send (`None`: always open).
    pub send_gate: Option<SendGate>,
    /// How long each failing event has failed (`direktiv.poisonAfter`).
    pub poison: PoisonClock,
}

/// What one sweep did, for the log line, the exit code of `--once` and the
/// error events.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct SweepReport {
    /// Lists polled.
    pub lists: usize,
    /// Pages read.
    pub pages: u32,
    /// Lists that ended in an error (a 404 is not one: see `gone_lists`).
    pub list_errors: usize,
    /// Lists that answered 404: their device or project was deleted since
    /// the inventory was loaded. Not a failure; the inventory is refreshed.
    pub gone_lists: usize,
    /// Lists whose reading stopped at the page cap (`equinix.maxPages`): older
    /// new events wait for the next sweep.
    pub capped_lists: usize,
    /// The first list error, for the log and the error event.
    pub first_list_error: Option<ListProblem>,
    /// The API refused the token (401 or 403).
    pub auth_failed: bool,
    /// A list answered 404: the inventory is stale.
    pub stale_inventory: bool,
    /// New events found.
    pub new: usize,
    /// Delivered now.
    pub delivered: usize,
    /// Direktiv already had them.
    pub already: usize,
    /// Refused for good by Direktiv: kept in the dead-letter store and
    /// settled.
    pub rejected: usize,
    /// Left for the next sweep.
    pub deferred: usize,
    /// The first reason delivery was deferred or rejected.
    pub first_delivery_problem: Option<DeliveryProblem>,
    /// Events without id or type (they cannot become CloudEvents), and
    /// events the client could not decode.
    pub unmappable: usize,
    /// New events whose type `equinix.eventTypes` leaves out: settled unsent,
    /// not counted in `new`.
    pub filtered: usize,
    /// The state could not be written.
    pub persist_error: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// `equinix.sweepTimeout` ran out before the sweep ended.
    pub timed_out: bool,
}

/// A list that could not be read, as the sweep found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListProblem {
    /// The list, when it is one a tracker source names (`GET /events` is
    /// not).
    pub source: Option<SourceKey>,
    /// The API's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, for the log and the error event.
    pub message: String,
    /// The API refused the token (401 or 403).
    pub unauthorized: bool,
}

/// Why an event was not delivered, or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryProblemKind {
    /// Retries ran out: the event goes out next sweep.
    Deferred,
    /// Direktiv refused this event for good: it was dead-lettered.
    Refused,
    /// The endpoint refuses every event (see
    /// [`Outcome::is_endpoint_refusal`](direktiv_broadcast::Outcome::is_endpoint_refusal)),
    /// or stdout cannot be written: the sweep's deliveries stopped.
    EndpointRefused,
    /// Something in front of Direktiv answered in its place (a web page, a
    /// 204, see
    /// [`Outcome::NotDirektiv`](direktiv_broadcast::Outcome::NotDirektiv)):
    /// the sweep's deliveries stopped. No error event is sent: it would
    /// meet the same proxy.
    NotDirektiv,
    /// An event Direktiv refused could not be kept in the dead-letter
    /// store: it stays new and is tried again next sweep.
    KeepFailed,
}

/// The first delivery problem of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryProblem {
    /// What kind of problem.
    pub kind: DeliveryProblemKind,
    /// Direktiv's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, for the log and the error event.
    pub message: String,
}

impl DeliveryProblem {
    /// A problem of `kind`.
    pub fn new(kind: DeliveryProblemKind, status: Option<u16>, message: String) -> Self {
        Self {
            kind,
            status,
            message,
        }
    }

    /// Direktiv refused for good (the event, or every event): an operator
    /// must act, so it becomes an error event.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind,
            DeliveryProblemKind::Refused
                | DeliveryProblemKind::EndpointRefused
                | DeliveryProblemKind::NotDirektiv
        )
    }
}

impl ListProblem {
    /// A problem reading the list `source`.
    pub fn new(
        source: Option<SourceKey>,
        status: Option<u16>,
        message: String,
        unauthorized: bool,
    ) -> Self {
        Self {
            source,
            status,
            message,
            unauthorized,
        }
    }
}

impl SweepReport {
    /// Counts an event refused for good (or kept as poison), and keeps the
    /// first such problem.
    fn refused(&mut self, status: Option<u16>, reason: String) {
        self.rejected += 1;
        if self.first_delivery_problem.is_none() {
            self.first_delivery_problem = Some(DeliveryProblem::new(
                DeliveryProblemKind::Refused,
                status,
                reason,
            ));
        }
    }

    /// Everything found was delivered and every list was read.
    pub fn all_delivered(&self) -> bool {
        self.deferred == 0
            && self.rejected == 0
            && self.list_errors == 0
            && self.capped_lists == 0
            && !self.timed_out
            && !self.auth_failed
            && self.persist_error.is_none()
    }
}

/// A new event chosen for delivery, with its context.
struct Candidate {
    event: Event,
    cloud: cloudevents::Event,
    /// The tracker source it is recorded under.
    source_key: String,
}

/// An event that failed for `direktiv.poisonAfter`, stepped over while the
/// next event of its device is tried.
struct SteppedOver {
    candidate: Candidate,
    /// Its last answer, as the deferral said it.
    reason: String,
    /// Direktiv's HTTP status of that answer, when one came.
    status: Option<u16>,
}

/// The events of one device (or one list, for events of no device), oldest
/// first: delivered in order, one at a time.
struct Group {
    /// `device:<id>`, or the list's key for events of no device.
    key: String,
    items: Vec<Candidate>,
}

/// What a sweep shares between its polling and its deliveries.
#[derive(Default)]
struct Progress {
    report: SweepReport,
    /// Ids chosen for delivery this sweep (each event once), with their
    /// creation time.
    claimed: HashMap<String, Option<DateTime<Utc>>>,
    /// Ids delivered, refused for good or unmappable: settled.
    settled: HashSet<String>,
    /// Group keys with a deferred event: later groups of the same device wait
    /// for the next sweep, so one device's events never overtake each other.
    blocked: HashSet<String>,
}

/// One lane per group key: groups of the same device are delivered one after
/// the other, in the order they were found.
type Lanes = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// The lists the levels ask for, device lists first so that an event listed
/// by both a device and its project is claimed with the device's context.
pub(crate) fn sources(inventory: &Inventory, levels: Levels) -> Vec<Source> {
    let mut sources = Vec::new();
    if levels.device {
        let mut devices: Vec<_> = inventory.devices.values().collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        sources.extend(
            devices
                .into_iter()
                .map(|d| Source::device(&d.id, &d.project)),
        );
    }
    if levels.project {
        sources.extend(inventory.projects.iter().map(|p| Source::project(&p.id)));
    }
    if levels.organization {
        sources.push(Source::organization(&inventory.org_id));
    }
    sources
}

/// The mapping context of an event read from `source`: the list's device, or
/// the device its relationships name; that device's project, or the list's.
fn context(inventory: &Inventory, source: &Source, event: &Event) -> Context {
    let mut context = Context::new(OrganizationRef::new(
        inventory.org_id.clone(),
        inventory.org_name.clone(),
    ));
    let device = source
        .device
        .as_ref()
        .and_then(|id| inventory.devices.get(id))
        .or_else(|| {
            metal_cloudevents::find_device(event, |id| inventory.devices.get(id)).map(|(_, d)| d)
        });
    let project = device.map(|d| &d.project).or(source.project.as_ref());
    context.project = project
        .and_then(|id| inventory.project(id))
        .map(|p| ProjectRef::new(p.id.clone(), p.name.clone()));
    context.device = device.map(|d| DeviceRef::new(d.id.clone(), d.hostname.clone()));
    context
}

impl Pipeline {
    /// Runs one sweep over `sources`, lists of `inventory` (every list, or
    /// those the scheduler found due), and says what each read showed.
    /// Stops starting requests and deliveries when `stop` is cancelled; what
    /// was not delivered stays new.
    pub(crate) async fn sweep(
        &self,
        inventory: &Inventory,
        sources: Vec<(Source, Cursor)>,
        stop: &CancellationToken,
    ) -> (SweepReport, Vec<ListSeen>) {
        let started = Instant::now();
        self.metrics.sweeps.inc();

        // Poll and deliver at once: each list's new events go out as soon as
        // the list is read. Device lists are read first, so an event that a
        // device and its project both list is claimed with the device's
        // context; project and organization lists follow while the device
        // lists' deliveries are still running.
        let lists = sources.len();
        let (device_lists, other_lists): (Vec<_>, Vec<_>) = sources
            .into_iter()
            .partition(|(s, _)| s.level() == Level::Device);
        let progress = Mutex::new(Progress::default());
        let lanes = Lanes::default();
        let (progress, lanes) = (&progress, &lanes);
        let poll_stop = stop.child_token();
        let delivery_stop = stop.child_token();
        // Borrowed once here: closures that copy these references (rather than
        // borrow their own captures) keep the sweep's future `Send` for
        // `tokio::spawn`.
        let (poll_stop, delivery_stop) = (&poll_stop, &delivery_stop);
        let (groups_tx, mut groups_rx) = tokio::sync::mpsc::unbounded_channel::<Group>();

        let polling = async move {
            let mut polls = Vec::with_capacity(lists);
            let mut seen = Vec::with_capacity(lists);
            for phase in [device_lists, other_lists] {
                let mut read = stream::iter(phase)
                    .map(move |(source, cursor)| self.poll_one(source, cursor, poll_stop))
                    .buffer_unordered(self.api_concurrency.max(1));
                while let Some(mut poll) = read.next().await {
                    let read_at = poll.read_at.unwrap_or_else(|| self.api_now());
                    seen.push(ListSeen::of(&poll, inventory, read_at));
                    for group in self.claim(&mut poll, inventory, progress).await {
                        // The receiver lives until both halves end.
                        let _ = groups_tx.send(group);
                    }
                    polls.push(poll);
                }
            }
            drop(groups_tx);
            (polls, seen)
        };
        // At most `delivery_concurrency` groups at once, taken as they come.
        // (A loop rather than `for_each_concurrent`, whose closure would make
        // the sweep's future not `Send` for `tokio::spawn`.)
        let delivering = async move {
            let limit = self.delivery_concurrency.max(1);
            let mut running = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    group = groups_rx.recv(), if open && running.len() < limit => match group {
                        Some(group) => {
                            running.push(self.deliver_group(group, delivery_stop, progress, lanes));
                        }
                        None => open = false,
                    },
                    Some(()) = running.next(), if !running.is_empty() => {}
                    else => break,
                }
            }
        };
        let ((mut polls, mut seen), ()) = tokio::join!(polling, delivering);

        let Progress {
            settled,
            claimed,
            mut report,
            ..
        } = std::mem::take(&mut *progress.lock().unwrap_or_else(PoisonError::into_inner));
        report.lists = lists;
        report.deferred = report.new - report.delivered - report.already - report.rejected;

        // Settle: move the floor of every list read to its settled part
        // (lowest first, so a list seen for the first time holds the horizon
        // back before the others move it). A list not read to its settled
        // part keeps its floor and is only marked alive (a list without a
        // floor gets one at the start point), so it never expires and
        // holds the horizon below what it has not read yet.
        let untouched = self.initial_line();
        let mut floors: Vec<(String, DateTime<Utc>)> = Vec::with_capacity(polls.len());
        for (poll, seen) in polls.iter_mut().zip(seen.iter_mut()) {
            let read = poll
                .seen
                .iter()
                .map(|seen| {
                    let done = match seen.verdict {
                        Verdict::New => seen
                            .id
                            .as_ref()
                            .is_none_or(|id| settled.contains(id.as_str())),
                        _ => true,
                    };
                    (seen.created_at, done, seen.id.clone())
                })
                .collect();
            let reached = match (&poll.end, poll.capped) {
                (ListEnd::Complete, _) => Reached::Complete,
                (ListEnd::Partial, true) => Reached::Capped {
                    next_page: poll.next_page,
                },
                (ListEnd::Partial, false) => Reached::Stopped,
            };
            let read_at = poll.read_at.unwrap_or_else(|| self.api_now());
            let floor = poll
                .cursor
                .settle(reached, read, read_at, poll.unordered, self.overlap);
            floors.push((poll.source.key.clone(), floor.unwrap_or(untouched)));
            seen.cursor = std::mem::take(&mut poll.cursor);
        }
        let floors: Vec<(&str, DateTime<Utc>)> =
            floors.iter().map(|(key, at)| (key.as_str(), *at)).collect();
        for (source, error) in self.tracker.advance_floors(&floors).await {
            tracing::warn!(source, %error, "could not move the source's floor");
        }
        if let Err(error) = self.tracker.persist().await {
            self.metrics.state_persist_failures.inc();
            self.metrics.error(ErrorKind::State);
            tracing::error!(%error, "could not write the state; delivered events may be sent again after a restart");
            report.persist_error = Some(error.to_string());
        }

        let stats = self.tracker.stats();
        self.metrics.tracked_events.set(stats.tracked_ids as i64);
        self.metrics
            .state_unpersisted
            .set(i64::try_from(stats.unpersisted).unwrap_or(i64::MAX));
        // Published once the sweep is over, never reset at its start: a
        // scrape at any moment sees what the last sweep left waiting.
        self.metrics.pending_events.set(report.deferred as i64);
        let oldest_pending = claimed
            .iter()
            .filter(|(id, _)| !settled.contains(id.as_str()))
            .filter_map(|(_, created_at)| *created_at)
            .min();
        self.metrics
            .oldest_pending_age
            .set(oldest_pending.map_or(0.0, |at| {
                (self.api_now() - at).num_milliseconds().max(0) as f64 / 1000.0
            }));
        self.update_lag();
        report.duration = started.elapsed();
        self.metrics
            .sweep_duration
            .observe(report.duration.as_secs_f64());
        if report.list_errors > 0 || report.auth_failed {
            self.metrics.sweep_failures.inc();
        } else {
            self.metrics.last_successful_sweep.set(unix_now());
        }
        (report, seen)
    }

    /// The API's clock now (this host's until the API has answered).
    pub(crate) fn api_now(&self) -> DateTime<Utc> {
        self.client.api_now().unwrap_or_else(Utc::now)
    }

    /// The floor a list is given to be marked alive without moving: the
    /// start point, or the earliest time when every event counts. A list
    /// that has a floor keeps it (floors only move forward).
    pub(crate) fn initial_line(&self) -> DateTime<Utc> {
        match self.tracker.baseline() {
            Baseline::At(at) => at,
            _ => DateTime::<Utc>::MIN_UTC,
        }
    }

    /// Reads one list; a refused token stops the other lists too.
    async fn poll_one(
        &self,
        source: Source,
        cursor: Cursor,
        poll_stop: &CancellationToken,
    ) -> ListPoll {
        let poll = poll_list(
            &self.client,
            self.tracker.as_ref(),
            &self.metrics,
            &self.poll,
            source,
            cursor,
            poll_stop,
        )
        .await;
        if poll
            .error
            .as_ref()
            .is_some_and(metal_events::Error::is_unauthorized)
        {
            // A wrong token fails every list: stop asking.
            poll_stop.cancel();
        }
        poll
    }

    /// Accounts for a list just read and claims its new events: each id once
    /// per sweep, grouped by device (else by list), oldest first. Takes the
    /// list's new events out of `poll`.
    async fn claim(
        &self,
        poll: &mut ListPoll,
        inventory: &Inventory,
        progress: &Mutex<Progress>,
    ) -> Vec<Group> {
        for seen in &poll.seen {
            match seen.verdict {
                Verdict::New => {}
                Verdict::Delivered | Verdict::BelowFloor => {
                    self.metrics.events_duplicate.inc();
                }
                Verdict::BeforeBaseline => {
                    self.metrics.events_before_baseline.inc();
                }
                // A verdict added later: not new, so settled; not counted.
                _ => {}
            }
        }
        let mut groups: HashMap<String, Group> = HashMap::new();
        // Unmappable or filtered out: settled without being sent.
        let mut unsent = Vec::new();
        {
            let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
            let Progress {
                report,
                claimed,
                settled,
                ..
            } = &mut *progress;
            self.account_list(poll, report);
            for event in std::mem::take(&mut poll.new) {
                let Some(id) = event.id().map(|id| id.as_str().to_owned()) else {
                    continue;
                };
                match claimed.entry(id.clone()) {
                    Entry::Occupied(_) => continue,
                    Entry::Vacant(entry) => {
                        entry.insert(event.created_at());
                    }
                }
                self.future_dated.note(
                    &poll.source.key,
                    &id,
                    event.created_at(),
                    self.api_now(),
                    &self.metrics,
                );
                if let Some(late) = event.id().and_then(|event_id| {
                    poll.cursor
                        .listed_late(event_id, event.created_at(), poll.read_at)
                }) {
                    self.metrics.events_listed_late.inc();
                    self.metrics
                        .events_listed_late_seconds
                        .observe(late.as_secs_f64());
                    tracing::debug!(source = %poll.source.key, id, late_s = late.as_secs(),
                        "the API listed an event late");
                }
                // A typeless event is left to the mapper, which reports it.
                if let Some(ty) = event.event_type().filter(|ty| !ty.is_empty())
                    && !self.event_types.matches(ty)
                {
                    report.filtered += 1;
                    self.metrics.events_filtered.inc();
                    settled.insert(id.clone());
                    tracing::debug!(id, ty, "type not in equinix.eventTypes; settled unsent");
                    unsent.push((id, event.created_at()));
                    continue;
                }
                let context = context(inventory, &poll.source, &event);
                match metal_cloudevents::to_cloudevent(&event, &context, &self.map_options) {
                    Ok(cloud) => {
                        let key = context.device.as_ref().map_or_else(
                            || poll.source.key.clone(),
                            |d| SourceKey::Device(d.id.clone()).to_string(),
                        );
                        report.new += 1;
                        groups
                            .entry(key.clone())
                            .or_insert_with(|| Group {
                                key,
                                items: Vec::new(),
                            })
                            .items
                            .push(Candidate {
                                event,
                                cloud,
                                source_key: poll.source.key.clone(),
                            });
                    }
                    Err(error) => {
                        report.unmappable += 1;
                        self.metrics.events_unmappable.inc();
                        settled.insert(id.clone());
                        tracing::warn!(id, %error, "event cannot become a CloudEvent; skipped");
                        unsent.push((id, event.created_at()));
                    }
                }
            }
            // Events the client could not decode: reported once, settled
            // like unmappable ones when their id could be read.
            for skipped in std::mem::take(&mut poll.undecodable) {
                let id = skipped.id.map(EventId::into_inner);
                if id
                    .as_ref()
                    .is_some_and(|id| claimed.insert(id.clone(), skipped.created_at).is_some())
                {
                    continue;
                }
                report.unmappable += 1;
                self.metrics.events_unmappable.inc();
                tracing::warn!(source = %poll.source.key, id = id.as_deref().unwrap_or("unreadable"),
                    reason = %skipped.reason, "an event of the list could not be decoded; skipped");
                if let Some(id) = id {
                    settled.insert(id.clone());
                    unsent.push((id, skipped.created_at));
                }
            }
        }
        // Settled deliberately, like a refused event: recorded so it is
        // reported (or counted as filtered) once, not on every sweep until the
        // floor passes it, and never sent later.
        for (id, created_at) in unsent {
            if let Err(error) = self
                .tracker
                .record_delivered(&poll.source.key, &id, created_at)
                .await
            {
                self.metrics.state_persist_failures.inc();
                tracing::error!(%error, "could not write the state");
            }
        }
        let mut groups: Vec<Group> = groups.into_values().collect();
        for group in &mut groups {
            group
                .items
                .sort_by_key(|c| (c.event.created_at().is_none(), c.event.created_at()));
        }
        groups
    }

    /// Adds a list's pages and errors to the report.
    fn account_list(&self, poll: &ListPoll, report: &mut SweepReport) {
        report.pages += poll.pages;
        report.capped_lists += usize::from(poll.capped);
        let Some(error) = &poll.error else { return };
        if error.is_not_found() {
            // A device or project deleted since the inventory was loaded:
            // nothing to read, and not a failed sweep.
            report.gone_lists += 1;
            report.stale_inventory = true;
            tracing::info!(source = %poll.source.key, "list answered 404; refreshing the inventory");
            return;
        }
        report.list_errors += 1;
        self.observer.list_error(&poll.source.key, error);
        report.auth_failed |= error.is_unauthorized();
        let rate_limited = matches!(error, metal_events::Error::RateLimited { .. });
        // Each 429 was counted (`rate_limited`) and its pause logged when it
        // came: a list whose attempts all met 429s adds neither.
        if !rate_limited {
            self.metrics.error(if error.is_unauthorized() {
                ErrorKind::Auth
            } else {
                ErrorKind::EquinixApi
            });
        }
        if report.first_list_error.is_none() {
            report.first_list_error = Some(ListProblem::new(
                SourceKey::of_scope(&poll.source.scope),
                error.status().map(|s| s.as_u16()),
                error.to_string(),
                error.is_unauthorized(),
            ));
        }
        if rate_limited {
            tracing::debug!(source = %poll.source.key, %error, "rate limited on every attempt");
        } else if !error.is_unauthorized() {
            tracing::warn!(source = %poll.source.key, %error, "could not read an event list");
        }
    }

    /// Delivers one group in order, stopping at its first deferred event.
    async fn deliver_group(
        &self,
        group: Group,
        stop: &CancellationToken,
        progress: &Mutex<Progress>,
        lanes: &Lanes,
    ) {
        let lane = Arc::clone(
            lanes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(group.key.clone())
                .or_default(),
        );
        let _lane = lane.lock().await;
        let blocked = |progress: &Mutex<Progress>| {
            progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .blocked
                .contains(&group.key)
        };
        if blocked(progress) {
            return;
        }
        let count = group.items.len();
        // An event past `poisonAfter`, stepped over to try the next one.
        let mut stepped_over: Option<SteppedOver> = None;
        for (index, candidate) in group.items.into_iter().enumerate() {
            if stop.is_cancelled() {
                return;
            }
            let id = candidate.event.id().map_or("", |id| id.as_str());
            let started = tokio::time::Instant::now();
            let outcome = self
                .target
                .deliver_gated(
                    &candidate.cloud,
                    self.max_retries,
                    &self.metrics,
                    stop,
                    self.send_gate.as_ref(),
                )
                .await;
            match &outcome {
                Delivered::Acknowledged { already } => {
                    if *already {
                        self.metrics.events_already_delivered.inc();
                    } else {
                        self.metrics.events_delivered.inc();
                    }
                    self.note_delivered(candidate.event.created_at());
                    self.poison.settled(id);
                    self.observer.event_delivered(&candidate.cloud, *already);
                    tracing::debug!(id, ty = ?candidate.event.event_type(), already, "delivered");
                    if let Some(poison) = stepped_over.take() {
                        self.settle_poisoned(poison, progress).await;
                    }
                }
                Delivered::Rejected { reason, answer } => {
                    self.metrics.error(ErrorKind::DeliveryPermanent);
                    // Kept before it is settled: if it cannot be kept, it
                    // stays new and is refused (and kept) again next sweep.
                    if let Err(error) = self.dead_letter(&candidate.cloud, answer).await {
                        self.metrics.error(ErrorKind::State);
                        tracing::error!(id, ty = ?candidate.event.event_type(), %reason,
                            error = crate::error::chain(&error),
                            "Direktiv refused the event for good and it could not be kept; \
                             it stays new and is tried again next sweep");
                        let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
                        let report = &mut progress.report;
                        if report.first_delivery_problem.is_none() {
                            report.first_delivery_problem = Some(DeliveryProblem::new(
                                DeliveryProblemKind::KeepFailed,
                                answer.status,
                                format!(
                                    "could not keep a refused event: {}",
                                    crate::error::chain(&error)
                                ),
                            ));
                        }
                        continue;
                    }
                    self.poison.settled(id);
                    self.observer.event_refused(&candidate.cloud, reason);
                    tracing::error!(id, ty = ?candidate.event.event_type(), %reason,
                        "Direktiv refused the event for good; kept in {}, resend with \
                         --redeliver-refused", self.dead_letters.location());
                }
                // A retryable failure that has held later events of its
                // device back for `poisonAfter`: step over it. If the next
                // event is acknowledged, the endpoint works and this one is
                // poison: it is kept as a dead letter then. If the next one
                // fails too, Direktiv is down: both wait, as before.
                Delivered::Deferred {
                    reason,
                    status,
                    blocks_all: false,
                    ..
                } if stepped_over.is_none()
                    && self
                        .poison
                        .failed(id, index + 1 < count, started, tokio::time::Instant::now())
                        .is_poisoned() =>
                {
                    tracing::debug!(id, %reason, "failing for direktiv.poisonAfter with later \
                        events waiting: trying the next event of its device");
                    stepped_over = Some(SteppedOver {
                        candidate,
                        reason: reason.clone(),
                        status: *status,
                    });
                    continue;
                }
                Delivered::Deferred {
                    reason,
                    status,
                    blocks_all,
                    not_direktiv,
                } => {
                    if *blocks_all {
                        stop.cancel();
                        self.metrics.error(ErrorKind::DeliveryPermanent);
                    }
                    self.observer.event_deferred(&candidate.cloud, reason);
                    tracing::debug!(id, %reason, "delivery deferred to the next sweep");
                    let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
                    progress.blocked.insert(group.key.clone());
                    let report = &mut progress.report;
                    if report.first_delivery_problem.is_none() {
                        let kind = if *not_direktiv {
                            DeliveryProblemKind::NotDirektiv
                        } else if *blocks_all {
                            DeliveryProblemKind::EndpointRefused
                        } else {
                            DeliveryProblemKind::Deferred
                        };
                        report.first_delivery_problem =
                            Some(DeliveryProblem::new(kind, *status, reason.clone()));
                    }
                    return;
                }
                Delivered::Cancelled => {
                    tracing::debug!(
                        id,
                        reason = Delivered::CANCELLED_REASON,
                        "delivery deferred to the next sweep"
                    );
                    progress
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .blocked
                        .insert(group.key.clone());
                    return;
                }
            }
            // Record only after the acknowledgement (or a final refusal, which
            // settles the event deliberately).
            let mut progress = self.settle(&candidate, progress).await;
            let report = &mut progress.report;
            match outcome {
                Delivered::Acknowledged { already: false } => report.delivered += 1,
                Delivered::Acknowledged { already: true } => report.already += 1,
                Delivered::Rejected { reason, answer } => report.refused(answer.status, reason),
                Delivered::Deferred { .. } | Delivered::Cancelled => {
                    unreachable!("returned above")
                }
            }
        }
    }

    /// Keeps a poison event in the dead-letter store with its last answer
    /// and settles it, like an event Direktiv refused. When it cannot be
    /// kept it stays new.
    async fn settle_poisoned(&self, poison: SteppedOver, progress: &Mutex<Progress>) {
        let SteppedOver {
            candidate,
            reason,
            status,
        } = poison;
        if !self.keep_poisoned(&candidate, &reason, status).await {
            return;
        }
        self.poison
            .settled(candidate.event.id().map_or("", |id| id.as_str()));
        self.settle(&candidate, progress)
            .await
            .report
            .refused(status, format!("kept as a poison event: {reason}"));
    }

    /// Records a delivered or deliberately settled event in the tracker and
    /// in the sweep's progress; returns the progress, still locked, for the
    /// caller's count.
    async fn settle<'p>(
        &self,
        candidate: &Candidate,
        progress: &'p Mutex<Progress>,
    ) -> std::sync::MutexGuard<'p, Progress> {
        let id = candidate.event.id().map_or("", |id| id.as_str());
        if let Err(error) = self
            .tracker
            .record_delivered(&candidate.source_key, id, candidate.event.created_at())
            .await
        {
            self.metrics.state_persist_failures.inc();
            tracing::error!(%error, "could not write the state");
        }
        let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        progress.settled.insert(id.to_owned());
        progress
    }

    /// Keeps a poison event in the dead-letter store with its last answer,
    /// and says so once (WARN). `false` when it could not be kept.
    async fn keep_poisoned(
        &self,
        candidate: &Candidate,
        reason: &str,
        status: Option<u16>,
    ) -> bool {
        let id = candidate.event.id().map_or("", |id| id.as_str());
        let answer = crate::dead_letter::Answer {
            status,
            detail: format!(
                "failed for direktiv.poisonAfter while later events of its device waited: \
                 {reason}"
            ),
        };
        let kept = match crate::dead_letter::Entry::new(&candidate.cloud, answer, Utc::now()) {
            Ok(entry) => self.dead_letters.keep_poisoned(entry).await,
            Err(error) => Err(crate::Error::Encode(error)),
        };
        match kept {
            Ok(()) => {
                self.observer.event_refused(&candidate.cloud, reason);
                tracing::warn!(id, ty = ?candidate.event.event_type(), %reason,
                    "an event kept failing for direktiv.poisonAfter while later events of its \
                     device waited: kept in {}, resend it with --redeliver-refused; the \
                     device's later events go on", self.dead_letters.location());
                true
            }
            Err(error) => {
                self.metrics.error(ErrorKind::State);
                tracing::error!(id, %reason, error = crate::error::chain(&error),
                    "a poison event could not be kept; it stays first in line and holds its \
                     device's later events back");
                false
            }
        }
    }

    /// Keeps a refused event in the dead-letter store.
    async fn dead_letter(
        &self,
        event: &cloudevents::Event,
        answer: &crate::dead_letter::Answer,
    ) -> crate::Result<()> {
        let entry = crate::dead_letter::Entry::new(event, answer.clone(), Utc::now())
            .map_err(crate::Error::Encode)?;
        self.dead_letters.keep(entry).await
    }

    fn note_delivered(&self, created_at: Option<DateTime<Utc>>) {
        if let Some(at) = created_at {
            // A future date would hold the lag at 0 for good.
            let at = at.min(self.api_now());
            self.newest_delivered_ms
                .fetch_max(at.timestamp_millis(), Ordering::Relaxed);
            self.update_lag();
        }
    }

    /// Sets `delivery_lag_seconds` from the newest delivered event.
    pub(crate) fn update_lag(&self) {
        let newest = self.newest_delivered_ms.load(Ordering::Relaxed);
        if newest > 0 {
            let lag = self
                .api_now()
                .timestamp_millis()
                .saturating_sub(newest)
                .max(0) as f64
                / 1000.0;
            self.metrics.delivery_lag.set(lag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_list_is_not_a_failed_sweep_but_a_read_error_is() {
        let gone = SweepReport {
            gone_lists: 1,
            stale_inventory: true,
            ..SweepReport::default()
        };
        assert!(gone.all_delivered());
        let failed = SweepReport {
            list_errors: 1,
            ..SweepReport::default()
        };
        assert!(!failed.all_delivered());
        for unfinished in [
            SweepReport {
                timed_out: true,
                ..SweepReport::default()
            },
            SweepReport {
                capped_lists: 1,
                ..SweepReport::default()
            },
        ] {
            assert!(!unfinished.all_delivered(), "{unfinished:?}");
        }
    }
}
