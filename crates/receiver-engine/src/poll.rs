//! Polling one event list: read pages newest first, ask the tracker about
//! each event, and stop as soon as a page reaches what is already settled.
//!
//! Reading a list is a state machine (in the shape of kube-runtime's
//! `watcher`): a `State` enum and one pure transition, `next(state, input)`,
//! which returns the next state and an `Effect`. A small driver in
//! [`poll_list`] does the IO a state asks for (fetch and check a page, or
//! wait) and turns what happened into an `Input`:
//!
//! | State | Input | Next state | Effect |
//! |---|---|---|---|
//! | start | | `Reading` | page 1 (or the [`Resume`] page) at `per_page` |
//! | `Reading` | page reaches the settled line | `Done(Complete)` | |
//! | `Reading` | the last page, or no page | `Done(Complete)` | |
//! | `Reading` | a resumed read's first page lies wholly below its marker | `Reading` | `StepBack`: the page before it |
//! | `Reading` | page; page cap reached | `Done(Partial)` | `Capped` |
//! | `Reading` | page | `Reading`, fresh attempts | |
//! | `Reading` | 429, an attempt left | the same, one attempt used | (the client's rate gate pauses) |
//! | `Reading` | retryable error, an attempt left | `Backoff { wait, then }` | `Retry` (logged) |
//! | `Reading` | other error, or no attempt left | `Done(Partial)` | `Fail`: the list's error |
//! | `Backoff` | waited | `then`: the same page again | |
//! | any but `Done` | cancelled, or a tracker lookup failed | `Done(Partial)` | |
//!
//! The *settled line* of a list is where the tracker starts answering
//! [`Verdict::BelowFloor`] (its floor minus `state.overlap`, or the
//! horizon) or [`Verdict::BeforeBaseline`]: a page of a list read newest
//! first that holds such an event ends the read, since everything below it
//! is settled; so every event a list shows up to `state.overlap` after its
//! `created_at` is still read. Order is checked on every page: a list seen
//! out of order (in this read, or left so by the last one) is read until a
//! page lies wholly below the line, or to its end.
//!
//! A page has `PAGE_RETRIES` + 1 attempts. The page cap counts pages
//! holding a new event (`max_pages`) and all pages (ten times that); a read
//! it cuts short leaves a [`Resume`] in the list's [`Cursor`], and the next
//! read goes on from there.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use event_dedupe::{EventKey, Tracker, Verdict};
use metal_events::{
    Client, DeviceId, Event, EventId, EventScope, ListOptions, OrganizationId, ProjectId,
    Undecodable,
};
use tokio_util::sync::CancellationToken;

use crate::cursor::Cursor;
use crate::error_events::ErrorKind;
use crate::metrics::{LevelLabel, Metrics};
use crate::source_key::SourceKey;

/// Retries of one page (after 0.5 s, then 1 s, plus jitter; after a 429, the
/// client's rate-limit gate's pause instead) before the list is given up for this
/// sweep.
const PAGE_RETRIES: usize = 2;
const PAGE_BACKOFF: Duration = Duration::from_millis(500);
/// Which kind of list an event was read from (the `level` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Level {
    /// A device's events.
    Device,
    /// A project's events.
    Project,
    /// The organization's own events.
    Organization,
}

impl Level {
    /// Every level, for creating the metric's labels at 0.
    pub(crate) const ALL: [Self; 3] = [Self::Device, Self::Project, Self::Organization];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Project => "project",
            Self::Organization => "organization",
        }
    }
}

/// One event list the sweep polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// The tracker's key: a [`SourceKey`] as written.
    pub key: String,
    /// What to list.
    pub scope: EventScope,
    /// The project the list belongs to, when it belongs to one.
    pub project: Option<ProjectId>,
    /// The device the list belongs to, for device lists.
    pub device: Option<DeviceId>,
}

impl Source {
    /// The events of a project.
    pub(crate) fn project(id: &ProjectId) -> Self {
        Self {
            key: SourceKey::Project(id.clone()).to_string(),
            scope: EventScope::Project(id.clone()),
            project: Some(id.clone()),
            device: None,
        }
    }

    /// The events of a device of a project.
    pub(crate) fn device(id: &DeviceId, project: &ProjectId) -> Self {
        Self {
            key: SourceKey::Device(id.clone()).to_string(),
            scope: EventScope::Device(id.clone()),
            project: Some(project.clone()),
            device: Some(id.clone()),
        }
    }

    /// The organization's own events.
    pub(crate) fn organization(id: &OrganizationId) -> Self {
        Self {
            key: SourceKey::Organization(id.clone()).to_string(),
            scope: EventScope::Organization(id.clone()),
            project: None,
            device: None,
        }
    }

    /// The level of this list.
    pub(crate) fn level(&self) -> Level {
        match self.scope {
            EventScope::Device(_) => Level::Device,
            EventScope::Project(_) => Level::Project,
            _ => Level::Organization,
        }
    }
}

/// What is kept of every event read from a list: enough to move the list's
/// floor. Only new events are kept whole (in [`ListPoll::new`]), so a sweep's
/// memory follows what is new, not what was read.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// When it was created, if the API said.
    pub created_at: Option<DateTime<Utc>>,
    /// What the tracker said when it was read.
    pub verdict: Verdict,
    /// Its id, when the API gave one: for new events, to learn whether they
    /// were settled; for all, to learn which lists show the same events.
    pub id: Option<EventId>,
}

/// How reading a list ended.
#[derive(Debug)]
pub(crate) enum ListEnd {
    /// The list ended, or a page reached what is already settled: every event
    /// older than those read is settled.
    Complete,
    /// Reading stopped early (page cap, an error, shutdown): older events may
    /// be unread, so the source's floor must not move.
    Partial,
}

/// What polling one list found.
#[derive(Debug)]
pub(crate) struct ListPoll {
    /// The list.
    pub source: Source,
    /// Every event read, in the API's order.
    pub seen: Vec<Seen>,
    /// The new events read, whole, in the API's order.
    pub new: Vec<Event>,
    /// The new events that could not be decoded (left out of their page by
    /// the client), for the sweep to report and settle once.
    pub undecodable: Vec<Undecodable>,
    /// How reading ended.
    pub end: ListEnd,
    /// The error that ended it, if one did.
    pub error: Option<metal_events::Error>,
    /// Pages read.
    pub pages: u32,
    /// Reading stopped at the page cap: older new events wait for the next sweep.
    pub capped: bool,
    /// The first page not read, when the page cap ended the read.
    pub next_page: u32,
    /// The API's time when the read's first page was served (its `Date`).
    pub read_at: Option<DateTime<Utc>>,
    /// This read found the list out of order (not newest first).
    pub unordered: bool,
    /// The list's cursor as the read found it.
    pub cursor: Cursor,
}

/// How lists are read.
#[derive(Debug, Clone)]
pub(crate) struct PollOptions {
    /// `per_page`.
    pub per_page: u32,
    /// Pages holding new events read per list per sweep at most.
    pub max_pages: u32,
    /// The tracker's overlap: a list is read down to its floor minus this.
    pub overlap: Duration,
}

/// Whether `times` (in list order) are newest first.
pub(crate) fn newest_first(times: impl IntoIterator<Item = DateTime<Utc>>) -> bool {
    let mut previous: Option<DateTime<Utc>> = None;
    for time in times {
        if previous.is_some_and(|p| time > p) {
            return false;
        }
        previous = Some(time);
    }
    true
}

/// The attempts left for the page being read, with the wait before each
/// retry (after 0.5 s, then 1 s, plus jitter).
#[derive(Debug)]
struct Attempts(backon::ExponentialBackoff);

impl Attempts {
    /// A fresh page's attempts.
    fn new() -> Self {
        Self(
            ExponentialBuilder::default()
                .with_min_delay(PAGE_BACKOFF)
                .with_factor(2.0)
                .with_jitter()
                .with_max_times(PAGE_RETRIES)
                .build(),
        )
    }

    /// Uses one attempt: the wait before it, or `None` when none is left.
    fn take(&mut self) -> Option<Duration> {
        self.0.next()
    }
}

/// Where reading one list is (see the module doc for the transitions).
#[derive(Debug)]
enum State {
    /// Reading pages.
    Reading {
        /// The attempts left for the next page.
        attempts: Attempts,
        /// Pages read so far that held a new event.
        pages_with_new: u32,
    },
    /// Waiting before asking for the same page again.
    Backoff {
        /// How long.
        wait: Duration,
        /// The state that asks again.
        then: Box<State>,
    },
    /// Reading ended.
    Done(ListEnd),
}

impl State {
    /// Reading pages, with a fresh page's attempts.
    fn reading(pages_with_new: u32) -> Self {
        Self::Reading {
            attempts: Attempts::new(),
            pages_with_new,
        }
    }

    /// The attempts left for the page a reading state asks for.
    fn attempts(&mut self) -> Option<&mut Attempts> {
        match self {
            Self::Reading { attempts, .. } => Some(attempts),
            Self::Backoff { .. } | Self::Done(_) => None,
        }
    }
}

/// What the driver found by doing what a state asks.
#[derive(Debug)]
enum Input {
    /// A page was read and its events checked with the tracker.
    Page(PageRead),
    /// The list has no more pages.
    End,
    /// Asking for the page failed.
    Failed(metal_events::Error),
    /// The wait before a retry is over.
    Waited,
    /// `stop` was cancelled.
    Cancelled,
    /// Something the list cannot be read on without failed (a tracker
    /// lookup); the driver logged it.
    Broken,
}

/// What one page told.
#[derive(Debug, Clone, Copy)]
struct PageRead {
    /// It held an event the tracker did not know.
    any_new: bool,
    /// It reached the list's settled line (see the module doc).
    settled: bool,
    /// It was the list's last page.
    last: bool,
    /// It was a resumed read's first page, and every event on it is older
    /// than where the read before stopped: rows above went away, and the
    /// page before it may hold unread events.
    below_marker: bool,
    /// Pages read from this list in this sweep, this one included.
    pages: u32,
}

/// What the driver does besides moving to the next state.
#[derive(Debug)]
enum Effect {
    /// Nothing more.
    None,
    /// Read the page before the one just read, as a resumed read's first.
    StepBack,
    /// The page failed and is asked for again after a wait (logged).
    Retry(metal_events::Error),
    /// The page failed for good: the list's error.
    Fail(metal_events::Error),
    /// The page cap ended reading.
    Capped,
}

/// The one transition of reading a list: where `input` takes `state`.
fn next(state: State, input: Input, max_pages: u32) -> (State, Effect) {
    match (state, input) {
        (State::Backoff { then, .. }, Input::Waited) => (*then, Effect::None),
        (State::Reading { .. } | State::Backoff { .. }, Input::Cancelled | Input::Broken) => {
            (State::Done(ListEnd::Partial), Effect::None)
        }
        (State::Reading { .. }, Input::End) => (State::Done(ListEnd::Complete), Effect::None),
        (State::Reading { pages_with_new, .. }, Input::Page(page)) if page.below_marker => {
            (State::reading(pages_with_new), Effect::StepBack)
        }
        (State::Reading { .. }, Input::Page(page)) if page.settled || page.last => {
            (State::Done(ListEnd::Complete), Effect::None)
        }
        (State::Reading { pages_with_new, .. }, Input::Page(page)) => {
            let pages_with_new = pages_with_new + u32::from(page.any_new);
            if pages_with_new >= max_pages || page.pages >= max_pages.saturating_mul(10) {
                (State::Done(ListEnd::Partial), Effect::Capped)
            } else {
                (State::reading(pages_with_new), Effect::None)
            }
        }
        (mut state @ State::Reading { .. }, Input::Failed(error)) => {
            match state.attempts().and_then(Attempts::take) {
                // Every 429 pauses every request of the client (at least a
                // second, longer on repeats) and uses one of the page's
                // attempts, so a server that keeps answering 429, even with
                // `Retry-After: 0`, gets a handful of requests per list and
                // sweep, not a storm.
                Some(_) if matches!(error, metal_events::Error::RateLimited { .. }) => {
                    (state, Effect::None)
                }
                Some(wait) if error.is_retryable() => (
                    State::Backoff {
                        wait,
                        then: Box::new(state),
                    },
                    Effect::Retry(error),
                ),
                _ => (State::Done(ListEnd::Partial), Effect::Fail(error)),
            }
        }
        // Nothing else happens: a state only receives what it asked for.
        (state, _) => (state, Effect::None),
    }
}

/// Waits `wait` before a retry, unless `stop` is cancelled first.
async fn back_off(wait: Duration, stop: &CancellationToken) -> Input {
    tokio::select! {
        () = stop.cancelled() => Input::Cancelled,
        () = tokio::time::sleep(wait) => Input::Waited,
    }
}

/// Whether the pages read so far are newest first, and the oldest time among them.
#[derive(Debug)]
struct Order {
    /// This read has found the list out of order.
    disorder: bool,
    /// The list's cursor said it was out of order at the last read.
    known_unordered: bool,
    oldest: Option<DateTime<Utc>>,
}

impl Order {
    /// Whether the settled line may end the read at the first page that
    /// reaches it (the list reads newest first), or only at a page wholly
    /// below it.
    fn trusted(&self) -> bool {
        !self.disorder && !self.known_unordered
    }
}

/// Reads `source` page by page from where its `cursor` says (page 1, or
/// where a read cut by the page cap stopped) until a page reaches its
/// settled line (see the module doc), the list ends, the page cap is hit,
/// an error persists, or `stop` is cancelled.
pub(crate) async fn poll_list(
    client: &Client,
    tracker: &dyn Tracker,
    metrics: &Metrics,
    options: &PollOptions,
    source: Source,
    cursor: Cursor,
    stop: &CancellationToken,
) -> ListPoll {
    let first_page = cursor.resume.as_ref().map_or(1, |r| r.page.max(1));
    let marker = cursor.resume.as_ref().and_then(|r| r.marker);
    let mut poll = ListPoll {
        source,
        seen: Vec::new(),
        new: Vec::new(),
        undecodable: Vec::new(),
        end: ListEnd::Partial,
        error: None,
        pages: 0,
        capped: false,
        next_page: first_page,
        read_at: None,
        unordered: false,
        cursor,
    };
    // The list's own settled line: its floor minus the overlap. An event
    // created before it was listed on time when the floor was set.
    let line = match tracker.floor(&poll.source.key).await {
        Ok(floor) => floor.and_then(|floor| {
            chrono::TimeDelta::from_std(options.overlap)
                .ok()
                .and_then(|overlap| floor.checked_sub_signed(overlap))
        }),
        Err(error) => {
            tracing::warn!(source = %poll.source.key, %error, "could not read the source's floor");
            None
        }
    };
    let mut page_number = first_page;
    let list_options = |page: u32| {
        ListOptions::new()
            .with_per_page(options.per_page)
            .with_page(page)
    };
    let mut pager = client.lazy_event_pages(&poll.source.scope, &list_options(page_number));
    let mut state = State::reading(0);
    // A clone: the family's read guard must not be held across an await.
    let received = metrics
        .events_received
        .get_or_create(&LevelLabel {
            level: poll.source.level(),
        })
        .clone();
    let mut order = Order {
        disorder: false,
        known_unordered: poll.cursor.unordered,
        oldest: None,
    };
    // A resumed read checks its first page against where the last one stopped.
    let mut check_marker = marker.filter(|_| page_number > 1);

    loop {
        let input = match &state {
            State::Done(_) => break,
            State::Backoff { wait, .. } => back_off(*wait, stop).await,
            State::Reading { .. } => {
                let reading = ReadPage {
                    tracker,
                    metrics,
                    received: &received,
                    line,
                    marker: check_marker,
                    stop,
                };
                let input = reading.read(&mut pager, &mut poll, &mut order).await;
                if let Input::Page(_) = input {
                    page_number += 1;
                }
                input
            }
        };
        let was_page = matches!(input, Input::Page(_));
        let (next_state, effect) = next(state, input, options.max_pages);
        state = next_state;
        if was_page && !matches!(effect, Effect::StepBack) {
            check_marker = None;
        }
        match effect {
            Effect::None => {}
            Effect::StepBack => {
                // Rows above the resume point went away: the page before
                // the one just read may hold events never read.
                page_number = page_number.saturating_sub(2).max(1);
                if page_number == 1 {
                    check_marker = None;
                }
                pager = client.lazy_event_pages(&poll.source.scope, &list_options(page_number));
            }
            Effect::Retry(error) => {
                tracing::debug!(source = %poll.source.key, %error, "retrying the page");
            }
            Effect::Fail(error) => poll.error = Some(error),
            Effect::Capped => {
                tracing::info!(source = %poll.source.key, pages = poll.pages, next_page = page_number,
                    "page cap reached before the settled part of the list; the next read goes on from here");
                metrics.lists_capped.inc();
                poll.capped = true;
            }
        }
    }
    if let State::Done(end) = state {
        poll.end = end;
    }
    poll.next_page = page_number;
    poll.unordered = order.disorder;
    if order.disorder && !poll.cursor.warned_unordered {
        poll.cursor.warned_unordered = true;
        tracing::warn!(source = %poll.source.key,
            "an event list is not newest first; it is read to a page wholly below its settled line \
             (or its end) until it reads in order again. An event placed deeper than a read \
             reaches cannot be seen (counted in equinix_receiver_lists_out_of_order_total)");
    }
    if order.disorder {
        metrics.lists_out_of_order.inc();
    }
    poll
}

/// What reading one page needs besides the pager.
struct ReadPage<'a> {
    tracker: &'a dyn Tracker,
    metrics: &'a Metrics,
    received: &'a prometheus_client::metrics::counter::Counter,
    /// The list's floor minus the overlap, when it has a floor.
    line: Option<DateTime<Utc>>,
    /// For a resumed read's first page: the oldest time the read before reached.
    marker: Option<DateTime<Utc>>,
    stop: &'a CancellationToken,
}

impl ReadPage<'_> {
    /// Asks for the next page, checks its events with the tracker and adds
    /// them to `poll`.
    async fn read(
        &self,
        pager: &mut metal_events::Pager<metal_events::LazyEvent>,
        poll: &mut ListPoll,
        order: &mut Order,
    ) -> Input {
        // The client waits at its rate gate before each request.
        let page = tokio::select! {
            () = self.stop.cancelled() => return Input::Cancelled,
            page = pager.next_page() => page,
        };
        let page = match page {
            Ok(Some(page)) => page,
            Ok(None) => return Input::End,
            Err(error) => {
                if let metal_events::Error::RateLimited { .. } = &error {
                    self.metrics.error(ErrorKind::RateLimited);
                }
                return Input::Failed(error);
            }
        };
        poll.pages += 1;
        if poll.read_at.is_none() {
            poll.read_at = page.date;
        }
        self.received
            .inc_by((page.items.len() + page.skipped.len()) as u64);

        // Events the client could not decode are asked about too: one
        // settled before is not reported again.
        let keys: Vec<EventKey<'_>> = page
            .items
            .iter()
            .map(|e| EventKey {
                id: e.id().map_or("", |id| id.as_str()),
                created_at: e.created_at(),
            })
            .chain(page.skipped.iter().map(|s| EventKey {
                id: s.id.as_ref().map_or("", |id| id.as_str()),
                created_at: s.created_at,
            }))
            .collect();
        let verdicts = match self.tracker.check_many(&poll.source.key, &keys).await {
            Ok(verdicts) => verdicts,
            Err(error) => {
                tracing::error!(source = %poll.source.key, %error, "the dedupe state failed a lookup");
                self.metrics.error(ErrorKind::State);
                return Input::Broken;
            }
        };
        drop(keys);
        let (verdicts, skipped_verdicts) = verdicts.split_at(page.items.len());

        let times = order
            .oldest
            .into_iter()
            .chain(page.items.iter().filter_map(|e| e.created_at()));
        if !newest_first(times) {
            order.disorder = true;
        }
        let page_oldest = page.items.iter().filter_map(|e| e.created_at()).min();
        order.oldest = page_oldest.or(order.oldest);
        let below_marker = self
            .marker
            .zip(page.items.iter().filter_map(|e| e.created_at()).max())
            .is_some_and(|(marker, newest)| newest < marker);

        // Below the settled line: the tracker says so, or (for an event it
        // still remembers as delivered) its time lies below the list's line.
        let below_line = |verdict: &Verdict, created_at: Option<DateTime<Utc>>| {
            matches!(verdict, Verdict::BeforeBaseline | Verdict::BelowFloor)
                || created_at
                    .zip(self.line)
                    .is_some_and(|(at, line)| at < line)
        };
        let times = page
            .items
            .iter()
            .map(|e| e.created_at())
            .chain(page.skipped.iter().map(|s| s.created_at));
        let below: Vec<bool> = verdicts
            .iter()
            .chain(skipped_verdicts)
            .zip(times)
            .map(|(verdict, at)| below_line(verdict, at))
            .collect();
        let any_new = verdicts.iter().chain(skipped_verdicts).any(|v| v.is_new());
        let settled = if order.trusted() {
            below.iter().any(|b| *b)
        } else {
            !below.is_empty() && below.iter().all(|b| *b)
        };
        for (skipped, &verdict) in page.skipped.iter().zip(skipped_verdicts) {
            // Without an id it can never be settled: it must not hold the
            // floor back (`id: None` counts as settled).
            poll.seen.push(Seen {
                created_at: skipped.created_at,
                verdict,
                id: skipped.id.clone(),
            });
            if verdict.is_new() {
                poll.undecodable.push(skipped.clone());
            }
        }
        for (event, &verdict) in page.items.iter().zip(verdicts) {
            poll.seen.push(Seen {
                created_at: event.created_at(),
                verdict,
                id: event.id().cloned(),
            });
            if verdict.is_new() {
                // Only new events are decoded whole.
                match event.decode() {
                    Ok(event) => poll.new.push(event),
                    Err(error) => {
                        // Cannot happen: the page decoded as events.
                        tracing::error!(source = %poll.source.key, %error,
                            "an event of the page could not be decoded");
                        return Input::Broken;
                    }
                }
            }
        }
        Input::Page(PageRead {
            any_new,
            settled,
            last: pager.is_finished(),
            below_marker,
            pages: poll.pages,
        })
    }
}

/// Which event lists are polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// `/projects/{id}/events` for every project of the organization.
    pub project: bool,
    /// `/devices/{id}/events` for every device of those projects.
    pub device: bool,
    /// `/organizations/{id}/events`.
    pub organization: bool,
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            project: true,
            device: true,
            organization: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const MAX_PAGES: u32 = 3;

    fn page(any_new: bool, settled: bool, pages: u32) -> Input {
        Input::Page(PageRead {
            any_new,
            settled,
            last: false,
            below_marker: false,
            pages,
        })
    }

    fn server_error() -> metal_events::Error {
        metal_events::Error::Status {
            status: metal_events::StatusCode::BAD_GATEWAY,
            path: "/projects/p/events".into(),
            message: None,
            body: String::new(),
        }
    }

    fn rate_limited() -> metal_events::Error {
        metal_events::Error::RateLimited {
            path: "/projects/p/events".into(),
            retry_after: None,
            rate_limit: None,
            message: None,
        }
    }

    fn step(state: State, input: Input) -> (State, Effect) {
        next(state, input, MAX_PAGES)
    }

    #[test]
    fn a_page_that_reaches_the_settled_line_ends_complete() {
        let (state, effect) = step(State::reading(0), page(true, true, 1));
        assert!(matches!(state, State::Done(ListEnd::Complete)), "{state:?}");
        assert!(matches!(effect, Effect::None));
    }

    #[test]
    fn a_resumed_first_page_below_its_marker_steps_back_a_page() {
        let below = Input::Page(PageRead {
            any_new: true,
            settled: true,
            last: true,
            below_marker: true,
            pages: 1,
        });
        let (state, effect) = step(State::reading(0), below);
        assert!(matches!(state, State::Reading { .. }), "{state:?}");
        assert!(matches!(effect, Effect::StepBack));
    }

    #[test]
    fn the_last_page_or_no_page_ends_complete() {
        let last = Input::Page(PageRead {
            any_new: true,
            settled: false,
            last: true,
            below_marker: false,
            pages: 1,
        });
        for input in [last, Input::End] {
            let (state, _) = step(State::reading(0), input);
            assert!(matches!(state, State::Done(ListEnd::Complete)), "{state:?}");
        }
    }

    #[test]
    fn a_retryable_error_backs_off_then_asks_for_the_same_page() {
        let (state, effect) = step(State::reading(1), Input::Failed(server_error()));
        let State::Backoff { wait, then } = state else {
            panic!("not backing off: {state:?}");
        };
        assert!(matches!(effect, Effect::Retry(_)));
        assert!(wait >= PAGE_BACKOFF && wait <= PAGE_BACKOFF * 2, "{wait:?}");
        let (state, effect) = step(State::Backoff { wait, then }, Input::Waited);
        // The same reading state (the pager was not advanced), its count kept.
        assert!(
            matches!(
                state,
                State::Reading {
                    pages_with_new: 1,
                    ..
                }
            ),
            "{state:?}"
        );
        assert!(matches!(effect, Effect::None));
    }

    #[test]
    fn retries_running_out_end_partial_with_the_error() {
        let mut state = State::reading(0);
        for _ in 0..PAGE_RETRIES {
            let (backoff, _) = step(state, Input::Failed(server_error()));
            let (reading, _) = step(backoff, Input::Waited);
            state = reading;
        }
        let (state, effect) = step(state, Input::Failed(server_error()));
        assert!(matches!(state, State::Done(ListEnd::Partial)), "{state:?}");
        let Effect::Fail(error) = effect else {
            panic!("no error: {effect:?}");
        };
        assert_eq!(error.status(), Some(metal_events::StatusCode::BAD_GATEWAY));
    }

    #[test]
    fn a_permanent_error_ends_partial_at_once() {
        let error = metal_events::Error::Status {
            status: metal_events::StatusCode::FORBIDDEN,
            path: "/projects/p/events".into(),
            message: None,
            body: String::new(),
        };
        let (state, effect) = step(State::reading(0), Input::Failed(error));
        assert!(matches!(state, State::Done(ListEnd::Partial)), "{state:?}");
        assert!(matches!(effect, Effect::Fail(_)));
    }

    #[test]
    fn a_429_uses_an_attempt_without_a_backoff_of_its_own() {
        let mut state = State::reading(0);
        for _ in 0..PAGE_RETRIES {
            let (next_state, effect) = step(state, Input::Failed(rate_limited()));
            // The client's rate gate pauses; the page is asked for again at once.
            assert!(
                matches!(next_state, State::Reading { .. }),
                "{next_state:?}"
            );
            assert!(matches!(effect, Effect::None));
            state = next_state;
        }
        let (state, effect) = step(state, Input::Failed(rate_limited()));
        assert!(matches!(state, State::Done(ListEnd::Partial)), "{state:?}");
        assert!(matches!(
            effect,
            Effect::Fail(metal_events::Error::RateLimited { .. })
        ));
    }

    #[test]
    fn a_page_read_gives_the_next_page_fresh_attempts() {
        let (state, _) = step(State::reading(0), Input::Failed(rate_limited()));
        let (state, _) = step(state, Input::Failed(rate_limited()));
        let (mut state, _) = step(state, page(false, false, 1));
        for _ in 0..PAGE_RETRIES {
            (state, _) = step(state, Input::Failed(rate_limited()));
            assert!(matches!(state, State::Reading { .. }), "{state:?}");
        }
    }

    #[test]
    fn the_page_cap_ends_partial_and_capped() {
        let mut state = State::reading(0);
        for pages in 1..MAX_PAGES {
            (state, _) = step(state, page(true, false, pages));
            assert!(matches!(state, State::Reading { .. }), "{state:?}");
        }
        let (state, effect) = step(state, page(true, false, MAX_PAGES));
        assert!(matches!(state, State::Done(ListEnd::Partial)), "{state:?}");
        assert!(matches!(effect, Effect::Capped));
    }

    #[test]
    fn pages_without_new_events_are_capped_at_ten_times_the_cap() {
        let mut state = State::reading(0);
        for pages in 1..MAX_PAGES * 10 {
            (state, _) = step(state, page(false, false, pages));
            assert!(matches!(state, State::Reading { .. }), "{state:?}");
        }
        let (state, effect) = step(state, page(false, false, MAX_PAGES * 10));
        assert!(matches!(state, State::Done(ListEnd::Partial)), "{state:?}");
        assert!(matches!(effect, Effect::Capped));
    }

    #[test]
    fn a_list_not_newest_first_reads_to_the_cap() {
        // The driver reports `settled: false` for every page of a list seen
        // out of order that does not lie wholly below the line.
        let mut state = State::reading(0);
        let mut pages = 0;
        while !matches!(state, State::Done(_)) {
            pages += 1;
            let effect;
            (state, effect) = step(state, page(true, false, pages));
            if matches!(state, State::Done(_)) {
                assert!(matches!(effect, Effect::Capped));
            }
        }
        assert_eq!(pages, MAX_PAGES);
        assert!(matches!(state, State::Done(ListEnd::Partial)));
    }

    #[test]
    fn cancellation_or_a_failed_lookup_ends_partial_from_every_state() {
        let backoff = || State::Backoff {
            wait: PAGE_BACKOFF,
            then: Box::new(State::reading(0)),
        };
        for input in [|| Input::Cancelled, || Input::Broken] {
            for state in [State::reading(0), State::reading(2), backoff()] {
                let (state, effect) = step(state, input());
                assert!(matches!(state, State::Done(ListEnd::Partial)), "{state:?}");
                assert!(matches!(effect, Effect::None));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_waits_its_time_unless_cancelled() {
        let stop = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let input = back_off(Duration::from_millis(700), &stop).await;
        assert!(matches!(input, Input::Waited), "{input:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(700));

        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { back_off(Duration::from_secs(60), &stop).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        stop.cancel();
        let input = waiting.await.unwrap();
        assert!(matches!(input, Input::Cancelled), "{input:?}");
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn newest_first_allows_ties_and_rejects_a_rise() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        assert!(newest_first([t(3), t(3), t(1)]));
        assert!(newest_first([]));
        assert!(!newest_first([t(3), t(1), t(2)]));
    }
}
