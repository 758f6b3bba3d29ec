//! The state file as an attacker or a broken disk leaves it, and the dry
//! run's use of it: a tampered state never panics, is refused with a message
//! that names the way out, and the way out works; a dry run writes nothing.

mod pipeline_support;

use pipeline_support::*;
use serde_json::json;

/// A state file as the receiver writes it (start point "all"), with the
/// device D1's floor at `floor`.
fn state_with_floor(floor: &str) -> String {
    let now = rfc3339(ago(3600));
    json!({
        "version": 1,
        "baseline": "all",
        "created": now,
        "horizon": null,
        "sources": { format!("device:{D1}"): { "floor": floor, "advanced_at": now } },
        "delivered": {},
        "undated": {}
    })
    .to_string()
}

#[tokio::test]
async fn a_floor_of_the_year_minus_262143_is_refused_and_reset_state_recovers() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(1), "power.on", D1, ago(60))],
    );
    let tampered = state_with_floor("-262143-01-01T00:00:00Z");
    std::fs::write(world.state_path(), &tampered).unwrap();

    // `run` fails the test on a panic (exit 101).
    let run = world.once(&[], &[]).await;
    run.assert_code(1);
    for part in [
        "is corrupt",
        &format!("sources[\"device:{D1}\"].floor is -262143-01-01T00:00:00Z"),
        "--reset-state",
    ] {
        assert!(run.stderr.contains(part), "{part:?} in:\n{}", run.stderr);
    }
    assert_eq!(
        std::fs::read_to_string(world.state_path()).unwrap(),
        tampered,
        "the file is left for inspection"
    );
    assert!(world.direktiv.posts().is_empty());

    let config = world.write_config(&world.config(&[], &[]));
    world
        .run(&config, &["--once", "--reset-state"])
        .await
        .assert_code(0);
    let aside: Vec<String> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the tampered file is set aside: {aside:?}");
    world.once(&[], &[]).await.assert_code(0);
    world.verify().await;
}

/// `--dry-run` used to copy the state to a predictable path under the
/// temporary directory, which a planted link could redirect. Now it writes
/// nothing at all: it even runs where no temporary directory can be written
/// (here `TMPDIR` is a regular file), and still previews exactly what the
/// next real run sends.
#[tokio::test]
async fn a_dry_run_writes_no_temporary_copy_of_the_state() {
    let world = World::start().await;
    let path = device_events_path(D1);
    world.metal.add(
        &path,
        [device_event(&eid(1), "provisioning.110", D1, ago(120))],
    );
    let config = world.write_config(&world.config(&["startFrom: all"], &[]));
    world.run(&config, &["--once"]).await.assert_code(0);
    world.direktiv.clear();
    world.metal.add(
        &path,
        [device_event(&eid(2), "instance.reboot", D1, ago(30))],
    );
    let state_before = std::fs::read(world.state_path()).unwrap();

    let not_a_dir = world.dir.path().join("tmp-is-a-file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let run = world
        .run_with_env(
            &config,
            &["--once", "--dry-run"],
            &[("TMPDIR", not_a_dir.as_os_str())],
        )
        .await;
    run.assert_code(0);
    let printed: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(printed.len(), 1, "{}", run.stdout);
    assert_eq!(printed[0]["id"], eid(2));
    assert_eq!(std::fs::read(world.state_path()).unwrap(), state_before);
    assert!(world.direktiv.posts().is_empty(), "the dry run sent");
    world.verify().await;
}
