//! The simulated Direktiv endpoint over real HTTP: both generations' content
//! types and duplicate rules, auth, faults, outages and the JSON-lines sink.

use metal_sim::{
    DirektivFaults, DirektivSim, DirektivSimConfig, DirektivSimHandle, Generation, Mode,
};
use serde_json::{Value, json};

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// Starts a simulator and a client that sends its token.
async fn start(config: DirektivSimConfig) -> (DirektivSimHandle, Client) {
    let sim = DirektivSim::start(config)
        .await
        .expect("start the simulator");
    let client = Client {
        http: reqwest::Client::new(),
        url: sim.endpoint_url(),
        header: sim.auth_header().to_owned(),
        token: sim.token().unwrap_or_default().to_owned(),
    };
    (sim, client)
}

struct Client {
    http: reqwest::Client,
    url: String,
    header: String,
    token: String,
}

impl Client {
    async fn post(&self, content_type: &str, body: &Value) -> (u16, String) {
        let response = self
            .http
            .post(&self.url)
            .header(&self.header, &self.token)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

fn event(id: &str, source: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": "provisioning.110",
        "datacontenttype": "application/json",
        "data": { "id": id, "type": "provisioning.110" },
    })
}

fn v1() -> DirektivSimConfig {
    DirektivSimConfig {
        generation: Generation::V1,
        ..DirektivSimConfig::default()
    }
}

#[tokio::test]
async fn v2_accepts_structured_and_batch_with_an_empty_200() {
    let (sim, client) = start(DirektivSimConfig::default()).await;
    assert!(
        client
            .url
            .ends_with("/api/v2/namespaces/metal/events/broadcast")
    );
    assert_eq!(
        client.post(STRUCTURED, &event("a", "s")).await,
        (200, String::new())
    );
    assert_eq!(
        client.post("application/json", &event("b", "s")).await,
        (200, String::new())
    );
    let batch = json!([event("c", "s"), event("d", "s"), event("e", "s")]);
    assert_eq!(client.post(BATCH, &batch).await, (200, String::new()));
    assert_eq!(sim.accepted_ids(), ["a", "b", "c", "d", "e"]);
    let accepted = sim.accepted();
    assert_eq!(accepted[2].mode, Mode::Batch);
    assert_eq!(accepted[0].event, event("a", "s"));
    assert_eq!(accepted[0].namespace, "metal");
    let stats = sim.stats();
    assert_eq!((stats.events_accepted, stats.batches_accepted), (5, 1));
}

#[tokio::test]
async fn v2_rejects_a_repeated_source_and_id_with_the_history_error() {
    let (sim, client) = start(DirektivSimConfig::default()).await;
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 200);
    let (status, body) = client.post(STRUCTURED, &event("a", "s")).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("Error appending CloudEvent to history"),
        "{body}"
    );
    assert_eq!(
        client.post(STRUCTURED, &event("a", "other source")).await.0,
        200,
        "same id, other source"
    );
    let (status, _) = client
        .post(BATCH, &json!([event("new", "s"), event("a", "s")]))
        .await;
    assert_eq!(status, 400, "a batch holding a duplicate is refused whole");
    assert_eq!(sim.accepted_count(), 2);
    assert_eq!(sim.stats().duplicates_rejected, 2);
}

#[tokio::test]
async fn v2_refuses_binary_mode_and_other_content_types() {
    let (sim, client) = start(DirektivSimConfig::default()).await;
    let binary = client
        .http
        .post(&client.url)
        .header(&client.header, &client.token)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "a")
        .header("ce-source", "s")
        .header("ce-type", "t")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), 400);
    assert_eq!(client.post("text/plain", &event("a", "s")).await.0, 415);
    assert_eq!(sim.accepted_count(), 0);
    let stats = sim.stats();
    assert_eq!((stats.binary_rejected, stats.unsupported_media), (1, 1));
    assert_eq!(
        client.post(STRUCTURED, &json!({ "id": "x" })).await.0,
        400,
        "not a CloudEvent"
    );
}

#[tokio::test]
async fn v1_answers_409_to_a_repeated_id_in_a_namespace() {
    let (sim, client) = start(v1()).await;
    assert!(client.url.ends_with("/api/namespaces/metal/broadcast"));
    assert_eq!(
        client.post(STRUCTURED, &event("a", "s")).await,
        (200, String::new())
    );
    assert_eq!(
        client.post(STRUCTURED, &event("a", "other source")).await.0,
        409
    );
    let other_ns = Client {
        url: sim.endpoint_url_for("other"),
        ..client
    };
    assert_eq!(
        other_ns.post(STRUCTURED, &event("a", "s")).await.0,
        200,
        "ids are unique per namespace"
    );
    assert_eq!(sim.stats().duplicates_rejected, 1);
    assert_eq!(sim.accepted()[1].namespace, "other");
}

#[tokio::test]
async fn v1_accepts_binary_mode() {
    let (sim, client) = start(v1()).await;
    let response = client
        .http
        .post(&client.url)
        .header(&client.header, &client.token)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "b1")
        .header("ce-source", "s")
        .header("ce-type", "provisioning.101")
        .body(r#"{"id":"b1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let accepted = sim.accepted();
    assert_eq!(accepted[0].mode, Mode::Binary);
    assert_eq!(accepted[0].event["data"], json!({ "id": "b1" }));
    assert_eq!(accepted[0].event_type, "provisioning.101");
}

#[tokio::test]
async fn the_auth_header_is_checked_by_its_configured_name() {
    let (sim, client) = start(DirektivSimConfig {
        auth_header: "Direktiv-Api-Key".to_owned(),
        token: Some("k".to_owned()),
        ..DirektivSimConfig::default()
    })
    .await;
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 200);
    let wrong_header = Client {
        header: "Direktiv-Token".to_owned(),
        ..client
    };
    assert_eq!(wrong_header.post(STRUCTURED, &event("b", "s")).await.0, 401);
    let wrong_token = Client {
        header: "direktiv-api-key".to_owned(),
        token: "nope".to_owned(),
        ..wrong_header
    };
    assert_eq!(wrong_token.post(STRUCTURED, &event("b", "s")).await.0, 401);
    assert_eq!(sim.stats().unauthorized, 2);
    assert_eq!(sim.accepted_count(), 1);
}

#[tokio::test]
async fn accepted_events_are_appended_to_the_jsonl_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sink.jsonl");
    let (sim, client) = start(DirektivSimConfig {
        jsonl_path: Some(path.clone()),
        ..DirektivSimConfig::default()
    })
    .await;
    client.post(STRUCTURED, &event("a", "s")).await;
    client.post(STRUCTURED, &event("a", "s")).await;
    client
        .post(BATCH, &json!([event("b", "s"), event("c", "s")]))
        .await;
    sim.shutdown().await;
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, [event("a", "s"), event("b", "s"), event("c", "s")]);
}

#[tokio::test]
async fn down_mode_and_injected_errors_accept_nothing() {
    let (sim, client) = start(DirektivSimConfig::default()).await;
    sim.set_down(true);
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 503);
    sim.set_down(false);
    sim.set_faults(DirektivFaults {
        internal_error: 1.0,
        ..DirektivFaults::default()
    });
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 500);
    sim.set_faults(DirektivFaults {
        unavailable: 1.0,
        ..DirektivFaults::default()
    });
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 503);
    sim.set_faults(DirektivFaults::default());
    assert_eq!(
        client.post(STRUCTURED, &event("a", "s")).await.0,
        200,
        "nothing was recorded by the failures"
    );

    let stats = sim.stats();
    assert_eq!(stats.faults.get("down"), Some(&1));
    assert_eq!(stats.faults.get("internal_error"), Some(&1));
    assert_eq!(stats.faults.get("unavailable"), Some(&1));
    assert_eq!(stats.statuses.get(&503), Some(&2));
    assert_eq!(stats.requests.get("POST broadcast"), Some(&4));
    assert_eq!(sim.accepted_count(), 1);
}

#[tokio::test]
async fn down_mode_is_switched_through_the_admin_endpoint() {
    let (sim, client) = start(DirektivSimConfig::default()).await;
    let put = client
        .http
        .put(format!("{}/down", sim.admin_url()))
        .json(&json!({ "down": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 503);
    let stats: Value = client
        .http
        .get(format!("{}/stats", sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["faults"]["down"], 1);
    assert_eq!(stats["statuses"]["503"], 1);
}

#[tokio::test]
async fn a_refusing_listener_comes_back_on_the_same_port() {
    let (sim, client) = start(DirektivSimConfig::default()).await;
    sim.set_refusing(true).await.unwrap();
    let error = reqwest::Client::new()
        .post(&client.url)
        .body("{}")
        .send()
        .await
        .expect_err("refused");
    assert!(error.is_connect(), "{error}");
    sim.set_refusing(false).await.unwrap();
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 200);
}

#[tokio::test(start_paused = true)]
async fn latency_is_added_to_each_answer() {
    let (sim, client) = start(DirektivSimConfig::default()).await;
    sim.set_faults(DirektivFaults {
        latency: std::time::Duration::from_secs(3),
        ..DirektivFaults::default()
    });
    let started = tokio::time::Instant::now();
    assert_eq!(client.post(STRUCTURED, &event("a", "s")).await.0, 200);
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));
}
