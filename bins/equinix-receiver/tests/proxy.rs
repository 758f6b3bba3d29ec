//! End-to-end: a proxy in front of Direktiv that answers a 2xx in its place
//! (an SSO login page as `200 text/html`, or a bare `204`). Nothing it
//! swallowed counts as delivered: every event stays pending, one ERROR names
//! the endpoint, the status and the content type, no error event is sent
//! through it, and once the proxy lets requests through, every event
//! reaches Direktiv.

mod pipeline_support;

use pipeline_support::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const LOGIN_PAGE: &str = "<!DOCTYPE html><html><head><title>Sign in - Corp SSO</title>\
    </head><body><form method=\"post\" action=\"/oauth2/start\"></form></body></html>";

/// A proxy that answers every POST with `answer`, and its broadcast URL.
async fn proxy_answering(answer: ResponseTemplate) -> (MockServer, String) {
    let proxy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&proxy)
        .await;
    let endpoint = format!("{}{BROADCAST}", proxy.uri());
    (proxy, endpoint)
}

/// Three device events of two devices; their ids.
fn three_events(world: &World) -> Vec<String> {
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
    vec![eid(1), eid(2), eid(3)]
}

/// Runs `--once` through a proxy answering `answer`, checks that nothing was
/// taken as delivered, then runs again straight to Direktiv and checks that
/// every event arrives: they had stayed pending.
async fn swallowed_then_delivered(answer: ResponseTemplate, status: &str, content_type: &str) {
    let world = World::start().await;
    let mut expected = three_events(&world);
    expected.sort();
    let (proxy, proxy_endpoint) = proxy_answering(answer).await;
    let direct = world.config(&["startFrom: all"], &["event-on-error: true"]);
    let through_proxy = direct.replace(&world.endpoint(), &proxy_endpoint);
    assert_ne!(direct, through_proxy);

    let run = world
        .run(&world.write_config(&through_proxy), &["--once"])
        .await;
    run.assert_code(3);
    let error = run
        .stderr
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("not Direktiv"))
        .or_else(|| {
            run.stderr
                .lines()
                .find(|line| line.contains("ERROR") && line.contains("a proxy in the way"))
        })
        .unwrap_or_else(|| panic!("no ERROR about the proxy; stderr:\n{}", run.stderr));
    for needle in [proxy_endpoint.as_str(), status, content_type] {
        assert!(error.contains(needle), "{needle} missing from: {error}");
    }
    assert!(!run.stderr.contains(DIREKTIV_TOKEN), "the token was logged");
    // The first answer stopped the sweep: at most the first event of each
    // device (two lanes in flight) was tried, and no error event.
    let posts = proxy.received_requests().await.unwrap();
    assert!(
        (1..=2).contains(&posts.len()),
        "the proxy got {} requests",
        posts.len()
    );
    for post in &posts {
        assert!(
            !String::from_utf8_lossy(&post.body).contains("equinix.receiver.error"),
            "an error event went to the proxy"
        );
    }
    assert!(world.direktiv.accepted_ids().is_empty());

    // The proxy is out of the way: every event was still pending.
    let run = world.run(&world.write_config(&direct), &["--once"]).await;
    run.assert_code(0);
    let mut delivered = world.direktiv.accepted_ids();
    delivered.retain(|id| expected.contains(id));
    delivered.sort();
    assert_eq!(delivered, expected);
}

#[tokio::test]
async fn a_login_page_answered_as_200_delivers_nothing_and_leaves_every_event_pending() {
    swallowed_then_delivered(
        ResponseTemplate::new(200).set_body_raw(LOGIN_PAGE, "text/html; charset=utf-8"),
        "200",
        "text/html",
    )
    .await;
}

#[tokio::test]
async fn a_204_from_a_proxy_delivers_nothing_and_leaves_every_event_pending() {
    swallowed_then_delivered(ResponseTemplate::new(204), "204", "no content type").await;
}
