//! The simulated Metal API over real HTTP: pagination, auth, rate limits,
//! lists, runtime changes and every fault.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use metal_sim::{EventScope, MetalFaults, MetalSim, MetalSimConfig, MetalSimHandle, RateLimit};
use serde_json::Value;

/// A fixed end of history, so a seed gives the same world on every run.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn config() -> MetalSimConfig {
    MetalSimConfig {
        projects: 2,
        devices_per_project: 3,
        history_per_device: 30,
        history_end: Some(epoch()),
        ..MetalSimConfig::default()
    }
}

/// Starts a simulator and a client that sends its token.
async fn start(config: MetalSimConfig) -> (MetalSimHandle, Client) {
    let sim = MetalSim::start(config).await.expect("start the simulator");
    let client = Client {
        http: reqwest::Client::new(),
        base: sim.base_url(),
        token: sim.token().to_owned(),
    };
    (sim, client)
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .expect("request")
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// Follows `meta.next` (relative, with the base path) from `path`.
    async fn walk(&self, path: &str) -> Vec<Value> {
        let origin = self.base.trim_end_matches("/metal/v1").to_owned();
        let mut url = format!("{}{path}", self.base);
        let mut items = Vec::new();
        for _ in 0..1000 {
            let page: Value = self
                .http
                .get(&url)
                .header("X-Auth-Token", &self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            items.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["meta"]["next"]["href"].as_str() {
                Some(next) => url = format!("{origin}{next}"),
                None => return items,
            }
        }
        panic!("more than 1000 pages");
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_device_list_pages_newest_first_with_spec_meta() {
    let (sim, client) = start(config()).await;
    let device = &sim.projects()[0].devices[0].id;
    let page = client
        .json(&format!("/devices/{device}/events?per_page=7"))
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 7);
    let meta = &page["meta"];
    assert_eq!(meta["total"], 30);
    assert_eq!(meta["current_page"], 1);
    assert_eq!(meta["last_page"], 5);
    assert_eq!(meta["previous"], Value::Null);
    assert_eq!(
        meta["next"]["href"],
        format!("/metal/v1/devices/{device}/events?page=2&per_page=7")
    );
    assert_eq!(
        meta["last"]["href"],
        format!("/metal/v1/devices/{device}/events?page=5&per_page=7")
    );
    assert_eq!(
        meta["self"]["href"],
        format!("/metal/v1/devices/{device}/events?page=1&per_page=7")
    );

    let last = client
        .json(&format!("/devices/{device}/events?page=5&per_page=7"))
        .await;
    assert_eq!(last["events"].as_array().unwrap().len(), 2);
    assert_eq!(last["meta"]["next"], Value::Null);
    assert_eq!(
        last["meta"]["previous"]["href"],
        format!("/metal/v1/devices/{device}/events?page=4&per_page=7")
    );

    let all = client
        .walk(&format!("/devices/{device}/events?per_page=7"))
        .await;
    let expected: Vec<String> = sim
        .events()
        .into_iter()
        .rev()
        .filter(|e| e.device_id.as_deref() == Some(device))
        .map(|e| e.id)
        .collect();
    assert_eq!(ids(&all), expected, "every event once, newest first");
    let times: Vec<DateTime<Utc>> = all
        .iter()
        .map(|e| e["created_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert_eq!(all[29]["type"], "provisioning.101");
    assert_eq!(all[29]["relationships"][0]["href"], format!("#{device}"));
}

#[tokio::test]
async fn per_page_defaults_to_ten_and_is_capped_at_a_thousand() {
    let (sim, client) = start(MetalSimConfig {
        history_per_device: 150,
        ..config()
    })
    .await;
    let total = sim.event_count();
    assert!(
        total > 1000,
        "the fixture needs more than 1000 events, has {total}"
    );
    let page = client.json("/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 10);
    assert_eq!(page["meta"]["total"], total);

    let page = client.json("/events?per_page=5000").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1000);
    assert_eq!(
        page["meta"]["self"]["href"],
        "/metal/v1/events?page=1&per_page=1000"
    );
    assert_eq!(page["meta"]["last_page"], total.div_ceil(1000));

    let beyond = client.json("/events?page=99&per_page=1000").await;
    assert_eq!(beyond["events"].as_array().unwrap().len(), 0);

    let bad = client.get("/events?per_page=0").await;
    assert_eq!(bad.status(), 422);

    let everything = client.walk("/events?per_page=1000").await;
    let walked = ids(&everything);
    assert_eq!(
        walked.iter().collect::<HashSet<_>>().len(),
        total,
        "no event twice"
    );
    let expected: Vec<String> = sim.events().into_iter().rev().map(|e| e.id).collect();
    assert_eq!(walked, expected);
}

#[tokio::test]
async fn the_token_is_checked() {
    let (sim, client) = start(config()).await;
    let none = client
        .http
        .get(format!("{}/events", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert!(body["error"].is_string());
    let wrong = client
        .http
        .get(format!("{}/events", sim.base_url()))
        .header("X-Auth-Token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(client.get("/events").await.status(), 200);
    assert_eq!(sim.stats().statuses.get(&401), Some(&2));
}

#[tokio::test]
async fn rate_limit_headers_count_down_then_429() {
    let (_sim, client) = start(MetalSimConfig {
        rate_limit: RateLimit {
            limit: 3,
            window: Duration::from_secs(60),
        },
        ..config()
    })
    .await;
    for remaining in ["2", "1", "0"] {
        let response = client.get("/events").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit"], "3");
        assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
        let reset: u64 = response.headers()["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset > u64::try_from(Utc::now().timestamp()).unwrap());
    }
    let refused = client.get("/events").await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
}

#[tokio::test]
async fn a_foreign_organizations_project_shows_only_in_projects() {
    let (sim, client) = start(config()).await;
    let foreign = sim.foreign_projects();
    assert_eq!(foreign.len(), 1);
    let project_ids = |page: &Value| -> Vec<String> {
        page["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let ours = client
        .json(&format!("/organizations/{}/projects", sim.org_id()))
        .await;
    let ours = project_ids(&ours);
    assert_eq!(
        ours,
        sim.projects()
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>()
    );
    assert!(!ours.contains(&foreign[0].id));
    let all = project_ids(&client.json("/projects").await);
    assert!(all.contains(&foreign[0].id));
    assert_eq!(all.len(), 3);
    let org = client
        .json(&format!("/organizations/{}", sim.org_id()))
        .await;
    assert_eq!(org["name"], "Direktiv");
    assert_eq!(client.get("/organizations/unknown").await.status(), 404);
}

#[tokio::test]
async fn device_events_show_in_device_and_project_lists() {
    let (sim, client) = start(config()).await;
    let project = &sim.projects()[1];
    let device = &project.devices[2];
    let event = sim.emit_device_event(&device.id).unwrap();
    assert_eq!(event.scope, EventScope::Device);
    for path in [
        format!("/devices/{}/events?per_page=1", device.id),
        format!("/projects/{}/events?per_page=1", project.id),
    ] {
        let page = client.json(&path).await;
        assert_eq!(page["events"][0]["id"], event.id.as_str(), "{path}");
        assert_eq!(page["events"][0]["state"], Value::Null);
        assert!(page["events"][0]["modified_by"].is_object());
        assert!(page["events"][0]["ip"].is_string());
    }
    let project_total = client
        .json(&format!("/projects/{}/events", project.id))
        .await["meta"]["total"]
        .as_u64()
        .unwrap();
    assert_eq!(
        project_total,
        3 * 30 + 2 + 1,
        "three devices' history, two project events, the new one"
    );

    let org = client
        .json(&format!(
            "/organizations/{}/events?per_page=100",
            sim.org_id()
        ))
        .await;
    let org_ids = ids(org["events"].as_array().unwrap());
    let expected: Vec<String> = sim
        .events()
        .into_iter()
        .rev()
        .filter(|e| e.scope == EventScope::Organization && e.organization_id == sim.org_id())
        .map(|e| e.id)
        .collect();
    assert_eq!(org_ids, expected);
    assert_eq!(org_ids.len(), 2);

    let single = client.json(&format!("/events/{}", event.id)).await;
    assert_eq!(single, sim.event_json(&event.id).unwrap());
}

#[tokio::test]
async fn project_lists_can_leave_device_events_out() {
    let (sim, client) = start(MetalSimConfig {
        project_lists_include_devices: false,
        ..config()
    })
    .await;
    let project = &sim.projects()[0];
    let page = client
        .json(&format!("/projects/{}/events", project.id))
        .await;
    assert_eq!(page["meta"]["total"], 2);
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["type"].as_str().unwrap().starts_with("provisioning"))
    );
}

#[tokio::test]
async fn devices_come_and_go_at_runtime() {
    let (sim, client) = start(config()).await;
    let project = sim.projects()[0].id.clone();
    let added = sim.add_device(&project).unwrap();
    let events = client.json(&format!("/devices/{added}/events")).await;
    assert_eq!(
        events["meta"]["total"], 11,
        "instance.created and ten provisioning steps"
    );
    let devices = client.json(&format!("/projects/{project}/devices")).await;
    assert_eq!(devices["meta"]["total"], 4);

    assert!(sim.delete_device(&added));
    assert_eq!(
        client
            .get(&format!("/devices/{added}/events"))
            .await
            .status(),
        404
    );
    let devices = client.json(&format!("/projects/{project}/devices")).await;
    assert_eq!(devices["meta"]["total"], 3);
    let latest = client
        .json(&format!("/projects/{project}/events?per_page=1"))
        .await;
    assert_eq!(latest["events"][0]["type"], "instance.deleted");
    assert!(!sim.delete_device(&added));
    assert_eq!(sim.new_events().len(), 12);
}

#[tokio::test]
async fn a_seed_gives_the_same_world() {
    let a = MetalSim::start(config()).await.unwrap();
    let b = MetalSim::start(config()).await.unwrap();
    let c = MetalSim::start(MetalSimConfig {
        seed: 7,
        ..config()
    })
    .await
    .unwrap();
    let ids = |sim: &MetalSimHandle| {
        sim.events()
            .into_iter()
            .map(|e| (e.id, e.created_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(a.org_id(), b.org_id());
    assert_ne!(ids(&a), ids(&c));
    assert_eq!(
        a.emit_events(5)
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        b.emit_events(5)
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn injected_429_carries_retry_after() {
    let (sim, client) = start(MetalSimConfig {
        faults: MetalFaults {
            rate_limited: 1.0,
            retry_after: Duration::from_secs(7),
            ..MetalFaults::default()
        },
        ..config()
    })
    .await;
    let response = client.get("/events").await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(sim.stats().faults.get("rate_limited"), Some(&1));
}

#[tokio::test]
async fn injected_server_errors_use_the_configured_status() {
    let (sim, client) = start(config()).await;
    sim.set_faults(MetalFaults {
        server_error: 1.0,
        server_error_status: 502,
        ..MetalFaults::default()
    });
    assert_eq!(client.get("/events").await.status(), 502);
    sim.set_faults(MetalFaults::default());
    assert_eq!(client.get("/events").await.status(), 200);
}

#[tokio::test]
async fn max_faults_bounds_a_burst() {
    let (sim, client) = start(config()).await;
    sim.set_faults(MetalFaults {
        server_error: 1.0,
        max_faults: Some(2),
        ..MetalFaults::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(client.get("/events").await.status().as_u16());
    }
    assert_eq!(statuses, [503, 503, 200, 200]);
}

#[tokio::test]
async fn slow_responses_outlast_a_client_timeout() {
    let (sim, client) = start(config()).await;
    sim.set_faults(MetalFaults {
        slow: 1.0,
        slow_delay: Duration::from_secs(2),
        ..MetalFaults::default()
    });
    let error = client
        .http
        .get(format!("{}/events", sim.base_url()))
        .header("X-Auth-Token", sim.token())
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect_err("the client times out");
    assert!(error.is_timeout());
    assert_eq!(sim.stats().faults.get("slow"), Some(&1));
}

#[tokio::test]
async fn latency_delays_every_response() {
    let (sim, client) = start(config()).await;
    sim.set_faults(MetalFaults {
        latency: Duration::from_millis(80),
        ..MetalFaults::default()
    });
    let started = std::time::Instant::now();
    assert_eq!(client.get("/events").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn truncated_and_invalid_pages_do_not_parse() {
    let (sim, client) = start(config()).await;
    let whole = client
        .get("/events?per_page=50")
        .await
        .text()
        .await
        .unwrap();
    sim.set_faults(MetalFaults {
        truncated: 1.0,
        ..MetalFaults::default()
    });
    let truncated = client
        .get("/events?per_page=50")
        .await
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&truncated).is_err());
    assert!(truncated.len() < whole.len() && whole.starts_with(&truncated));

    sim.set_faults(MetalFaults {
        invalid_json: 1.0,
        ..MetalFaults::default()
    });
    let response = client.get("/events?per_page=50").await;
    assert_eq!(response.status(), 200);
    let invalid = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&invalid).is_err());
    assert!(invalid.len() > whole.len() - 2);
    let faults = sim.stats().faults;
    assert_eq!(
        (faults.get("truncated"), faults.get("invalid_json")),
        (Some(&1), Some(&1))
    );
}

#[tokio::test]
async fn a_repeating_next_points_at_the_page_itself() {
    let (sim, client) = start(config()).await;
    sim.set_faults(MetalFaults {
        repeat_next: 1.0,
        ..MetalFaults::default()
    });
    let page = client.json("/events?page=2").await;
    assert_eq!(page["meta"]["next"], page["meta"]["self"]);
    assert_eq!(page["meta"]["current_page"], 2);
}

#[tokio::test]
async fn faults_and_stats_are_served_on_the_admin_endpoint() {
    let (sim, client) = start(config()).await;
    let http = &client.http;
    let set = http
        .put(format!("{}/faults", sim.admin_url()))
        .json(&serde_json::json!({ "server_error": 1.0, "latency_ms": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(sim.faults().latency, Duration::from_millis(1));
    assert_eq!(client.get("/events").await.status(), 503);
    let project = sim.projects()[0].id.clone();
    sim.set_faults(MetalFaults::default());
    client.json(&format!("/projects/{project}/events")).await;

    let emitted: Vec<Value> = http
        .post(format!("{}/emit?count=3", sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(emitted.len(), 3);
    let stats: Value = http
        .get(format!("{}/stats", sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests_total"], 2);
    assert_eq!(stats["requests"]["GET /events"], 1);
    assert_eq!(stats["requests"]["GET /projects/{id}/events"], 1);
    let list = format!("/projects/{project}/events");
    assert_eq!(stats["list_requests"][list.as_str()], 1);
    assert_eq!(sim.stats().list_requests.len(), 1, "only event lists");
    assert_eq!(stats["statuses"]["503"], 1);
    assert_eq!(stats["faults"]["server_error"], 1);
    assert_eq!(stats["events_generated"], 3);
    assert_eq!(stats["events_served"], 10);
}

#[tokio::test(start_paused = true)]
async fn new_events_appear_at_the_configured_rate() {
    let sim = MetalSim::start(MetalSimConfig {
        events_per_second: 50.0,
        ..config()
    })
    .await
    .unwrap();
    let before = sim.event_count();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let made = sim.event_count() - before;
    assert!(
        (400..=600).contains(&made),
        "about 500 events in 10 s, got {made}"
    );
    sim.set_events_per_second(0.0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let stopped = sim.event_count();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(sim.event_count(), stopped);
    assert_eq!(sim.stats().events_generated as usize, stopped - before);
    assert!(
        sim.new_events()
            .iter()
            .all(|e| e.organization_id == sim.org_id())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refusing_listener_comes_back_on_the_same_port() {
    let (sim, client) = start(config()).await;
    sim.set_refusing(true).await.unwrap();
    let error = client.get_err("/events").await;
    assert!(error.is_connect(), "{error}");
    sim.set_refusing(false).await.unwrap();
    assert_eq!(client.get("/events").await.status(), 200);
    sim.shutdown().await;
    assert!(client.get_err("/events").await.is_connect());
}

impl Client {
    async fn get_err(&self, path: &str) -> reqwest::Error {
        // A fresh client: a pooled connection would hide the refusal.
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .expect_err("the connection is refused")
    }
}
