//! A lost event: the Metal API writes `created_at` in whole seconds, so
//! events created in the second a list was read can appear after the read
//! with the same `created_at` as the newest event that read settled (the
//! list's floor). A later read must not stop at a page whose last event sits
//! at the floor while more events of that second follow on the next page.
//!
//! Found by the latency benchmark (bins/bench): one project-level event of
//! 2,941 never reached Direktiv.

mod support;

use chrono::TimeDelta;
use receiver_engine::Levels;
use support::*;

/// `setup` with `perPage: 100` and `levels: [project]`.
fn project_lists(setup: Setup) -> Setup {
    let project = Levels {
        project: true,
        device: false,
        organization: false,
    };
    setup.with(|o| o.with_per_page(100).with_levels(project))
}

#[tokio::test]
async fn events_of_the_floors_second_that_appear_after_the_read_are_all_delivered() {
    let world = World::start().await;
    let floor_second = ago(60);
    let list = project_events_path(P1);
    // Ties are served by id, descending: `late_b` (30) comes before
    // `late_c` (20), which comes before `settled_a` (10).
    let settled_a = eid(10);
    let (late_b, late_c) = (eid(30), eid(20));

    // Run 1 reads one project event: P1's floor becomes its second.
    world.metal.add(
        &list,
        [project_event(
            &settled_a,
            "project.updated",
            P1,
            floor_second,
        )],
    );
    let equinix = project_lists(Setup::all());
    world.once(&equinix).await.assert_all_delivered();
    assert_eq!(world.direktiv.accepted_ids(), vec![settled_a.clone()]);

    // Later in that same second two more events were created (visible only
    // after run 1 read the list), and nine more in the seconds after.
    world.metal.add(
        &list,
        [
            project_event(&late_b, "project.updated", P1, floor_second),
            project_event(&late_c, "project.updated", P1, floor_second),
        ],
    );
    let newer: Vec<String> = (1..=9).map(|n| eid(100 + n)).collect();
    world.metal.add(
        &list,
        newer.iter().enumerate().map(|(i, id)| {
            let at = floor_second + TimeDelta::seconds(i as i64 + 1);
            project_event(id, "project.updated", P1, at)
        }),
    );

    // The probe page (10 events) holds the nine newer events and `late_b`,
    // which sits at the floor; `late_c` is the 11th. Two runs: the second
    // shows the event is not merely late but never read again.
    world.once(&equinix).await.assert_all_delivered();
    world.once(&equinix).await.assert_all_delivered();

    let got = world.direktiv.accepted_ids();
    for id in newer.iter().chain([&late_b, &late_c]) {
        assert!(
            got.contains(id),
            "{id} was never delivered; Direktiv got {got:?}"
        );
    }
    assert_eq!(got.len(), 12, "each event exactly once: {got:?}");
    world.verify().await;
}

/// The state file's baseline, as the first run wrote it.
fn stored_baseline(world: &World) -> chrono::DateTime<chrono::Utc> {
    let text = std::fs::read_to_string(world.state_path()).expect("the state file");
    let state: serde_json::Value = serde_json::from_str(&text).expect("state is JSON");
    let at = state["baseline"].as_str().expect("a baseline time");
    chrono::DateTime::parse_from_rfc3339(at)
        .expect("an RFC 3339 baseline")
        .with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn an_event_of_the_first_starts_second_created_after_the_start_is_delivered() {
    let world = World::start().await;
    let equinix = project_lists(Setup::default());
    world.once(&equinix).await.assert_all_delivered();
    let baseline = stored_baseline(&world);

    // Created after the first start (the run ended before it was listed),
    // in the same second: the API writes that second without a fraction.
    let late = eid(40);
    let second = chrono::DateTime::from_timestamp(baseline.timestamp(), 0).expect("a time");
    world.metal.add(
        &project_events_path(P1),
        [project_event(&late, "project.updated", P1, second)],
    );
    world.once(&equinix).await.assert_all_delivered();

    assert_eq!(
        world.direktiv.accepted_ids(),
        vec![late.clone()],
        "created after the baseline {baseline}, listed as {second}: it must be sent"
    );
    world.verify().await;
}
