//! Benchmarks of the per-page cost: decoding a page of 100 events, and one
//! full `next_page` round trip (request, rate-limit headers, decode) against
//! a loopback server.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metal_events::{Client, EventList, EventScope, ListOptions, ProjectId, SecretString};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A page of 100 events built from the fixture's first event.
fn page_of_100() -> String {
    let path = format!(
        "{}/../../fixtures/metal/pages/project-events-1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let page: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let template = page["events"][0].clone();
    let events: Vec<Value> = (0..100)
        .map(|i| {
            let mut event = template.clone();
            event["id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
            event
        })
        .collect();
    json!({"events": events, "meta": {"current_page": 1, "last_page": 1, "total": 100}}).to_string()
}

fn benches(c: &mut Criterion) {
    let body = page_of_100();

    let mut group = c.benchmark_group("metal-events");
    group.throughput(Throughput::Elements(100));
    group.bench_function("decode a page of 100 events", |b| {
        b.iter(|| serde_json::from_str::<EventList>(&body).unwrap())
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(body.clone(), "application/json")
                    .insert_header("x-ratelimit-remaining", "4999"),
            )
            .mount(&server)
            .await;
        server
    });
    let client = Client::builder(SecretString::from("bench-token"))
        .base_url(format!("{}/metal/v1", server.uri()))
        .build()
        .unwrap();
    let scope = EventScope::Project(ProjectId::new("d894d0eb-2b6c-4741-b106-c7cb76018d32"));
    let options = ListOptions::default();
    group.bench_function("next_page of 100 events over loopback", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut pages = client.event_pages(&scope, &options);
                pages.next_page().await.unwrap().unwrap()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(group);
