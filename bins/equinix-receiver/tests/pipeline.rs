//! End-to-end tests of the polling pipeline: the built binary, run with
//! `--once` as a CronJob would, against a wiremock Metal API and a wiremock
//! Direktiv (see `pipeline_support`). Each test asserts what a user would
//! see: which events Direktiv got, how often, with what context, the exit
//! code, and what the next run does.

mod pipeline_support;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline_support::*;
use serde_json::Value;

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

    world.once(&["startFrom: all"], &[]).await.assert_code(0);

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

    world.once(&["startFrom: all"], &[]).await.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids().len(), 2);

    // Nothing new: nothing is sent, and every list is read with one request.
    world.direktiv.clear();
    world.metal.clear_hits();
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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

    world.once(&[], &[]).await.assert_code(0);
    assert!(
        world.direktiv.posts().is_empty(),
        "history before the first start was sent"
    );

    // The baseline is the first start: later events go out. (One second
    // ahead, so it is later even within the clock second of the first run.)
    let new = device_event(&eid(2), "power.on", D1, ago(-1));
    world.metal.add(&device_events_path(D1), [new.clone()]);
    world.metal.add(&project_events_path(P1), [new]);
    world.once(&[], &[]).await.assert_code(0);
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

    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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
    let split = format!("startFrom: \"{}\"", rfc3339(ago(100)));
    world.once(&[&split], &[]).await.assert_code(0);
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

    world
        .once(&["startFrom: all", "levels: [project]"], &[])
        .await
        .assert_code(0);
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

    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(0);
    assert_eq!(
        world.direktiv.posts().len(),
        3,
        "no retry of an event Direktiv has"
    );
    assert!(run.stderr.contains("already=2"), "stderr:\n{}", run.stderr);

    world.direktiv.clear();
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(3);
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
    assert!(
        run.stderr.contains("refused the event for good")
            && run.stderr.contains("unsupported extension"),
        "the refusal is logged with its reason:\n{}",
        run.stderr
    );

    // Settled deliberately: the next run does not send it again.
    world.direktiv.clear();
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(3);
    let tried = world.direktiv.posts().len();
    assert!(
        (1..=3).contains(&tried),
        "at most one attempt per device in flight, then stop; got {tried}"
    );
    assert!(run.stderr.contains("401"), "stderr:\n{}", run.stderr);

    // Direktiv accepts the token again: everything goes out, once.
    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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

    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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
async fn the_old_config_keys_run_unchanged_with_an_api_url_and_a_state_path() {
    let world = World::start().await;
    // The old file (fixtures/config/old-receiver.yaml) with its URLs pointed
    // at the mocks, plus the state path and no metrics port.
    let config = |auth: &str| {
        format!(
            "equinix:\n  organizationId: {ORG}\n  packetAuthToken: {METAL_TOKEN}\n  apiUrl: {}\n\
             direktiv:\n  endpoint: {}\n  insecureSkipVerify: true\n{auth}  event-on-error: true\n\
             state:\n  path: {}\nserver:\n  enabled: false\n",
            world.api_url(),
            world.endpoint(),
            world.state_path().display()
        )
    };
    let both = config(&format!(
        "  token: {DIREKTIV_TOKEN}\n  apikey: fake-old-apikey\n"
    ));
    let path = world.write_config(&both);

    // No startFrom: the first start is the baseline, as before.
    let old = device_event(&eid(1), "provisioning.110", D1, ago(600));
    world.metal.add(&device_events_path(D1), [old]);
    world.run(&path, &["--once"]).await.assert_code(0);
    assert!(world.direktiv.posts().is_empty());

    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(2), "power.on", D1, ago(-1))],
    );
    world.run(&path, &["--once"]).await.assert_code(0);
    let posts = world.direktiv.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].token.as_deref(),
        Some(DIREKTIV_TOKEN),
        "token wins over apikey"
    );
    assert_eq!(posts[0].api_key.as_deref(), Some(DIREKTIV_TOKEN));
    assert!(posts[0].apikey.is_none());

    // Only the undocumented apikey: sent as `apikey`, as the old program did.
    let path = world.write_config(&config("  apikey: fake-old-apikey\n"));
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(3), "power.off", D1, ago(-1))],
    );
    world.direktiv.clear();
    world.run(&path, &["--once"]).await.assert_code(0);
    let posts = world.direktiv.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].apikey.as_deref(), Some("fake-old-apikey"));
    assert!(posts[0].token.is_none());
    assert!(posts[0].api_key.is_none());
    world.verify().await;
}

/// Device events of D1 and D2 that every test of authentication delivers.
fn auth_events(world: &World) -> HashSet<String> {
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&eid(1), "provisioning.109", D1, ago(40)),
            device_event(&eid(2), "provisioning.110", D1, ago(30)),
        ],
    );
    world.metal.add(
        &device_events_path(D2),
        [device_event(&eid(3), "power.on", D2, ago(35))],
    );
    ids(&[&eid(1), &eid(2), &eid(3)])
}

#[tokio::test]
async fn a_direktiv_of_either_era_gets_every_event_from_the_minimal_config() {
    for header in ["direktiv-api-key", "direktiv-token"] {
        let world = World::start().await;
        let all = auth_events(&world);
        world.direktiv.reads_token_from(header);

        // The README's config: a token, no authHeader.
        world.once(&["startFrom: all"], &[]).await.assert_code(0);
        let accepted = world.direktiv.accepted_ids();
        assert_each_once(&accepted);
        assert_eq!(
            accepted.into_iter().collect::<HashSet<_>>(),
            all,
            "a Direktiv reading {header}"
        );
        assert_eq!(world.direktiv.posts().len(), 3, "nothing was refused");
        world.verify().await;
    }
}

#[tokio::test]
async fn auth_header_narrows_the_token_to_one_header() {
    let world = World::start().await;
    let all = auth_events(&world);
    world
        .once(&["startFrom: all"], &["authHeader: Direktiv-Token"])
        .await
        .assert_code(0);
    assert_eq!(
        world
            .direktiv
            .accepted_ids()
            .into_iter()
            .collect::<HashSet<_>>(),
        all
    );
    for post in world.direktiv.posts() {
        assert_eq!(post.token.as_deref(), Some(DIREKTIV_TOKEN));
        assert!(post.api_key.is_none(), "Direktiv-Api-Key was sent");
        assert!(post.apikey.is_none() && post.authorization.is_none());
    }
    world.verify().await;
}

#[tokio::test]
async fn a_refused_token_names_the_headers_it_went_in_and_suggests_auth_header() {
    let world = World::start().await;
    auth_events(&world);
    // A Direktiv that reads only `apikey`, which is sent only on request.
    world.direktiv.reads_token_from("apikey");

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(3);
    assert!(
        run.stderr
            .contains("the token was sent in Direktiv-Token and Direktiv-Api-Key"),
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("direktiv.authHeader"),
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains(DIREKTIV_TOKEN), "the token was logged");

    // Narrowed to the wrong one header: the message names that header alone.
    let run = world
        .once(&["startFrom: all"], &["authHeader: Direktiv-Api-Key"])
        .await;
    run.assert_code(3);
    assert!(
        run.stderr
            .contains("the token was sent in Direktiv-Api-Key:"),
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains(DIREKTIV_TOKEN), "the token was logged");

    // The header it reads: everything goes out.
    world.direktiv.clear();
    world
        .once(&["startFrom: all"], &["authHeader: apikey"])
        .await
        .assert_code(0);
    assert_eq!(world.direktiv.accepted_ids().len(), 3);
    world.verify().await;
}

#[tokio::test]
async fn the_old_config_file_itself_passes_check() {
    let world = World::start().await;
    let run = world
        .run(&fixture("config/old-receiver.yaml"), &["--check"])
        .await;
    run.assert_code(0);
}

#[tokio::test]
async fn a_bad_config_exits_78_listing_every_problem_before_any_request() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(1), "power.on", D1, ago(5))],
    );
    let config = format!(
        "equinix:\n  organizationId: {ORG}\n  apiUrl: not a url\n  pollIntervall: 5s\n  \
         inventoryRefresh: ten minutes\n\
         direktiv:\n  endpoint: {}\n  token: {DIREKTIV_TOKEN}\n\
         state:\n  path: {}\n",
        world.endpoint(),
        world.state_path().display()
    );
    let path = world.write_config(&config);

    for args in [&["--once"][..], &["--once", "--dry-run"], &[]] {
        let run = world.run(&path, args).await;
        run.assert_code(78);
        for needle in [
            "equinix.packetAuthToken",
            "equinix.apiUrl",
            "equinix.pollIntervall",
            "pollInterval",
            "equinix.inventoryRefresh",
            "4 problems",
        ] {
            assert!(
                run.stderr.contains(needle),
                "{args:?}: stderr lacks {needle:?}:\n{}",
                run.stderr
            );
        }
    }
    assert!(
        world.metal.hits().is_empty(),
        "a request was made: {:?}",
        world.metal.hits()
    );
    assert!(world.direktiv.posts().is_empty());
    assert!(
        !world.state_path().exists(),
        "a bad config touched the state"
    );
    world.verify().await;
}

#[tokio::test]
async fn once_dry_run_prints_cloudevents_and_sends_nothing() {
    let world = World::start().await;
    let events = [
        device_event(&eid(1), "provisioning.109", D1, ago(40)),
        unknown_fields_event(ago(35)),
        device_event(&eid(2), "power.on", D3, ago(30)),
    ];
    world
        .metal
        .add(&device_events_path(D1), events[..2].to_vec());
    world
        .metal
        .add(&device_events_path(D3), [events[2].clone()]);
    world.metal.add(
        &project_events_path(P2),
        [project_event(&eid(3), "project.updated", P2, ago(20))],
    );
    let config = world.write_config(&world.config(&["startFrom: all"], &[]));

    let run = world.run(&config, &["--once", "--dry-run"]).await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "one line per event:\n{}", run.stdout);
    let mut seen = HashSet::new();
    for line in &lines {
        let value: Value = serde_json::from_str(line).expect("each line is JSON");
        let event: cloudevents::Event =
            serde_json::from_str(line).expect("each line is a CloudEvent");
        use cloudevents::AttributesReader as _;
        assert_eq!(event.specversion(), cloudevents::event::SpecVersion::V10);
        assert_eq!(event.id(), value["id"].as_str().unwrap());
        assert!(
            event
                .source()
                .starts_with("direktiv/listener/equinix/Direktiv%20Labs%20GmbH/")
        );
        seen.insert(event.id().to_owned());
    }
    let rescue = events[1]["id"].as_str().unwrap();
    assert_eq!(seen, ids(&[&eid(1), &eid(2), &eid(3), rescue]));
    assert!(run.stderr.contains("sweep done"), "logs go to stderr");
    assert!(
        world.direktiv.posts().is_empty(),
        "--dry-run sent to Direktiv"
    );
    assert!(
        !world.state_path().exists(),
        "--dry-run wrote the state file"
    );
    world.verify().await;
}

#[tokio::test]
async fn pages_are_read_until_the_settled_part_and_steady_state_reads_one_page() {
    let world = World::start().await;
    let path = device_events_path(D1);
    // 30 events before the baseline, then 25 new ones: three pages of 10
    // hold all the new events (the third reaches the settled part).
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
                ago(500 - i64::from(i) * 10),
            )
        })
        .collect();
    world.metal.add(&path, new.clone());
    let start = format!("startFrom: \"{}\"", rfc3339(ago(1000)));

    world.once(&[&start], &[]).await.assert_code(0);
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
    world.once(&[&start], &[]).await.assert_code(0);
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

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(0);
    assert_eq!(
        world
            .direktiv
            .accepted_ids()
            .into_iter()
            .collect::<HashSet<_>>(),
        ids(&[&eid(1), &eid(2)])
    );
    assert!(
        run.stderr.contains("refreshing the inventory"),
        "stderr:\n{}",
        run.stderr
    );
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
    let config = world.write_config(&world.config(&["startFrom: all", "pollInterval: 200ms"], &[]));

    let mut child = std::process::Command::new(BIN)
        .arg(&config)
        .env_remove("METAL_AUTH_TOKEN")
        .env_remove("DIREKTIV_TOKEN")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let projects = format!("/metal/v1/organizations/{ORG}/projects");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while world.metal.hits_to(&projects).len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || {
        let _ = child.stdin.take();
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        world.metal.hits_to(&projects).len() >= 2,
        "the 404 did not refresh the inventory:\n{stderr}"
    );
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
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

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(3);
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
    assert!(
        run.stderr.contains("could not read an event list"),
        "stderr:\n{}",
        run.stderr
    );

    world.direktiv.clear();
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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

    world.once(&["startFrom: all"], &[]).await.assert_code(3);
    let posts = world.direktiv.posts();
    assert_eq!(posts.len(), 3, "one attempt and maxRetries (2) retries");
    assert!(
        posts.iter().all(|p| p.event["id"] == eid(1)),
        "the newer event overtook the older one"
    );

    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids(), [eid(1), eid(2)]);
    world.verify().await;
}

#[tokio::test]
async fn a_refused_metal_token_fails_the_run_with_a_clear_message() {
    let world = World::start().await;
    let text = world
        .config(&[], &[])
        .replace(METAL_TOKEN, "metal-wrong-token-000000");
    let config = world.write_config(&text);

    let run = world.run(&config, &["--once"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("packetAuthToken"),
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("metal-wrong-token"),
        "the token leaked"
    );
    assert_eq!(world.metal.hits().len(), 1, "stopped at the first refusal");
    assert!(world.direktiv.posts().is_empty());
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

    world
        .once(&["startFrom: all", "levels: [organization]"], &[])
        .await
        .assert_code(0);
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

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(0);
    assert_eq!(
        world.direktiv.accepted_ids(),
        [eid(2)],
        "it does not block the device"
    );
    assert!(
        run.stderr.contains("cannot become a CloudEvent"),
        "stderr:\n{}",
        run.stderr
    );

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(0);
    assert!(
        !run.stderr.contains("cannot become a CloudEvent"),
        "reported again on every run:\n{}",
        run.stderr
    );
    world.verify().await;
}

#[tokio::test]
async fn a_rate_limit_remaining_of_zero_pauses_every_request_until_the_reset() {
    let world = World::start().await;
    let reset = Utc::now().timestamp() + 2;
    world.metal.script(
        &format!("/metal/v1/organizations/{ORG}"),
        Reply::json(200, &organization_json())
            .header("X-RateLimit-Limit", "1000")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset", &reset.to_string()),
    );

    world.once(&["startFrom: all"], &[]).await.assert_code(0);
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
    world
        .once(&["startFrom: all", "maxPages: 2"], &[])
        .await
        .assert_code(3);
    let first = world.direktiv.accepted_ids();
    assert_eq!(first.len(), 20, "two pages of ten");
    world.direktiv.clear();
    world
        .once(&["startFrom: all", "maxPages: 2"], &[])
        .await
        .assert_code(0);
    let second = world.direktiv.accepted_ids();
    let all: HashSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(all, (0..25).map(eid).collect::<HashSet<_>>());
    assert_eq!(first.len() + second.len(), 25, "nothing twice");
    world.verify().await;
}

/// A list read before is first asked for a small page: in a steady state its
/// newest events already reach the settled part. When more than that is new,
/// the list is read again from page 1 at the full page size, and nothing is
/// skipped.
#[tokio::test]
async fn known_lists_are_probed_with_a_small_page_and_reread_when_much_is_new() {
    let world = World::start().await;
    let path = device_events_path(D1);
    world.metal.add(
        &path,
        (0..5).map(|i| device_event(&eid(i), "provisioning.104", D1, ago(900 - i64::from(i)))),
    );
    world
        .once(&["startFrom: all", "perPage: 100"], &[])
        .await
        .assert_code(0);
    assert_eq!(world.direktiv.accepted_ids().len(), 5);
    let first = world.metal.hits_to(&path);
    assert_eq!(first.len(), 1);
    assert!(first[0].query.contains("per_page=100"), "{:?}", first[0]);

    // Steady state: one small request.
    world.metal.clear_hits();
    world.direktiv.clear();
    world
        .once(&["startFrom: all", "perPage: 100"], &[])
        .await
        .assert_code(0);
    let probe = world.metal.hits_to(&path);
    assert_eq!(probe.len(), 1, "{probe:?}");
    assert!(probe[0].query.contains("per_page=10"), "{:?}", probe[0]);
    assert!(world.direktiv.posts().is_empty());

    // Fifteen new events: the probe holds ten, all new, so the list is read
    // again at full size and all fifteen go out once, oldest first.
    world.metal.clear_hits();
    world.metal.add(
        &path,
        (10..25).map(|i| device_event(&eid(i), "instance.reboot", D1, ago(300 - i64::from(i)))),
    );
    world
        .once(&["startFrom: all", "perPage: 100"], &[])
        .await
        .assert_code(0);
    let reads = world.metal.hits_to(&path);
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads[0].query.contains("per_page=10"), "{:?}", reads[0]);
    assert!(reads[1].query.contains("per_page=100"), "{:?}", reads[1]);
    let sent = world.direktiv.accepted_ids();
    assert_eq!(sent, (10..25).map(eid).collect::<Vec<_>>());
    world.verify().await;
}

/// `--once --dry-run` on an existing state previews exactly what the next real
/// run would send, and leaves the state file as it was.
#[tokio::test]
async fn a_dry_run_on_an_existing_state_previews_only_what_is_new() {
    let world = World::start().await;
    let path = device_events_path(D1);
    world.metal.add(
        &path,
        [device_event(&eid(1), "provisioning.110", D1, ago(120))],
    );
    let config = world.write_config(&world.config(&["startFrom: all"], &[]));
    world.run(&config, &["--once"]).await.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids(), vec![eid(1)]);
    let state_before = std::fs::read(world.state_path()).expect("the state file");

    world.direktiv.clear();
    world.metal.add(
        &path,
        [device_event(&eid(2), "instance.reboot", D1, ago(30))],
    );
    let run = world.run(&config, &["--once", "--dry-run"]).await;
    run.assert_code(0);
    let printed: Vec<Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(printed.len(), 1, "{}", run.stdout);
    assert_eq!(printed[0]["id"], eid(2));
    assert!(world.direktiv.posts().is_empty(), "the dry run sent");
    assert_eq!(
        std::fs::read(world.state_path()).expect("the state file"),
        state_before,
        "the dry run changed the state file"
    );

    world.run(&config, &["--once"]).await.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids(), vec![eid(2)]);
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
    let config = world
        .config(&["startFrom: all", "maxResponseSize: 64KiB"], &[])
        .replace(&world.api_url(), &format!("{front}/metal/v1"));

    let run = world.run(&world.write_config(&config), &["--once"]).await;
    run.assert_code(3);
    let accepted: HashSet<String> = world.direktiv.accepted_ids().into_iter().collect();
    assert_eq!(
        accepted,
        ids(&[&eid(3), &eid(4), &eid(5)]),
        "every other list is delivered"
    );
    for device in [D1, D2] {
        assert!(
            run.stderr
                .lines()
                .any(|line| line.contains("could not read an event list")
                    && line.contains(&format!("device:{device}"))
                    && line.contains("larger than the limit of 65536 bytes")),
            "the list and the limit are logged:\n{}",
            run.stderr
        );
    }
    assert_eq!(world.metal.hits_to(&huge).len(), 1, "not retried");

    // The page is back to its normal size: its event goes out, nothing twice.
    world.direktiv.clear();
    world
        .once(&["startFrom: all", "maxResponseSize: 64KiB"], &[])
        .await
        .assert_code(0);
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

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(0);
    let accepted = world.direktiv.accepted();
    let got: HashSet<String> = world.direktiv.accepted_ids().into_iter().collect();
    assert_eq!(got, ids(&[&a, &b, &c, &x, &z]), "the neighbours go out");
    assert_eq!(
        by_id(&accepted, &b)["data"]["body"],
        "caf\u{fffd} is closed",
        "the bad byte is replaced, the event delivered"
    );
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("could not be decoded"))
        .collect();
    assert_eq!(warned.len(), 1, "reported once:\n{}", run.stderr);
    assert!(
        warned[0].contains("WARN") && warned[0].contains(&deep) && warned[0].contains("recursion"),
        "{}",
        warned[0]
    );
    assert!(
        run.stderr.contains("unmappable=1"),
        "counted in the sweep line:\n{}",
        run.stderr
    );

    // The next run sends nothing again and says nothing again.
    world.direktiv.clear();
    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(0);
    assert!(
        world.direktiv.posts().is_empty(),
        "{:?}",
        world.direktiv.posts()
    );
    assert!(
        !run.stderr.contains("could not be decoded") && run.stderr.contains("unmappable=0"),
        "reported again:\n{}",
        run.stderr
    );
    world.verify().await;
}

#[tokio::test]
async fn a_429_storm_with_retry_after_0_gets_a_handful_of_requests() {
    let world = World::start().await;
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
    let run = world
        .once(&["startFrom: all", "timeout: 2s", "sweepTimeout: 5s"], &[])
        .await;
    run.assert_code(3);
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
    let warnings = run
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("rate limiting"))
        .count();
    assert!(
        (1..=4).contains(&warnings),
        "one warning per pause, got {warnings}:\n{}",
        run.stderr
    );

    // The storm is over: the event goes out.
    for list in &lists {
        world.metal.unfix(list);
    }
    world
        .once(&["startFrom: all", "timeout: 2s", "sweepTimeout: 5s"], &[])
        .await
        .assert_code(0);
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
    let types = r#"eventTypes: ["provisioning.*", "instance.deleted"]"#;

    let run = world.once(&["startFrom: all", types], &[]).await;
    run.assert_code(0);
    let accepted = world.direktiv.accepted_ids();
    assert_each_once(&accepted);
    assert_eq!(
        accepted.into_iter().collect::<HashSet<_>>(),
        ids(&[&eid(1), &eid(3), &eid(4)])
    );
    assert_eq!(world.direktiv.posts().len(), 3, "filtered events were sent");
    assert!(
        run.stderr.contains("new=3") && run.stderr.contains("filtered=3"),
        "stderr:\n{}",
        run.stderr
    );

    // The next run finds them settled: nothing to send, nothing to filter
    // again, nothing pending.
    world.direktiv.clear();
    let run = world.once(&["startFrom: all", types], &[]).await;
    run.assert_code(0);
    assert!(world.direktiv.posts().is_empty());
    assert!(
        run.stderr.contains("new=0") && run.stderr.contains("filtered=0"),
        "stderr:\n{}",
        run.stderr
    );

    // Settled for good: without the filter they are still not sent; a new
    // event of any type is.
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(7), "power.on", D1, ago(5))],
    );
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids(), [eid(7)]);
    assert_eq!(world.direktiv.posts().len(), 1);
    world.verify().await;
}

#[tokio::test]
async fn type_and_source_prefixes_shape_every_cloudevent_and_the_dry_run_shows_the_same() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(1), "provisioning.110", D1, ago(40))],
    );
    world.metal.add(
        &project_events_path(P2),
        [project_event(&eid(2), "project.updated", P2, ago(30))],
    );
    let prefix = "https://events.example.com/metal";
    let direktiv = [
        "typePrefix: com.example.",
        "sourcePrefix: https://events.example.com/metal/",
        "event-on-error: true",
    ];
    // One list fails, so an error event goes out too.
    let failing = device_events_path(D3);
    let check = |events: &[Value]| {
        let by = |id: &str| by_id(events, id).clone();
        assert_eq!(by(&eid(1))["type"], "com.example.provisioning.110");
        assert_eq!(
            by(&eid(1))["source"],
            format!("{prefix}/Direktiv%20Labs%20GmbH/Edge%20Fleet%20%232")
        );
        assert_eq!(by(&eid(2))["type"], "com.example.project.updated");
        assert_eq!(
            by(&eid(2))["source"],
            format!("{prefix}/Direktiv%20Labs%20GmbH/Direktiv%20EKS%20Project")
        );
        assert_eq!(
            by(&eid(1))["data"]["type"],
            "provisioning.110",
            "data is unchanged"
        );
        let error = events
            .iter()
            .find(|e| e["type"] == "equinix.receiver.error")
            .unwrap_or_else(|| panic!("no error event among {events:#?}"));
        assert_eq!(error["source"], format!("{prefix}/Direktiv%20Labs%20GmbH"));
        assert_eq!(events.len(), 3, "{events:#?}");
    };

    world
        .metal
        .script(&failing, Reply::metal_error(422, "unprocessable"));
    let config = world.write_config(&world.config(&["startFrom: all"], &direktiv));
    let run = world.run(&config, &["--once", "--dry-run"]).await;
    run.assert_code(3);
    let printed: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    check(&printed);
    assert!(world.direktiv.posts().is_empty());

    world
        .metal
        .script(&failing, Reply::metal_error(422, "unprocessable"));
    world.run(&config, &["--once"]).await.assert_code(3);
    check(&world.direktiv.accepted());
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
    world.once(&["startFrom: all"], &[]).await.assert_code(3);
    assert!(world.direktiv.accepted_ids().is_empty());

    // Direktiv is back: the event goes out on the next run.
    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    world.once(&["startFrom: all"], &[]).await.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids(), [eid(1)]);
    world.verify().await;
}
