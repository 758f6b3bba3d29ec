//! Polling one event list: read pages newest first, ask the tracker about
//! each event, and stop as soon as a page reaches what is already settled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use event_dedupe::{EventKey, Tracker, Verdict};
use metal_events::{
    Client, DeviceId, Event, EventId, EventScope, ListOptions, OrganizationId, ProjectId,
    Undecodable,
};
use tokio_util::sync::CancellationToken;

use crate::error_events::ErrorKind;
use crate::metrics::{LevelLabel, Metrics};
use crate::source_key::SourceKey;

/// Retries of one page (after 0.5 s, then 1 s, plus jitter; after a 429, the
/// client's rate-limit gate's pause instead) before the list is given up for this
/// sweep.
const PAGE_RETRIES: usize = 2;
const PAGE_BACKOFF: Duration = Duration::from_millis(500);
/// The page size of the first request to a list that has a settled line (a
/// floor from an earlier sweep, or a baseline): in a steady state, and on a
/// first start from `now`, its newest few events already reach that line, so a
/// small first page saves decoding, memory and bytes on every list of every
/// sweep. When it does not, the list is read again from page 1 at `perPage`.
const PROBE_PER_PAGE: u32 = 10;
/// Reading a list stops at the first event created this long before its
/// settled line, not at the line itself: `created_at` has whole seconds, so
/// events of the floor's own second (and ones a list shows a moment late) can
/// still appear after a read; they must be read, not skipped.
const STOP_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// Which kind of list an event was read from (the `level` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// A device's events.
    Device,
    /// A project's events.
    Project,
    /// The organization's own events.
    Organization,
}

impl Level {
    /// Every level, for creating the metric's labels at 0.
    pub const ALL: [Self; 3] = [Self::Device, Self::Project, Self::Organization];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Project => "project",
            Self::Organization => "organization",
        }
    }
}

/// One event list the sweep polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
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
    pub fn project(id: &ProjectId) -> Self {
        Self {
            key: SourceKey::Project(id.clone()).to_string(),
            scope: EventScope::Project(id.clone()),
            project: Some(id.clone()),
            device: None,
        }
    }

    /// The events of a device of a project.
    pub fn device(id: &DeviceId, project: &ProjectId) -> Self {
        Self {
            key: SourceKey::Device(id.clone()).to_string(),
            scope: EventScope::Device(id.clone()),
            project: Some(project.clone()),
            device: Some(id.clone()),
        }
    }

    /// The organization's own events.
    pub fn organization(id: &OrganizationId) -> Self {
        Self {
            key: SourceKey::Organization(id.clone()).to_string(),
            scope: EventScope::Organization(id.clone()),
            project: None,
            device: None,
        }
    }

    /// The level of this list.
    pub fn level(&self) -> Level {
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
pub struct Seen {
    /// When it was created, if the API said.
    pub created_at: Option<DateTime<Utc>>,
    /// What the tracker said when it was read.
    pub verdict: Verdict,
    /// Its id, kept for new events only (to learn whether they were settled).
    pub new_id: Option<EventId>,
}

/// How reading a list ended.
#[derive(Debug)]
pub enum ListEnd {
    /// The list ended, or a page reached what is already settled: every event
    /// older than those read is settled.
    Complete,
    /// Reading stopped early (page cap, an error, shutdown): older events may
    /// be unread, so the source's floor must not move.
    Partial,
}

/// What polling one list found.
#[derive(Debug)]
pub struct ListPoll {
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
}

/// How lists are read.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// `per_page`.
    pub per_page: u32,
    /// Pages holding new events read per list per sweep at most.
    pub max_pages: u32,
}

/// Logged once per process: a list that was not newest first.
static UNORDERED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Whether `times` (in list order) are newest first.
pub fn newest_first(times: impl IntoIterator<Item = DateTime<Utc>>) -> bool {
    let mut previous: Option<DateTime<Utc>> = None;
    for time in times {
        if previous.is_some_and(|p| time > p) {
            return false;
        }
        previous = Some(time);
    }
    true
}

/// Reads `source` page by page until a page reaches the settled line (the
/// larger of the baseline and the source's floor), the list ends, the page cap
/// is hit, an error persists, or `stop` is cancelled.
pub async fn poll_list(
    client: &Client,
    tracker: &dyn Tracker,
    metrics: &Metrics,
    options: &PollOptions,
    source: Source,
    stop: &CancellationToken,
) -> ListPoll {
    let list_options = ListOptions::new().with_per_page(options.per_page);
    let mut poll = ListPoll {
        source,
        seen: Vec::new(),
        new: Vec::new(),
        undecodable: Vec::new(),
        end: ListEnd::Partial,
        error: None,
        pages: 0,
        capped: false,
    };

    let floor = match tracker.floor(&poll.source.key).await {
        Ok(floor) => floor,
        Err(error) => {
            tracing::warn!(source = %poll.source.key, %error, "could not read the source's floor");
            None
        }
    };
    let now = Utc::now();
    let baseline = tracker.baseline().resolve(now);
    // Never past our own clock: reading more of a list is safe, stopping
    // early at a line in the future skips what happens before it.
    let settled_line = floor.max(baseline).map(|line| line.min(now));
    let mut probing = settled_line.is_some() && options.per_page > PROBE_PER_PAGE;
    let mut pager = if probing {
        let probe = ListOptions::new().with_per_page(PROBE_PER_PAGE);
        client.lazy_event_pages(&poll.source.scope, &probe)
    } else {
        client.lazy_event_pages(&poll.source.scope, &list_options)
    };
    // A clone: the family's read guard must not be held across an await.
    let received = metrics
        .events_received
        .get_or_create(&LevelLabel {
            level: poll.source.level(),
        })
        .clone();

    let mut pages_with_new = 0u32;
    let page_backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(PAGE_BACKOFF)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(PAGE_RETRIES)
            .build()
    };
    let mut backoff = page_backoff();
    let mut ordered = true;
    let mut oldest_so_far: Option<DateTime<Utc>> = None;
    loop {
        // The client waits at its rate gate before each request.
        let page = tokio::select! {
            () = stop.cancelled() => return poll,
            page = pager.next_page() => page,
        };
        let page = match page {
            Ok(Some(page)) => page,
            Ok(None) => {
                poll.end = ListEnd::Complete;
                return poll;
            }
            Err(error) => {
                if let metal_events::Error::RateLimited { .. } = &error {
                    // Every 429 pauses every request of the client (at least
                    // a second, longer on repeats) and uses one of the
                    // page's attempts, so a server that keeps answering 429,
                    // even with `Retry-After: 0`, gets a handful of requests
                    // per list and sweep, not a storm.
                    metrics.error(ErrorKind::RateLimited);
                    if backoff.next().is_some() {
                        continue;
                    }
                    poll.error = Some(error);
                    return poll;
                }
                if let Some(wait) = backoff.next().filter(|_| error.is_retryable()) {
                    tracing::debug!(source = %poll.source.key, %error, "retrying the page");
                    tokio::select! {
                        () = stop.cancelled() => return poll,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
                poll.error = Some(error);
                return poll;
            }
        };
        backoff = page_backoff();
        poll.pages += 1;
        received.inc_by((page.items.len() + page.skipped.len()) as u64);

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
        let verdicts = match tracker.check_many(&poll.source.key, &keys).await {
            Ok(verdicts) => verdicts,
            Err(error) => {
                tracing::error!(source = %poll.source.key, %error, "the dedupe state failed a lookup");
                metrics.error(ErrorKind::State);
                return poll;
            }
        };
        drop(keys);
        let (verdicts, skipped_verdicts) = verdicts.split_at(page.items.len());

        let times = oldest_so_far
            .into_iter()
            .chain(page.items.iter().filter_map(|e| e.created_at()));
        if ordered && !newest_first(times) {
            ordered = false;
            if !UNORDERED_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(source = %poll.source.key,
                    "an event list is not newest first; reading such lists to the page cap");
            }
        }
        oldest_so_far = page
            .items
            .iter()
            .filter_map(|e| e.created_at())
            .min()
            .or(oldest_so_far);

        let any_new = verdicts.iter().chain(skipped_verdicts).any(|v| v.is_new());
        let reached_settled = verdicts
            .iter()
            .chain(skipped_verdicts)
            .any(|v| matches!(v, Verdict::BeforeBaseline | Verdict::BelowFloor))
            || page.items.iter().any(|e| {
                e.created_at()
                    .zip(settled_line.and_then(|line| line.checked_sub_signed(STOP_GRACE)))
                    .is_some_and(|(at, stop)| at < stop)
            });
        for (skipped, &verdict) in page.skipped.iter().zip(skipped_verdicts) {
            // Without an id it can never be settled: it must not hold the
            // floor back (`new_id: None` counts as settled).
            poll.seen.push(Seen {
                created_at: skipped.created_at,
                verdict,
                new_id: verdict.is_new().then(|| skipped.id.clone()).flatten(),
            });
            if verdict.is_new() {
                poll.undecodable.push(skipped.clone());
            }
        }
        for (event, &verdict) in page.items.iter().zip(verdicts) {
            let new_id = verdict.is_new().then(|| event.id().cloned()).flatten();
            poll.seen.push(Seen {
                created_at: event.created_at(),
                verdict,
                new_id,
            });
            if verdict.is_new() {
                // Only new events are decoded whole.
                match event.decode() {
                    Ok(event) => poll.new.push(event),
                    Err(error) => {
                        // Cannot happen: the page decoded as events.
                        tracing::error!(source = %poll.source.key, %error,
                            "an event of the page could not be decoded");
                        return poll;
                    }
                }
            }
        }
        if any_new {
            pages_with_new += 1;
        }

        if ordered && reached_settled {
            poll.end = ListEnd::Complete;
            return poll;
        }
        if pager.is_finished() {
            poll.end = ListEnd::Complete;
            return poll;
        }
        if probing {
            // More is new than the probe held: read the list again from page
            // 1 at the full page size (page offsets depend on the size).
            probing = false;
            pager = client.lazy_event_pages(&poll.source.scope, &list_options);
            poll.seen.clear();
            poll.new.clear();
            poll.undecodable.clear();
            pages_with_new = 0;
            ordered = true;
            oldest_so_far = None;
            continue;
        }
        if pages_with_new >= options.max_pages || poll.pages >= options.max_pages.saturating_mul(10)
        {
            tracing::warn!(source = %poll.source.key, pages = poll.pages,
                "page cap reached before the settled part of the list; the rest waits for the next sweep");
            poll.capped = true;
            return poll;
        }
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

    #[test]
    fn newest_first_allows_ties_and_rejects_a_rise() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        assert!(newest_first([t(3), t(3), t(1)]));
        assert!(newest_first([]));
        assert!(!newest_first([t(3), t(1), t(2)]));
    }
}
