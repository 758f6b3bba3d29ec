//! CloudEvents stay valid when the Metal API sends control characters: an
//! event whose id or type holds one (or only whitespace) is skipped as
//! unmappable, reported once, and never blocks its neighbours; names with
//! control characters reach Direktiv without them. The built binary runs
//! against the wiremock harness of `pipeline_support`.

mod pipeline_support;

use pipeline_support::*;
use serde_json::Value;

#[tokio::test]
async fn events_with_unusable_ids_or_types_are_skipped_and_names_lose_their_controls() {
    let world = World::start().await;
    // The inventory names the device with control characters around it.
    let mut devices: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("receiver/devices-edge-fleet.json")).unwrap(),
    )
    .unwrap();
    devices["devices"][1]["hostname"] = Value::from(format!("{D2_HOST}\r\n\u{1b}"));
    world.metal.script(
        &format!("/metal/v1/projects/{P1}/devices"),
        Reply::json(200, &devices),
    );

    let good = eid(1);
    let bad_id = format!("{}\u{0}", eid(2));
    let bad_type = eid(3);
    let blank_id = "   ".to_owned();
    world.metal.add(
        &device_events_path(D2),
        [
            device_event(&good, "provisioning.110", D2, ago(40)),
            device_event(&bad_id, "provisioning.109", D2, ago(50)),
            device_event(&bad_type, "power.off\n", D2, ago(30)),
            device_event(&blank_id, "power.on", D2, ago(20)),
        ],
    );

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids(), [good.as_str()]);
    let accepted = world.direktiv.accepted();
    assert_eq!(by_id(&accepted, &good)["hostname"], D2_HOST);
    let skipped = run
        .stderr
        .lines()
        .filter(|l| l.contains("event cannot become a CloudEvent; skipped"))
        .count();
    assert_eq!(skipped, 3, "{}", run.stderr);
    for line in run.stderr.lines() {
        assert!(
            !line.contains('\u{0}'),
            "a raw control character in {line:?}"
        );
    }

    // Settled: the next run neither sends nor reports them again.
    let again = world.once(&["startFrom: all"], &[]).await;
    again.assert_code(0);
    assert_eq!(world.direktiv.posts().len(), 1);
    assert!(
        !again.stderr.contains("event cannot become a CloudEvent"),
        "{}",
        again.stderr
    );
}
