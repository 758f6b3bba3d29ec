//! The tracking logic both stores share: baseline, per-source floors, the
//! global horizon, delivered ids and pruning; and the on-disk format.

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Clock;
use crate::options::{Baseline, FUTURE_TOLERANCE, TrackerOptions};
use crate::{Stats, Verdict};

/// The on-disk format version this build reads and writes.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// The earliest instant a state holds: 0000-01-01T00:00:00Z. From here to
/// [`LATEST`] are the instants RFC 3339 writes in UTC (a four-digit year), and
/// every time a tracker stores is held within them, so a file it writes
/// always loads; a file with a time outside them was not written by a
/// tracker and is refused as corrupt.
pub(crate) const EARLIEST: DateTime<Utc> = match DateTime::from_timestamp(-62_167_219_200, 0) {
    Some(at) => at,
    None => DateTime::<Utc>::MIN_UTC,
};

/// The latest instant a state holds: 9999-12-31T23:59:59.999999999Z.
pub(crate) const LATEST: DateTime<Utc> =
    match DateTime::from_timestamp(253_402_300_799, 999_999_999) {
        Some(at) => at,
        None => DateTime::<Utc>::MAX_UTC,
    };

/// `at` held within [`EARLIEST`] and [`LATEST`].
pub(crate) fn in_range(at: DateTime<Utc>) -> DateTime<Utc> {
    at.clamp(EARLIEST, LATEST)
}

/// The latest a floor, the horizon or the baseline may be when the clock
/// reads `now`: `now` plus [`FUTURE_TOLERANCE`].
pub(crate) fn future_limit(now: DateTime<Utc>) -> DateTime<Utc> {
    in_range(now)
        .checked_add_signed(delta(FUTURE_TOLERANCE))
        .map_or(LATEST, in_range)
}

/// `at - by`, held at [`EARLIEST`].
fn minus(at: DateTime<Utc>, by: TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(by)
        .map_or(EARLIEST, |at| at.max(EARLIEST))
}

/// A time as a state file and its messages write it.
fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What a source has settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceState {
    /// Every event of the source created at or before this is settled.
    pub(crate) floor: DateTime<Utc>,
    /// When (by the tracker's clock) the floor was last advanced.
    pub(crate) advanced_at: DateTime<Utc>,
}

/// The persistent part of a tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) version: u64,
    /// `None`: every event counts (baseline "all").
    #[serde(with = "baseline_repr")]
    pub(crate) baseline: Option<DateTime<Utc>>,
    /// When this state was first created.
    pub(crate) created: DateTime<Utc>,
    /// Every event created before this is settled for every source; ids below
    /// it are forgotten.
    pub(crate) horizon: Option<DateTime<Utc>>,
    pub(crate) sources: HashMap<Box<str>, SourceState>,
    /// Delivered event id -> its `created_at`.
    pub(crate) delivered: HashMap<Box<str>, DateTime<Utc>>,
    /// Delivered event id without `created_at` -> when it was recorded.
    #[serde(default)]
    pub(crate) undated: HashMap<Box<str>, DateTime<Utc>>,
}

impl State {
    /// A fresh state. A baseline in the future is held at `now` (with a
    /// warning): nothing that happens after the start is skipped.
    pub(crate) fn new(baseline: Baseline, now: DateTime<Utc>) -> Self {
        let now = in_range(now);
        let baseline = baseline.resolve(now).map(|at| {
            if at > now {
                tracing::warn!(
                    configured = %show(at),
                    held = %show(now),
                    "the start point is in the future; starting from now instead, so that no event \
                     that happens from now on is skipped"
                );
            }
            whole_second(in_range(at).min(now))
        });
        Self {
            version: FORMAT_VERSION,
            baseline,
            created: now,
            horizon: None,
            sources: HashMap::new(),
            delivered: HashMap::new(),
            undated: HashMap::new(),
        }
    }

    pub(crate) fn baseline(&self) -> Baseline {
        self.baseline
            .map_or(Baseline::All, |b| Baseline::At(whole_second(b)))
    }

    /// The first time (by field name) outside the years 0000 to 9999, as a
    /// reason the file is corrupt: such a time was not written by a tracker,
    /// and computing with it (a floor of the year -262143 minus a grace)
    /// overflows.
    pub(crate) fn out_of_range(&self) -> Option<String> {
        let bad = |at: &DateTime<Utc>| !(EARLIEST..=LATEST).contains(at);
        let mut found: Vec<(String, DateTime<Utc>)> = Vec::new();
        let fields = [
            ("baseline", self.baseline),
            ("created", Some(self.created)),
            ("horizon", self.horizon),
        ];
        for (name, at) in fields {
            if let Some(at) = at.filter(bad) {
                found.push((name.to_owned(), at));
            }
        }
        for (key, source) in &self.sources {
            if bad(&source.floor) {
                found.push((format!("sources[{key:?}].floor"), source.floor));
            }
            if bad(&source.advanced_at) {
                found.push((format!("sources[{key:?}].advanced_at"), source.advanced_at));
            }
        }
        for (name, map) in [("delivered", &self.delivered), ("undated", &self.undated)] {
            for (key, at) in map.iter().filter(|(_, at)| bad(at)) {
                found.push((format!("{name}[{key:?}]"), *at));
            }
        }
        found
            .into_iter()
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(field, at)| format!("{field} is {}, outside the years 0000 to 9999", show(at)))
    }

    /// Repairs what lies past `limit`, the clock (`now`) plus
    /// [`FUTURE_TOLERANCE`], so that a state written while a future date was
    /// trusted stops hiding the events that happen now: every floor and every
    /// source's `advanced_at` is held at `limit`, the horizon at `limit` minus
    /// `overlap`, and the baseline at `now` itself (it has no overlap window:
    /// an event after it must never count as before it). Ids forgotten under
    /// the old horizon may then be sent again (at least once, never lost).
    /// Returns what was held, for the warning; empty when nothing was.
    pub(crate) fn hold_at(&mut self, now: DateTime<Utc>, overlap: TimeDelta) -> Vec<String> {
        let now = in_range(now);
        let limit = future_limit(now);
        let mut held = Vec::new();
        if let Some(baseline) = self.baseline.filter(|b| *b > limit) {
            self.baseline = Some(whole_second(now));
            held.push(format!("baseline {}", show(baseline)));
        }
        let horizon_limit = minus(limit, overlap);
        if let Some(horizon) = self.horizon.filter(|h| *h > horizon_limit) {
            self.horizon = Some(horizon_limit);
            held.push(format!("horizon {}", show(horizon)));
        }
        let (mut floors, mut latest, mut advances) = (0usize, None, 0usize);
        for source in self.sources.values_mut() {
            if source.floor > limit {
                latest = latest.max(Some(source.floor));
                source.floor = limit;
                floors += 1;
            }
            if source.advanced_at > limit {
                source.advanced_at = limit;
                advances += 1;
            }
        }
        if let Some(latest) = latest {
            held.push(format!(
                "{floors} source floor(s), the latest {}",
                show(latest)
            ));
        }
        if advances > 0 {
            held.push(format!("{advances} source advance time(s)"));
        }
        held
    }
}

/// `t` without its fraction of a second. APIs such as Equinix Metal give
/// `created_at` in whole seconds, so an event created just after a baseline of
/// `12:00:05.400` is listed as `12:00:05`: the baseline's own second must count
/// as after it, or that event would never be sent.
pub(crate) fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(t, 0)
}

/// `"all"` or an RFC 3339 time.
mod baseline_repr {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_str("all"),
            Some(at) => at.serialize(s),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = String::deserialize(d)?;
        if s == "all" {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(&s)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|e| D::Error::custom(format!("baseline {s:?}: {e}")))
    }
}

/// Repairs a loaded state whose floors, horizon or baseline lie past the
/// clock plus [`FUTURE_TOLERANCE`] (see [`State::hold_at`]), with a warning
/// naming the file, what was held and where. Returns whether anything was.
pub(crate) fn hold_future(state: &mut State, options: &TrackerOptions, path: &Path) -> bool {
    let now = options.clock.now();
    let held = state.hold_at(now, delta(options.overlap));
    if held.is_empty() {
        return false;
    }
    tracing::warn!(
        path = %path.display(),
        held = %held.join("; "),
        at = %show(future_limit(now)),
        "the state file holds times past this host's clock (an event dated in the future was \
         trusted, or the clock went back); they are held at the clock plus the tolerance so that \
         new events are not skipped, and the repaired state is written at the next save"
    );
    true
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// A [`State`] with the rules that act on it.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) state: State,
    overlap: TimeDelta,
    source_expiry: TimeDelta,
    undated_retention: TimeDelta,
    pub(crate) clock: Arc<dyn Clock>,
    /// Bumped on every change worth persisting.
    pub(crate) generation: u64,
    /// Every source's `floor`, counted (a multiset): the lowest floor without
    /// a scan of every source.
    floors: Multiset,
    /// Every source's `advanced_at`, counted: the newest and the oldest
    /// advance without a scan of every source.
    advances: Multiset,
}

/// A sorted multiset of instants: instant -> how many sources hold it. Keeps
/// [`Core::prune`] O(log sources) per floor advance instead of two scans of
/// every source (a sweep advances every source, so scans made it quadratic).
#[derive(Debug, Default)]
struct Multiset(BTreeMap<DateTime<Utc>, usize>);

impl Multiset {
    fn add(&mut self, at: DateTime<Utc>) {
        *self.0.entry(at).or_insert(0) += 1;
    }

    fn remove(&mut self, at: DateTime<Utc>) {
        if let Some(count) = self.0.get_mut(&at) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&at);
            }
        }
    }

    fn replace(&mut self, old: DateTime<Utc>, new: DateTime<Utc>) {
        if old != new {
            self.remove(old);
            self.add(new);
        }
    }

    fn min(&self) -> Option<DateTime<Utc>> {
        self.0.first_key_value().map(|(at, _)| *at)
    }

    fn max(&self) -> Option<DateTime<Utc>> {
        self.0.last_key_value().map(|(at, _)| *at)
    }
}

impl Core {
    /// Wraps a new or loaded state. A load counts as a sign of life for every
    /// source: each gets a full `source_expiry` to advance again, however long
    /// the process was down.
    pub(crate) fn new(mut state: State, options: &TrackerOptions) -> Self {
        let now = in_range(options.clock.now());
        let mut floors = Multiset::default();
        let mut advances = Multiset::default();
        for source in state.sources.values_mut() {
            source.advanced_at = source.advanced_at.max(now);
            floors.add(source.floor);
            advances.add(source.advanced_at);
        }
        Self {
            state,
            overlap: delta(options.overlap),
            source_expiry: delta(options.source_expiry),
            undated_retention: delta(options.undated_retention),
            clock: options.clock.clone(),
            generation: 0,
            floors,
            advances,
        }
    }

    /// The clock, held within the years 0000 to 9999.
    fn now(&self) -> DateTime<Utc> {
        in_range(self.clock.now())
    }

    /// A change worth persisting that the rules did not make themselves (a
    /// repair at load).
    pub(crate) fn mark_changed(&mut self) {
        self.generation += 1;
    }

    fn is_delivered(&self, event_id: &str) -> bool {
        self.state.delivered.contains_key(event_id) || self.state.undated.contains_key(event_id)
    }

    /// Events of `source` created before this are settled.
    fn settled_before(&self, source: &str) -> Option<DateTime<Utc>> {
        let own = self
            .state
            .sources
            .get(source)
            .map(|s| minus(s.floor, self.overlap));
        own.max(self.state.horizon)
    }

    pub(crate) fn check(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Verdict {
        let Some(t) = created_at else {
            return if self.is_delivered(event_id) {
                Verdict::Delivered
            } else {
                Verdict::New
            };
        };
        if self.state.baseline.is_some_and(|b| t < whole_second(b)) {
            Verdict::BeforeBaseline
        } else if self.is_delivered(event_id) {
            Verdict::Delivered
        } else if self.settled_before(source).is_some_and(|s| t < s) {
            Verdict::BelowFloor
        } else {
            Verdict::New
        }
    }

    /// Returns whether the id was not recorded before. A creation time outside
    /// the years 0000 to 9999 is stored at the nearer end (it only decides
    /// when the id is forgotten).
    pub(crate) fn record(&mut self, event_id: &str, created_at: Option<DateTime<Utc>>) -> bool {
        let inserted = match created_at.map(in_range) {
            Some(t) => {
                if self.state.delivered.contains_key(event_id) {
                    false
                } else {
                    self.state.undated.remove(event_id);
                    self.state.delivered.insert(event_id.into(), t);
                    true
                }
            }
            None => {
                if self.is_delivered(event_id) {
                    false
                } else {
                    let now = self.now();
                    self.state.undated.insert(event_id.into(), now);
                    true
                }
            }
        };
        if inserted {
            self.generation += 1;
        }
        inserted
    }

    pub(crate) fn floor(&self, source: &str) -> Option<DateTime<Utc>> {
        self.state.sources.get(source).map(|s| s.floor)
    }

    /// Moves a floor, held at the clock plus [`FUTURE_TOLERANCE`]: a time
    /// from an API is data, not a clock.
    pub(crate) fn advance_floor(&mut self, source: &str, floor: DateTime<Utc>) {
        let now = self.now();
        let limit = future_limit(now);
        if floor > limit {
            tracing::debug!(source, floor = %show(floor), held = %show(limit),
                "a floor past the clock is held at the clock plus the tolerance");
        }
        let floor = floor.clamp(EARLIEST, limit);
        match self.state.sources.get_mut(source) {
            Some(s) => {
                // Only a moving floor is worth a write; `advanced_at` alone is
                // persisted with the next real change.
                let advanced_at = s.advanced_at.max(now);
                self.advances.replace(s.advanced_at, advanced_at);
                s.advanced_at = advanced_at;
                if floor > s.floor {
                    self.floors.replace(s.floor, floor);
                    s.floor = floor;
                    self.generation += 1;
                }
            }
            None => {
                self.state.sources.insert(
                    source.into(),
                    SourceState {
                        floor,
                        advanced_at: now,
                    },
                );
                self.floors.add(floor);
                self.advances.add(now);
                self.generation += 1;
            }
        }
        self.prune(now);
    }

    /// See [`Tracker::align_start`](crate::Tracker::align_start).
    pub(crate) fn align_start(&mut self, api_now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let baseline = self.state.baseline?;
        let fresh = self.state.sources.is_empty()
            && self.state.delivered.is_empty()
            && self.state.undated.is_empty()
            && baseline == whole_second(self.state.created);
        let skew = self.now() - in_range(api_now);
        if !fresh || skew.num_seconds() == 0 {
            return None;
        }
        let aligned = whole_second(minus(baseline, skew).min(LATEST));
        tracing::info!(
            host_start = %show(baseline),
            api_start = %show(aligned),
            skew_s = skew.num_seconds(),
            "the start point was taken from this host's clock, which differs from the API's; \
             it is moved onto the API's clock"
        );
        self.state.baseline = Some(aligned);
        self.generation += 1;
        Some(aligned)
    }

    pub(crate) fn forget_source(&mut self, source: &str) {
        if let Some(removed) = self.state.sources.remove(source) {
            self.floors.remove(removed.floor);
            self.advances.remove(removed.advanced_at);
            self.generation += 1;
            let now = self.now();
            self.prune(now);
        }
    }

    /// Expires stale sources, moves the horizon, forgets settled ids.
    pub(crate) fn prune(&mut self, now: DateTime<Utc>) {
        let expiry = self.source_expiry;
        // Only scan the sources when the oldest advance has expired.
        if let (Some(latest), Some(oldest)) = (self.advances.max(), self.advances.min())
            && latest.signed_duration_since(oldest) > expiry
        {
            let before = self.state.sources.len();
            let (floors, advances) = (&mut self.floors, &mut self.advances);
            self.state.sources.retain(|key, s| {
                let keep = latest.signed_duration_since(s.advanced_at) <= expiry;
                if !keep {
                    tracing::info!(source = %key, floor = %s.floor, "forgetting a source that stopped advancing");
                    floors.remove(s.floor);
                    advances.remove(s.advanced_at);
                }
                keep
            });
            if self.state.sources.len() != before {
                self.generation += 1;
            }
        }
        // Subtracting the overlap keeps the order, so the lowest floor gives
        // the lowest settled line.
        let candidate = self.floors.min().map(|floor| minus(floor, self.overlap));
        if let Some(candidate) = candidate
            && self.state.horizon.is_none_or(|h| candidate > h)
        {
            self.state.horizon = Some(candidate);
            self.generation += 1;
            let before = self.state.delivered.len();
            self.state.delivered.retain(|_, t| *t >= candidate);
            let pruned = before - self.state.delivered.len();
            if pruned > 0 {
                tracing::debug!(pruned, horizon = %candidate, "forgot settled event ids");
            }
        }
        if !self.state.undated.is_empty() {
            let keep_after = now
                .checked_sub_signed(self.undated_retention)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let before = self.state.undated.len();
            self.state
                .undated
                .retain(|_, recorded| *recorded >= keep_after);
            if self.state.undated.len() != before {
                self.generation += 1;
            }
        }
    }

    /// Counts; the store fills in what it knows about persistence.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            tracked_ids: self.state.delivered.len() + self.state.undated.len(),
            sources: self.state.sources.len(),
            unpersisted: 0,
            dirty: false,
            horizon: self.state.horizon,
            approx_memory_bytes: approx_map_bytes(&self.state.delivered)
                + approx_map_bytes(&self.state.undated)
                + approx_map_bytes(&self.state.sources),
        }
    }
}

/// Heap estimate of a `HashMap<Box<str>, V>`: the table (one entry plus one
/// control byte per bucket; buckets are about capacity × 8/7) and each key's
/// allocation rounded to a typical allocator's 16-byte size classes.
fn approx_map_bytes<V>(map: &HashMap<Box<str>, V>) -> usize {
    let buckets = if map.capacity() == 0 {
        0
    } else {
        (map.capacity() * 8 / 7).next_power_of_two()
    };
    let table = buckets * (size_of::<(Box<str>, V)>() + 1);
    let keys: usize = map
        .keys()
        .map(|k| (k.len() + 8).next_multiple_of(16).max(32))
        .sum();
    table + keys
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::clock::ManualClock;

    /// The pruning rules written as plain scans of every source: what the
    /// counted floors and advances in [`Core`] must always agree with.
    fn prune_by_scan(state: &mut State, expiry: TimeDelta, overlap: TimeDelta) {
        if let Some(latest) = state.sources.values().map(|s| s.advanced_at).max() {
            state
                .sources
                .retain(|_, s| latest.signed_duration_since(s.advanced_at) <= expiry);
        }
        let candidate = state
            .sources
            .values()
            .map(|s| minus(s.floor, overlap))
            .min();
        if let Some(candidate) = candidate
            && state.horizon.is_none_or(|h| candidate > h)
        {
            state.horizon = Some(candidate);
            state.delivered.retain(|_, t| *t >= candidate);
        }
    }

    #[test]
    fn the_range_is_the_years_0000_to_9999() {
        assert_eq!(EARLIEST, Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(
            LATEST + TimeDelta::nanoseconds(1),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(show(EARLIEST), "0000-01-01T00:00:00Z");
        assert_eq!(
            minus(EARLIEST, TimeDelta::MAX),
            EARLIEST,
            "subtraction saturates"
        );
        assert_eq!(future_limit(DateTime::<Utc>::MAX_UTC), LATEST);
    }

    #[test]
    fn the_baselines_own_second_counts_as_after_it() {
        // A start at 12:00:05.400; the API lists an event created at .700 as
        // 12:00:05. It must be new, and one of 12:00:04 before the baseline.
        let start = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 5).unwrap();
        let now = start + TimeDelta::milliseconds(400);
        let core = Core::new(State::new(Baseline::Now, now), &TrackerOptions::default());
        assert_eq!(core.state.baseline(), Baseline::At(start));
        assert_eq!(core.check("device:a", "e1", Some(start)), Verdict::New);
        let before = start - TimeDelta::seconds(1);
        assert_eq!(
            core.check("device:a", "e0", Some(before)),
            Verdict::BeforeBaseline
        );

        // A state written with a fractional baseline reads the same way.
        let mut old = State::new(Baseline::All, now);
        old.baseline = Some(now);
        let core = Core::new(old, &TrackerOptions::default());
        assert_eq!(core.check("device:a", "e1", Some(start)), Verdict::New);
    }

    #[test]
    fn a_fresh_start_point_moves_onto_the_apis_clock_once() {
        let host = Utc.with_ymd_and_hms(2024, 5, 1, 13, 0, 0).unwrap();
        let api = host - TimeDelta::hours(1); // this host runs an hour fast
        let clock = ManualClock::new(host);
        let options = TrackerOptions::default().with_clock(Arc::new(clock.clone()));
        let mut core = Core::new(State::new(Baseline::Now, host), &options);
        // An event created at the API's start would be before a start taken
        // from this host's clock.
        let first = api + TimeDelta::seconds(5);
        assert_eq!(
            core.check("device:a", "e1", Some(first)),
            Verdict::BeforeBaseline
        );
        assert_eq!(core.align_start(api), Some(api));
        assert_eq!(core.check("device:a", "e1", Some(first)), Verdict::New);
        // Once moved, it stays: a restart with the same skew does not move
        // it again, nor does a later call.
        let mut again = Core::new(core.state.clone(), &options);
        assert_eq!(again.align_start(api), None);
        assert_eq!(again.state.baseline, Some(api));
        // Equal clocks, or a state that has settled something, never move.
        let mut same = Core::new(State::new(Baseline::Now, host), &options);
        assert_eq!(same.align_start(host + TimeDelta::milliseconds(400)), None);
        let mut used = Core::new(State::new(Baseline::Now, host), &options);
        used.advance_floor("device:a", host);
        assert_eq!(used.align_start(api), None);
        // A configured start point is the user's: never moved.
        let at = host - TimeDelta::days(1);
        let mut configured = Core::new(State::new(Baseline::At(at), host), &options);
        assert_eq!(configured.align_start(api), None);
    }

    #[test]
    fn counted_pruning_matches_a_scan_of_every_source() {
        let start = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let options = TrackerOptions {
            baseline: Baseline::All,
            overlap: Duration::from_secs(60),
            source_expiry: Duration::from_secs(600),
            clock: Arc::new(clock.clone()),
            ..TrackerOptions::default()
        };
        let mut core = Core::new(State::new(Baseline::All, start), &options);
        let mut oracle = core.state.clone();
        // A small deterministic generator: the same run every time.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..5_000 {
            let source = format!("device:{}", next(40));
            match next(10) {
                0 => clock.advance(TimeDelta::seconds(next(300) as i64)),
                1 => {
                    core.forget_source(&source);
                    if oracle.sources.remove(source.as_str()).is_some() {
                        prune_by_scan(&mut oracle, core.source_expiry, core.overlap);
                    }
                }
                2 => {
                    let id = format!("e{step}");
                    let at = start + TimeDelta::seconds(next(20_000) as i64);
                    core.record(&id, Some(at));
                    oracle.delivered.entry(id.into()).or_insert(at);
                }
                _ => {
                    let floor = start + TimeDelta::seconds(next(20_000) as i64);
                    let now = clock.now();
                    core.advance_floor(&source, floor);
                    let floor = floor.min(future_limit(now));
                    let s = oracle
                        .sources
                        .entry(source.as_str().into())
                        .or_insert(SourceState {
                            floor,
                            advanced_at: now,
                        });
                    s.advanced_at = s.advanced_at.max(now);
                    s.floor = s.floor.max(floor);
                    prune_by_scan(&mut oracle, core.source_expiry, core.overlap);
                }
            }
            assert_eq!(core.state, oracle, "step {step}");
        }
        assert!(core.state.horizon.is_some());
    }
}
