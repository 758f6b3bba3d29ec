//! End-to-end tests of what needs the process: the built binary, run with
//! `--once` as a CronJob would, against a wiremock Metal API and a wiremock
//! Direktiv (see `pipeline_support`): config keys wired to behaviour,
//! `--dry-run` output, exit codes and log lines. The engine's behaviour
//! (delivery, dedupe, floors, retries, refusals, filters) is tested
//! in-process in `crates/receiver-engine/tests/pipeline.rs`.

mod pipeline_support;

use std::collections::HashSet;

use pipeline_support::*;
use serde_json::Value;

fn ids(values: &[&str]) -> HashSet<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
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
