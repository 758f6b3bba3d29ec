//! The adaptive scheduler: when each event list is read next.
//!
//! Every list has its own interval and next due time. A list that just
//! showed new events is hot: read every `pollInterval`. Each quiet read
//! doubles a device list's interval, up to `maxPollInterval`; project and
//! organization lists, which are few, stay at `pollInterval`. A pass reads
//! the lists that are due, the most overdue first, as many as the request
//! budget allows; a list left out keeps its due time, so it is more overdue
//! than any list read since and goes first next pass: nothing starves.
//!
//! Hints make a quiet device list hot at once: one of its device's events
//! seen new in a project or organization list; the device's `state` or
//! `updated_at` changed at an inventory refresh; a device that appeared.
//!
//! Per project the scheduler learns whether the project's list shows its
//! devices' events: the same ids turn up in both (the project is *covered*).
//! Then a quiet device list is a safety net only, and its interval keeps
//! doubling past `maxPollInterval` up to `coveredPollInterval`. An event a
//! device list shows that its project's list did not, although the project
//! list was read after the event's time, ends the coverage at once: the
//! project's device lists go back under `maxPollInterval`.
//!
//! The scheduler only decides *when* a list is read. What a read delivers
//! and how far it settles the list (floors, baseline, overlap, the horizon)
//! is the tracker's, unchanged: a list not read in a pass keeps its floor, so
//! its next read starts where the last one settled and misses nothing.
//!
//! Everything here is pure state: no IO and no clock of its own. The
//! receiver passes `now` in; the tests do too, under paused time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use metal_events::{DeviceId, DeviceState, EventId, ProjectId, RateLimit};
use tokio::time::Instant;

use crate::cursor::Cursor;
use crate::inventory::{DeviceInfo, Inventory};
use crate::poll::{Level, ListEnd, ListPoll, Source};
use crate::sweep::sources;

/// An event a device list shows counts as missing from its project's list
/// only when the project list was read at least this long after the
/// event's time: a list may show an event a moment late.
const VISIBILITY_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Which cadence band a list is in (the `band` label of
/// `equinix_receiver_lists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    /// Read every `pollInterval`: it just showed events, was hinted, or is a
    /// project or organization list.
    Hot,
    /// Quiet, its interval doubling towards `maxPollInterval`.
    Cooling,
    /// Quiet, read every `maxPollInterval`.
    Max,
    /// Quiet in a covered project: read less often than `maxPollInterval`,
    /// up to `coveredPollInterval`.
    Covered,
}

impl Band {
    /// Every band, for creating the gauge's labels at 0.
    pub const ALL: [Self; 4] = [Self::Hot, Self::Cooling, Self::Max, Self::Covered];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Cooling => "cooling",
            Self::Max => "max",
            Self::Covered => "covered",
        }
    }
}

/// The three intervals of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cadence {
    /// `equinix.pollInterval`: hot lists, project and organization lists.
    pub(crate) poll: Duration,
    /// `equinix.maxPollInterval`: the longest interval of a quiet device list.
    pub(crate) max: Duration,
    /// `equinix.coveredPollInterval`: the same in a covered project.
    pub(crate) covered: Duration,
}

impl Cadence {
    /// The cadence, each interval at least the one before it. A maximum
    /// equal to `poll` turns the schedule off: every list every pass,
    /// whatever `covered` says.
    pub(crate) fn new(poll: Duration, max: Duration, covered: Duration) -> Self {
        let max = max.max(poll);
        let covered = if max == poll { poll } else { covered.max(max) };
        Self { poll, max, covered }
    }

    fn band(&self, interval: Duration) -> Band {
        if interval <= self.poll {
            Band::Hot
        } else if interval < self.max {
            Band::Cooling
        } else if interval <= self.max {
            Band::Max
        } else {
            Band::Covered
        }
    }
}

/// What the inventory said about a device, to notice a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeviceMark {
    state: Option<DeviceState>,
    updated_at: Option<DateTime<Utc>>,
}

impl DeviceMark {
    fn of(device: &DeviceInfo) -> Self {
        Self {
            state: device.state.clone(),
            updated_at: device.updated_at,
        }
    }
}

/// One list's place in the schedule.
#[derive(Debug, Clone)]
struct ListState {
    source: Source,
    interval: Duration,
    next_due: Instant,
    last_read: Option<Instant>,
    /// Device lists: the inventory's view of the device when last compared.
    mark: Option<DeviceMark>,
    /// When the list was last read to its settled part, or (before its
    /// first such read) when it joined the schedule.
    settled_at: Instant,
    /// Where its reading stands between reads.
    cursor: Cursor,
}

impl ListState {
    /// Read every `poll` from now on, starting with the pass at `now`.
    fn make_hot(&mut self, poll: Duration, now: Instant) {
        self.interval = poll;
        self.next_due = self.next_due.min(now);
    }
}

/// How often a project's [`Coverage`] forgets old ids at most.
const PRUNE_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What the scheduler knows of one project's list.
#[derive(Debug, Default)]
struct Coverage {
    /// The project's list shows its devices' events.
    covered: bool,
    /// Device events older than this tell nothing: the receiver had not
    /// read the project's list yet (the start of its first complete read),
    /// or has forgotten what the list showed then.
    watched_from: Option<DateTime<Utc>>,
    /// When the last complete read began.
    last_read: Option<DateTime<Utc>>,
    /// Ids the project's list showed, with when it last showed them.
    shown: HashMap<EventId, DateTime<Utc>>,
    /// Ids device lists showed, not yet compared with a project read made
    /// after their time: the event's time, and when a device list showed it.
    pending: HashMap<EventId, (DateTime<Utc>, DateTime<Utc>)>,
    /// Ids already compared (each device event counts once), with when.
    judged: HashMap<EventId, DateTime<Utc>>,
    /// When [`Coverage::prune`] last scanned the maps.
    pruned_at: Option<DateTime<Utc>>,
}

impl Coverage {
    /// Compares the device event `id` of `at`, which a device list showed
    /// at `observed`, with the project's list, once per id: `Some(true)`
    /// the list showed it, `Some(false)` it did not though it was read
    /// after `at`; `None` when judged before, or not known yet (then it is
    /// kept pending).
    fn judge(&mut self, id: &EventId, at: DateTime<Utc>, observed: DateTime<Utc>) -> Option<bool> {
        if self.judged.contains_key(id) {
            return None;
        }
        let verdict = if self.shown.contains_key(id) {
            Some(true)
        } else {
            self.watched_from
                .zip(self.last_read)
                .filter(|(from, last)| at >= *from && at + VISIBILITY_SLACK <= *last)
                .map(|_| false)
        };
        match verdict {
            Some(_) => {
                self.pending.remove(id);
                self.judged.insert(id.clone(), observed);
            }
            None => {
                self.pending.insert(id.clone(), (at, observed));
            }
        }
        verdict
    }

    /// Forgets what was observed more than `keep` before `now`. An event
    /// is forgotten only once it was last seen that long ago, and so was
    /// created before then: device events older than that tell nothing
    /// any more.
    ///
    /// It scans every map, so it runs at most once per [`PRUNE_EVERY`]: a
    /// read of each of a project's thousand device lists must not scan the
    /// project's ids a thousand times.
    fn prune(&mut self, now: DateTime<Utc>, keep: Duration) {
        if self
            .pruned_at
            .is_some_and(|at| now.signed_duration_since(at) < PRUNE_EVERY)
        {
            return;
        }
        self.pruned_at = Some(now);
        let Some(oldest) = chrono::TimeDelta::from_std(keep)
            .ok()
            .and_then(|keep| now.checked_sub_signed(keep))
        else {
            return;
        };
        self.shown.retain(|_, seen| *seen >= oldest);
        self.pending.retain(|_, (_, seen)| *seen >= oldest);
        self.judged.retain(|_, seen| *seen >= oldest);
        self.watched_from = self.watched_from.map(|from| from.max(oldest));
    }
}

/// How reading a list ended, as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// Read to its settled line or its end.
    Complete,
    /// Stopped early (page cap, shutdown): more to read.
    Partial,
    /// Failed (an API error): read again next pass.
    Failed,
}

/// What one read of a list showed, for the scheduler.
#[derive(Debug, Clone)]
pub(crate) struct ListSeen {
    /// The list's tracker key.
    pub(crate) key: String,
    /// How reading ended.
    pub(crate) end: ReadEnd,
    /// New events the read found.
    pub(crate) new_events: usize,
    /// Every event read that has an id and a time.
    pub(crate) ids: Vec<(EventId, DateTime<Utc>)>,
    /// Devices the new events of a project or organization list name.
    pub(crate) devices: Vec<DeviceId>,
    /// When the read began (the API's clock is compared to it).
    pub(crate) read_at: DateTime<Utc>,
    /// The list's cursor after the read (set when the sweep settles it).
    pub(crate) cursor: Cursor,
}

impl ListSeen {
    /// What `poll` showed; call before its new events are taken out.
    pub(crate) fn of(poll: &ListPoll, inventory: &Inventory, read_at: DateTime<Utc>) -> Self {
        let end = match (&poll.end, &poll.error) {
            (_, Some(_)) => ReadEnd::Failed,
            (ListEnd::Complete, None) => ReadEnd::Complete,
            (ListEnd::Partial, None) => ReadEnd::Partial,
        };
        let devices = if poll.source.level() == Level::Device {
            Vec::new()
        } else {
            poll.new
                .iter()
                .filter_map(|event| {
                    metal_cloudevents::find_device(event, |id| inventory.devices.get(id))
                        .map(|(_, device)| device.id.clone())
                })
                .collect()
        };
        Self {
            key: poll.source.key.clone(),
            end,
            new_events: poll.new.len() + poll.undecodable.len(),
            ids: poll
                .seen
                .iter()
                .filter_map(|seen| Some((seen.id.clone()?, seen.created_at?)))
                .collect(),
            devices,
            read_at,
            cursor: Cursor::default(),
        }
    }
}

/// The schedule of every list: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Schedule {
    cadence: Cadence,
    /// How long ids are kept to compare a project's list with its devices'.
    keep_ids: Duration,
    lists: HashMap<String, ListState>,
    coverage: HashMap<ProjectId, Coverage>,
}

impl Schedule {
    /// An empty schedule; `keep_ids` bounds how long event ids are kept to
    /// learn coverage (the tracker's overlap is a good value).
    pub(crate) fn new(cadence: Cadence, keep_ids: Duration) -> Self {
        Self {
            cadence,
            keep_ids: keep_ids + cadence.covered,
            lists: HashMap::new(),
            coverage: HashMap::new(),
        }
    }

    /// Brings the schedule in line with a freshly loaded inventory: new
    /// lists are due at once (a device that appeared is hot), gone ones
    /// leave, and a device whose `state` or `updated_at` changed is hot.
    pub(crate) fn sync(
        &mut self,
        inventory: &Inventory,
        levels: crate::poll::Levels,
        now: Instant,
    ) {
        let fresh = sources(inventory, levels);
        let mut kept = HashMap::with_capacity(fresh.len());
        for source in fresh {
            let mark = source
                .device
                .as_ref()
                .and_then(|id| inventory.devices.get(id))
                .map(DeviceMark::of);
            let state = match self.lists.remove(&source.key) {
                Some(mut state) => {
                    if mark.is_some() && state.mark != mark {
                        state.make_hot(self.cadence.poll, now);
                    }
                    state.mark = mark;
                    state.source = source;
                    state
                }
                None => ListState {
                    source,
                    interval: self.cadence.poll,
                    next_due: now,
                    last_read: None,
                    mark,
                    settled_at: now,
                    cursor: Cursor::default(),
                },
            };
            kept.insert(state.source.key.clone(), state);
        }
        self.lists = kept;
        self.coverage
            .retain(|id, _| inventory.project(id).is_some());
    }

    /// Every list, for a pass that reads them all (`--once`).
    pub(crate) fn all(&self) -> Vec<Source> {
        let mut all: Vec<&ListState> = self.lists.values().collect();
        all.sort_by(|a, b| a.source.key.cmp(&b.source.key));
        all.into_iter().map(|s| s.source.clone()).collect()
    }

    /// The lists due at `now`, the most overdue first, at most `budget`
    /// of them (`None`: no limit). The others keep their due time.
    pub(crate) fn due(&self, now: Instant, budget: Option<usize>) -> Vec<Source> {
        let mut due: Vec<&ListState> = self.lists.values().filter(|s| s.next_due <= now).collect();
        due.sort_by(|a, b| {
            a.next_due
                .cmp(&b.next_due)
                .then_with(|| a.source.key.cmp(&b.source.key))
        });
        due.truncate(budget.unwrap_or(usize::MAX));
        due.into_iter().map(|s| s.source.clone()).collect()
    }

    /// The lists due at `now` as [`due`](Self::due) gives them, each with
    /// its cursor (the schedule keeps it until [`on_read`](Self::on_read)
    /// gives it back).
    pub(crate) fn due_with_cursors(
        &self,
        now: Instant,
        budget: Option<usize>,
    ) -> Vec<(Source, Cursor)> {
        self.with_cursors(self.due(now, budget))
    }

    /// Every list with its cursor, for a pass that reads them all.
    pub(crate) fn all_with_cursors(&self) -> Vec<(Source, Cursor)> {
        self.with_cursors(self.all())
    }

    fn with_cursors(&self, sources: Vec<Source>) -> Vec<(Source, Cursor)> {
        sources
            .into_iter()
            .map(|source| {
                let cursor = self
                    .lists
                    .get(&source.key)
                    .map(|state| state.cursor.clone())
                    .unwrap_or_default();
                (source, cursor)
            })
            .collect()
    }

    /// Every list's tracker key.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.lists.keys().map(String::as_str)
    }

    /// Lists not read to their settled part for longer than `limit`.
    pub(crate) fn stalled(&self, now: Instant, limit: Duration) -> usize {
        self.lists
            .values()
            .filter(|state| now.saturating_duration_since(state.settled_at) > limit)
            .count()
    }

    /// Lists per band.
    pub(crate) fn bands(&self) -> [(Band, usize); 4] {
        let mut counts = Band::ALL.map(|band| (band, 0));
        for state in self.lists.values() {
            let band = self.cadence.band(state.interval);
            if let Some(count) = counts.iter_mut().find(|(b, _)| *b == band) {
                count.1 += 1;
            }
        }
        counts
    }

    /// A list was read in the pass that began at `now`: sets its next due
    /// time, learns coverage and follows hints. Returns how long ago the
    /// list was read before (`None` the first time).
    pub(crate) fn on_read(&mut self, seen: &ListSeen, now: Instant) -> Option<Duration> {
        let cadence = self.cadence;
        let state = self.lists.get_mut(&seen.key)?;
        let staleness = state
            .last_read
            .map(|last| now.saturating_duration_since(last));
        state.last_read = Some(now);
        state.cursor = seen.cursor.clone();
        if seen.end == ReadEnd::Complete {
            state.settled_at = now;
        }
        let level = state.source.level();
        let project = state.source.project.clone();
        match seen.end {
            ReadEnd::Failed => {
                // Read again next pass, at the cadence it had.
                state.next_due = now + cadence.poll;
            }
            ReadEnd::Partial => {
                state.interval = cadence.poll;
                state.next_due = now + cadence.poll;
            }
            ReadEnd::Complete => {
                state.interval = if level != Level::Device || seen.new_events > 0 {
                    cadence.poll
                } else {
                    let covered = project
                        .as_ref()
                        .and_then(|p| self.coverage.get(p))
                        .is_some_and(|c| c.covered);
                    let cap = if covered {
                        cadence.covered
                    } else {
                        cadence.max
                    };
                    (state.interval * 2).min(cap).max(cadence.poll)
                };
                state.next_due = now + state.interval;
            }
        }
        for device in &seen.devices {
            let key = crate::SourceKey::Device(device.clone()).to_string();
            if let Some(state) = self.lists.get_mut(&key) {
                state.make_hot(cadence.poll, now);
            }
        }
        // Coverage only lets quiet lists go past `maxPollInterval`: with
        // adaptive polling off it would change nothing, so nothing is learnt.
        if let Some(project) = project.filter(|_| cadence.max > cadence.poll) {
            match level {
                Level::Project => self.learn_from_project(&project, seen),
                Level::Device => self.learn_from_device(&project, seen),
                Level::Organization => {}
            }
        }
        staleness
    }

    /// Whether `project`'s list is known to show its devices' events.
    #[cfg(test)]
    fn is_covered(&self, project: &ProjectId) -> bool {
        self.coverage.get(project).is_some_and(|c| c.covered)
    }

    fn learn_from_project(&mut self, project: &ProjectId, seen: &ListSeen) {
        let keep = self.keep_ids;
        let coverage = self.coverage.entry(project.clone()).or_default();
        coverage
            .shown
            .extend(seen.ids.iter().map(|(id, _)| (id.clone(), seen.read_at)));
        if seen.end == ReadEnd::Complete {
            coverage.watched_from.get_or_insert(seen.read_at);
            coverage.last_read = Some(seen.read_at);
        }
        let pending: Vec<_> = coverage.pending.drain().collect();
        let verdicts: Vec<bool> = pending
            .iter()
            .filter_map(|(id, (at, observed))| coverage.judge(id, *at, *observed))
            .collect();
        coverage.prune(seen.read_at, keep);
        self.learn(project, &verdicts);
    }

    fn learn_from_device(&mut self, project: &ProjectId, seen: &ListSeen) {
        let keep = self.keep_ids;
        let coverage = self.coverage.entry(project.clone()).or_default();
        let verdicts: Vec<bool> = seen
            .ids
            .iter()
            .filter_map(|(id, at)| coverage.judge(id, *at, seen.read_at))
            .collect();
        coverage.prune(seen.read_at, keep);
        self.learn(project, &verdicts);
    }

    /// Device events the project's list did (`true`) or did not show: one
    /// it missed ends the coverage, else one it showed starts it.
    fn learn(&mut self, project: &ProjectId, verdicts: &[bool]) {
        if verdicts.contains(&false) {
            self.lose_coverage(project);
        } else if verdicts.contains(&true)
            && let Some(coverage) = self.coverage.get_mut(project)
        {
            coverage.covered = true;
        }
    }

    /// `project`'s list missed a device event: its device lists go back
    /// under `maxPollInterval` at once.
    fn lose_coverage(&mut self, project: &ProjectId) {
        if let Some(coverage) = self.coverage.get_mut(project) {
            coverage.covered = false;
        }
        let max = self.cadence.max;
        for state in self.lists.values_mut() {
            if state.source.level() == Level::Device
                && state.source.project.as_ref() == Some(project)
                && state.interval > max
            {
                state.interval = max;
                if let Some(last) = state.last_read {
                    state.next_due = state.next_due.min(last + max);
                }
            }
        }
    }
}

/// How many lists one pass may read: what `equinix.requestRate`
/// (`rate`, requests per second) allows in one `interval`, and what the
/// API's last `X-RateLimit-*` headers leave, spread over the passes until
/// the window resets. At least one, so the most overdue list always moves;
/// `None` when neither limits.
pub(crate) fn pass_budget(
    rate: Option<f64>,
    limit: Option<RateLimit>,
    interval: Duration,
    now: SystemTime,
) -> Option<usize> {
    let from_rate = rate.map(|rate| (rate * interval.as_secs_f64()).floor() as usize);
    let from_headers = limit.and_then(|limit| {
        let remaining = limit.remaining?;
        let passes = limit.reset_after(now).map_or(1.0, |reset| {
            (reset.as_secs_f64() / interval.as_secs_f64().max(f64::EPSILON))
                .ceil()
                .max(1.0)
        });
        Some((remaining as f64 / passes).floor() as usize)
    });
    let budget = match (from_rate, from_headers) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    budget.map(|b| b.max(1))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use metal_events::OrganizationId;

    use super::*;
    use crate::inventory::ProjectInfo;
    use crate::poll::Levels;

    const POLL: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(60);
    const COVERED: Duration = Duration::from_secs(600);

    fn cadence() -> Cadence {
        Cadence::new(POLL, MAX, COVERED)
    }

    /// Projects `p0`.. with devices `p0-d0`.. each.
    fn inventory(projects: usize, devices: usize) -> Inventory {
        let mut inventory = Inventory {
            org_id: OrganizationId::new("org".to_owned()),
            org_name: "org".to_owned(),
            projects: Vec::new(),
            devices: HashMap::new(),
        };
        for p in 0..projects {
            let project = ProjectId::new(format!("p{p}"));
            inventory.projects.push(ProjectInfo {
                id: project.clone(),
                name: format!("p{p}"),
            });
            for d in 0..devices {
                let id = DeviceId::new(format!("p{p}-d{d}"));
                inventory.devices.insert(
                    id.clone(),
                    DeviceInfo {
                        id,
                        hostname: None,
                        project: project.clone(),
                        state: Some(DeviceState::Active),
                        updated_at: None,
                    },
                );
            }
        }
        inventory
    }

    fn device_key(id: &str) -> String {
        format!("device:{id}")
    }

    /// The API's clock at `secs` into a test (an instant and a date that
    /// move together).
    fn utc(secs: u64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap() + chrono::TimeDelta::seconds(secs as i64)
    }

    fn event(id: &str, secs: u64) -> (EventId, DateTime<Utc>) {
        (EventId::new(id.to_owned()), utc(secs))
    }

    /// A world to read: which list shows which events, by second.
    #[derive(Default)]
    struct World {
        /// List key to (event id, second created, device it names).
        events: BTreeMap<String, Vec<(String, u64, Option<String>)>>,
    }

    impl World {
        /// A device event at `secs`, shown by its project's list too when
        /// `shown`.
        fn device_event(&mut self, device: &str, id: &str, secs: u64, shown: bool) {
            self.events
                .entry(device_key(device))
                .or_default()
                .push((id.to_owned(), secs, None));
            if shown {
                let project = device.split('-').next().unwrap();
                self.events
                    .entry(format!("project:{project}"))
                    .or_default()
                    .push((id.to_owned(), secs, Some(device.to_owned())));
            }
        }

        /// What reading `key` at second `now`, last read at `last`, shows.
        fn read(&self, key: &str, now: u64, last: Option<u64>) -> ListSeen {
            let events = self.events.get(key).map(Vec::as_slice).unwrap_or(&[]);
            let visible = events.iter().filter(|(_, at, _)| *at <= now);
            let is_new = |at: u64| last.is_none_or(|last| at > last);
            ListSeen {
                key: key.to_owned(),
                end: ReadEnd::Complete,
                new_events: visible.clone().filter(|(_, at, _)| is_new(*at)).count(),
                ids: visible.clone().map(|(id, at, _)| event(id, *at)).collect(),
                devices: visible
                    .filter(|(_, at, _)| is_new(*at))
                    .filter_map(|(_, _, d)| d.clone().map(DeviceId::new))
                    .collect(),
                read_at: utc(now),
                cursor: Cursor::default(),
            }
        }
    }

    /// Runs passes every `POLL` from second 0 to `until` (inclusive) with
    /// at most `budget` lists a pass; returns the seconds each list was read.
    fn run(
        schedule: &mut Schedule,
        world: &World,
        start: Instant,
        from: u64,
        until: u64,
        budget: Option<usize>,
        reads: &mut BTreeMap<String, Vec<u64>>,
    ) {
        let mut second = from;
        while second <= until {
            let now = start + Duration::from_secs(second);
            for source in schedule.due(now, budget) {
                let log = reads.entry(source.key.clone()).or_default();
                let seen = world.read(&source.key, second, log.last().copied());
                log.push(second);
                schedule.on_read(&seen, now);
            }
            second += POLL.as_secs();
        }
    }

    fn reads_of<'a>(reads: &'a BTreeMap<String, Vec<u64>>, key: &str) -> &'a [u64] {
        reads.get(key).map_or(&[], Vec::as_slice)
    }

    fn started(inventory: &Inventory) -> (Schedule, Instant) {
        let mut schedule = Schedule::new(cadence(), Duration::from_secs(600));
        let start = Instant::now();
        schedule.sync(inventory, Levels::default(), start);
        (schedule, start)
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_device_list_cools_down_to_the_maximum_and_project_lists_stay_hot() {
        let inventory = inventory(1, 1);
        let (mut schedule, start) = started(&inventory);
        let mut reads = BTreeMap::new();
        run(
            &mut schedule,
            &World::default(),
            start,
            0,
            300,
            None,
            &mut reads,
        );
        // 20, 40, then every 60 s.
        assert_eq!(
            reads_of(&reads, "device:p0-d0"),
            [0, 20, 60, 120, 180, 240, 300]
        );
        assert_eq!(reads_of(&reads, "project:p0").len(), 31, "every pass");
        assert_eq!(
            schedule.bands(),
            [
                (Band::Hot, 1),
                (Band::Cooling, 0),
                (Band::Max, 1),
                (Band::Covered, 0)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_that_shows_new_events_is_hot_again() {
        let inventory = inventory(1, 1);
        let (mut schedule, start) = started(&inventory);
        let mut world = World::default();
        // Not shown by the project: found when the device list is read.
        world.device_event("p0-d0", "e1", 75, false);
        let mut reads = BTreeMap::new();
        run(&mut schedule, &world, start, 0, 200, None, &mut reads);
        // Read at 120 (60 + 60), new events: hot (130), then cooling again.
        assert_eq!(
            reads_of(&reads, "device:p0-d0"),
            [0, 20, 60, 120, 130, 150, 190]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_maximum_equal_to_the_poll_interval_every_list_is_read_every_pass() {
        let inventory = inventory(2, 3);
        let mut schedule =
            Schedule::new(Cadence::new(POLL, POLL, COVERED), Duration::from_secs(600));
        let start = Instant::now();
        schedule.sync(&inventory, Levels::default(), start);
        let mut world = World::default();
        // Projects whose lists show their devices' events too: coverage is
        // not even learnt (it would change nothing), `coveredPollInterval`
        // does not apply.
        world.device_event("p0-d0", "e0", 0, true);
        world.device_event("p1-d0", "e1", 0, true);
        let mut reads = BTreeMap::new();
        run(&mut schedule, &world, start, 0, 100, None, &mut reads);
        assert!(!schedule.is_covered(&ProjectId::new("p0".to_owned())));
        assert!(schedule.coverage.is_empty(), "nothing learnt, nothing kept");
        assert_eq!(reads.len(), 8);
        assert!(reads.values().all(|r| r.len() == 11), "{reads:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_event_in_the_project_list_makes_the_device_list_hot_and_teaches_coverage() {
        let inventory = inventory(1, 2);
        let (mut schedule, start) = started(&inventory);
        let mut world = World::default();
        world.device_event("p0-d0", "e1", 135, true);
        let mut reads = BTreeMap::new();
        run(&mut schedule, &world, start, 0, 130, None, &mut reads);
        assert!(!schedule.is_covered(&ProjectId::new("p0".to_owned())));
        run(&mut schedule, &world, start, 140, 150, None, &mut reads);
        // The project list showed e1 at 140: the device list is read the
        // next pass, not at 180, and shows the same id.
        assert_eq!(reads_of(&reads, "device:p0-d0"), [0, 20, 60, 120, 150]);
        assert!(schedule.is_covered(&ProjectId::new("p0".to_owned())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_covered_device_list_goes_past_the_maximum_up_to_the_covered_interval() {
        let inventory = inventory(1, 2);
        let (mut schedule, start) = started(&inventory);
        let mut world = World::default();
        // Already in both lists when the receiver starts.
        world.device_event("p0-d0", "e0", 0, true);
        let mut reads = BTreeMap::new();
        run(&mut schedule, &world, start, 0, 3000, None, &mut reads);
        assert!(schedule.is_covered(&ProjectId::new("p0".to_owned())));
        // Doubling past 60 s up to 600 s: d0 from 10 s (it showed e0), d1
        // from 20 s.
        assert_eq!(
            reads_of(&reads, "device:p0-d0"),
            [0, 10, 30, 70, 150, 310, 630, 1230, 1830, 2430]
        );
        assert_eq!(
            reads_of(&reads, "device:p0-d1"),
            [0, 20, 60, 140, 300, 620, 1220, 1820, 2420]
        );
        assert_eq!(
            schedule.bands(),
            [
                (Band::Hot, 1),
                (Band::Cooling, 0),
                (Band::Max, 0),
                (Band::Covered, 2)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_the_project_list_missed_ends_its_coverage_at_once() {
        let inventory = inventory(1, 2);
        let (mut schedule, start) = started(&inventory);
        let mut world = World::default();
        world.device_event("p0-d0", "e0", 0, true);
        let mut reads = BTreeMap::new();
        run(&mut schedule, &world, start, 0, 700, None, &mut reads);
        assert!(schedule.is_covered(&ProjectId::new("p0".to_owned())));
        assert_eq!(reads_of(&reads, "device:p0-d1"), [0, 20, 60, 140, 300, 620]);

        // d0 shows two events; its project's list only the first (which
        // makes d0's list hot).
        world.device_event("p0-d0", "e1", 705, true);
        world.device_event("p0-d0", "e2", 706, false);
        run(&mut schedule, &world, start, 710, 720, None, &mut reads);
        assert!(!schedule.is_covered(&ProjectId::new("p0".to_owned())));
        // d1 was due at 1220 (620 + 600); it goes back under the maximum
        // at once: read next pass, as it was last read more than 60 s ago,
        // then every 60 s.
        run(&mut schedule, &world, start, 730, 900, None, &mut reads);
        assert_eq!(
            reads_of(&reads, "device:p0-d1"),
            [0, 20, 60, 140, 300, 620, 730, 790, 850]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn coverage_comes_back_when_the_lists_agree_again() {
        let project = ProjectId::new("p0".to_owned());
        let inventory = inventory(1, 1);
        let (mut schedule, start) = started(&inventory);
        let mut world = World::default();
        world.device_event("p0-d0", "e1", 5, false);
        let mut reads = BTreeMap::new();
        run(&mut schedule, &world, start, 0, 100, None, &mut reads);
        assert!(
            !schedule.is_covered(&project),
            "e1 is missing from the project list"
        );
        world.device_event("p0-d0", "e2", 105, true);
        run(&mut schedule, &world, start, 110, 130, None, &mut reads);
        assert!(schedule.is_covered(&project), "e2 is in both");
    }

    #[tokio::test(start_paused = true)]
    async fn an_inventory_change_or_a_new_device_makes_the_list_hot() {
        let mut inventory = inventory(1, 2);
        let (mut schedule, start) = started(&inventory);
        let mut reads = BTreeMap::new();
        run(
            &mut schedule,
            &World::default(),
            start,
            0,
            200,
            None,
            &mut reads,
        );
        let now = start + Duration::from_secs(205);
        assert!(schedule.due(now, None).iter().all(|s| s.device.is_none()));

        let d1 = DeviceId::new("p0-d1".to_owned());
        inventory.devices.get_mut(&d1).unwrap().state = Some(DeviceState::PoweringOff);
        let d9 = DeviceId::new("p0-d9".to_owned());
        inventory.devices.insert(
            d9.clone(),
            DeviceInfo {
                id: d9,
                hostname: None,
                project: ProjectId::new("p0".to_owned()),
                state: None,
                updated_at: None,
            },
        );
        schedule.sync(&inventory, Levels::default(), now);
        let due: Vec<String> = schedule.due(now, None).into_iter().map(|s| s.key).collect();
        assert!(due.contains(&device_key("p0-d1")), "{due:?}");
        assert!(due.contains(&device_key("p0-d9")), "{due:?}");
        assert!(!due.contains(&device_key("p0-d0")), "unchanged: {due:?}");

        // A device that left leaves the schedule.
        inventory.devices.remove(&DeviceId::new("p0-d0".to_owned()));
        schedule.sync(&inventory, Levels::default(), now);
        assert!(!schedule.all().iter().any(|s| s.key == device_key("p0-d0")));
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_budget_the_most_overdue_go_first_and_none_starves() {
        // 1 project and 20 devices, 3 lists a pass: far too few.
        let inventory = inventory(1, 20);
        let (mut schedule, start) = started(&inventory);
        let mut reads = BTreeMap::new();
        run(
            &mut schedule,
            &World::default(),
            start,
            0,
            600,
            Some(3),
            &mut reads,
        );
        // Every list is read; the budget is spent every pass.
        assert_eq!(reads.len(), 21);
        let counts: Vec<usize> = reads.values().map(Vec::len).collect();
        assert_eq!(
            counts.iter().sum::<usize>(),
            61 * 3,
            "the budget, every pass"
        );
        // No list waits more than one round of all lists (21 lists at 3 a
        // pass: 7 passes) past its due time: the project list, due every
        // pass, does not crowd the device lists out.
        for (key, seconds) in &reads {
            let gaps = seconds.windows(2).map(|w| w[1] - w[0]);
            assert!(gaps.max().unwrap_or(0) <= 80, "{key}: {seconds:?}");
        }
        assert!(reads_of(&reads, "project:p0").len() >= 10, "{reads:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn busy_lists_that_fill_the_budget_do_not_starve_quiet_ones() {
        // Three busy project lists (new events at every read) and six device
        // lists, with a budget of three lists a pass: the busy lists alone
        // would take every pass.
        let inventory = inventory(3, 2);
        let (mut schedule, start) = started(&inventory);
        let mut world = World::default();
        for (p, second) in (0..3).flat_map(|p| (0..=300).step_by(10).map(move |s| (p, s))) {
            world
                .events
                .entry(format!("project:p{p}"))
                .or_default()
                .push((format!("p{p}-e{second}"), second, None));
        }
        let mut reads = BTreeMap::new();
        run(&mut schedule, &world, start, 0, 300, Some(3), &mut reads);
        for d in ["p0-d0", "p0-d1", "p1-d0", "p1-d1", "p2-d0", "p2-d1"] {
            let seconds = reads_of(&reads, &device_key(d));
            assert!(seconds.len() >= 4, "{d} starved: {seconds:?}");
        }
        for p in 0..3 {
            let seconds = reads_of(&reads, &format!("project:p{p}"));
            assert!(seconds.len() >= 15, "p{p}: {seconds:?}");
        }
    }

    #[test]
    fn the_budget_follows_the_request_rate_and_the_rate_limit_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(pass_budget(None, None, POLL, now), None);
        assert_eq!(pass_budget(Some(5.0), None, POLL, now), Some(50));
        assert_eq!(
            pass_budget(Some(0.01), None, POLL, now),
            Some(1),
            "at least one"
        );
        // 300 left until the window resets in 60 s: six passes.
        let limit = RateLimit::new(Some(1000), Some(300), Some(60));
        assert_eq!(pass_budget(None, Some(limit), POLL, now), Some(50));
        assert_eq!(pass_budget(Some(2.0), Some(limit), POLL, now), Some(20));
        let spent = RateLimit::new(Some(1000), Some(0), Some(60));
        assert_eq!(pass_budget(None, Some(spent), POLL, now), Some(1));
    }

    #[test]
    fn ids_are_forgotten_after_the_window_and_scanned_at_most_once_a_minute() {
        let keep = Duration::from_secs(100);
        let mut coverage = Coverage::default();
        let (old, _) = event("e-old", 0);
        coverage.shown.insert(old.clone(), utc(0));
        // A device list read at 150 s: the id is past the window, forgotten.
        coverage.prune(utc(150), keep);
        assert!(!coverage.shown.contains_key(&old));
        // An id last shown at 60 s, past the window from 161 s on, stays
        // through reads within the minute after the scan: they do not scan.
        let (id, _) = event("e-1", 60);
        coverage.shown.insert(id.clone(), utc(60));
        for secs in [170, 190, 209] {
            coverage.prune(utc(secs), keep);
            assert!(
                coverage.shown.contains_key(&id),
                "scanned again at {secs} s"
            );
        }
        // A minute after the last scan it goes.
        coverage.prune(utc(210), keep);
        assert!(!coverage.shown.contains_key(&id));
    }
}
