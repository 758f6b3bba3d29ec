//! Secrets never leave through upstream text: a Metal API or a Direktiv that
//! echoes a token in an error body (a proxy or a debug endpoint can) must not
//! get it into the receiver's logs, its `--dry-run` output or the
//! `equinix.receiver.error` CloudEvents. The built binary runs against the
//! wiremock harness of `pipeline_support`.

mod pipeline_support;

use pipeline_support::*;
use serde_json::{Value, json};

const REDACTED: &str = "[REDACTED]";

/// Every byte of `secret` as `%XX`, as a proxy that URL-encodes it writes it.
fn percent_encoded(secret: &str) -> String {
    secret.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Asserts that neither token appears in `text`, raw or percent-encoded.
fn assert_no_token(what: &str, text: &str) {
    for token in [METAL_TOKEN, DIREKTIV_TOKEN] {
        for form in [token.to_owned(), percent_encoded(token)] {
            assert!(
                !text.contains(&form),
                "{what} holds the token `{form}`:\n{text}"
            );
        }
    }
}

/// The D1 device list fails with a body echoing the Metal token (raw and
/// percent-encoded) on every attempt of this run.
fn metal_echoes_its_token(world: &World) {
    let body = json!({
        "error": format!(
            "upstream proxy failed: X-Auth-Token {METAL_TOKEN} (retry with ?token={})",
            percent_encoded(METAL_TOKEN)
        )
    });
    for _ in 0..3 {
        world
            .metal
            .script(&device_events_path(D1), Reply::json(500, &body));
    }
}

#[tokio::test]
async fn tokens_echoed_in_error_bodies_never_reach_logs_or_error_events() {
    let world = World::start().await;
    metal_echoes_its_token(&world);
    let (flaky, refused) = (eid(1), eid(2));
    world.metal.add(
        &device_events_path(D2),
        [
            device_event(&flaky, "provisioning.109", D2, ago(50)),
            device_event(&refused, "provisioning.110", D2, ago(40)),
        ],
    );
    // Direktiv echoes its token: a 500 once for one event, a 400 for good
    // for the other. Error events are accepted.
    let flaky_id = flaky.clone();
    world.direktiv.answer(move |event, earlier| {
        let echo = format!("debug: request had Direktiv-Token: {DIREKTIV_TOKEN}");
        if event["type"] == "equinix.receiver.error" {
            Reply::ok()
        } else if event["id"] == flaky_id.as_str() && earlier == 0 {
            Reply::new(500).body(&echo)
        } else if event["id"] == flaky_id.as_str() {
            Reply::ok()
        } else {
            Reply::new(400).body(&format!("invalid event; {echo}"))
        }
    });

    let run = world
        .once(&["startFrom: all"], &["event-on-error: true"])
        .await;
    run.assert_code(3);

    // The upstream text was logged, without the tokens.
    assert_no_token("stderr", &run.stderr);
    assert!(run.stderr.contains(REDACTED), "{}", run.stderr);
    assert!(
        run.stderr.contains("upstream proxy failed"),
        "{}",
        run.stderr
    );

    // Everything Direktiv received is free of both tokens; the error events
    // carry the scrubbed messages.
    let posts = world.direktiv.posts();
    for post in &posts {
        assert_no_token("a CloudEvent sent to Direktiv", &post.event.to_string());
    }
    let errors: Vec<&Value> = posts
        .iter()
        .map(|p| &p.event)
        .filter(|e| e["type"] == "equinix.receiver.error")
        .collect();
    let message = |kind: &str| {
        errors
            .iter()
            .find(|e| e["data"]["kind"] == kind)
            .and_then(|e| e["data"]["message"].as_str())
            .unwrap_or_else(|| panic!("no {kind} error event among {errors:#?}"))
            .to_owned()
    };
    let api = message("equinix_api");
    assert!(api.contains("upstream proxy failed"), "{api}");
    assert!(api.contains(REDACTED), "{api}");
    let refused_message = message("delivery_permanent");
    assert!(refused_message.contains("400"), "{refused_message}");
    assert!(refused_message.contains(REDACTED), "{refused_message}");
}

#[tokio::test]
async fn dry_run_output_never_shows_a_token() {
    let world = World::start().await;
    metal_echoes_its_token(&world);
    // An event whose text echoes the Metal token, as a debug proxy might.
    let mut leaky = device_event(&eid(3), "provisioning.110", D2, ago(30));
    leaky["body"] = json!(format!("provisioned by a client using {METAL_TOKEN}"));
    world.metal.add(&device_events_path(D2), [leaky]);

    let config = world.write_config(&world.config(&["startFrom: all"], &["event-on-error: true"]));
    let run = world.run(&config, &["--once", "--dry-run"]).await;
    run.assert_code(3);

    assert_no_token("stdout", &run.stdout);
    assert_no_token("stderr", &run.stderr);
    let printed: Vec<Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one CloudEvent per line"))
        .collect();
    let event = by_id(&printed, &eid(3));
    assert_eq!(
        event["data"]["body"],
        format!("provisioned by a client using {REDACTED}")
    );
    let error = printed
        .iter()
        .find(|e| e["type"] == "equinix.receiver.error")
        .unwrap_or_else(|| panic!("no error event in\n{}", run.stdout));
    let message = error["data"]["message"].as_str().unwrap();
    assert!(message.contains(REDACTED), "{message}");
    assert!(world.direktiv.posts().is_empty(), "a dry run sends nothing");
}
