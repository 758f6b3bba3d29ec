//! Reading that reaches every event: a list longer than the page cap, a
//! backlog deeper than it, events the API lists late, and an API whose clock
//! is not this host's. Each case lost events before (issue #22).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use chrono::TimeDelta;
use event_dedupe::Baseline;
use receiver_engine::Levels;
use serde_json::Value;
use support::*;
use tokio_util::sync::CancellationToken;

/// Device lists only, `perPage` and `maxPages` as given, a short poll
/// interval so that a run makes many passes.
fn device_lists(setup: Setup, per_page: u32, max_pages: u32) -> Setup {
    let device = Levels {
        project: false,
        device: true,
        organization: false,
    };
    setup.with(|o| {
        o.with_levels(device)
            .with_per_page(per_page)
            .with_max_pages(max_pages)
            .with_poll_interval(Duration::from_millis(20))
            .with_max_poll_interval(Duration::from_millis(20))
    })
}

/// `n` events of device D1, the newest `newest` seconds ago, three a
/// second, with ids from `first`.
fn burst(first: u32, n: u32, newest: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            device_event(
                &eid(first + i),
                "provisioning.104",
                D1,
                ago(newest + i64::from(i / 3)),
            )
        })
        .collect()
}

/// Runs a receiver (as `Receiver::run` does, its cursors kept between
/// passes) until Direktiv has accepted `expected` ids or a minute passed;
/// returns how often each id was accepted.
async fn run_until(world: &World, setup: &Setup, expected: usize) -> HashMap<String, usize> {
    let (receiver, _) = world.receiver(setup).await;
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { receiver.run(stop).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while world.direktiv.accepted_ids().len() < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.expect("the receiver ends");
    let mut counts = HashMap::new();
    for id in world.direktiv.accepted_ids() {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

fn assert_each_once(counts: &HashMap<String, usize>, ids: impl IntoIterator<Item = String>) {
    let mut missing = Vec::new();
    for id in ids {
        match counts.get(&id) {
            Some(1) => {}
            Some(n) => panic!("{id} delivered {n} times"),
            None => missing.push(id),
        }
    }
    assert!(
        missing.is_empty(),
        "{} never delivered, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test]
async fn a_first_run_from_all_delivers_a_list_longer_than_the_page_cap() {
    let world = World::start().await;
    let path = device_events_path(D1);
    // 502 events, perPage 10 and maxPages 2: a sweep reads 20 at most.
    world.metal.add(&path, burst(0, 502, 10));
    let setup = device_lists(Setup::all(), 10, 2);
    let counts = run_until(&world, &setup, 502).await;
    assert_each_once(&counts, (0..502).map(eid));
}

#[tokio::test]
async fn a_backlog_deeper_than_the_total_page_cap_is_delivered() {
    let world = World::start().await;
    let path = device_events_path(D1);
    let setup = device_lists(Setup::all(), 10, 10);
    // The list has a floor: one event read and settled.
    world.metal.add(&path, burst(10_000, 1, 4000));
    world.once(&setup).await.assert_all_delivered();
    world.direktiv.clear();
    // Then 1,500 events while the receiver was down (all created after that
    // read): deeper than the 100 pages (ten times maxPages) one read may take.
    world.metal.add(&path, burst(0, 1500, 10));
    let counts = run_until(&world, &setup, 1500).await;
    assert_each_once(&counts, (0..1500).map(eid));
}

#[tokio::test]
async fn an_event_listed_late_on_a_busy_list_is_delivered() {
    let world = World::start().await;
    let path = device_events_path(D1);
    let setup = Setup::all().with(|o| o.with_per_page(10));
    // A busy list: 40 events of the last minute, read and settled.
    world.metal.add(&path, burst(0, 40, 5));
    world.once(&setup).await.assert_all_delivered();
    world.direktiv.clear();
    // An event created two minutes ago shows up only now (well within the
    // ten-minute overlap), below four pages of known events.
    let late = eid(500);
    world.metal.add(
        &path,
        [device_event(&late, "instance.reboot", D1, ago(120))],
    );
    let swept = world.once(&setup).await;
    swept.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [late]);
}

#[tokio::test]
async fn an_api_clock_an_hour_behind_this_host_loses_nothing() {
    let world = World::start().await;
    let offset = TimeDelta::hours(-1);
    world.metal.set_clock_offset(offset);
    let path = device_events_path(D1);
    let api_ago = |s: i64| ago(s) + offset;
    // A quiet list: one old event, read and settled.
    world.metal.add(
        &path,
        [device_event(&eid(1), "provisioning.104", D1, api_ago(7200))],
    );
    let setup = Setup::all();
    world.once(&setup).await.assert_all_delivered();
    world.direktiv.clear();
    // Ten new events, by the API's clock.
    world.metal.add(
        &path,
        (10..20).map(|i| device_event(&eid(i), "instance.reboot", D1, api_ago(30 - i64::from(i)))),
    );
    world.once(&setup).await.assert_all_delivered();
    let mut got = world.direktiv.accepted_ids();
    got.sort();
    assert_eq!(got, (10..20).map(eid).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_start_from_now_follows_the_apis_clock_not_a_fast_host_clock() {
    for offset in [
        TimeDelta::minutes(-3),
        TimeDelta::hours(-1),
        TimeDelta::hours(1),
    ] {
        let world = World::start().await;
        world.metal.set_clock_offset(offset);
        let path = device_events_path(D1);
        let api_ago = |s: i64| ago(s) + offset;
        // Before the first start, by the API's clock: not sent. (With the
        // host's clock behind the API's, a restart holds the start point at
        // the host's clock, as it holds every time past it: such an event
        // may then go out once. Sending more, never less.)
        world.metal.add(
            &path,
            [device_event(&eid(1), "provisioning.104", D1, api_ago(60))],
        );
        let setup = Setup {
            baseline: Baseline::Now,
            ..Setup::default()
        };
        world.once(&setup).await.assert_all_delivered();
        assert!(world.direktiv.accepted_ids().is_empty(), "offset {offset}");
        // Ten events after the start, by the API's clock.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        world.metal.add(
            &path,
            (10..20).map(|i| device_event(&eid(i), "instance.reboot", D1, api_ago(0))),
        );
        world.once(&setup).await.assert_all_delivered();
        let mut got = world.direktiv.accepted_ids();
        got.retain(|id| *id != eid(1) || offset <= TimeDelta::zero());
        got.sort();
        assert_eq!(
            got,
            (10..20).map(eid).collect::<Vec<_>>(),
            "offset {offset}"
        );
    }
}

#[tokio::test]
async fn a_list_found_out_of_order_is_read_past_its_first_settled_page() {
    let world = World::start().await;
    let path = device_events_path(D1);
    let setup = Setup::all().with(|o| o.with_per_page(10));
    // 25 old events, delivered: the list's floor is now minus the overlap,
    // and every one of them lies below its settled line.
    world.metal.add(&path, burst(0, 25, 3000));
    world.once(&setup).await.assert_all_delivered();
    world.direktiv.clear();
    // Two new events out of order: one at position 2 (so page 1 is seen out
    // of order) and one at position 13, on page 2, below a first page that
    // holds settled events. A reader that trusted the order would stop at
    // page 1.
    world.metal.insert_at(
        &path,
        1,
        device_event(&eid(100), "instance.reboot", D1, ago(10)),
    );
    world.metal.insert_at(
        &path,
        12,
        device_event(&eid(101), "instance.reboot", D1, ago(20)),
    );
    world.once(&setup).await.assert_all_delivered();
    let mut got = world.direktiv.accepted_ids();
    got.sort();
    assert_eq!(got, [eid(100), eid(101)]);
}

/// The value of a sample in the engine's metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn a_list_that_keeps_failing_shows_as_stalled_and_is_delivered_once_it_answers() {
    let world = World::start().await;
    let path = device_events_path(D1);
    let setup = device_lists(Setup::all(), 10, 10);
    world.metal.add(&path, burst(0, 5, 10));
    world
        .metal
        .fixed(&path, Reply::metal_error(503, "unavailable"));
    let (receiver, _) = world.receiver(&setup).await;
    let stop = CancellationToken::new();
    let metrics = std::sync::Arc::clone(receiver.metrics());
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { receiver.run(stop).await }
    });
    // Not read to its settled part for three times maxPollInterval (60 ms).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sample(&metrics.encode(), "equinix_receiver_lists_stalled") != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(world.direktiv.accepted_ids().is_empty());
    // It answers again: every event goes out, and it is no longer stalled.
    world.metal.unfix(&path);
    while world.direktiv.accepted_ids().len() < 5
        || sample(&metrics.encode(), "equinix_receiver_lists_stalled") != Some(0.0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.expect("the receiver ends");
}
