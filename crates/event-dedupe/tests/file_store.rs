//! What the file store promises across restarts, crashes and bad files.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use event_dedupe::{
    Baseline, Error, FileOptions, FileTracker, ManualClock, MemoryTracker, ReadOnly, Tracker,
    TrackerOptions, Verdict,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn options(clock: &ManualClock, baseline: Baseline) -> FileOptions {
    FileOptions::new(
        TrackerOptions::new()
            .with_baseline(baseline)
            .with_clock(Arc::new(clock.clone())),
    )
}

async fn open(path: &Path, clock: &ManualClock) -> FileTracker {
    FileTracker::open(path, options(clock, Baseline::Now))
        .await
        .expect("open")
}

fn state_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    (dir, path)
}

async fn open_err(path: &Path, opts: FileOptions) -> Error {
    FileTracker::open(path, opts)
        .await
        .expect_err("open must fail")
}

#[tokio::test]
async fn restart_keeps_baseline_floors_and_delivered_ids() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let at = t0() + TimeDelta::minutes(5);
    {
        let t = open(&path, &clock).await;
        clock.set(at);
        t.record_delivered("device:d1", "e1", Some(at))
            .await
            .unwrap();
        t.record_delivered("device:d1", "u1", None).await.unwrap();
        t.advance_floor("device:d1", at).await.unwrap();
        t.persist().await.unwrap();
    }
    // Three days later, configured with "now" again.
    clock.advance(TimeDelta::days(3));
    let t = open(&path, &clock).await;
    assert_eq!(
        t.baseline(),
        Baseline::At(t0()),
        "the first start stays the baseline"
    );
    assert_eq!(t.floor("device:d1").await.unwrap(), Some(at));
    assert_eq!(
        t.check("project:p1", "e1", Some(at)).await.unwrap(),
        Verdict::Delivered
    );
    assert_eq!(
        t.check("project:p1", "u1", None).await.unwrap(),
        Verdict::Delivered
    );
    assert_eq!(
        t.check("device:d1", "while-down", Some(t0() + TimeDelta::days(1)))
            .await
            .unwrap(),
        Verdict::New,
        "events from while the receiver was down are sent"
    );
    let stats = t.stats();
    assert_eq!(
        (stats.tracked_ids, stats.sources, stats.dirty),
        (2, 1, false),
        "{stats:?}"
    );
}

#[tokio::test]
async fn configured_start_point_does_not_replace_the_stored_one() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    drop(open(&path, &clock).await);
    for configured in [Baseline::All, Baseline::At(t0() - TimeDelta::days(30))] {
        let t = FileTracker::open(&path, options(&clock, configured))
            .await
            .unwrap();
        assert_eq!(
            t.baseline(),
            Baseline::At(t0()),
            "configured {configured} must not change a stored baseline"
        );
    }
}

#[tokio::test]
async fn a_new_state_is_written_at_once_so_a_crash_keeps_the_baseline() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    drop(open(&path, &clock).await); // no persist: a crash right after start
    clock.advance(TimeDelta::hours(1));
    assert_eq!(open(&path, &clock).await.baseline(), Baseline::At(t0()));
}

#[tokio::test]
async fn the_file_is_versioned_json() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let t = FileTracker::open(&path, options(&clock, Baseline::All))
        .await
        .unwrap();
    t.record_delivered("p", "e1", Some(t0())).await.unwrap();
    t.advance_floor("p", t0()).await.unwrap();
    t.persist().await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["baseline"], "all");
    assert_eq!(json["delivered"]["e1"], "2024-05-01T12:00:00Z");
    assert_eq!(json["sources"]["p"]["floor"], "2024-05-01T12:00:00Z");
}

#[tokio::test]
async fn a_crash_resends_at_most_max_unpersisted_events() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let at = |i: i64| Some(t0() + TimeDelta::seconds(i));
    {
        let opts = options(&clock, Baseline::Now).with_max_unpersisted(10);
        let t = FileTracker::open(&path, opts).await.unwrap();
        for i in 0..25 {
            t.record_delivered("p", &format!("e{i}"), at(i))
                .await
                .unwrap();
        }
        assert_eq!(t.stats().unpersisted, 5);
        // Crash: dropped without persist.
    }
    let t = open(&path, &clock).await;
    let mut resend = Vec::new();
    for i in 0..25 {
        if t.check("p", &format!("e{i}"), at(i))
            .await
            .unwrap()
            .is_new()
        {
            resend.push(i);
        }
    }
    assert_eq!(
        resend,
        [20, 21, 22, 23, 24],
        "only the records after the last automatic write are lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_records_keep_the_bound_on_what_a_crash_resends() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let at = |i: i64| Some(t0() + TimeDelta::seconds(i));
    {
        let opts = options(&clock, Baseline::Now).with_max_unpersisted(10);
        let t = Arc::new(FileTracker::open(&path, opts).await.unwrap());
        // Eight lanes record at once, as the receiver's deliveries do: a
        // record that waited for another lane's write returns only once no
        // more than the bound is unwritten.
        let mut lanes = tokio::task::JoinSet::new();
        for lane in 0..8i64 {
            let t = Arc::clone(&t);
            lanes.spawn(async move {
                for i in 0..25 {
                    let n = lane * 100 + i;
                    t.record_delivered("p", &format!("e{n}"), at(n))
                        .await
                        .unwrap();
                    assert!(t.stats().unpersisted <= 10 + 8, "{:?}", t.stats());
                }
            });
        }
        while let Some(done) = lanes.join_next().await {
            done.unwrap();
        }
        assert!(t.stats().unpersisted < 10, "{:?}", t.stats());
        // Crash: dropped without persist.
    }
    let t = open(&path, &clock).await;
    let mut resend = 0;
    for lane in 0..8i64 {
        for i in 0..25 {
            let n = lane * 100 + i;
            resend += usize::from(
                t.check("p", &format!("e{n}"), at(n))
                    .await
                    .unwrap()
                    .is_new(),
            );
        }
    }
    assert!(resend < 10, "{resend} of 200 would be sent again");
}

#[tokio::test]
async fn a_torn_temp_file_is_ignored_and_removed() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    {
        let t = open(&path, &clock).await;
        t.record_delivered("p", "e1", Some(t0())).await.unwrap();
        t.persist().await.unwrap();
    }
    let tmp = path.with_file_name("state.json.tmp");
    fs::write(&tmp, b"{\"version\": 1, \"baseline\": \"20").unwrap(); // killed mid-write
    let t = open(&path, &clock).await;
    assert_eq!(
        t.check("p", "e1", Some(t0())).await.unwrap(),
        Verdict::Delivered
    );
    assert!(!tmp.exists(), "the leftover temp file is removed");
}

#[tokio::test]
async fn a_corrupt_file_stops_start_up_naming_the_path_and_the_way_out() {
    let cases: [(&str, &[u8]); 6] = [
        ("bad JSON", b"{\"version\": 1, \"baseline\":"),
        ("empty", b""),
        ("not UTF-8", b"{\"version\": 1, \xff\xfe}"),
        ("no version", b"{\"baseline\": \"all\"}"),
        ("wrong shape", b"{\"version\": 1, \"baseline\": 7}"),
        ("future version", b"{\"version\": 99}"),
    ];
    for (case, contents) in cases {
        let (_dir, path) = state_path();
        fs::write(&path, contents).unwrap();
        let clock = ManualClock::new(t0());
        let err = open_err(&path, options(&clock, Baseline::Now)).await;
        let msg = err.to_string();
        assert!(err.is_corrupt(), "{case}: {err:?}");
        assert_eq!(err.path(), Some(path.as_path()), "{case}");
        assert!(
            msg.contains(&path.display().to_string()),
            "{case}: message names the path: {msg}"
        );
        assert!(
            msg.contains("move the file aside") || msg.contains("move it aside"),
            "{case}: way out: {msg}"
        );
        assert!(
            msg.contains("reset-corrupt"),
            "{case}: names the option: {msg}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            contents,
            "{case}: the file is left untouched"
        );
    }
}

#[tokio::test]
async fn a_directory_at_the_path_is_refused() {
    let (_dir, path) = state_path();
    fs::create_dir(&path).unwrap();
    let clock = ManualClock::new(t0());
    let opts = options(&clock, Baseline::Now).with_reset_corrupt(true);
    let err = open_err(&path, opts).await;
    assert!(matches!(err, Error::NotAFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(path.is_dir(), "never removed");
}

#[tokio::test]
async fn reset_corrupt_moves_the_file_aside_and_starts_fresh() {
    let (dir, path) = state_path();
    fs::write(&path, b"garbage").unwrap();
    let clock = ManualClock::new(t0());
    let opts = options(&clock, Baseline::Now).with_reset_corrupt(true);
    let t = FileTracker::open(&path, opts)
        .await
        .expect("reset_corrupt opens");
    assert_eq!(
        t.baseline(),
        Baseline::At(t0()),
        "a fresh state with a new baseline"
    );
    assert_eq!(t.stats().tracked_ids, 0);
    let aside: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside, ["state.json.corrupt-20240501T120000Z"]);
    assert_eq!(
        fs::read(dir.path().join(&aside[0])).unwrap(),
        b"garbage",
        "the bad file is kept"
    );
}

#[tokio::test]
async fn a_second_opener_is_refused_while_the_first_holds_the_lock() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let first = open(&path, &clock).await;
    let err = open_err(&path, options(&clock, Baseline::Now)).await;
    assert!(err.is_locked(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "names the holder: {msg}"
    );
    drop(first);
    open(&path, &clock).await; // released on drop
}

#[tokio::test]
async fn a_parent_that_is_a_file_fails_open_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let path = blocker.join("state.json");
    let err = open_err(&path, options(&ManualClock::new(t0()), Baseline::Now)).await;
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn persist_to_a_vanished_directory_fails_clearly_and_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("data");
    let path = sub.join("state.json");
    let clock = ManualClock::new(t0());
    let t = open(&path, &clock).await;
    t.record_delivered("p", "e1", Some(t0())).await.unwrap();
    // The directory is replaced by a regular file (root ignores mode bits, this bites anyway).
    fs::rename(&sub, dir.path().join("moved")).unwrap();
    fs::write(&sub, b"").unwrap();
    let err = t.persist().await.expect_err("persist must fail");
    assert!(err.is_write(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("temporary file"),
        "{msg}"
    );
    assert!(
        t.stats().dirty,
        "still dirty, so the next persist tries again"
    );
    assert_eq!(
        t.check("p", "e1", Some(t0())).await.unwrap(),
        Verdict::Delivered,
        "memory intact"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn persist_to_a_read_only_directory_fails_clearly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let clock = ManualClock::new(t0());
    let t = open(&path, &clock).await;
    t.record_delivered("p", "e1", Some(t0())).await.unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.path().join("probe");
    let bites = fs::write(&probe, b"").is_err();
    let result = t.persist().await;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    if !bites {
        // Running as root: mode bits are ignored; the vanished-directory test covers this.
        return;
    }
    let err = result.expect_err("persist must fail");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn pruned_ids_stay_settled_for_every_source_after_restart() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let at = Some(t0() + TimeDelta::minutes(1));
    {
        let t = open(&path, &clock).await;
        t.record_delivered("device:d1", "e1", at).await.unwrap();
        clock.advance(TimeDelta::hours(2));
        t.advance_floor("device:d1", t0() + TimeDelta::hours(2))
            .await
            .unwrap();
        t.advance_floor("project:p1", t0() + TimeDelta::hours(2))
            .await
            .unwrap();
        assert_eq!(t.stats().tracked_ids, 0);
        t.persist().await.unwrap();
    }
    let t = open(&path, &clock).await;
    for source in ["device:d1", "project:p1", "device:new"] {
        assert_eq!(
            t.check(source, "e1", at).await.unwrap(),
            Verdict::BelowFloor,
            "{source}"
        );
    }
}

#[tokio::test]
async fn error_messages_read_well() {
    let (_dir, path) = state_path();
    fs::write(&path, b"{oops").unwrap();
    let err = open_err(&path, options(&ManualClock::new(t0()), Baseline::Now)).await;
    let msg = err
        .to_string()
        .replace(&path.display().to_string(), "<path>");
    assert_eq!(
        msg,
        "state file <path> is corrupt (not a JSON object: key must be a string at line 1 column 2); move it \
         aside to start fresh, or open with the reset-corrupt option, which renames it aside for you (a fresh \
         state starts again from the configured start point)"
    );
}

#[tokio::test]
async fn downtime_does_not_expire_sources() {
    let (_dir, path) = state_path();
    let clock = ManualClock::new(t0());
    {
        let t = open(&path, &clock).await;
        t.advance_floor("device:quiet", t0()).await.unwrap();
        t.advance_floor("project:p1", t0()).await.unwrap();
        t.persist().await.unwrap();
    }
    // Down for two days; on return the project is swept before the device.
    clock.advance(TimeDelta::days(2));
    let t = open(&path, &clock).await;
    t.advance_floor("project:p1", t0() + TimeDelta::days(2))
        .await
        .unwrap();
    assert_eq!(
        t.stats().sources,
        2,
        "the device is not expired by the downtime"
    );
    let during = Some(t0() + TimeDelta::days(1));
    assert_eq!(
        t.check("device:quiet", "while-down", during).await.unwrap(),
        Verdict::New,
        "the device's events from the downtime are still sent"
    );
}

/// A state as a file holds it, with every time given.
fn state_json(baseline: &str, horizon: &str, floor: &str, advanced_at: &str) -> String {
    serde_json::json!({
        "version": 1,
        "baseline": baseline,
        "created": "2024-05-01T12:00:00Z",
        "horizon": horizon,
        "sources": { "device:x": { "floor": floor, "advanced_at": advanced_at } },
        "delivered": { "future-event": "9999-12-31T23:59:59Z" },
        "undated": {}
    })
    .to_string()
}

#[tokio::test]
async fn a_future_floor_horizon_and_baseline_are_clamped_at_load_and_written_back() {
    let (_dir, path) = state_path();
    let end = "9999-12-31T23:59:59Z";
    fs::write(&path, state_json(end, end, end, end)).unwrap();
    let clock = ManualClock::new(t0());
    let held = t0() + TimeDelta::seconds(60);
    {
        let t = open(&path, &clock).await;
        assert_eq!(
            t.baseline(),
            Baseline::At(t0()),
            "the baseline is held at now"
        );
        assert_eq!(t.floor("device:x").await.unwrap(), Some(held));
        assert_eq!(
            t.check("device:x", "now", Some(t0())).await.unwrap(),
            Verdict::New,
            "an event of now is no longer hidden"
        );
        assert_eq!(
            t.check("project:p", "future-event", Some(t0()))
                .await
                .unwrap(),
            Verdict::Delivered,
            "delivered ids are kept"
        );
        assert!(
            t.stats().horizon.is_some_and(|h| h <= held),
            "{:?}",
            t.stats()
        );
        assert!(t.stats().dirty, "the repair is written at the next persist");
        t.persist().await.unwrap();
    }
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["baseline"], "2024-05-01T12:00:00Z");
    assert_eq!(json["sources"]["device:x"]["floor"], "2024-05-01T12:01:00Z");
    assert_eq!(json["delivered"]["future-event"], end);
}

#[tokio::test]
async fn out_of_range_times_make_the_file_corrupt_naming_the_field() {
    let ok = "2024-05-01T12:00:00Z";
    let cases = [
        (
            state_json(ok, ok, "-262143-01-01T00:00:00Z", ok),
            "sources[\"device:x\"].floor is -262143-01-01T00:00:00Z",
        ),
        (
            state_json(ok, "+262142-12-31T23:59:59Z", ok, ok),
            "horizon is +262142-12-31T23:59:59Z",
        ),
        (
            state_json(ok, ok, ok, "-0001-12-31T23:59:59Z"),
            "sources[\"device:x\"].advanced_at is -0001-12-31T23:59:59Z",
        ),
        (
            state_json(ok, ok, ok, ok).replace("9999-12-31T23:59:59Z", "+10000-01-01T00:00:00Z"),
            "delivered[\"future-event\"] is +10000-01-01T00:00:00Z",
        ),
    ];
    for (contents, reason) in cases {
        let (_dir, path) = state_path();
        fs::write(&path, &contents).unwrap();
        let err = open_err(&path, options(&ManualClock::new(t0()), Baseline::Now)).await;
        assert!(matches!(err, Error::Corrupt { .. }), "{reason}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(reason), "{msg}");
        assert!(msg.contains("outside"), "{msg}");
        assert_eq!(fs::read_to_string(&path).unwrap(), contents, "untouched");

        // The way out works: reset_corrupt sets it aside and starts fresh.
        let opts = options(&ManualClock::new(t0()), Baseline::Now).with_reset_corrupt(true);
        let t = FileTracker::open(&path, opts).await.expect("reset_corrupt");
        assert_eq!(t.baseline(), Baseline::At(t0()));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let (dir, path) = state_path();
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, b"precious").unwrap();
    let lock = path.with_file_name("state.json.lock");
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let err = open_err(&path, options(&ManualClock::new(t0()), Baseline::Now)).await;
    assert!(matches!(err, Error::Lock { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&lock.display().to_string()) && msg.contains("symbolic link"),
        "{msg}"
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious",
        "the victim is untouched"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_temp_file_planted_as_a_symlink_is_never_written_through() {
    let (dir, path) = state_path();
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, b"precious").unwrap();
    let tmp = path.with_file_name("state.json.tmp");
    let clock = ManualClock::new(t0());

    // Planted before the start: removed (the link, not its target).
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    let t = open(&path, &clock).await;
    assert!(
        fs::symlink_metadata(&tmp).is_err(),
        "the planted link is removed"
    );
    // Planted while running: the next write does not go through it either.
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    t.record_delivered("p", "e1", Some(t0())).await.unwrap();
    t.persist().await.unwrap();
    drop(t);

    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious",
        "the victim is untouched"
    );
    assert!(
        !fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the state file is a regular file"
    );
    let t = open(&path, &clock).await;
    assert_eq!(
        t.check("p", "e1", Some(t0())).await.unwrap(),
        Verdict::Delivered
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_alias_of_the_state_file_is_locked_out() {
    let (dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let first = open(&path, &clock).await;
    let alias = dir.path().join("alias.json");
    std::os::unix::fs::symlink(&path, &alias).unwrap();
    let err = open_err(&alias, options(&clock, Baseline::Now)).await;
    assert!(err.is_locked(), "{err:?}");
    // So is a path through a symlinked directory.
    let dir_alias = dir.path().join("dir-alias");
    std::os::unix::fs::symlink(dir.path(), &dir_alias).unwrap();
    let err = open_err(
        &dir_alias.join("state.json"),
        options(&clock, Baseline::Now),
    )
    .await;
    assert!(err.is_locked(), "{err:?}");
    drop(first);
    // Once released, the alias opens the same state.
    let t = open(&alias, &clock).await;
    assert_eq!(t.baseline(), Baseline::At(t0()));
}

#[cfg(unix)]
#[tokio::test]
async fn a_hard_linked_alias_of_the_state_file_is_locked_out() {
    let (dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let first = open(&path, &clock).await;
    let alias = dir.path().join("alias.json");
    fs::hard_link(&path, &alias).unwrap();
    let err = open_err(&alias, options(&clock, Baseline::Now)).await;
    assert!(err.is_locked(), "{err:?}");

    // After a write the state file is a new file: a link made now is locked
    // out as well.
    first.record_delivered("p", "e1", Some(t0())).await.unwrap();
    first.persist().await.unwrap();
    let alias2 = dir.path().join("alias2.json");
    fs::hard_link(&path, &alias2).unwrap();
    let err = open_err(&alias2, options(&clock, Baseline::Now)).await;
    assert!(err.is_locked(), "{err:?}");
}

/// Every name in the directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_read_only_load_previews_the_state_beside_its_owner_and_writes_nothing() {
    let (dir, path) = state_path();
    let clock = ManualClock::new(t0());
    let owner = open(&path, &clock).await;
    owner
        .record_delivered("device:d1", "e1", Some(t0()))
        .await
        .unwrap();
    owner.persist().await.unwrap();
    let (bytes, names) = (fs::read(&path).unwrap(), listing(dir.path()));

    let topts = options(&clock, Baseline::All).tracker;
    let preview = ReadOnly::new(MemoryTracker::from_state_file(&path, topts).await.unwrap());
    assert_eq!(
        preview.baseline(),
        Baseline::At(t0()),
        "the stored baseline"
    );
    assert_eq!(
        preview.check("project:p1", "e1", Some(t0())).await.unwrap(),
        Verdict::Delivered
    );
    preview
        .record_delivered("device:d1", "e2", Some(t0()))
        .await
        .unwrap();
    preview.advance_floor("device:d1", t0()).await.unwrap();
    preview.persist().await.unwrap();
    assert_eq!(
        preview.check("device:d1", "e2", Some(t0())).await.unwrap(),
        Verdict::Delivered,
        "the preview remembers in memory"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "the file is unchanged");
    assert_eq!(listing(dir.path()), names, "nothing was created");
    drop(owner);
}

#[tokio::test]
async fn a_read_only_load_of_nothing_is_fresh_and_of_garbage_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("state.json");
    let clock = ManualClock::new(t0());
    let t = MemoryTracker::from_state_file(&path, options(&clock, Baseline::Now).tracker)
        .await
        .unwrap();
    assert_eq!(t.baseline(), Baseline::At(t0()));
    assert!(listing(dir.path()).is_empty(), "nothing was created");

    let path = dir.path().join("state.json");
    fs::write(&path, b"{oops").unwrap();
    let err = MemoryTracker::from_state_file(&path, options(&clock, Baseline::Now).tracker)
        .await
        .expect_err("corrupt");
    let opened = open_err(&path, options(&clock, Baseline::Now)).await;
    assert!(err.is_corrupt(), "{err:?}");
    assert_eq!(err.to_string(), opened.to_string(), "reported the same way");
}
