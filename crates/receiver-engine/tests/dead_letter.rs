//! Refused events are kept, not lost, also when they cannot be kept at once:
//! the engine in-process with a dead-letter file (see `support`), running its
//! loop as the service does.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use receiver_engine::{DeadLetterLocation, DeadLetters};
use serde_json::Value;
use support::*;
use tokio_util::sync::CancellationToken;

/// The most a wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `probe` every 25 ms until it gives a value, at most [`DEADLINE`].
async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of one sample (name and labels as printed) in the Prometheus text.
fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// The ids in the dead-letter file, oldest first; none when it is missing.
fn kept_ids(path: &std::path::Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .map(|line| {
                let entry: Value = serde_json::from_str(line).expect("one JSON object per line");
                entry["id"].as_str().expect("an id").to_owned()
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_refused_event_that_cannot_be_kept_stays_new_until_it_can() {
    let world = World::start().await;
    let (logs, _guard) = Logs::capture();
    let dir = world.dir.path().join("refused");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("refused.jsonl");
    let (bad, fine) = (eid(1), eid(2));
    let refused = bad.clone();
    world.direktiv.answer(move |event, _| {
        if event["id"] == refused.as_str() {
            Reply::new(400).body(r#"{"error":"invalid cloudevent: extension value too long"}"#)
        } else {
            Reply::ok()
        }
    });
    let setup = Setup::all().with(|o| o.with_poll_interval(Duration::from_millis(200)));
    let (receiver, recorder) = world.receiver(&setup).await;
    let location = DeadLetterLocation::File {
        path: file.clone(),
        read_only: false,
    };
    let store = DeadLetters::open(
        location,
        1000,
        Arc::clone(receiver.metrics()),
        Arc::default(),
    )
    .expect("the store opens");
    let receiver = Arc::new(receiver.with_dead_letters(Arc::new(store)));
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (receiver, stop) = (Arc::clone(&receiver), stop.clone());
        async move { receiver.run(stop).await }
    });
    wait_for("a first sweep", || receiver.health().ready().then_some(())).await;

    // The dead-letter directory turns into a file: nothing can be written.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::write(&dir, "in the way").unwrap();
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&bad, "provisioning.109", D1, ago(40)),
            device_event(&fine, "provisioning.110", D1, ago(30)),
        ],
    );
    let tries = || {
        world
            .direktiv
            .posts()
            .iter()
            .filter(|p| p.event["id"] == bad.as_str())
            .count()
    };
    wait_for("the refused event tried on two sweeps", || {
        (tries() >= 2).then_some(())
    })
    .await;
    let text = logs.text();
    assert!(
        text.contains("could not be kept") && text.contains("stays new"),
        "{text}"
    );
    assert_eq!(
        world.direktiv.accepted_ids(),
        std::slice::from_ref(&fine),
        "the rest went on"
    );
    assert!(
        recorder.heard().refused.is_empty(),
        "reported as refused (kept) although it could not be kept"
    );

    // Writable again: the next refusal is kept, and then it is settled.
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let kept = wait_for("the dead letter", || kept_ids(&file)).await;
    assert_eq!(kept, std::slice::from_ref(&bad));
    let metrics = receiver.metrics().encode();
    let sample = |name: &str| metric_value(&metrics, name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(sample("equinix_receiver_dead_letter_events"), 1.0);
    assert_eq!(
        sample("equinix_receiver_events_refused_total"),
        1.0,
        "kept once"
    );
    assert!(sample("equinix_receiver_errors_total{kind=\"state\"}") >= 1.0);
    let settled = tries();
    let sweeps = || logs.text().matches("sweep done").count();
    let seen = sweeps();
    wait_for("two more sweeps", || (sweeps() >= seen + 2).then_some(())).await;
    assert_eq!(tries(), settled, "a kept event was sent again");

    stop.cancel();
    tokio::time::timeout(DEADLINE, running)
        .await
        .expect("run returns once stopped")
        .expect("run does not panic");
}
