//! The reliability (chaos) suite: the built receiver against the simulated
//! Metal API and Direktiv, with faults injected and the process killed, and
//! every event accounted for. See docs/reliability.md.
//!
//! The short version runs with `cargo test`; the long one with
//! `CHAOS_LONG=1 cargo test --release -p equinix-receiver --test chaos -- --nocapture`.

mod chaos_support;
mod process_support;

use std::time::{Duration, Instant};

use chaos_support::{Figures, Receiver, World, pick, scrape};
use metal_sim::{DirektivFaults, MetalFaults};
use process_support::metric_value as metric;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// Fails with the missing ids and the tail of the log.
fn fail_lost(world: &World, scenario: &str, missing: &[String]) -> ! {
    let log = world.log_text();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "{scenario}: {} of {} events never reached Direktiv: {:?}\nlog tail (newest first):\n{}",
        missing.len(),
        world.produced().len(),
        &missing[..missing.len().min(10)],
        tail.join("\n")
    );
}

/// The larger of two optional samples.
fn fmax(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Waits until the receiver delivered something (it is up and sweeping).
async fn wait_first_delivery(world: &World, limit: Duration) {
    let started = Instant::now();
    while world.direktiv.accepted_count() == 0 {
        assert!(
            started.elapsed() < limit,
            "nothing was delivered within {limit:?}:\n{}",
            world.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILL at random moments while events arrive and Direktiv fails a fifth
/// of the requests: after the last restart every event is delivered, and the
/// resends are bounded by the state's persist batching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing() {
    let world = World::start(101).await;
    world.direktiv.set_faults(DirektivFaults {
        unavailable: 0.2,
        ..Default::default()
    });
    world.metal.set_events_per_second(pick(20.0, 30.0));
    let kills: usize = pick(5, 50);
    let mut rng = StdRng::seed_from_u64(0xC4A05);
    let mut figures = Figures {
        scenario: "kill",
        ..Default::default()
    };

    let mut receiver = world.spawn(&[]);
    figures.restarts = 0;
    for _ in 0..kills {
        let alive = Duration::from_millis(rng.random_range(300..2500));
        let until = Instant::now() + alive;
        while Instant::now() < until {
            if let Some(rss) = receiver.rss_kib() {
                figures.max_rss_kib = figures.max_rss_kib.max(rss);
            }
            assert!(
                receiver.try_wait().is_none(),
                "the receiver exited on its own:\n{}",
                world.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        receiver.kill();
        receiver = world.spawn(&[]);
        figures.restarts += 1;
    }

    // Quiet weather: no new events, Direktiv healed; the last instance catches up.
    world.metal.set_events_per_second(0.0);
    world.direktiv.set_faults(DirektivFaults::default());
    let caught_up = world
        .wait_all_delivered(pick(Duration::from_secs(30), Duration::from_secs(90)))
        .await;
    if let Err(missing) = caught_up {
        fail_lost(&world, "kill", &missing);
    }
    assert!(
        receiver.try_wait().is_none(),
        "the last receiver is still running"
    );
    drop(receiver);

    figures.count(&world);
    world.assert_sink_holds_each_id_once();
    figures.notes.push(format!(
        "direktiv_503s={}",
        world
            .direktiv
            .stats()
            .statuses
            .get(&503)
            .copied()
            .unwrap_or(0)
    ));
    figures.print();
    assert_eq!(figures.lost, 0);
    assert!(figures.produced > 0, "the simulator produced events");
    // A crash resends at most what was acknowledged but not yet persisted
    // (max_unpersisted, 256 by default), plus the deliveries in flight.
    let bound = (kills as u64) * (256 + 8);
    assert!(
        figures.duplicates <= bound,
        "{} resends for {kills} crashes exceeds the persist batching bound {bound}",
        figures.duplicates
    );
    world.shutdown().await;
}

/// Direktiv refuses connections, then answers 503, while events arrive: the
/// receiver keeps running with flat memory, its pending count rises, and
/// everything goes out soon after Direktiv is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_holds_events_and_delivers_them_after_recovery() {
    let world = World::start(202).await;
    world.metal.set_events_per_second(10.0);
    let mut receiver = world.spawn(&[]);
    let mut figures = Figures {
        scenario: "sink-outage",
        restarts: 1,
        ..Default::default()
    };
    wait_first_delivery(&world, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = receiver.rss_kib().expect("VmRSS");

    let outage = pick(Duration::from_secs(8), Duration::from_secs(60));
    let accepted_before = world.direktiv.accepted_count();
    let sweeps_before = world.sweeps().len();
    let started = Instant::now();
    world.direktiv.set_refusing(true).await.expect("refusing");
    let mut switched = false;
    let mut max_pending_metric = None::<f64>;
    let mut max_lag_metric = None::<f64>;
    while started.elapsed() < outage {
        if !switched && started.elapsed() >= outage / 2 {
            world.direktiv.set_down(true);
            world.direktiv.set_refusing(false).await.expect("listening");
            switched = true;
        }
        if let Some(rss) = receiver.rss_kib() {
            figures.max_rss_kib = figures.max_rss_kib.max(rss);
        }
        if let Some(text) = scrape(&world.metrics_addr) {
            let pending = metric(&text, "equinix_receiver_pending_events");
            let lag = metric(&text, "equinix_receiver_delivery_lag_seconds");
            max_pending_metric = fmax(max_pending_metric, pending);
            max_lag_metric = fmax(max_lag_metric, lag);
        }
        assert!(
            receiver.try_wait().is_none(),
            "the receiver exited during the outage:\n{}",
            world.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let produced_in_outage = world.produced().len();
    assert_eq!(
        world.direktiv.accepted_count(),
        accepted_before,
        "nothing can be accepted while Direktiv is down"
    );

    // Pending work rose: the sweeps during the outage held more and more.
    let outage_sweeps: Vec<u64> = world.sweeps()[sweeps_before..]
        .iter()
        .filter_map(|s| s["deferred"].as_u64())
        .collect();
    let max_deferred = outage_sweeps.iter().copied().max().unwrap_or(0);
    let first_deferred = outage_sweeps.iter().copied().find(|d| *d > 0).unwrap_or(0);
    assert!(
        max_deferred > first_deferred && max_deferred >= 5,
        "deferred should rise during the outage: {outage_sweeps:?}"
    );

    // Recovery: stop producing, heal Direktiv, time the catch-up.
    world.metal.set_events_per_second(0.0);
    world.direktiv.set_down(false);
    let limit = pick(Duration::from_secs(15), Duration::from_secs(60));
    let took = match world.wait_all_delivered(limit).await {
        Ok(took) => took,
        Err(missing) => fail_lost(&world, "sink outage", &missing),
    };
    assert!(
        receiver.try_wait().is_none(),
        "still running after recovery"
    );
    let growth = figures.max_rss_kib.saturating_sub(rss_before);
    figures.count(&world);
    figures.notes.push(format!("outage_s={}", outage.as_secs()));
    figures.notes.push(format!("rss_before_kib={rss_before}"));
    figures.notes.push(format!("max_deferred={max_deferred}"));
    figures
        .notes
        .push(format!("recovered_in_ms={}", took.as_millis()));
    figures
        .notes
        .push(format!("produced_during_outage<={produced_in_outage}"));
    if let Some(p) = max_pending_metric {
        figures.notes.push(format!("max_pending_events_metric={p}"));
    }
    if let Some(l) = max_lag_metric {
        figures.notes.push(format!("max_delivery_lag_s_metric={l}"));
    }
    figures.print();
    assert_eq!(figures.lost, 0);
    // Metal is the buffer: the receiver holds no queue that grows with the outage.
    assert!(
        growth < 32 * 1024,
        "RSS grew by {growth} KiB during the outage"
    );
    drop(receiver);
    world.shutdown().await;
}

/// Bursts of 429 with Retry-After, 5xx, slow responses beyond
/// `equinix.timeout`, truncated and invalid JSON pages and a repeated `next`:
/// the receiver keeps running, reports them, and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_weather_is_survived_and_reported() {
    let mut world = World::start(303).await;
    world.set("equinix", "perPage: 5");
    world.metal.set_events_per_second(10.0);
    let mut receiver = world.spawn(&[]);
    wait_first_delivery(&world, Duration::from_secs(20)).await;

    let bursts = pick(1, 4);
    let per_burst: u64 = pick(40, 150);
    let mut figures = Figures {
        scenario: "api-weather",
        restarts: 1,
        ..Default::default()
    };
    for _ in 0..bursts {
        world.metal.set_faults(MetalFaults {
            rate_limited: 0.08,
            retry_after: Duration::from_secs(1),
            server_error: 0.1,
            slow: 0.04,
            slow_delay: Duration::from_secs(4), // beyond equinix.timeout (2s)
            truncated: 0.08,
            invalid_json: 0.08,
            repeat_next: 0.1,
            max_faults: Some(per_burst),
            ..Default::default()
        });
        let started = Instant::now();
        let injected = || world.metal.stats().faults.values().sum::<u64>();
        // set_faults restarts the budget, not the counters.
        let before = injected();
        while injected() - before < per_burst
            && started.elapsed() < pick(Duration::from_secs(25), Duration::from_secs(60))
        {
            if let Some(rss) = receiver.rss_kib() {
                figures.max_rss_kib = figures.max_rss_kib.max(rss);
            }
            assert!(
                receiver.try_wait().is_none(),
                "the receiver exited in the weather:\n{}",
                world.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A calm spell between bursts.
        world.metal.set_faults(MetalFaults::default());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    world.metal.set_events_per_second(0.0);
    let limit = pick(Duration::from_secs(20), Duration::from_secs(60));
    if let Err(missing) = world.wait_all_delivered(limit).await {
        fail_lost(&world, "api weather", &missing);
    }
    assert!(
        receiver.try_wait().is_none(),
        "still running after the weather"
    );

    let stats = world.metal.stats();
    let lines = world.log_lines();
    let warned = |needle: &str| {
        lines.iter().any(|l| {
            l["level"]
                .as_str()
                .is_some_and(|lv| lv == "WARN" || lv == "ERROR")
                && l.to_string().contains(needle)
        })
    };
    let list_errors: u64 = world
        .sweeps()
        .iter()
        .filter_map(|s| s["list_errors"].as_u64())
        .sum();
    figures.count(&world);
    figures.notes.push(format!("faults={:?}", stats.faults));
    figures
        .notes
        .push(format!("sweep_list_errors={list_errors}"));
    if let Some(text) = scrape(&world.metrics_addr) {
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("equinix_receiver_errors"))
            .collect();
        // Failed API requests by status (`error` for timeouts and bad bodies).
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("equinix_receiver_api_requests_total") && !l.contains("code=\"200\"")
            })
            .collect();
        assert!(!failed.is_empty(), "failed requests show in the metrics");
        figures.notes.push(format!("metrics_errors={errors:?}"));
        figures
            .notes
            .push(format!("metrics_failed_requests={failed:?}"));
    }
    figures.print();
    assert_eq!(figures.lost, 0);
    assert!(
        stats.faults.get("rate_limited").copied().unwrap_or(0) > 0,
        "a 429 was injected: {:?}",
        stats.faults
    );
    if stats.faults.get("rate_limited").copied().unwrap_or(0) > 0 {
        assert!(warned("rate limiting"), "429s are reported in the log");
    }
    assert!(
        list_errors > 0 || warned("could not read an event list"),
        "list failures are reported"
    );
    drop(receiver);
    world.shutdown().await;
}

/// A corrupt state file stops start-up with a message naming the file and the
/// way out, leaves the file alone, and `--reset-state` then starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_startup_until_reset() {
    let world = World::start(404).await;
    let state = world.state_path();
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    let garbage = b"{\"version\": 1, \"sources\": [oops";
    std::fs::write(&state, garbage).unwrap();

    let mut receiver = world.spawn(&[]);
    let status = receiver
        .wait_for(Duration::from_secs(10))
        .await
        .expect("a corrupt state stops start-up");
    let log = world.log_text();
    assert!(
        !status.success(),
        "exit code must say it failed: {status:?}"
    );
    assert!(
        log.contains(&state.display().to_string()),
        "names the file:\n{log}"
    );
    assert!(log.contains("--reset-state"), "names the way out:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        garbage,
        "the file is untouched"
    );
    assert_eq!(world.metal.stats().requests_total, 0, "no sweep ran");

    // The way out works: the corrupt file is set aside and delivery starts.
    let mut receiver = world.spawn(&["--reset-state"]);
    wait_first_delivery_of_emitted(&world).await;
    assert!(receiver.try_wait().is_none());
    let aside = std::fs::read_dir(state.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(aside, "the corrupt file is kept aside");
    receiver.kill();
    world.shutdown().await;
}

/// Emits events until one is delivered.
async fn wait_first_delivery_of_emitted(world: &World) {
    let emitted = world.metal.emit_events(5);
    let started = Instant::now();
    loop {
        let accepted = world.direktiv.accepted_ids();
        if emitted.iter().all(|e| accepted.contains(&e.id)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "emitted events were not delivered:\n{}",
            world.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A state path whose parent is a regular file: a clear message at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_state_directory_is_a_clear_startup_error() {
    let mut world = World::start(505).await;
    let blocker = world.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "a file").unwrap();
    let state = blocker.join("state.json");
    world.set("state", &format!("path: {}", state.display()));
    let mut receiver = world.spawn(&[]);
    let status = receiver
        .wait_for(Duration::from_secs(10))
        .await
        .expect("an unusable state path stops start-up");
    let log = world.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&state.display().to_string()),
        "names the path:\n{log}"
    );
    assert!(log.contains("state.path"), "says which key to fix:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(world.metal.stats().requests_total, 0, "no sweep ran");
    world.shutdown().await;
}

/// The state directory turns into a file mid-run (what a full or read-only
/// disk looks like to the writer): the receiver logs a clear error, keeps
/// delivering, does not crash, and writes the state again once it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_persist_is_logged_and_delivery_goes_on() {
    let world = World::start(606).await;
    world.metal.set_events_per_second(5.0);
    let mut receiver = world.spawn(&[]);
    wait_first_delivery(&world, Duration::from_secs(20)).await;
    let state = world.state_path();
    let dir = state.parent().unwrap().to_path_buf();
    let moved = world.dir.path().join("state-moved");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Break it: the directory vanishes and a file takes its name.
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, "in the way").unwrap();
    let broken_for = pick(Duration::from_secs(5), Duration::from_secs(30));
    let started = Instant::now();
    while started.elapsed() < broken_for {
        assert!(
            receiver.try_wait().is_none(),
            "the receiver exited when the state could not be written:\n{}",
            world.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let errors = world
        .log_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR" && l.to_string().contains("could not write the state"))
        .count();
    assert!(errors > 0, "a clear error is logged:\n{}", world.log_text());
    let delivered_while_broken = world.direktiv.accepted_count();

    // Heal it, stop producing: everything is delivered, and the state is written again.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    world.metal.set_events_per_second(0.0);
    if let Err(missing) = world.wait_all_delivered(Duration::from_secs(15)).await {
        fail_lost(&world, "failing persist", &missing);
    }
    // The next sweeps write the state again: it holds every delivered id.
    let started = Instant::now();
    loop {
        let saved = std::fs::read_to_string(&state).unwrap_or_default();
        let unsaved = world
            .direktiv
            .accepted_ids()
            .into_iter()
            .filter(|id| !saved.contains(id.as_str()))
            .count();
        if unsaved == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{unsaved} delivered ids are still not in the state after healing:\n{}",
            world.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(receiver.try_wait().is_none());

    // A restart after healing resends nothing that was persisted after healing.
    receiver.kill();
    let dup_before = world.direktiv.stats().duplicates_rejected;
    let mut receiver = world.spawn(&[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.try_wait().is_none());
    let mut figures = Figures {
        scenario: "failing-persist",
        restarts: 2,
        max_rss_kib: receiver.rss_kib().unwrap_or(0),
        ..Default::default()
    };
    figures.count(&world);
    figures
        .notes
        .push(format!("persist_errors_logged={errors}"));
    figures
        .notes
        .push(format!("accepted_while_broken={delivered_while_broken}"));
    figures.notes.push(format!(
        "resent_after_restart={}",
        world.direktiv.stats().duplicates_rejected - dup_before
    ));
    figures.print();
    assert_eq!(figures.lost, 0);
    receiver.kill();
    world.shutdown().await;
}

/// Malformed configs given to a real run (not `--check`) exit 78 before any
/// request. tests/config.rs covers the messages with `--check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_configs_stop_a_real_run_before_any_request() {
    let world = World::start(707).await;
    let good = std::fs::read_to_string(world.write_config()).unwrap();
    let org_line = format!("organizationId: {}", world.metal.org_id());
    let token_line = format!("packetAuthToken: {}", world.metal.token());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "negative duration",
            good.replace("pollInterval: 500ms", "pollInterval: -1s")
                .into_bytes(),
        ),
        (
            "unknown key",
            good.replace("pollInterval:", "pollIntervall:").into_bytes(),
        ),
        (
            "empty token",
            good.replace(&token_line, "packetAuthToken: \"\"")
                .into_bytes(),
        ),
        (
            "empty organization",
            good.replace(&org_line, "organizationId: \"\"").into_bytes(),
        ),
        (
            "wrong type",
            good.replace("perPage: 20", "perPage: [20]").into_bytes(),
        ),
        (
            "bad URL",
            good.replace(&world.metal.base_url(), "ftp://example.com/metal")
                .into_bytes(),
        ),
        ("not UTF-8", [good.as_bytes(), b"# caf\xe9\n"].concat()),
        (
            "state path is a directory",
            good.replace(
                &world.state_path().display().to_string(),
                &world.dir.path().display().to_string(),
            )
            .into_bytes(),
        ),
    ];
    for (name, contents) in &cases {
        let path = world.dir.path().join("bad.yaml");
        std::fs::write(&path, contents).unwrap();
        let log = world
            .dir
            .path()
            .join(format!("bad-{}.log", name.replace(' ', "-")));
        let mut receiver = Receiver::spawn(&path, &[], &log);
        let status = receiver
            .wait_for(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{name}: the receiver kept running"));
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(78), "{name}:\n{stderr}");
        assert!(
            stderr.contains("error:"),
            "{name}: names the problem:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}:\n{stderr}");
    }
    // A directory given as the config file.
    let log = world.dir.path().join("bad-dir.log");
    let mut receiver = Receiver::spawn(world.dir.path(), &[], &log);
    let status = receiver.wait_for(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(78));
    assert_eq!(
        world.metal.stats().requests_total,
        0,
        "nothing was requested"
    );
    assert_eq!(world.direktiv.stats().requests_total, 0, "nothing was sent");
    world.shutdown().await;
}

/// SIGTERM while a slow Direktiv holds a delivery: a clean exit 0 within the
/// grace, the state persisted, and nothing lost after a restart.
///
/// Depends on `shutdownGrace` (issue 7): until it is implemented, an exit
/// that abandons the in-flight delivery still passes the no-loss check but
/// shows up as a resend in the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_delivery_exits_cleanly_and_loses_nothing() {
    let mut world = World::start(808).await;
    let grace = Duration::from_secs(5);
    world.set("", "shutdownGrace: 5s");
    world.set("direktiv", "timeout: 4s");
    world.direktiv.set_faults(DirektivFaults {
        latency: Duration::from_secs(2),
        ..Default::default()
    });
    let mut receiver = world.spawn(&[]);
    // Let it load the inventory, then give it work.
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.metal.emit_events(20);
    let started = Instant::now();
    while world.direktiv.stats().requests_total == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no delivery started:\n{}",
            world.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A delivery is in flight (Direktiv answers after 2 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted_at_term = world.direktiv.accepted_count();
    let termed = Instant::now();
    receiver.term();
    let status = receiver
        .wait_for(grace + Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("no exit within the grace:\n{}", world.log_text()));
    let took = termed.elapsed();
    assert_eq!(status.code(), Some(0), "clean exit:\n{}", world.log_text());
    assert!(
        took <= grace + Duration::from_secs(1),
        "exited after {took:?}"
    );
    let accepted_at_exit = world.direktiv.accepted_count();
    assert!(world.state_path().exists(), "the state was written");

    // Restart with a quick Direktiv: what was left goes out, nothing twice
    // beyond what was in flight.
    world.direktiv.set_faults(DirektivFaults::default());
    let dup_before = world.direktiv.stats().duplicates_rejected;
    let receiver = world.spawn(&[]);
    if let Err(missing) = world.wait_all_delivered(Duration::from_secs(15)).await {
        fail_lost(&world, "sigterm", &missing);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resent = world.direktiv.stats().duplicates_rejected - dup_before;
    let mut figures = Figures {
        scenario: "sigterm",
        restarts: 2,
        max_rss_kib: receiver.rss_kib().unwrap_or(0),
        ..Default::default()
    };
    figures.count(&world);
    figures
        .notes
        .push(format!("exit_after_ms={}", took.as_millis()));
    figures
        .notes
        .push(format!("accepted_at_term={accepted_at_term}"));
    figures
        .notes
        .push(format!("accepted_at_exit={accepted_at_exit}"));
    figures.notes.push(format!("resent_after_restart={resent}"));
    figures.print();
    assert_eq!(figures.lost, 0);
    // Everything acknowledged before the exit was persisted: nothing is resent.
    assert_eq!(
        resent, 0,
        "acknowledged events were resent after a clean exit"
    );
    drop(receiver);
    world.shutdown().await;
}
