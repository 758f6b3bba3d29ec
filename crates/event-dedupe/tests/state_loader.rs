//! Property test of the state loader: whatever a state file holds (times
//! across chrono's whole range, wrong shapes, random bytes), opening it either
//! loads a state every operation can work with, or refuses the file as
//! corrupt. Never a panic.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use event_dedupe::{
    EventKey, FileOptions, FileTracker, ManualClock, MemoryTracker, Tracker, TrackerOptions,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn year(y: i32) -> i64 {
    Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap().timestamp()
}

/// Seconds to an instant with any fraction.
fn with_nanos(secs: impl Strategy<Value = i64> + 'static) -> BoxedStrategy<DateTime<Utc>> {
    (secs, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| {
            DateTime::from_timestamp(secs, nanos).unwrap_or(DateTime::<Utc>::MIN_UTC)
        })
        .boxed()
}

/// An instant of the years 0000 to 9999, biased towards their edges and
/// towards now.
fn usual_instant() -> BoxedStrategy<DateTime<Utc>> {
    let now = t0().timestamp();
    with_nanos(prop_oneof![
        2 => year(0)..year(10000),
        1 => year(0)..year(0) + 86_400,
        1 => year(10000) - 86_400..year(10000),
        6 => now - 86_400 * 400..now + 86_400 * 400,
    ])
}

/// Any instant chrono can hold, its edges included.
fn any_instant() -> BoxedStrategy<DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    prop_oneof![
        3 => with_nanos(min..=max),
        2 => with_nanos(year(-1)..year(1)),
        2 => with_nanos(year(9999)..year(10001)),
        1 => Just(DateTime::<Utc>::MIN_UTC),
        1 => Just(DateTime::<Utc>::MAX_UTC),
    ]
    .boxed()
}

/// Any instant, mostly a usual one.
fn instant() -> BoxedStrategy<DateTime<Utc>> {
    prop_oneof![4 => usual_instant(), 1 => any_instant()].boxed()
}

/// A time as a state file may hold it: mostly a usual instant in UTC, as a
/// tracker writes it; now and then any instant, any offset, or no time at
/// all (each field is spoiled rarely, so that about half the documents load).
fn time_value() -> BoxedStrategy<Value> {
    let utc = |at: DateTime<Utc>| Value::from(at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    prop_oneof![
        60 => usual_instant().prop_map(utc),
        2 => any_instant().prop_map(utc),
        3 => (instant(), -86_399i32..86_400).prop_map(move |(at, offset)| {
            FixedOffset::east_opt(offset)
                .map_or_else(|| utc(at), |offset| Value::from(at.with_timezone(&offset).to_rfc3339()))
        }),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
        1 => ".{0,24}".prop_map(Value::from),
    ]
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof!["device:[a-c]", "project:[a-c]", "e[0-9]{1,2}", ".{0,6}"]
}

/// A state document: the real keys with values of the right or wrong shape,
/// a key sometimes missing.
fn document() -> BoxedStrategy<Value> {
    let source = prop_oneof![
        20 => (time_value(), time_value())
            .prop_map(|(floor, advanced_at)| json!({ "floor": floor, "advanced_at": advanced_at })),
        1 => time_value(),
    ];
    let version = prop_oneof![20 => Just(json!(1)), 1 => Just(json!(2)), 1 => Just(json!("1"))];
    let baseline = prop_oneof![1 => Just(json!("all")), 4 => time_value()];
    (
        version,
        baseline,
        time_value(),
        prop_oneof![Just(Value::Null), time_value()],
        prop::collection::hash_map(key(), source, 0..4),
        prop::collection::hash_map(key(), time_value(), 0..4),
        prop::collection::hash_map(key(), time_value(), 0..3),
        prop::option::weighted(0.1, 0usize..7),
    )
        .prop_map(
            |(version, baseline, created, horizon, sources, delivered, undated, drop)| {
                let mut doc = Map::new();
                doc.insert("version".into(), version);
                doc.insert("baseline".into(), baseline);
                doc.insert("created".into(), created);
                doc.insert("horizon".into(), horizon);
                doc.insert("sources".into(), json!(sources));
                doc.insert("delivered".into(), json!(delivered));
                doc.insert("undated".into(), json!(undated));
                if let Some(i) = drop {
                    let name = doc.keys().nth(i).cloned().unwrap_or_default();
                    doc.remove(&name);
                }
                Value::Object(doc)
            },
        )
        .boxed()
}

/// The bytes of a state file: mostly documents, sometimes garbage.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => document().prop_map(|doc| doc.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => document().prop_map(|doc| {
            let mut bytes = doc.to_string().into_bytes();
            bytes.truncate(bytes.len() / 2);
            bytes
        }),
    ]
}

/// What a sweep does with a loaded state, at times of any range.
#[derive(Debug, Clone)]
enum Op {
    Check(String, Option<DateTime<Utc>>),
    Record(String, Option<DateTime<Utc>>),
    Advance(String, DateTime<Utc>),
    Forget(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (key(), prop::option::of(instant())).prop_map(|(k, at)| Op::Check(k, at)),
        (key(), prop::option::of(instant())).prop_map(|(k, at)| Op::Record(k, at)),
        (key(), instant()).prop_map(|(k, at)| Op::Advance(k, at)),
        key().prop_map(Op::Forget),
    ]
}

fn options(clock: &ManualClock) -> FileOptions {
    FileOptions::new(TrackerOptions::new().with_clock(Arc::new(clock.clone())))
}

/// The earliest and latest instants a loaded state may hold.
fn in_range(at: DateTime<Utc>) -> bool {
    let first = Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap();
    let last = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
    (first..last).contains(&at)
}

async fn open_and_use(bytes: Vec<u8>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("state.json");
    std::fs::write(&path, &bytes).expect("write the state");
    let clock = ManualClock::new(t0());
    // The read-only load (the dry run's) decides as the file store does.
    let preview = MemoryTracker::from_state_file(&path, options(&clock).tracker).await;
    let tracker = match FileTracker::open(&path, options(&clock)).await {
        Ok(tracker) => tracker,
        Err(error) => {
            prop_assert!(error.is_corrupt(), "refused but not as corrupt: {error:?}");
            let preview = preview.expect_err("the read-only load refuses it too");
            prop_assert_eq!(preview.to_string(), error.to_string());
            return Ok(());
        }
    };
    prop_assert!(
        preview.is_ok(),
        "the read-only load refused it: {preview:?}"
    );
    // What was loaded is something the receiver can compute with.
    if let event_dedupe::Baseline::At(at) = tracker.baseline() {
        prop_assert!(in_range(at), "baseline {at}");
    }
    if let Some(horizon) = tracker.stats().horizon {
        prop_assert!(in_range(horizon), "horizon {horizon}");
    }
    for source in ["device:a", "device:b", "device:c", "project:a"] {
        if let Some(floor) = tracker.floor(source).await.expect("floor") {
            prop_assert!(in_range(floor), "floor {floor} of {source}");
        }
    }
    for op in &ops {
        match op {
            Op::Check(id, at) => {
                tracker.check("device:a", id, *at).await.expect("check");
                let keys = [EventKey {
                    id,
                    created_at: *at,
                }];
                tracker
                    .check_many("project:a", &keys)
                    .await
                    .expect("check_many");
            }
            Op::Record(id, at) => tracker
                .record_delivered("device:a", id, *at)
                .await
                .expect("record"),
            Op::Advance(source, at) => tracker.advance_floor(source, *at).await.expect("advance"),
            Op::Forget(source) => tracker.forget_source(source).await.expect("forget"),
        }
    }
    tracker.persist().await.expect("persist");
    let _ = tracker.stats();
    drop(tracker);
    // What the tracker wrote, it reads back.
    FileTracker::open(&path, options(&clock))
        .await
        .map_err(|error| {
            TestCaseError::fail(format!("the written state does not load: {error}"))
        })?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_state_file_loads_or_is_refused_as_corrupt(
        bytes in contents(),
        ops in prop::collection::vec(op(), 0..8),
    ) {
        runtime().block_on(open_and_use(bytes, ops))?;
    }
}
