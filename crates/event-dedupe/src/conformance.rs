//! The conformance suite every [`Tracker`] store must pass (feature
//! `conformance`).
//!
//! Give [`run_all`] a factory that builds a fresh, empty tracker from
//! [`TrackerOptions`] (honouring its clock, baseline and windows); each check
//! panics with a message naming the broken promise.
//!
//! ```
//! use std::sync::Arc;
//! use event_dedupe::{MemoryTracker, Tracker, TrackerOptions};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! event_dedupe::conformance::run_all(|options: TrackerOptions| async move {
//!     Arc::new(MemoryTracker::new(options)) as Arc<dyn Tracker>
//! })
//! .await;
//! # });
//! ```
//!
//! The checks use `tokio::spawn`, so run them inside a Tokio runtime.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use crate::{Baseline, EventKey, ManualClock, Tracker, TrackerOptions, Verdict};

/// Builds a fresh tracker for a check. Implemented for every
/// `Fn(TrackerOptions) -> impl Future<Output = Arc<dyn Tracker>>`.
pub trait MakeTracker {
    /// A fresh tracker with these options.
    fn make(&self, options: TrackerOptions) -> impl Future<Output = Arc<dyn Tracker>>;
}

impl<F, Fut> MakeTracker for F
where
    F: Fn(TrackerOptions) -> Fut,
    Fut: Future<Output = Arc<dyn Tracker>>,
{
    fn make(&self, options: TrackerOptions) -> impl Future<Output = Arc<dyn Tracker>> {
        self(options)
    }
}

/// The start of every check's clock: 2024-05-01T12:00:00Z.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn min(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn options(clock: &ManualClock, baseline: Baseline) -> TrackerOptions {
    TrackerOptions::new()
        .with_baseline(baseline)
        .with_clock(Arc::new(clock.clone()))
}

async fn fresh(make: &impl MakeTracker, baseline: Baseline) -> (Arc<dyn Tracker>, ManualClock) {
    let clock = ManualClock::new(t0());
    let tracker = make.make(options(&clock, baseline)).await;
    (tracker, clock)
}

async fn verdict(t: &dyn Tracker, source: &str, id: &str, at: Option<DateTime<Utc>>) -> Verdict {
    t.check(source, id, at).await.expect("check")
}

/// Runs every check.
pub async fn run_all(make: impl MakeTracker) {
    baseline_now_is_fixed_from_the_clock(&make).await;
    baseline_all_and_at(&make).await;
    new_until_recorded(&make).await;
    same_id_from_two_sources_is_one_event(&make).await;
    floor_settles_old_events_but_overlap_absorbs_late_ones(&make).await;
    floors_only_move_forward(&make).await;
    cross_source_dedupe_survives_pruning(&make).await;
    lagging_source_holds_back_pruning(&make).await;
    a_new_source_in_a_batch_holds_the_horizon_back(&make).await;
    stale_source_expires(&make).await;
    forget_source_unpins_pruning(&make).await;
    undated_events(&make).await;
    check_many_matches_check(&make).await;
    persist_leaves_nothing_pending(&make).await;
    concurrent_records_all_count(&make).await;
    bounded_over_a_simulated_week(&make).await;
    a_future_floor_is_held_at_the_clock(&make).await;
    a_future_baseline_is_held_at_the_clock(&make).await;
    a_far_future_event_is_remembered_and_hides_nothing(&make).await;
    extreme_times_never_panic(&make).await;
}

/// `Baseline::Now` is the clock's time at creation and does not move.
pub async fn baseline_now_is_fixed_from_the_clock(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    assert_eq!(
        t.baseline(),
        Baseline::At(t0()),
        "Baseline::Now resolves to the creation time"
    );
    clock.advance(TimeDelta::hours(5));
    assert_eq!(
        t.baseline(),
        Baseline::At(t0()),
        "the baseline does not follow the clock"
    );
    assert_eq!(
        verdict(&*t, "p", "old", Some(t0() - min(1))).await,
        Verdict::BeforeBaseline
    );
    assert_eq!(
        verdict(&*t, "p", "at", Some(t0())).await,
        Verdict::New,
        "an event at the baseline is new"
    );
    assert_eq!(
        verdict(&*t, "p", "later", Some(t0() + min(1))).await,
        Verdict::New
    );
}

/// `Baseline::All` skips nothing; `Baseline::At` skips what is older.
pub async fn baseline_all_and_at(make: &impl MakeTracker) {
    let (t, _) = fresh(make, Baseline::All).await;
    assert_eq!(t.baseline(), Baseline::All);
    let ancient = Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).single();
    assert_eq!(
        verdict(&*t, "p", "e", ancient).await,
        Verdict::New,
        "Baseline::All sends old events"
    );

    let at = t0() - TimeDelta::days(2);
    let (t, _) = fresh(make, Baseline::At(at)).await;
    assert_eq!(t.baseline(), Baseline::At(at));
    assert_eq!(
        verdict(&*t, "p", "a", Some(at - min(1))).await,
        Verdict::BeforeBaseline
    );
    assert_eq!(
        verdict(&*t, "p", "b", Some(at + min(1))).await,
        Verdict::New
    );
}

/// Checking does not record; recording is idempotent.
pub async fn new_until_recorded(make: &impl MakeTracker) {
    let (t, _) = fresh(make, Baseline::Now).await;
    let at = Some(t0() + min(1));
    assert_eq!(verdict(&*t, "p", "e1", at).await, Verdict::New);
    assert_eq!(
        verdict(&*t, "p", "e1", at).await,
        Verdict::New,
        "check must not record (a crash would lose it)"
    );
    assert_eq!(t.stats().tracked_ids, 0);
    t.record_delivered("p", "e1", at).await.expect("record");
    t.record_delivered("p", "e1", at)
        .await
        .expect("record again");
    assert_eq!(verdict(&*t, "p", "e1", at).await, Verdict::Delivered);
    assert_eq!(
        verdict(&*t, "p", "e2", at).await,
        Verdict::New,
        "other ids stay new"
    );
    assert_eq!(t.stats().tracked_ids, 1, "recording twice tracks one id");
}

/// Delivery is keyed by event id, not by source.
pub async fn same_id_from_two_sources_is_one_event(make: &impl MakeTracker) {
    let (t, _) = fresh(make, Baseline::Now).await;
    let at = Some(t0() + min(1));
    t.record_delivered("device:d1", "e1", at)
        .await
        .expect("record");
    assert_eq!(
        verdict(&*t, "project:p1", "e1", at).await,
        Verdict::Delivered
    );
    assert_eq!(verdict(&*t, "org:o1", "e1", at).await, Verdict::Delivered);
}

/// Below `floor - overlap` is settled; inside the overlap, ids decide.
pub async fn floor_settles_old_events_but_overlap_absorbs_late_ones(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    let floor = t0() + min(60);
    clock.set(floor);
    t.advance_floor("p", floor).await.expect("advance");
    assert_eq!(t.floor("p").await.expect("floor"), Some(floor));
    assert_eq!(
        verdict(&*t, "p", "old", Some(floor - min(11))).await,
        Verdict::BelowFloor
    );
    assert_eq!(
        verdict(&*t, "p", "late", Some(floor - min(9))).await,
        Verdict::New,
        "an event listed late inside the overlap window is still sent"
    );
    assert_eq!(
        verdict(&*t, "p", "at-floor", Some(floor)).await,
        Verdict::New
    );
    assert_eq!(t.floor("q").await.expect("floor"), None);
}

/// A lower floor never moves a floor back.
pub async fn floors_only_move_forward(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    clock.advance(min(60));
    t.advance_floor("p", t0() + min(60)).await.expect("advance");
    t.advance_floor("p", t0() + min(30))
        .await
        .expect("advance lower");
    assert_eq!(t.floor("p").await.expect("floor"), Some(t0() + min(60)));
}

/// An event delivered via one source is not new via another after its id was pruned,
/// nor via a source seen for the first time.
pub async fn cross_source_dedupe_survives_pruning(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    let at = Some(t0() + min(1));
    t.record_delivered("device:d1", "e1", at)
        .await
        .expect("record");
    clock.advance(TimeDelta::hours(2));
    t.advance_floor("device:d1", t0() + TimeDelta::hours(2))
        .await
        .expect("advance");
    t.advance_floor("project:p1", t0() + TimeDelta::hours(2))
        .await
        .expect("advance");
    assert_eq!(t.stats().tracked_ids, 0, "the settled id is forgotten");
    for source in ["device:d1", "project:p1", "device:new"] {
        let v = verdict(&*t, source, "e1", at).await;
        assert!(
            !v.is_new(),
            "pruned event delivered via device:d1 came back as {v:?} via {source}"
        );
    }
}

/// A source whose floor lags keeps ids it could still list.
pub async fn lagging_source_holds_back_pruning(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    let at = Some(t0() + min(1));
    t.advance_floor("project:p1", t0()).await.expect("advance");
    t.record_delivered("device:d1", "e1", at)
        .await
        .expect("record");
    clock.advance(TimeDelta::hours(2));
    t.advance_floor("device:d1", t0() + TimeDelta::hours(2))
        .await
        .expect("advance");
    t.advance_floor("project:p1", t0())
        .await
        .expect("alive, not advancing");
    assert_eq!(
        t.stats().tracked_ids,
        1,
        "the lagging project can still list e1"
    );
    assert_eq!(
        verdict(&*t, "project:p1", "e1", at).await,
        Verdict::Delivered
    );
    t.advance_floor("project:p1", t0() + TimeDelta::hours(2))
        .await
        .expect("advance");
    assert_eq!(t.stats().tracked_ids, 0);
    assert_eq!(
        verdict(&*t, "project:p1", "e1", at).await,
        Verdict::BelowFloor
    );
}

/// Floors advanced in one batch ([`Tracker::advance_floors`]) move lowest
/// first, whatever order they are given in: a source seen for the first time
/// with an old pending event holds the horizon back, so its pending event
/// stays new and the ids it could still list stay remembered.
pub async fn a_new_source_in_a_batch_holds_the_horizon_back(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    clock.advance(TimeDelta::hours(3));
    t.advance_floor("device:d1", t0() + TimeDelta::hours(1))
        .await
        .expect("advance");
    let e1 = Some(t0() + min(115));
    t.record_delivered("device:d1", "e1", e1)
        .await
        .expect("record");
    let pending = t0() + TimeDelta::hours(2);
    // Highest first, as a caller might list them.
    let failed = t
        .advance_floors(&[
            ("device:d1", t0() + TimeDelta::hours(3)),
            ("project:new", pending - TimeDelta::seconds(1)),
        ])
        .await;
    assert!(failed.is_empty(), "advance_floors failed: {failed:?}");
    assert_eq!(
        verdict(&*t, "project:new", "pending", Some(pending)).await,
        Verdict::New,
        "the new source's pending event must stay new"
    );
    assert_eq!(
        verdict(&*t, "project:new", "e1", e1).await,
        Verdict::Delivered,
        "an id the new source still lists must stay remembered"
    );
}

/// A source that stops advancing while others go on is forgotten after
/// `source_expiry` (default 6 hours), so it does not pin memory.
pub async fn stale_source_expires(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    t.advance_floor("device:gone", t0()).await.expect("advance");
    for i in 0..14 {
        let at = t0() + min(30 * i + 1);
        t.record_delivered("project:p1", &format!("e{i}"), Some(at))
            .await
            .expect("record");
        clock.set(at + min(1));
        t.advance_floor("project:p1", at).await.expect("advance");
    }
    // Now 7 hours in: the device was last advanced 7 hours before the project.
    let stats = t.stats();
    assert_eq!(stats.sources, 1, "the stale device is forgotten");
    assert!(
        stats.tracked_ids <= 2,
        "ids no longer pinned by the stale device: {stats:?}"
    );
}

/// `forget_source` releases a source at once.
pub async fn forget_source_unpins_pruning(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    t.advance_floor("device:gone", t0()).await.expect("advance");
    t.record_delivered("project:p1", "e1", Some(t0() + min(1)))
        .await
        .expect("record");
    clock.advance(TimeDelta::hours(1));
    t.advance_floor("project:p1", t0() + TimeDelta::hours(1))
        .await
        .expect("advance");
    assert_eq!(t.stats().tracked_ids, 1, "pinned by the device");
    t.forget_source("device:gone").await.expect("forget");
    assert_eq!(t.stats().sources, 1);
    assert_eq!(t.stats().tracked_ids, 0, "released");
}

/// Events without `created_at`: new until recorded, never before the baseline,
/// remembered for `undated_retention` (default 7 days).
pub async fn undated_events(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    assert_eq!(verdict(&*t, "p", "u1", None).await, Verdict::New);
    t.record_delivered("p", "u1", None).await.expect("record");
    assert_eq!(verdict(&*t, "p", "u1", None).await, Verdict::Delivered);
    assert_eq!(
        verdict(&*t, "q", "u1", Some(t0() + min(1))).await,
        Verdict::Delivered,
        "same id, now dated"
    );
    clock.advance(TimeDelta::days(6));
    t.advance_floor("p", clock_now(&clock))
        .await
        .expect("advance");
    assert_eq!(
        verdict(&*t, "p", "u1", None).await,
        Verdict::Delivered,
        "kept within retention"
    );
    clock.advance(TimeDelta::days(2));
    t.advance_floor("p", clock_now(&clock))
        .await
        .expect("advance");
    assert_eq!(t.stats().tracked_ids, 0, "forgotten after retention");
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    crate::Clock::now(clock)
}

/// `check_many` answers like `check`, in order.
pub async fn check_many_matches_check(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    clock.advance(min(61));
    t.advance_floor("p", t0() + min(60)).await.expect("advance");
    t.record_delivered("p", "done", Some(t0() + min(55)))
        .await
        .expect("record");
    let page = [
        EventKey {
            id: "new",
            created_at: Some(t0() + min(61)),
        },
        EventKey {
            id: "done",
            created_at: Some(t0() + min(55)),
        },
        EventKey {
            id: "settled",
            created_at: Some(t0() + min(5)),
        },
        EventKey {
            id: "ancient",
            created_at: Some(t0() - min(5)),
        },
        EventKey {
            id: "undated",
            created_at: None,
        },
    ];
    let verdicts = t.check_many("p", &page).await.expect("check_many");
    assert_eq!(
        verdicts,
        [
            Verdict::New,
            Verdict::Delivered,
            Verdict::BelowFloor,
            Verdict::BeforeBaseline,
            Verdict::New
        ]
    );
    for (e, v) in page.iter().zip(&verdicts) {
        assert_eq!(
            verdict(&*t, "p", e.id, e.created_at).await,
            *v,
            "check_many and check disagree on {}",
            e.id
        );
    }
}

/// After `persist`, nothing is pending.
pub async fn persist_leaves_nothing_pending(make: &impl MakeTracker) {
    let (t, _) = fresh(make, Baseline::Now).await;
    t.record_delivered("p", "e1", Some(t0() + min(1)))
        .await
        .expect("record");
    t.persist().await.expect("persist");
    let stats = t.stats();
    assert_eq!((stats.unpersisted, stats.dirty), (0, false), "{stats:?}");
    t.persist().await.expect("persist when clean");
}

/// Records from concurrent tasks all count.
pub async fn concurrent_records_all_count(make: &impl MakeTracker) {
    let (t, _) = fresh(make, Baseline::Now).await;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let t = t.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let at = Some(t0() + TimeDelta::seconds(i));
                    t.record_delivered("p", &format!("t{task}-e{i}"), at)
                        .await
                        .expect("record");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(t.stats().tracked_ids, 400);
}

/// A week of 100 events an hour from a device and its project (which also
/// lists the device's events), swept every 10 minutes: every event is
/// delivered exactly once, and the state stays about one overlap window big.
pub async fn bounded_over_a_simulated_week(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    let every = TimeDelta::seconds(36); // 100 per hour per source
    let week = TimeDelta::days(7);
    let created = |i: i64, offset: i64| t0() + every * (i as i32) + TimeDelta::seconds(offset);
    let per_source = week.num_seconds() / every.num_seconds();
    let mut deliveries: HashMap<String, u32> = HashMap::new();
    let mut max_tracked = 0;
    let mut sweeps = 0;
    let mut now = t0();
    while now <= t0() + week {
        now += min(10);
        clock.set(now);
        sweeps += 1;
        // Newest pages, newest first: 50 of the device's, 100 of the project's own and the device's.
        let listed = |offset: i64, prefix: &str| -> Vec<(String, DateTime<Utc>)> {
            (1..=per_source)
                .rev()
                .map(|i| (format!("{prefix}{i}"), created(i, offset)))
                .filter(|(_, at)| *at <= now)
                .take(50)
                .collect()
        };
        let device = listed(18, "dev-");
        let mut project = listed(0, "prj-");
        project.extend(device.iter().cloned());
        project.sort_by_key(|e| std::cmp::Reverse(e.1));
        for (source, page) in [("device:d1", &device), ("project:p1", &project)] {
            let keys: Vec<_> = page
                .iter()
                .map(|(id, at)| EventKey {
                    id,
                    created_at: Some(*at),
                })
                .collect();
            let verdicts = t.check_many(source, &keys).await.expect("check_many");
            for ((id, at), v) in page.iter().zip(verdicts).rev() {
                if v.is_new() {
                    *deliveries.entry(id.clone()).or_default() += 1;
                    t.record_delivered(source, id, Some(*at))
                        .await
                        .expect("record");
                }
            }
            if let Some((_, newest)) = page.first() {
                t.advance_floor(source, *newest).await.expect("advance");
            }
        }
        if sweeps % 6 == 0 {
            t.persist().await.expect("persist");
        }
        max_tracked = max_tracked.max(t.stats().tracked_ids);
    }
    let resent: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        resent.is_empty(),
        "events delivered more than once: {:?}",
        &resent[..resent.len().min(5)]
    );
    assert_eq!(
        deliveries.len() as i64,
        2 * per_source,
        "every event is delivered"
    );
    // 10 minutes overlap + 10 minutes between sweeps, 200 events an hour: about 67.
    assert!(
        max_tracked <= 100,
        "tracked ids grew to {max_tracked} (expected about one overlap window)"
    );
    assert!(
        t.stats().tracked_ids >= 10,
        "the overlap window is still tracked"
    );
}

/// How far past the clock a floor, the horizon or the baseline may go.
fn tolerance() -> TimeDelta {
    TimeDelta::from_std(crate::FUTURE_TOLERANCE).unwrap_or_default()
}

/// A floor in the future (an event dated ahead by a skewed or broken API) is
/// held at the clock plus the tolerance, so events that happen after it are
/// still new.
pub async fn a_future_floor_is_held_at_the_clock(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    t.advance_floor("p", t0() + TimeDelta::hours(1))
        .await
        .expect("advance");
    assert_eq!(
        t.floor("p").await.expect("floor"),
        Some(t0() + tolerance()),
        "a floor an hour ahead is held at the clock plus the tolerance"
    );
    t.advance_floor("p", DateTime::<Utc>::MAX_UTC)
        .await
        .expect("advance to the end of time");
    assert_eq!(t.floor("p").await.expect("floor"), Some(t0() + tolerance()));
    clock.advance(min(20));
    assert_eq!(
        verdict(&*t, "p", "later", Some(t0() + min(20))).await,
        Verdict::New,
        "an event after the future floor's arrival is new"
    );
    assert_eq!(
        verdict(&*t, "other", "later", Some(t0() + min(20))).await,
        Verdict::New,
        "the horizon does not hide it from another source either"
    );
    let horizon = t.stats().horizon.expect("a horizon");
    assert!(
        horizon <= t0() + tolerance(),
        "the horizon {horizon} went past the clock"
    );
}

/// A configured start point in the future is held at the clock: nothing
/// that happens after the start is skipped.
pub async fn a_future_baseline_is_held_at_the_clock(make: &impl MakeTracker) {
    let clock = ManualClock::new(t0());
    let t = make
        .make(options(&clock, Baseline::At(t0() + TimeDelta::days(365))))
        .await;
    assert_eq!(t.baseline(), Baseline::At(t0()));
    assert_eq!(
        verdict(&*t, "p", "now", Some(t0())).await,
        Verdict::New,
        "an event of the start's own second is sent"
    );
    let far = make
        .make(options(&clock, Baseline::At(DateTime::<Utc>::MAX_UTC)))
        .await;
    assert_eq!(far.baseline(), Baseline::At(t0()));
}

/// An event dated far in the future is delivered once and remembered, and
/// events dated now, listed beside it later, are still new.
pub async fn a_far_future_event_is_remembered_and_hides_nothing(make: &impl MakeTracker) {
    let (t, clock) = fresh(make, Baseline::Now).await;
    let end = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single();
    assert_eq!(verdict(&*t, "p", "future", end).await, Verdict::New);
    t.record_delivered("p", "future", end)
        .await
        .expect("record");
    t.advance_floor("p", end.unwrap_or_default())
        .await
        .expect("advance");
    for step in 1..=3 {
        clock.advance(TimeDelta::hours(1));
        let now = clock_now(&clock);
        assert_eq!(
            verdict(&*t, "p", &format!("now-{step}"), Some(now)).await,
            Verdict::New,
            "an event of now, {step} hours after the future one"
        );
        t.advance_floor("p", now).await.expect("advance");
        assert_eq!(
            verdict(&*t, "p", "future", end).await,
            Verdict::Delivered,
            "the future event is still known, so it is not sent again"
        );
    }
    t.persist().await.expect("persist");
}

/// Times at chrono's limits, in checks, records and floors, never panic.
pub async fn extreme_times_never_panic(make: &impl MakeTracker) {
    let (t, _) = fresh(make, Baseline::All).await;
    for (i, at) in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC]
        .into_iter()
        .enumerate()
    {
        let id = format!("extreme-{i}");
        verdict(&*t, "p", &id, Some(at)).await;
        t.record_delivered("p", &id, Some(at))
            .await
            .expect("record");
        t.advance_floor("p", at).await.expect("advance");
        t.advance_floor(&format!("s{i}"), at)
            .await
            .expect("advance a new source");
        verdict(&*t, "p", "after", Some(at)).await;
    }
    assert_eq!(
        verdict(&*t, "p", "extreme-1", Some(DateTime::<Utc>::MAX_UTC)).await,
        Verdict::Delivered
    );
    t.persist().await.expect("persist");
    let _ = t.stats();
}
