//! The engine's behaviour in-process: a [`receiver_engine::Receiver`] built
//! as the binary builds it, run one sweep at a time (as `--once` does)
//! against a wiremock Metal API and a wiremock Direktiv (see `support`).
//! Each test asserts what a user would see: which events Direktiv got, how
//! often, with what context, what the sweep's report says, and what the
//! next run does.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use event_dedupe::Baseline;
use receiver_engine::{EventTypes, Levels};
use serde_json::Value;
use support::*;
use tokio_util::sync::CancellationToken;

fn ids(values: &[&str]) -> HashSet<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

fn time_of(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {value}"))
}

/// Every id in `accepted` appears exactly once.
fn assert_each_once(accepted: &[String]) {
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(
        unique.len(),
        accepted.len(),
        "an event was delivered twice: {accepted:?}"
    );
}

#[tokio::test]
async fn a_full_sweep_delivers_every_new_event_once_with_its_context() {
    let world = World::start().await;
    let (e1, e2, e3, e4, e5) = (eid(1), eid(2), eid(3), eid(4), eid(5));
    let rescue = unknown_fields_event(ago(40));
    let rescue_id = rescue["id"].as_str().unwrap().to_owned();
    let d1_events = vec![
        device_event(&e1, "provisioning.109", D1, ago(50)),
        rescue.clone(),
        device_event(&e2, "power.off", D1, ago(30)),
    ];
    // No relationships: only the device list knows whose event this is, so
    // the project list (which repeats it) must not claim it first.
    let mut bare = device_event(&e3, "provisioning.110", D2, ago(45));
    bare["relationships"] = serde_json::json!([]);
    let d2_events = vec![bare];
    let p1_project = project_event(&e4, "project.updated", P1, ago(20));
    let p2_project = project_event(&e5, "project.updated", P2, ago(35));
    world.metal.add(&device_events_path(D1), d1_events.clone());
    world.metal.add(&device_events_path(D2), d2_events.clone());
    // The project lists repeat their devices' events, as the API does.
    world.metal.add(
        &project_events_path(P1),
        d1_events
            .iter()
            .chain(&d2_events)
            .cloned()
            .chain([p1_project.clone()]),
    );
    world
        .metal
        .add(&project_events_path(P2), [p2_project.clone()]);

    world.once(&Setup::all()).await.assert_all_delivered();

    let accepted = world.direktiv.accepted();
    let got: Vec<String> = world.direktiv.accepted_ids();
    assert_each_once(&got);
    assert_eq!(
        got.iter().cloned().collect::<HashSet<_>>(),
        ids(&[&e1, &e2, &e3, &e4, &e5, &rescue_id])
    );
    assert_eq!(world.direktiv.posts().len(), 6, "no event was sent twice");

    // A device event: the device's context, the raw event as data.
    for (raw, device, host) in [
        (&d1_events[0], D1, D1_HOST),
        (&d1_events[1], D1, D1_HOST),
        (&d1_events[2], D1, D1_HOST),
        (&d2_events[0], D2, D2_HOST),
    ] {
        let id = raw["id"].as_str().unwrap();
        let event = by_id(&accepted, id);
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"], raw["id"], "the CloudEvent id is the Metal id");
        assert_eq!(event["type"], raw["type"]);
        assert_eq!(event["source"], P1_SOURCE);
        assert_eq!(time_of(&event["time"]), time_of(&raw["created_at"]));
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["orgid"], ORG);
        assert_eq!(event["orgname"], ORG_NAME);
        assert_eq!(event["projid"], P1);
        assert_eq!(event["projname"], P1_NAME);
        assert_eq!(event["deviceid"], device, "{id}");
        assert_eq!(event["hostname"], host, "{id}");
        assert_eq!(&event["data"], raw, "data is the event exactly as listed");
    }
    // Unknown fields survive.
    let data = &by_id(&accepted, &rescue_id)["data"];
    assert_eq!(data["metadata"]["ratio"], 0.75);
    assert_eq!(data["z_last"], true);
    assert_eq!(data["relationships"][0]["rel"], "device");

    // Project events carry no device values, although device events of the
    // same project went out just before them.
    for (raw, project, name, source) in [
        (&p1_project, P1, P1_NAME, P1_SOURCE),
        (&p2_project, P2, P2_NAME, P2_SOURCE),
    ] {
        let event = by_id(&accepted, raw["id"].as_str().unwrap());
        assert_eq!(event["source"], source);
        assert_eq!(event["projid"], project);
        assert_eq!(event["projname"], name);
        assert!(event.get("hostname").is_none(), "stale hostname: {event:#}");
        assert!(event.get("deviceid").is_none(), "stale deviceid: {event:#}");
        assert_eq!(&event["data"], raw);
    }

    for post in world.direktiv.posts() {
        assert_eq!(
            post.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        assert_eq!(post.token.as_deref(), Some(DIREKTIV_TOKEN));
        assert_eq!(post.api_key.as_deref(), Some(DIREKTIV_TOKEN));
        assert!(post.apikey.is_none());
        let header = post.traceparent.expect("a traceparent header");
        assert_eq!(post.event["traceparent"], header.as_str());
    }
    world.verify().await;
}

#[tokio::test]
async fn a_second_run_sends_nothing_and_a_restart_sends_only_what_appeared_meanwhile() {
    let world = World::start().await;
    let first = [
        device_event(&eid(1), "provisioning.104", D1, ago(90)),
        device_event(&eid(2), "provisioning.110", D1, ago(60)),
    ];
    world.metal.add(&device_events_path(D1), first.clone());
    world.metal.add(&project_events_path(P1), first);

    world.once(&Setup::all()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids().len(), 2);

    // Nothing new: nothing is sent, and every list is read with one request.
    world.direktiv.clear();
    world.metal.clear_hits();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert!(
        world.direktiv.posts().is_empty(),
        "resent: {:?}",
        world.direktiv.posts()
    );
    let hits = world.metal.hits();
    for list in [
        device_events_path(D1),
        device_events_path(D2),
        device_events_path(D3),
        project_events_path(P1),
        project_events_path(P2),
    ] {
        let n = hits.iter().filter(|h| h.path == list).count();
        assert_eq!(n, 1, "steady state reads one page of {list}");
    }
    assert_eq!(
        hits.len(),
        5 + 4,
        "five lists plus org, projects and two device lists"
    );

    // While the receiver was down, one more event happened.
    let meanwhile = device_event(&eid(3), "power.off", D1, ago(0));
    world
        .metal
        .add(&device_events_path(D1), [meanwhile.clone()]);
    world.metal.add(&project_events_path(P1), [meanwhile]);
    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(3)]);
    assert_eq!(world.direktiv.posts().len(), 1);
    world.verify().await;
}

#[tokio::test]
async fn events_before_the_baseline_are_not_sent_by_default() {
    let world = World::start().await;
    let old = device_event(&eid(1), "provisioning.110", D1, ago(3600));
    world.metal.add(&device_events_path(D1), [old.clone()]);
    world.metal.add(&project_events_path(P1), [old]);

    world.once(&Setup::default()).await.assert_all_delivered();
    assert!(
        world.direktiv.posts().is_empty(),
        "history before the first start was sent"
    );

    // The baseline is the first start: later events go out. (One second
    // ahead, so it is later even within the clock second of the first run.)
    let new = device_event(&eid(2), "power.on", D1, ago(-1));
    world.metal.add(&device_events_path(D1), [new.clone()]);
    world.metal.add(&project_events_path(P1), [new]);
    world.once(&Setup::default()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(2)]);
    world.verify().await;
}

#[tokio::test]
async fn start_from_all_sends_history_and_an_instant_splits_it() {
    let world = World::start().await;
    let events = [
        device_event(&eid(1), "provisioning.101", D1, ago(7200)),
        device_event(&eid(2), "provisioning.109", D1, ago(200)),
        device_event(&eid(3), "provisioning.110", D1, ago(50)),
    ];
    world.metal.add(&device_events_path(D1), events);

    world.once(&Setup::all()).await.assert_all_delivered();
    assert_eq!(
        world
            .direktiv
            .accepted_ids()
            .into_iter()
            .collect::<HashSet<_>>(),
        ids(&[&eid(1), &eid(2), &eid(3)])
    );

    // A fresh state with an instant between the events.
    std::fs::remove_file(world.state_path()).unwrap();
    world.direktiv.clear();
    let split = Setup {
        baseline: Baseline::At(ago(100)),
        ..Setup::default()
    };
    world.once(&split).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(3)]);
    world.verify().await;
}

#[tokio::test]
async fn a_device_event_seen_only_in_its_project_list_carries_the_device() {
    let world = World::start().await;
    world.metal.add(
        &project_events_path(P1),
        [
            device_event(&eid(1), "power.off", D2, ago(30)),
            project_event(&eid(2), "project.updated", P1, ago(20)),
        ],
    );

    let project_only = Levels {
        project: true,
        device: false,
        organization: false,
    };
    world
        .once(&Setup::all().with(|o| o.with_levels(project_only)))
        .await
        .assert_all_delivered();
    let accepted = world.direktiv.accepted();
    assert_eq!(accepted.len(), 2);
    let device = by_id(&accepted, &eid(1));
    assert_eq!(device["deviceid"], D2);
    assert_eq!(device["hostname"], D2_HOST);
    let project = by_id(&accepted, &eid(2));
    assert!(project.get("hostname").is_none() && project.get("deviceid").is_none());
    let device_lists = world
        .metal
        .hits()
        .into_iter()
        .filter(|h| h.path.starts_with("/metal/v1/devices/"))
        .count();
    assert_eq!(device_lists, 0, "levels: [project] reads no device list");
    world.verify().await;
}

#[tokio::test]
async fn direktiv_503_is_retried_within_the_sweep() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&eid(1), "provisioning.109", D1, ago(40)),
            device_event(&eid(2), "provisioning.110", D1, ago(30)),
        ],
    );
    world.metal.add(
        &device_events_path(D3),
        [device_event(&eid(3), "power.on", D3, ago(35))],
    );
    world.direktiv.answer(|_, earlier| {
        if earlier == 0 {
            Reply::new(503).body("upstream unavailable")
        } else {
            Reply::ok()
        }
    });

    world.once(&Setup::all()).await.assert_all_delivered();
    let accepted = world.direktiv.accepted_ids();
    assert_each_once(&accepted);
    assert_eq!(accepted.len(), 3);
    assert_eq!(
        world.direktiv.posts().len(),
        6,
        "one refusal and one success each"
    );
    // Within one device, oldest first even with retries.
    let d1: Vec<_> = accepted
        .iter()
        .filter(|id| **id != eid(3))
        .cloned()
        .collect();
    assert_eq!(d1, [eid(1), eid(2)]);

    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert!(world.direktiv.posts().is_empty());
    world.verify().await;
}

#[tokio::test]
async fn conflict_and_history_answers_count_as_delivered() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&eid(1), "provisioning.109", D1, ago(40)),
            device_event(&eid(2), "provisioning.110", D1, ago(30)),
            device_event(&eid(3), "power.on", D1, ago(20)),
        ],
    );
    let (c, h) = (eid(1), eid(2));
    world.direktiv.answer(move |event, _| {
        if event["id"] == c.as_str() {
            Reply::new(409).body("event already exists")
        } else if event["id"] == h.as_str() {
            Reply::new(400).body(
                r#"{"error":{"code":"400","message":"Error appending CloudEvent to history: duplicate key"}}"#,
            )
        } else {
            Reply::ok()
        }
    });

    let run = world.once(&Setup::all()).await;
    run.assert_all_delivered();
    assert_eq!(
        world.direktiv.posts().len(),
        3,
        "no retry of an event Direktiv has"
    );
    assert_eq!(run.report.already, 2, "{:#?}", run.report);
    let already: Vec<_> = run
        .recorder
        .heard()
        .delivered
        .into_iter()
        .filter(|d| d.1)
        .collect();
    assert_eq!(already.len(), 2, "the observer heard: {already:?}");

    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert!(
        world.direktiv.posts().is_empty(),
        "an already-delivered event was resent"
    );
    world.verify().await;
}

#[tokio::test]
async fn a_permanently_refused_event_is_tried_once_logged_and_skipped() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&eid(1), "provisioning.109", D1, ago(40)),
            device_event(&eid(2), "provisioning.110", D1, ago(30)),
        ],
    );
    let bad = eid(1);
    world.direktiv.answer(move |event, _| {
        if event["id"] == bad.as_str() {
            Reply::new(400).body(r#"{"error":"invalid cloudevent: unsupported extension"}"#)
        } else {
            Reply::ok()
        }
    });

    let run = world.once(&Setup::all()).await;
    run.assert_not_all_delivered();
    let to_bad = world
        .direktiv
        .posts()
        .iter()
        .filter(|p| p.event["id"] == eid(1))
        .count();
    assert_eq!(to_bad, 1, "a permanent refusal is not retried");
    assert_eq!(
        world.direktiv.accepted_ids(),
        [eid(2)],
        "the refusal does not block the device"
    );
    assert_eq!(run.report.rejected, 1, "{:#?}", run.report);
    let refused = run.recorder.heard().refused;
    assert!(
        refused.len() == 1
            && refused[0].0 == eid(1)
            && refused[0].1.contains("unsupported extension"),
        "the refusal is reported with its reason: {refused:?}"
    );

    // Settled deliberately: the next run does not send it again.
    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert!(world.direktiv.posts().is_empty());
    world.verify().await;
}

#[tokio::test]
async fn a_refused_direktiv_token_stops_delivery_and_loses_nothing() {
    let world = World::start().await;
    let events = [
        (D1, device_event(&eid(1), "provisioning.109", D1, ago(40))),
        (D1, device_event(&eid(2), "provisioning.110", D1, ago(30))),
        (D2, device_event(&eid(3), "power.on", D2, ago(35))),
        (D3, device_event(&eid(4), "power.off", D3, ago(25))),
    ];
    for (device, event) in &events {
        world
            .metal
            .add(&device_events_path(device), [event.clone()]);
    }
    world
        .direktiv
        .answer(|_, _| Reply::new(401).body(r#"{"error":"invalid token"}"#));

    let run = world.once(&Setup::all()).await;
    run.assert_not_all_delivered();
    let tried = world.direktiv.posts().len();
    assert!(
        (1..=3).contains(&tried),
        "at most one attempt per device in flight, then stop; got {tried}"
    );
    let problem = run
        .report
        .first_delivery_problem
        .as_ref()
        .expect("a delivery problem");
    assert_eq!(problem.status, Some(401), "{problem:?}");

    // Direktiv accepts the token again: everything goes out, once.
    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    let accepted = world.direktiv.accepted_ids();
    assert_each_once(&accepted);
    assert_eq!(
        accepted.into_iter().collect::<HashSet<_>>(),
        ids(&[&eid(1), &eid(2), &eid(3), &eid(4)])
    );
    world.verify().await;
}

#[tokio::test]
async fn a_metal_429_with_retry_after_is_obeyed() {
    let world = World::start().await;
    let path = device_events_path(D1);
    world.metal.add(
        &path,
        [device_event(&eid(1), "provisioning.110", D1, ago(30))],
    );
    world.metal.script(
        &path,
        Reply::metal_error(429, "Too many requests").header("Retry-After", "1"),
    );

    world.once(&Setup::all()).await.assert_all_delivered();
    let hits = world.metal.hits_to(&path);
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited = hits[1].at - hits[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(world.direktiv.accepted_ids(), [eid(1)]);
    world.verify().await;
}

#[tokio::test]
async fn pages_are_read_until_the_settled_part_and_steady_state_reads_one_page() {
    let world = World::start().await;
    let path = device_events_path(D1);
    // 30 events before the baseline, then 25 new ones: three pages of 10
    // hold all the new events (the third reaches the settled part). They
    // are older than twice the overlap (10 min), so once delivered they lie
    // below the list's settled line (its floor minus the overlap).
    world.metal.add(
        &path,
        (0..30).map(|i| {
            device_event(
                &eid(100 + i),
                "provisioning.104",
                D1,
                ago(5000 - i64::from(i)),
            )
        }),
    );
    let new: Vec<Value> = (0..25)
        .map(|i| {
            device_event(
                &eid(i),
                "provisioning.109",
                D1,
                ago(2500 - i64::from(i) * 10),
            )
        })
        .collect();
    world.metal.add(&path, new.clone());
    let start = Setup {
        baseline: Baseline::At(ago(3000)),
        ..Setup::default()
    };

    world.once(&start).await.assert_all_delivered();
    let pages: Vec<String> = world
        .metal
        .hits_to(&path)
        .into_iter()
        .map(|h| h.query)
        .collect();
    assert_eq!(pages.len(), 3, "pages read: {pages:?}");
    // Delivered once each, oldest first.
    let expected: Vec<String> = (0..25).map(eid).collect();
    assert_eq!(world.direktiv.accepted_ids(), expected);
    assert_eq!(world.direktiv.posts().len(), 25);

    world.metal.clear_hits();
    world.direktiv.clear();
    world.once(&start).await.assert_all_delivered();
    assert_eq!(
        world.metal.hits_to(&path).len(),
        1,
        "steady state: one page"
    );
    assert!(world.direktiv.posts().is_empty());
    world.verify().await;
}

#[tokio::test]
async fn a_deleted_device_does_not_fail_the_other_lists() {
    let world = World::start().await;
    world.metal.gone(&device_events_path(D2));
    let event = device_event(&eid(1), "power.on", D1, ago(30));
    world.metal.add(&device_events_path(D1), [event.clone()]);
    world.metal.add(&project_events_path(P1), [event]);
    world.metal.add(
        &device_events_path(D3),
        [device_event(&eid(2), "power.off", D3, ago(20))],
    );

    let run = world.once(&Setup::all()).await;
    run.assert_all_delivered();
    assert_eq!(
        world
            .direktiv
            .accepted_ids()
            .into_iter()
            .collect::<HashSet<_>>(),
        ids(&[&eid(1), &eid(2)])
    );
    assert_eq!(run.report.gone_lists, 1, "{:#?}", run.report);
    world.verify().await;
}

#[tokio::test]
async fn a_deleted_device_refreshes_the_inventory_of_a_long_running_receiver() {
    let world = World::start().await;
    world.metal.gone(&device_events_path(D2));
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(1), "power.on", D1, ago(30))],
    );
    let setup = Setup::all().with(|o| o.with_poll_interval(Duration::from_millis(200)));
    let (receiver, _) = world.receiver(&setup).await;
    let receiver = Arc::new(receiver);
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (receiver, stop) = (Arc::clone(&receiver), stop.clone());
        async move { receiver.run(stop).await }
    });
    let projects = format!("/metal/v1/organizations/{ORG}/projects");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while world.metal.hits_to(&projects).len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns once stopped")
        .expect("run does not panic");
    assert!(
        world.metal.hits_to(&projects).len() >= 2,
        "the 404 did not refresh the inventory"
    );
    assert_eq!(
        world.direktiv.accepted_ids(),
        [eid(1)],
        "delivered once across sweeps"
    );
    world.verify().await;
}

#[tokio::test]
async fn a_failing_metal_list_backs_off_then_fails_alone_and_is_read_next_run() {
    let world = World::start().await;
    let d1 = device_events_path(D1);
    world
        .metal
        .add(&d1, [device_event(&eid(1), "power.on", D1, ago(30))]);
    world.metal.add(
        &device_events_path(D3),
        [device_event(&eid(2), "power.off", D3, ago(20))],
    );
    for _ in 0..3 {
        world
            .metal
            .script(&d1, Reply::metal_error(500, "Internal Server Error"));
    }

    let run = world.once(&Setup::all()).await;
    run.assert_not_all_delivered();
    let hits = world.metal.hits_to(&d1);
    assert_eq!(hits.len(), 3, "three attempts at the page");
    assert!(
        hits[1].at - hits[0].at >= Duration::from_millis(400)
            && hits[2].at - hits[1].at >= Duration::from_millis(900),
        "attempts were not spaced out: {hits:?}"
    );
    assert_eq!(
        world.direktiv.accepted_ids(),
        [eid(2)],
        "the other lists still deliver"
    );
    assert_eq!(run.report.list_errors, 1, "{:#?}", run.report);
    let problem = run
        .report
        .first_list_error
        .as_ref()
        .expect("a list problem");
    assert_eq!(problem.status, Some(500), "{problem:?}");
    let errors = run.recorder.heard().list_errors;
    assert!(
        errors.len() == 1 && errors[0].0 == format!("device:{D1}"),
        "the observer heard: {errors:?}"
    );

    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(1)]);
    world.verify().await;
}

#[tokio::test]
async fn when_retries_run_out_the_device_waits_in_order_for_the_next_run() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&eid(1), "provisioning.109", D1, ago(40)),
            device_event(&eid(2), "provisioning.110", D1, ago(30)),
        ],
    );
    world
        .direktiv
        .answer(|_, _| Reply::new(503).header("Retry-After", "0"));

    world.once(&Setup::all()).await.assert_not_all_delivered();
    let posts = world.direktiv.posts();
    assert_eq!(posts.len(), 3, "one attempt and maxRetries (2) retries");
    assert!(
        posts.iter().all(|p| p.event["id"] == eid(1)),
        "the newer event overtook the older one"
    );

    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(1), eid(2)]);
    world.verify().await;
}

#[tokio::test]
async fn organization_events_carry_no_project_and_device_events_find_their_device() {
    let world = World::start().await;
    let member_removed = serde_json::json!({
        "id": eid(1),
        "type": "organization.member.removed",
        "body": "{{actor}} removed {{user}} from the organization",
        "state": null,
        "interpolated": "Jane Operator removed Max Mustermann from the organization",
        "relationships": [{ "href": "/metal/v1/users/9d7b1c0e-2f4a-4b6c-8d9e-0a1b2c3d4e5f" }],
        "created_at": rfc3339(ago(30)),
        "href": format!("/metal/v1/events/{}", eid(1))
    });
    let device = device_event(&eid(2), "power.off", D3, ago(20));
    world
        .metal
        .add(&org_events_path(), [member_removed.clone(), device]);

    let organization_only = Levels {
        project: false,
        device: false,
        organization: true,
    };
    world
        .once(&Setup::all().with(|o| o.with_levels(organization_only)))
        .await
        .assert_all_delivered();
    let accepted = world.direktiv.accepted();
    assert_eq!(accepted.len(), 2);
    let org = by_id(&accepted, &eid(1));
    assert_eq!(
        org["source"],
        "direktiv/listener/equinix/Direktiv%20Labs%20GmbH"
    );
    assert_eq!(org["orgname"], ORG_NAME);
    for key in ["projid", "projname", "deviceid", "hostname"] {
        assert!(
            org.get(key).is_none(),
            "{key} on an organization event: {org:#}"
        );
    }
    assert_eq!(org["data"], member_removed);
    let dev = by_id(&accepted, &eid(2));
    assert_eq!(dev["source"], P2_SOURCE);
    assert_eq!(dev["hostname"], D3_HOST);
    assert_eq!(dev["projid"], P2);
    world.verify().await;
}

#[tokio::test]
async fn an_event_that_cannot_become_a_cloudevent_is_skipped_and_reported_once() {
    let world = World::start().await;
    let mut typeless = device_event(&eid(1), "x", D1, ago(40));
    typeless.as_object_mut().unwrap().remove("type");
    world.metal.add(
        &device_events_path(D1),
        [typeless, device_event(&eid(2), "power.on", D1, ago(30))],
    );

    let run = world.once(&Setup::all()).await;
    run.assert_all_delivered();
    assert_eq!(
        world.direktiv.accepted_ids(),
        [eid(2)],
        "it does not block the device"
    );
    assert_eq!(run.report.unmappable, 1, "{:#?}", run.report);

    let run = world.once(&Setup::all()).await;
    run.assert_all_delivered();
    assert_eq!(
        run.report.unmappable, 0,
        "reported again: {:#?}",
        run.report
    );
    world.verify().await;
}

#[tokio::test]
async fn a_rate_limit_remaining_of_zero_pauses_every_request_until_the_reset() {
    let world = World::start().await;
    // Three whole seconds ahead: at least one second is left when the first
    // answer arrives, whatever the fraction of the current second.
    let reset = Utc::now().timestamp() + 3;
    world.metal.script(
        &format!("/metal/v1/organizations/{ORG}"),
        Reply::json(200, &organization_json())
            .header("X-RateLimit-Limit", "1000")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset", &reset.to_string()),
    );

    world.once(&Setup::all()).await.assert_all_delivered();
    let hits = world.metal.hits();
    let paused = hits[1].at - hits[0].at;
    assert!(
        paused >= Duration::from_millis(900),
        "the next request came after {paused:?}"
    );
    world.verify().await;
}

#[tokio::test]
async fn a_backlog_beyond_the_page_cap_is_delivered_over_several_runs_without_loss() {
    let world = World::start().await;
    let path = device_events_path(D1);
    world.metal.add(
        &path,
        (0..25).map(|i| device_event(&eid(i), "provisioning.109", D1, ago(500 - i64::from(i)))),
    );

    // The page cap left older new events unread: not everything was delivered.
    let capped = Setup::all().with(|o| o.with_max_pages(2));
    let run = world.once(&capped).await;
    run.assert_not_all_delivered();
    assert_eq!(run.report.capped_lists, 1, "{:#?}", run.report);
    let first = world.direktiv.accepted_ids();
    assert_eq!(first.len(), 20, "two pages of ten");
    world.direktiv.clear();
    world.once(&capped).await.assert_all_delivered();
    let second = world.direktiv.accepted_ids();
    let all: HashSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(all, (0..25).map(eid).collect::<HashSet<_>>());
    assert_eq!(first.len() + second.len(), 25, "nothing twice");
    world.verify().await;
}

/// A list read before is read at its full page size from page 1: a new
/// event anywhere in the first `perPage` entries is seen, even when the list
/// is not newest first. In a steady state that is one request.
#[tokio::test]
async fn known_lists_are_read_at_full_page_size_and_see_the_whole_first_page() {
    let world = World::start().await;
    let per_page_100 = Setup::all().with(|o| o.with_per_page(100));
    let path = device_events_path(D1);
    world.metal.add(
        &path,
        (0..12).map(|i| device_event(&eid(i), "provisioning.104", D1, ago(5000 - i64::from(i)))),
    );
    world.once(&per_page_100).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids().len(), 12);
    let first = world.metal.hits_to(&path);
    assert_eq!(first.len(), 1);
    assert!(first[0].query.contains("per_page=100"), "{:?}", first[0]);

    // Steady state: one request.
    world.metal.clear_hits();
    world.direktiv.clear();
    world.once(&per_page_100).await.assert_all_delivered();
    assert_eq!(world.metal.hits_to(&path).len(), 1);
    assert!(world.direktiv.posts().is_empty());

    // A new event listed at position 11, behind ten known ones (the list is
    // not newest first there): delivered.
    world.metal.clear_hits();
    world.metal.insert_at(
        &path,
        10,
        device_event(&eid(99), "instance.reboot", D1, ago(30)),
    );
    world.once(&per_page_100).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(99)]);
    world.verify().await;
}

#[tokio::test]
async fn a_huge_or_endless_page_fails_only_its_own_list() {
    let world = World::start().await;
    let (huge, endless) = (device_events_path(D1), device_events_path(D2));
    let held_back = device_event(&eid(1), "provisioning.110", D1, ago(50));
    world.metal.add(&huge, [held_back.clone()]);
    // Once, D1's list answers 200 with about 1 MiB: its event and padding.
    let pad = " ".repeat(1024 * 1024);
    world.metal.script(
        &huge,
        Reply::json(
            200,
            &serde_json::json!({ "events": [held_back], "pad": pad }),
        ),
    );
    world.metal.add(
        &device_events_path(D3),
        [device_event(&eid(3), "power.off", D3, ago(40))],
    );
    world.metal.add(
        &project_events_path(P1),
        [project_event(&eid(4), "project.updated", P1, ago(35))],
    );
    world.metal.add(
        &project_events_path(P2),
        [project_event(&eid(5), "project.updated", P2, ago(30))],
    );
    // D2's list answers 200 with a body that never ends.
    let front = endless_front(world.metal_server.uri(), endless.clone()).await;
    let limited = Setup {
        max_response_size: Some(64 * 1024),
        ..Setup::all()
    };
    let through_front = Setup {
        api_url: Some(format!("{front}/metal/v1")),
        ..limited.clone()
    };

    let run = world.once(&through_front).await;
    run.assert_not_all_delivered();
    let accepted: HashSet<String> = world.direktiv.accepted_ids().into_iter().collect();
    assert_eq!(
        accepted,
        ids(&[&eid(3), &eid(4), &eid(5)]),
        "every other list is delivered"
    );
    let errors = run.recorder.heard().list_errors;
    for device in [D1, D2] {
        assert!(
            errors
                .iter()
                .any(|(source, error)| *source == format!("device:{device}")
                    && error.contains("larger than the limit of 65536 bytes")),
            "the list and the limit are reported: {errors:?}"
        );
    }
    assert_eq!(world.metal.hits_to(&huge).len(), 1, "not retried");

    // The page is back to its normal size: its event goes out, nothing twice.
    world.direktiv.clear();
    world.once(&limited).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(1)]);
    world.verify().await;
}

/// A page body of `events` (as the API writes it), with every `needle` in
/// the serialized text replaced by `splice` (bytes that need not be UTF-8).
fn raw_page(events: &[Value], needle: &str, splice: &[u8]) -> Vec<u8> {
    let text =
        serde_json::json!({ "events": events, "meta": { "current_page": 1, "last_page": 1 } })
            .to_string();
    let mut body = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(needle) {
        body.extend_from_slice(&rest.as_bytes()[..at]);
        body.extend_from_slice(splice);
        rest = &rest[at + needle.len()..];
    }
    body.extend_from_slice(rest.as_bytes());
    body
}

#[tokio::test]
async fn an_undecodable_event_is_skipped_reported_once_and_blocks_nothing() {
    let world = World::start().await;
    let (logs, _guard) = Logs::capture();
    // D1: three events; the middle one has a byte that is not UTF-8 inside a
    // string.
    let (a, b, c) = (eid(1), eid(2), eid(3));
    let mut broken = device_event(&b, "power.off", D1, ago(40));
    broken["body"] = Value::String("caf@@ is closed".to_owned());
    let d1_page = raw_page(
        &[
            device_event(&c, "power.on", D1, ago(30)),
            broken,
            device_event(&a, "provisioning.110", D1, ago(50)),
        ],
        "@@",
        b"\xff",
    );
    world
        .metal
        .fixed(&device_events_path(D1), Reply::raw_json(&d1_page));
    // D3: an event nested 200 levels deep between two good ones.
    let (x, deep, z) = (eid(4), eid(5), eid(6));
    let mut nested = device_event(&deep, "provisioning.109", D3, ago(35));
    nested["payload"] = Value::String("@@".to_owned());
    let deep_value = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let d3_page = raw_page(
        &[
            device_event(&z, "power.on", D3, ago(25)),
            nested,
            device_event(&x, "provisioning.110", D3, ago(45)),
        ],
        "\"@@\"",
        deep_value.as_bytes(),
    );
    world
        .metal
        .fixed(&device_events_path(D3), Reply::raw_json(&d3_page));

    let run = world.once(&Setup::all()).await;
    run.assert_all_delivered();
    let accepted = world.direktiv.accepted();
    let got: HashSet<String> = world.direktiv.accepted_ids().into_iter().collect();
    assert_eq!(got, ids(&[&a, &b, &c, &x, &z]), "the neighbours go out");
    assert_eq!(
        by_id(&accepted, &b)["data"]["body"],
        "caf\u{fffd} is closed",
        "the bad byte is replaced, the event delivered"
    );
    let text = logs.text();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("could not be decoded"))
        .collect();
    assert_eq!(warned.len(), 1, "reported once:\n{text}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains(&deep) && warned[0].contains("recursion"),
        "{}",
        warned[0]
    );
    assert_eq!(
        run.report.unmappable, 1,
        "counted in the report: {:#?}",
        run.report
    );

    // The next run sends nothing again and says nothing again.
    world.direktiv.clear();
    logs.clear();
    let run = world.once(&Setup::all()).await;
    run.assert_all_delivered();
    assert!(
        world.direktiv.posts().is_empty(),
        "{:?}",
        world.direktiv.posts()
    );
    assert!(
        !logs.text().contains("could not be decoded") && run.report.unmappable == 0,
        "reported again:\n{}",
        logs.text()
    );
    world.verify().await;
}

#[tokio::test]
async fn a_429_storm_with_retry_after_0_gets_a_handful_of_requests() {
    let world = World::start().await;
    let (logs, _guard) = Logs::capture();
    let storm = Setup {
        request_timeout: Some(Duration::from_secs(2)),
        ..Setup::all().with(|o| o.with_sweep_timeout(Duration::from_secs(5)))
    };
    let lists = [
        device_events_path(D1),
        device_events_path(D2),
        device_events_path(D3),
        project_events_path(P1),
        project_events_path(P2),
    ];
    world.metal.add(
        &lists[0],
        [device_event(&eid(1), "provisioning.110", D1, ago(30))],
    );
    for list in &lists {
        world.metal.fixed(
            list,
            Reply::metal_error(429, "Too many requests").header("Retry-After", "0"),
        );
    }

    // Five seconds of a server that answers every event list 429 and asks
    // for no wait at all.
    let run = world.once(&storm).await;
    run.assert_not_all_delivered();
    let requests = world
        .metal
        .hits()
        .iter()
        .filter(|h| lists.contains(&h.path))
        .count();
    assert!(
        (lists.len()..=3 * lists.len()).contains(&requests),
        "at most three attempts per list in the sweep, got {requests} requests"
    );
    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("rate limiting"))
        .count();
    assert!(
        (1..=4).contains(&warnings),
        "one warning per pause, got {warnings}:\n{text}"
    );

    // The storm is over: the event goes out.
    for list in &lists {
        world.metal.unfix(list);
    }
    world.once(&storm).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(1)]);
    world.verify().await;
}

#[tokio::test]
async fn event_types_send_only_matching_events_and_settle_the_rest_for_good() {
    let world = World::start().await;
    let d1 = vec![
        device_event(&eid(1), "provisioning.109", D1, ago(50)),
        device_event(&eid(2), "power.off", D1, ago(45)),
        device_event(&eid(3), "provisioning.110", D1, ago(40)),
        device_event(&eid(4), "instance.deleted", D1, ago(35)),
        device_event(&eid(5), "instance.created", D1, ago(30)),
    ];
    world.metal.add(&device_events_path(D1), d1.clone());
    world.metal.add(
        &project_events_path(P1),
        d1.into_iter()
            .chain([project_event(&eid(6), "project.updated", P1, ago(25))]),
    );
    let types = EventTypes::new(vec![
        "provisioning.*".to_owned(),
        "instance.deleted".to_owned(),
    ]);
    let filtered = Setup::all().with(|o| o.with_event_types(types));

    let run = world.once(&filtered).await;
    run.assert_all_delivered();
    let accepted = world.direktiv.accepted_ids();
    assert_each_once(&accepted);
    assert_eq!(
        accepted.into_iter().collect::<HashSet<_>>(),
        ids(&[&eid(1), &eid(3), &eid(4)])
    );
    assert_eq!(world.direktiv.posts().len(), 3, "filtered events were sent");
    assert!(
        run.report.new == 3 && run.report.filtered == 3,
        "{:#?}",
        run.report
    );

    // The next run finds them settled: nothing to send, nothing to filter
    // again, nothing pending.
    world.direktiv.clear();
    let run = world.once(&filtered).await;
    run.assert_all_delivered();
    assert!(world.direktiv.posts().is_empty());
    assert!(
        run.report.new == 0 && run.report.filtered == 0,
        "{:#?}",
        run.report
    );

    // Settled for good: without the filter they are still not sent; a new
    // event of any type is.
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(7), "power.on", D1, ago(5))],
    );
    world.once(&Setup::all()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(7)]);
    assert_eq!(world.direktiv.posts().len(), 1);
    world.verify().await;
}

#[tokio::test]
async fn a_pending_event_of_a_list_without_a_floor_is_not_passed_by_the_horizon() {
    // A fresh state, every event counts: the project's only event is three
    // hours old (older than twice the 10 min overlap), and Direktiv refuses
    // it for the whole first run. The device lists settle meanwhile and move
    // the horizon: it must not pass the project's pending event.
    let world = World::start().await;
    let old = project_event(&eid(1), "project.updated", P1, ago(3 * 3600));
    world.metal.add(&project_events_path(P1), [old]);
    world
        .direktiv
        .answer(|_, _| Reply::new(503).body("upstream unavailable"));
    world.once(&Setup::all()).await.assert_not_all_delivered();
    assert!(world.direktiv.accepted_ids().is_empty());

    // Direktiv is back: the event goes out on the next run.
    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    world.once(&Setup::all()).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), [eid(1)]);
    world.verify().await;
}
