//! Events dated in the future: a skewed or broken API can date an event an
//! hour ahead, or at the end of time. Such an event is real and goes out, but
//! it must not become its lists' floor: that would settle every later event
//! of the device and its project before it happens, silently and for good.

mod support;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use support::*;

/// Run 1 reads `future` in the device's and the project's lists; then an
/// event of now appears beside it, and run 2 must deliver it.
async fn a_later_event_is_delivered_after(future: Value) {
    let world = World::start().await;
    let (logs, _guard) = Logs::capture();
    let future_id = future["id"].as_str().unwrap().to_owned();
    for list in [device_events_path(D1), project_events_path(P1)] {
        world.metal.add(&list, [future.clone()]);
    }
    world.once(&Setup::default()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), vec![future_id.clone()]);
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains("dated in the future")
            && l.contains(&future_id)),
        "a warning names the event:\n{text}"
    );
    logs.clear();

    let now = device_event(&eid(2), "power.off", D1, ago(0));
    for list in [device_events_path(D1), project_events_path(P1)] {
        world.metal.add(&list, [now.clone()]);
    }
    world.once(&Setup::default()).await.assert_all_delivered();
    assert_eq!(
        world.direktiv.accepted_ids(),
        vec![future_id, eid(2)],
        "the event of now is delivered, the future one not again"
    );
    assert!(
        !logs.text().contains("dated in the future"),
        "the future event is not reported again:\n{}",
        logs.text()
    );
    world.verify().await;
}

#[tokio::test]
async fn an_event_dated_an_hour_ahead_hides_no_later_event() {
    let ahead = ago(0) + TimeDelta::hours(1);
    a_later_event_is_delivered_after(device_event(&eid(1), "power.on", D1, ahead)).await;
}

#[tokio::test]
async fn an_event_dated_9999_12_31_hides_no_later_event() {
    let end = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .unwrap()
        .with_timezone(&Utc);
    a_later_event_is_delivered_after(device_event(&eid(1), "power.on", D1, end)).await;
}

/// `9999-12-31T23:59:59-05:00` is the year 10000 in UTC: no CloudEvents
/// `time` can carry it, so the event goes out without one.
#[tokio::test]
async fn an_event_dated_past_the_year_9999_goes_out_without_a_time() {
    let mut event = device_event(&eid(1), "power.on", D1, ago(0));
    event["created_at"] = "9999-12-31T23:59:59-05:00".into();
    let world = World::start().await;
    world.metal.add(&device_events_path(D1), [event.clone()]);
    world.once(&Setup::default()).await.assert_all_delivered();
    let accepted = world.direktiv.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:#?}");
    assert!(accepted[0].get("time").is_none(), "{:#}", accepted[0]);
    assert_eq!(
        accepted[0]["data"]["created_at"], "9999-12-31T23:59:59-05:00",
        "the data keeps what the API said"
    );

    // Beside it, an event of now still goes out.
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(2), "power.off", D1, ago(0))],
    );
    world.once(&Setup::default()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), vec![eid(1), eid(2)]);
    world.verify().await;
}
