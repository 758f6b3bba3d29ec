//! HTTP tests of the client against a local wiremock server: every
//! operation, pagination, rate limits, errors and secrecy of the token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use metal_events::{
    Client, DeviceId, DeviceState, Endpoint, Error, EventId, EventScope, ListOptions, MIN_PAUSE,
    OrganizationId, ProjectId, RateGate, RateLimit, RequestRecord, SecretString, StatusCode,
    USER_AGENT,
};
use serde_json::{Value, json};
use wiremock::matchers::{any, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "tok-5f1c9e2a7b-NEVER-SHOWN";
const ORG: &str = "ed49fa53-743f-43aa-836b-e24f88f94d9c";
const PROJECT: &str = "d894d0eb-2b6c-4741-b106-c7cb76018d32";
const DEVICE: &str = "0caf4d6d-fafc-470b-86b1-d889eb838afa";

/// A mock server with a catch-all that fails the test on any unexpected
/// route, and a client pointed at it under `/metal/v1`.
struct Harness {
    server: MockServer,
    client: Client,
    records: Arc<Mutex<Vec<RequestRecord>>>,
}

impl Harness {
    fn records(&self) -> Vec<RequestRecord> {
        self.records.lock().unwrap().clone()
    }
}

async fn harness() -> Harness {
    harness_with(|b| b).await
}

async fn harness_with(
    configure: impl FnOnce(metal_events::ClientBuilder) -> metal_events::ClientBuilder,
) -> Harness {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(599).set_body_string("unexpected route"))
        .with_priority(u8::MAX)
        .named("catch-all: an unexpected request")
        .expect(0)
        .mount(&server)
        .await;
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&records);
    let builder = Client::builder(SecretString::from(TOKEN))
        .base_url(format!("{}/metal/v1", server.uri()))
        .observer(move |record: &RequestRecord| sink.lock().unwrap().push(record.clone()));
    let client = configure(builder).build().unwrap();
    Harness {
        server,
        client,
        records,
    }
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../fixtures/metal/pages/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn ok_json(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "application/json")
}

fn project_events_path() -> String {
    format!("/metal/v1/projects/{PROJECT}/events")
}

/// Asserts that neither the `Display` nor the `Debug` of `error` shows the token.
fn assert_no_token(error: &Error) {
    assert!(
        !error.to_string().contains(TOKEN),
        "Display shows the token: {error}"
    );
    assert!(
        !format!("{error:?}").contains(TOKEN),
        "Debug shows the token: {error:?}"
    );
}

#[tokio::test]
async fn gets_an_organization_with_token_and_user_agent() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("/metal/v1/organizations/{ORG}")))
        .and(header("x-auth-token", TOKEN))
        .and(header("user-agent", USER_AGENT))
        .and(header("accept", "application/json"))
        .respond_with(ok_json(fixture("organization.json")))
        .expect(1)
        .mount(&h.server)
        .await;

    let org = h
        .client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap();
    assert_eq!(org.id.unwrap().as_str(), ORG);
    assert_eq!(org.name.as_deref(), Some("Direktiv"));
    assert_eq!(
        USER_AGENT,
        format!("metal-events/{}", env!("CARGO_PKG_VERSION"))
    );

    let records = h.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].endpoint, Endpoint::Organization);
    assert_eq!(records[0].status, Some(StatusCode::OK));
    assert!(!records[0].timed_out);
}

#[tokio::test]
async fn lists_the_organizations_projects_not_every_project() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("/metal/v1/organizations/{ORG}/projects")))
        .and(query_param("per_page", "100"))
        .and(header("x-auth-token", TOKEN))
        .respond_with(ok_json(fixture("projects.json")))
        .expect(1)
        .mount(&h.server)
        .await;

    let mut pages = h
        .client
        .project_pages(&OrganizationId::new(ORG), &ListOptions::default());
    let page = pages.next_page().await.unwrap().unwrap();
    let names: Vec<_> = page.items.iter().map(|p| p.name.clone().unwrap()).collect();
    assert_eq!(names, ["Direktiv EKS Project", "Edge Lab"]);
    assert_eq!(page.page, 1);
    assert_eq!(page.meta.total, Some(2));
    assert!(pages.is_finished());
    assert!(pages.next_page().await.unwrap().is_none());
    assert_eq!(h.records()[0].endpoint, Endpoint::Projects);
}

#[tokio::test]
async fn lists_a_projects_devices_with_the_options_sent() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("/metal/v1/projects/{PROJECT}/devices")))
        .and(query_param("per_page", "25"))
        .and(query_param("include", "plan,metro"))
        .and(query_param("exclude", "ip_addresses"))
        .respond_with(ok_json(fixture("devices.json")))
        .expect(1)
        .mount(&h.server)
        .await;

    let options = ListOptions::new()
        .with_per_page(25)
        .with_include(["plan", "metro"])
        .with_exclude(["ip_addresses"]);
    let devices = h
        .client
        .device_pages(&ProjectId::new(PROJECT), &options)
        .collect_all(10)
        .await
        .unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(devices[0].hostname.as_deref(), Some("c3-small-x86-01"));
    assert_eq!(devices[0].state, Some(DeviceState::Active));
    // "state": null and "hostname": null parse as absent.
    assert_eq!(devices[1].state, None);
    assert_eq!(devices[2].hostname, None);
    assert_eq!(
        devices[2].state,
        Some(DeviceState::Other("hibernating".into()))
    );
    assert_eq!(h.records()[0].endpoint, Endpoint::Devices);
}

#[tokio::test]
async fn per_page_above_the_cap_is_sent_as_1000() {
    let h = harness().await;
    Mock::given(path("/metal/v1/events"))
        .and(query_param("per_page", "1000"))
        .respond_with(ok_json(fixture("events.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let options = ListOptions::new().with_per_page(50_000);
    let page = h
        .client
        .event_pages(&EventScope::Token, &options)
        .next_page()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

/// Mounts the three project event pages from the fixtures; page 2's `next`
/// is an absolute URL naming `page3_origin`.
async fn mount_three_pages(h: &Harness, page3_origin: Option<&str>) {
    let events = project_events_path();
    Mock::given(path(&events))
        .and(query_param_is_missing("page"))
        .and(query_param("per_page", "3"))
        .and(header("x-auth-token", TOKEN))
        .respond_with(ok_json(fixture("project-events-1.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let mut page2 = fixture("project-events-2.json");
    if let Some(origin) = page3_origin {
        page2 = page2.replace("https://api.equinix.com", origin);
    }
    Mock::given(path(&events))
        .and(query_param("page", "2"))
        .and(header("x-auth-token", TOKEN))
        .respond_with(
            ok_json(page2)
                .insert_header("x-ratelimit-limit", "500")
                .insert_header("x-ratelimit-remaining", "497")
                .insert_header("x-ratelimit-reset", "1700000000"),
        )
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path(&events))
        .and(query_param("page", "3"))
        .and(header("x-auth-token", TOKEN))
        .respond_with(ok_json(fixture("project-events-3.json")))
        .expect(1)
        .mount(&h.server)
        .await;
}

fn expected_project_event_ids() -> Vec<String> {
    [
        "project-events-1.json",
        "project-events-2.json",
        "project-events-3.json",
    ]
    .iter()
    .flat_map(|name| {
        json_fixture(name)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    })
    .collect()
}

#[tokio::test]
async fn follows_relative_and_foreign_absolute_next_links_over_three_pages() {
    let h = harness().await;
    // Page 2's absolute `next` names the real API host: the pager follows its
    // path on the base URL and never sends the token elsewhere.
    mount_three_pages(&h, None).await;

    let options = ListOptions::new().with_per_page(3);
    let mut pages = h
        .client
        .event_pages(&EventScope::Project(ProjectId::new(PROJECT)), &options);
    let mut ids = Vec::new();
    let mut numbers = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        numbers.push(page.page);
        if page.page == 2 {
            assert_eq!(
                page.rate_limit,
                Some(RateLimit::new(Some(500), Some(497), Some(1_700_000_000)))
            );
        } else {
            assert_eq!(page.rate_limit, None);
        }
        ids.extend(
            page.items
                .into_iter()
                .map(|e| e.id().unwrap().as_str().to_owned()),
        );
    }
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(ids, expected_project_event_ids());
    assert_eq!(pages.pages_read(), 3);
    // The last answer carried no rate-limit headers; the last one seen stays.
    assert_eq!(h.client.last_rate_limit().unwrap().remaining, Some(497));
    let endpoints: Vec<_> = h.records().iter().map(|r| r.endpoint).collect();
    assert_eq!(endpoints, [Endpoint::ProjectEvents; 3]);
}

#[tokio::test]
async fn follows_same_origin_absolute_next_links() {
    let h = harness().await;
    let origin = h.server.uri();
    mount_three_pages(&h, Some(&origin)).await;
    let options = ListOptions::new().with_per_page(3);
    let events = h
        .client
        .event_pages(&EventScope::Project(ProjectId::new(PROJECT)), &options)
        .collect_all(10)
        .await
        .unwrap();
    let ids: Vec<_> = events
        .iter()
        .map(|e| e.id().unwrap().as_str().to_owned())
        .collect();
    assert_eq!(ids, expected_project_event_ids());
}

#[tokio::test]
async fn collect_all_stops_at_the_page_cap() {
    let h = harness().await;
    let events = project_events_path();
    Mock::given(path(&events))
        .and(query_param_is_missing("page"))
        .respond_with(ok_json(fixture("project-events-1.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path(&events))
        .and(query_param("page", "2"))
        .respond_with(ok_json(fixture("project-events-2.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let mut pages = h.client.event_pages(
        &EventScope::Project(ProjectId::new(PROJECT)),
        &ListOptions::default(),
    );
    let events = pages.collect_all(2).await.unwrap();
    assert_eq!(events.len(), 6);
    assert!(!pages.is_finished());
}

#[tokio::test]
async fn collect_complete_says_when_the_cap_cut_the_list() {
    let h = harness().await;
    let events = project_events_path();
    Mock::given(path(&events))
        .and(query_param_is_missing("page"))
        .respond_with(ok_json(fixture("project-events-1.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let mut pages = h.client.event_pages(
        &EventScope::Project(ProjectId::new(PROJECT)),
        &ListOptions::default(),
    );
    let error = pages.collect_complete(1).await.unwrap_err();
    assert!(
        matches!(error, Error::TooManyPages { max_pages: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("more than 1 pages"), "{error}");
}

#[tokio::test]
async fn a_list_can_start_at_a_later_page() {
    let h = harness().await;
    let events = project_events_path();
    Mock::given(path(&events))
        .and(query_param("page", "2"))
        .and(query_param("per_page", "100"))
        .respond_with(ok_json(fixture("project-events-2.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let mut pages = h.client.event_pages(
        &EventScope::Project(ProjectId::new(PROJECT)),
        &ListOptions::default().with_page(2),
    );
    let page = pages.next_page().await.unwrap().unwrap();
    assert!(!page.items.is_empty());
}

#[tokio::test]
async fn the_api_clock_follows_the_date_header_not_this_hosts_clock() {
    let h = harness().await;
    assert_eq!(h.client.api_now(), None);
    // The API's clock runs an hour behind this host's.
    let api = SystemTime::now() - Duration::from_secs(3600);
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(
            ok_json(json!({"id": ORG, "name": "Org"}).to_string())
                .insert_header("Date", httpdate_of(api)),
        )
        .mount(&h.server)
        .await;
    h.client
        .organization(&metal_events::OrganizationId::new(ORG))
        .await
        .unwrap();
    let at = h.client.api_now().unwrap();
    let api = chrono::DateTime::<chrono::Utc>::from(api);
    assert!(
        (at - api).num_milliseconds().abs() <= 1_000,
        "{at} vs {api}"
    );
    let skew = h.client.clock_skew().unwrap();
    assert!((skew.num_seconds() - 3600).abs() <= 2, "{skew}");
    // It runs on with the monotonic clock between answers (paused here,
    // after the request: a paused clock would time the request out).
    tokio::time::pause();
    let at = h.client.api_now().unwrap();
    tokio::time::advance(Duration::from_secs(90)).await;
    let later = h.client.api_now().unwrap();
    assert_eq!((later - at).num_seconds(), 90);
}

fn httpdate_of(at: SystemTime) -> String {
    let at = chrono::DateTime::<chrono::Utc>::from(at);
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[tokio::test]
async fn a_caller_can_stop_after_the_first_page() {
    let h = harness().await;
    Mock::given(path(project_events_path()))
        .and(query_param_is_missing("page"))
        .respond_with(ok_json(fixture("project-events-1.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let mut pages = h.client.event_pages(
        &EventScope::Project(ProjectId::new(PROJECT)),
        &ListOptions::default(),
    );
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.items.len(), 3);
    drop(pages);
    // The catch-all and `.expect(1)` check that page 2 was never requested.
}

#[tokio::test]
async fn falls_back_to_current_page_plus_one_without_next() {
    let h = harness().await;
    let events = project_events_path();
    let page = |n: u64, id: &str| {
        json!({
            "events": [{"id": id, "type": "provisioning.101"}],
            "meta": {"current_page": n, "last_page": 3, "next": null, "total": 3}
        })
        .to_string()
    };
    for (n, id) in [(1, "e-1"), (2, "e-2"), (3, "e-3")] {
        let mock = Mock::given(path(&events)).and(query_param("per_page", "100"));
        let mock = if n == 1 {
            mock.and(query_param_is_missing("page"))
        } else {
            mock.and(query_param("page", n.to_string()))
        };
        mock.respond_with(ok_json(page(n, id)))
            .expect(1)
            .mount(&h.server)
            .await;
    }
    let events = h
        .client
        .event_pages(
            &EventScope::Project(ProjectId::new(PROJECT)),
            &ListOptions::default(),
        )
        .collect_all(10)
        .await
        .unwrap();
    let ids: Vec<_> = events
        .iter()
        .map(|e| e.id().unwrap().as_str().to_owned())
        .collect();
    assert_eq!(ids, ["e-1", "e-2", "e-3"]);
}

#[tokio::test]
async fn an_empty_list_is_one_empty_page() {
    let h = harness().await;
    Mock::given(path(project_events_path()))
        .respond_with(ok_json(fixture("empty-events.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path(format!("/metal/v1/devices/{DEVICE}/events")))
        .respond_with(ok_json(r#"{"events": null}"#.to_owned()))
        .expect(1)
        .mount(&h.server)
        .await;

    let mut pages = h.client.event_pages(
        &EventScope::Project(ProjectId::new(PROJECT)),
        &ListOptions::default(),
    );
    let page = pages.next_page().await.unwrap().unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.meta.total, Some(0));
    assert!(pages.next_page().await.unwrap().is_none());

    let events = h
        .client
        .event_pages(
            &EventScope::Device(DeviceId::new(DEVICE)),
            &ListOptions::default(),
        )
        .collect_all(10)
        .await
        .unwrap();
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_repeated_next_ends_with_a_loop_error_not_a_loop() {
    let h = harness().await;
    let events = project_events_path();
    let next = format!("{events}?page=2&per_page=100");
    Mock::given(path(&events))
        .and(query_param_is_missing("page"))
        .respond_with(ok_json(
            json!({"events": [{"id": "e-1"}], "meta": {"next": {"href": next}}}).to_string(),
        ))
        .expect(1)
        .mount(&h.server)
        .await;
    // Page 2 points at itself.
    Mock::given(path(&events))
        .and(query_param("page", "2"))
        .respond_with(ok_json(
            json!({"events": [{"id": "e-2"}], "meta": {"next": {"href": next}}}).to_string(),
        ))
        .expect(1)
        .mount(&h.server)
        .await;

    let mut pages = h.client.event_pages(
        &EventScope::Project(ProjectId::new(PROJECT)),
        &ListOptions::default(),
    );
    assert_eq!(pages.next_page().await.unwrap().unwrap().items.len(), 1);
    assert_eq!(pages.next_page().await.unwrap().unwrap().items.len(), 1);
    let error = pages.next_page().await.unwrap_err();
    assert!(matches!(error, Error::PaginationLoop { .. }), "{error}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("page=2"), "{error}");
    assert!(pages.next_page().await.unwrap().is_none());
    assert!(pages.is_finished());
}

#[tokio::test]
async fn a_server_that_ignores_page_is_stopped_by_its_page_number() {
    let h = harness().await;
    let events = project_events_path();
    // Every request gets page 1 again, with a fresh-looking `next`.
    Mock::given(path(&events))
        .respond_with(ok_json(
            json!({
                "events": [{"id": "e-1"}],
                "meta": {"current_page": 1, "last_page": 9, "next": {"href": "?page=2"}}
            })
            .to_string(),
        ))
        .expect(2)
        .mount(&h.server)
        .await;
    let result = h
        .client
        .event_pages(
            &EventScope::Project(ProjectId::new(PROJECT)),
            &ListOptions::default(),
        )
        .collect_all(1000)
        .await;
    assert!(
        matches!(result, Err(Error::PaginationLoop { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn null_missing_and_unknown_fields_are_kept_in_the_raw_event() {
    let h = harness().await;
    let page = json!({
        "events": [
            {"id": "e-only-id"},
            {"id": "e-nulls", "type": null, "body": null, "state": null, "created_at": null,
             "relationships": null, "modified_by": null, "ip": null, "href": null},
            {"id": "e-extra", "type": "provisioning.110", "facility": "da11",
             "nested": {"a": [1, 2, {"b": null}]}}
        ],
        "meta": {"next": null, "total": 3, "extra_meta": true}
    });
    Mock::given(path("/metal/v1/events"))
        .respond_with(ok_json(page.to_string()))
        .expect(1)
        .mount(&h.server)
        .await;
    let events = h
        .client
        .event_pages(&EventScope::Token, &ListOptions::default())
        .collect_all(5)
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    for (event, raw) in events.iter().zip(page["events"].as_array().unwrap()) {
        assert_eq!(&Value::Object(event.raw().clone()), raw);
        assert_eq!(&serde_json::to_value(event).unwrap(), raw);
    }
    assert_eq!(events[0].event_type(), None);
    assert!(events[1].relationships().is_empty());
    assert_eq!(events[1].state(), None);
    assert_eq!(events[2].raw()["facility"], json!("da11"));
}

#[tokio::test]
async fn fixture_events_keep_every_field_including_ones_the_spec_lacks() {
    let h = harness().await;
    Mock::given(path(format!("/metal/v1/devices/{DEVICE}/events")))
        .respond_with(ok_json(fixture("device-events.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let mut pages = h.client.event_pages(
        &EventScope::Device(DeviceId::new(DEVICE)),
        &ListOptions::default(),
    );
    let page = pages.next_page().await.unwrap().unwrap();
    let expected = json_fixture("device-events.json");
    for (event, raw) in page
        .items
        .iter()
        .zip(expected["events"].as_array().unwrap())
    {
        assert_eq!(&serde_json::to_value(event).unwrap(), raw);
    }
    let first = &page.items[0];
    assert_eq!(first.raw()["request_id"], json!("5b3f9c2e1a"));
    assert_eq!(first.relationships()[0].href, format!("#{DEVICE}"));
    assert_eq!(first.ip(), Some("203.0.113.24"));
    assert_eq!(
        first.modified_by().unwrap()["full_name"],
        json!("Jane Operator")
    );
    assert_eq!(page.items[2].body(), None);
    assert_eq!(h.records()[0].endpoint, Endpoint::DeviceEvents);
}

#[tokio::test]
async fn lists_organization_and_token_events() {
    let h = harness().await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}/events")))
        .and(header("x-auth-token", TOKEN))
        .respond_with(ok_json(fixture("organization-events.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path("/metal/v1/events"))
        .and(header("x-auth-token", TOKEN))
        .respond_with(ok_json(fixture("events.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let org_events = h
        .client
        .event_pages(
            &EventScope::Organization(OrganizationId::new(ORG)),
            &ListOptions::default(),
        )
        .collect_all(5)
        .await
        .unwrap();
    let types: Vec<_> = org_events
        .iter()
        .map(|e| e.event_type().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["api_key.created", "organization.member_added"]);
    let token_events = h
        .client
        .event_pages(&EventScope::Token, &ListOptions::default())
        .collect_all(5)
        .await
        .unwrap();
    assert_eq!(token_events.len(), 1);
    let endpoints: Vec<_> = h.records().iter().map(|r| r.endpoint).collect();
    assert_eq!(endpoints, [Endpoint::OrganizationEvents, Endpoint::Events]);
}

/// Mounts one answer for the organization and returns the error it causes.
async fn error_for(response: ResponseTemplate) -> (Error, Vec<RequestRecord>) {
    let h = harness().await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(response)
        .expect(1)
        .mount(&h.server)
        .await;
    let error = h
        .client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert_no_token(&error);
    (error, h.records())
}

fn json_error(status: u16, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(fixture(name), "application/json")
}

#[tokio::test]
async fn client_errors_carry_the_api_message_and_are_not_retried() {
    let (e401, records) = error_for(json_error(401, "error-401.json")).await;
    assert_eq!(e401.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(e401.is_unauthorized() && !e401.is_retryable() && !e401.is_not_found());
    assert!(
        e401.to_string().contains("Invalid authentication token"),
        "{e401}"
    );
    assert_eq!(records[0].status, Some(StatusCode::UNAUTHORIZED));

    let (e403, _) = error_for(json_error(403, "error-403.json")).await;
    assert!(e403.is_unauthorized() && !e403.is_retryable());

    let (e404, _) = error_for(json_error(404, "error-404.json")).await;
    assert!(e404.is_not_found() && !e404.is_retryable() && !e404.is_unauthorized());
    assert_eq!(
        e404.to_string(),
        format!("/metal/v1/organizations/{ORG} answered 404 Not Found: Not found")
    );

    let (e422, _) = error_for(json_error(422, "error-422.json")).await;
    assert!(!e422.is_retryable());
    match &e422 {
        Error::Status { message, .. } => assert_eq!(
            message.as_deref(),
            Some("per_page must be less than or equal to 1000; page must be greater than 0")
        ),
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn server_errors_and_408_are_retried() {
    let (e500, _) = error_for(json_error(500, "error-500.json")).await;
    assert!(e500.is_retryable());
    assert!(
        e500.to_string().contains("An internal error occurred"),
        "{e500}"
    );

    let (e408, _) = error_for(ResponseTemplate::new(408)).await;
    assert!(e408.is_retryable());
    assert_eq!(e408.retry_after(), None);

    let (e502, _) =
        error_for(ResponseTemplate::new(502).set_body_raw(fixture("error-502.html"), "text/html"))
            .await;
    assert!(e502.is_retryable());
    assert_eq!(
        e502.to_string(),
        format!(
            "/metal/v1/organizations/{ORG} answered 502 Bad Gateway: \
             502 Bad Gateway 502 Bad Gateway cloudflare"
        )
    );
}

#[tokio::test]
async fn a_429_carries_the_wait_from_retry_after_seconds() {
    let (error, records) = error_for(
        json_error(429, "error-429.json")
            .insert_header("retry-after", "30")
            .insert_header("x-ratelimit-limit", "500")
            .insert_header("x-ratelimit-remaining", "0"),
    )
    .await;
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(error.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert!(error.to_string().contains("retry after 30s"), "{error}");
    match &error {
        Error::RateLimited {
            rate_limit,
            message,
            ..
        } => {
            assert_eq!(rate_limit.unwrap().remaining, Some(0));
            assert_eq!(
                message.as_deref(),
                Some("Too many requests, please slow down")
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(records[0].rate_limit.unwrap().limit, Some(500));
}

#[tokio::test]
async fn a_429_carries_the_wait_from_an_http_date() {
    let at = SystemTime::now() + Duration::from_secs(120);
    let (error, _) = error_for(
        ResponseTemplate::new(429).insert_header("retry-after", httpdate::fmt_http_date(at)),
    )
    .await;
    let wait = error.retry_after().unwrap();
    assert!(
        wait <= Duration::from_secs(120) && wait >= Duration::from_secs(110),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_429_without_retry_after_waits_for_the_rate_limit_reset() {
    let reset = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let (error, _) = error_for(
        ResponseTemplate::new(429)
            .insert_header("x-ratelimit-remaining", "0")
            .insert_header("x-ratelimit-reset", reset.to_string()),
    )
    .await;
    let wait = error.retry_after().unwrap();
    assert!(
        wait <= Duration::from_secs(60) && wait >= Duration::from_secs(50),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_bare_429_has_no_wait_but_is_still_retryable() {
    let (error, _) = error_for(ResponseTemplate::new(429)).await;
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), None);
    assert!(matches!(error, Error::RateLimited { .. }));
}

#[tokio::test]
async fn an_event_that_cannot_be_decoded_is_skipped_and_its_page_kept() {
    let h = harness().await;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let mut body = format!(
        r#"{{"events": [{{"id": "e-1"}}, 42, {{"id": "e-3", "x": {deep}}}, {{"id": "e-4", "s": "caf"#
    )
    .into_bytes();
    body.extend_from_slice(b"\xff\"}], \"meta\": {\"current_page\": 1}}");
    Mock::given(path(project_events_path()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .expect(2)
        .mount(&h.server)
        .await;
    let scope = EventScope::Project(ProjectId::new(PROJECT));
    let page = h
        .client
        .event_pages(&scope, &ListOptions::default())
        .next_page()
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<_> = page
        .items
        .iter()
        .map(|e| e.id().cloned().unwrap())
        .collect();
    assert_eq!(ids, [EventId::new("e-1"), EventId::new("e-4")]);
    assert_eq!(page.items[1].raw()["s"], "caf\u{fffd}");
    let skipped: Vec<_> = page
        .skipped
        .iter()
        .map(|s| (s.index, s.id.clone()))
        .collect();
    assert_eq!(skipped, [(1, None), (2, Some(EventId::new("e-3")))]);
    assert_eq!(page.meta.current_page, Some(1));

    let lazy = h
        .client
        .lazy_event_pages(&scope, &ListOptions::default())
        .next_page()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lazy.items.len(), 2);
    assert_eq!(lazy.skipped, page.skipped);
}

#[tokio::test]
async fn malformed_json_names_the_failing_path() {
    let h = harness().await;
    Mock::given(path(project_events_path()))
        .respond_with(ok_json(
            r#"{"events": {"id": "e-1"}, "meta": null}"#.to_owned(),
        ))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path("/metal/v1/events"))
        .respond_with(ok_json(r#"{"events": [{"id": "e-1"}, {"id": "#.to_owned()))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path(format!("/metal/v1/projects/{PROJECT}/devices")))
        .respond_with(ok_json(r#"{"devices": {"id": "not a list"}}"#.to_owned()))
        .expect(1)
        .mount(&h.server)
        .await;

    let error = h
        .client
        .event_pages(
            &EventScope::Project(ProjectId::new(PROJECT)),
            &ListOptions::default(),
        )
        .next_page()
        .await
        .unwrap_err();
    assert_no_token(&error);
    match &error {
        Error::Decode {
            path, json_path, ..
        } => {
            assert_eq!(json_path, "events");
            assert_eq!(path, &format!("{}?per_page=100", project_events_path()));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("`events`"), "{error}");

    let error = h
        .client
        .event_pages(&EventScope::Token, &ListOptions::default())
        .next_page()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Decode { json_path, .. } if json_path.starts_with("events[1]")),
        "{error}"
    );

    let error = h
        .client
        .device_pages(&ProjectId::new(PROJECT), &ListOptions::default())
        .next_page()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Decode { json_path, .. } if json_path == "devices"),
        "{error}"
    );
}

#[tokio::test]
async fn after_a_failure_the_pager_retries_the_same_page() {
    let h = harness().await;
    let events = project_events_path();
    Mock::given(path(&events))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&h.server)
        .await;
    Mock::given(path(&events))
        .and(query_param_is_missing("page"))
        .respond_with(ok_json(fixture("project-events-3.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let mut pages = h.client.event_pages(
        &EventScope::Project(ProjectId::new(PROJECT)),
        &ListOptions::default(),
    );
    let error = pages.next_page().await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(!pages.is_finished());
    assert_eq!(pages.next_page().await.unwrap().unwrap().items.len(), 1);
    assert!(pages.next_page().await.unwrap().is_none());
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_a_retryable_timeout() {
    let h = harness_with(|b| b.timeout(Duration::from_millis(200))).await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(ok_json(fixture("organization.json")).set_delay(Duration::from_secs(1)))
        .expect(1)
        .mount(&h.server)
        .await;
    let started = Instant::now();
    let error = h
        .client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_no_token(&error);
    let records = h.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, None);
    assert!(records[0].timed_out);
}

#[tokio::test]
async fn a_caller_supplied_http_client_is_used_with_the_timeout() {
    let h = harness_with(|b| {
        b.http_client(metal_events::reqwest::Client::new())
            .timeout(Duration::from_millis(200))
    })
    .await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .and(header("x-auth-token", TOKEN))
        .and(header("user-agent", USER_AGENT))
        .respond_with(ok_json(fixture("organization.json")).set_delay(Duration::from_secs(1)))
        .expect(1)
        .mount(&h.server)
        .await;
    let error = h
        .client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder(SecretString::from(TOKEN))
        .base_url(format!("http://{address}/metal/v1"))
        .build()
        .unwrap();
    let error = client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_no_token(&error);
}

#[tokio::test]
async fn redirects_to_another_origin_are_not_followed() {
    let h = harness().await;
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .named("another origin: must never see the token")
        .expect(0)
        .mount(&elsewhere)
        .await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/steal", elsewhere.uri())),
        )
        .expect(1)
        .mount(&h.server)
        .await;
    let error = h
        .client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::FOUND));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn redirects_within_the_origin_are_followed() {
    let h = harness().await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(
            ResponseTemplate::new(301).insert_header("location", "/metal/v1/organizations/moved"),
        )
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path("/metal/v1/organizations/moved"))
        .and(header("x-auth-token", TOKEN))
        .respond_with(ok_json(fixture("organization.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    let org = h
        .client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap();
    assert_eq!(org.name.as_deref(), Some("Direktiv"));
}

#[tokio::test]
async fn the_token_is_sent_once_and_never_shown() {
    let h = harness().await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(ok_json(fixture("organization.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    h.client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap();
    let requests = h.server.received_requests().await.unwrap();
    let tokens: Vec<_> = requests[0].headers.get_all("x-auth-token").iter().collect();
    assert_eq!(tokens, [TOKEN]);
    assert!(!requests[0].url.as_str().contains(TOKEN));

    let debug = format!("{:?}", h.client);
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
    let builder = format!("{:?}", Client::builder(SecretString::from(TOKEN)));
    assert!(!builder.contains(TOKEN), "{builder}");
    let pager = format!(
        "{:?}",
        h.client
            .event_pages(&EventScope::Token, &ListOptions::default())
    );
    assert!(!pager.contains(TOKEN), "{pager}");

    let bad = Client::builder(SecretString::from(format!("{TOKEN}\u{7}")))
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidToken), "{bad:?}");
    assert_no_token(&bad);
}

#[test]
fn the_client_and_pagers_can_be_shared_across_tasks() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_shareable::<Client>();
    assert_send::<metal_events::Pager<metal_events::Event>>();
    assert_send::<Error>();
}

/// A server that answers every request with `status` and a chunked body of
/// `chunk`-byte chunks, one every `pause`, that never ends (until the client
/// hangs up). Returns the base URL to give the client.
async fn endless_server(status: u16, chunk: usize, pause: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request has no body: read until the end of its head.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let start = format!(
                    "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n\
                     transfer-encoding: chunked\r\n\r\n"
                );
                let mut frame = format!("{chunk:x}\r\n").into_bytes();
                frame.extend(std::iter::repeat_n(b' ', chunk));
                frame.extend_from_slice(b"\r\n");
                if socket.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                while socket.write_all(&frame).await.is_ok() {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            });
        }
    });
    format!("http://{address}/metal/v1")
}

/// A client of `base` that records what its observer sees.
fn client_of(
    base: &str,
    configure: impl FnOnce(metal_events::ClientBuilder) -> metal_events::ClientBuilder,
) -> (Client, Arc<Mutex<Vec<RequestRecord>>>) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&records);
    let builder = Client::builder(SecretString::from(TOKEN))
        .base_url(base)
        .observer(move |record: &RequestRecord| sink.lock().unwrap().push(record.clone()));
    (configure(builder).build().unwrap(), records)
}

#[tokio::test]
async fn a_page_larger_than_the_default_cap_is_refused_unread() {
    let h = harness().await;
    // 33 MiB of blanks: valid JSON around them, so only the cap refuses it.
    let mut body = String::from(r#"{"events": [], "pad": ""#);
    body.push_str(&" ".repeat(33 * 1024 * 1024));
    body.push_str(r#""}"#);
    Mock::given(path(project_events_path()))
        .respond_with(ok_json(body))
        .expect(1)
        .mount(&h.server)
        .await;
    let scope = EventScope::Project(ProjectId::new(PROJECT));
    let error = h
        .client
        .event_pages(&scope, &ListOptions::default())
        .next_page()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::ResponseTooLarge { limit, .. } if *limit == 32 * 1024 * 1024),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(error.status(), None);
    assert!(
        error.to_string().contains(&project_events_path())
            && error.to_string().contains("33554432 bytes"),
        "{error}"
    );
    assert_no_token(&error);
    // The observer still saw the request, with its status.
    let records = h.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, Some(StatusCode::OK));
}

#[tokio::test]
async fn an_endless_page_is_cut_at_the_cap_long_before_the_timeout() {
    let base = endless_server(200, 1024 * 1024, Duration::from_millis(5)).await;
    let (client, records) = client_of(&base, |b| b.timeout(Duration::from_secs(3)));
    let started = Instant::now();
    let error = client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ResponseTooLarge { .. }),
        "{error:?} after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(records.lock().unwrap()[0].status, Some(StatusCode::OK));
}

#[tokio::test]
async fn an_endless_error_answer_keeps_its_status_and_is_read_only_in_part() {
    let base = endless_server(503, 16 * 1024, Duration::from_millis(1)).await;
    let (client, _) = client_of(&base, |b| b.timeout(Duration::from_secs(3)));
    let started = Instant::now();
    let error = client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert_eq!(
        error.status(),
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_list_and_the_organization_are_capped() {
    let h = harness_with(|b| b.max_response_size(64 * 1024)).await;
    // 1 MiB of valid JSON for each: an organization, projects, devices, events.
    let pad = " ".repeat(1024 * 1024);
    let routes = [
        format!("/metal/v1/organizations/{ORG}"),
        format!("/metal/v1/organizations/{ORG}/projects"),
        format!("/metal/v1/projects/{PROJECT}/devices"),
        format!("/metal/v1/devices/{DEVICE}/events"),
    ];
    for route in &routes {
        Mock::given(path(route.as_str()))
            .respond_with(ok_json(format!(r#"{{"pad": "{pad}"}}"#)))
            .expect(1)
            .mount(&h.server)
            .await;
    }
    let org = OrganizationId::new(ORG);
    let options = ListOptions::default();
    let errors = [
        h.client.organization(&org).await.unwrap_err(),
        h.client
            .project_pages(&org, &options)
            .next_page()
            .await
            .unwrap_err(),
        h.client
            .device_pages(&ProjectId::new(PROJECT), &options)
            .next_page()
            .await
            .unwrap_err(),
        h.client
            .lazy_event_pages(&EventScope::Device(DeviceId::new(DEVICE)), &options)
            .next_page()
            .await
            .unwrap_err(),
    ];
    for (error, route) in errors.iter().zip(&routes) {
        assert!(
            matches!(error, Error::ResponseTooLarge { path, limit: 65536 } if path.starts_with(route.as_str())),
            "{route}: {error:?}"
        );
    }
    // A page within the cap still reads.
    Mock::given(path(project_events_path()))
        .respond_with(ok_json(fixture("project-events-1.json")))
        .mount(&h.server)
        .await;
    let scope = EventScope::Project(ProjectId::new(PROJECT));
    let page = h
        .client
        .event_pages(&scope, &options)
        .next_page()
        .await
        .unwrap()
        .unwrap();
    assert!(!page.items.is_empty());
}

#[tokio::test]
async fn a_chunked_page_past_a_small_cap_is_refused_and_a_trickle_times_out() {
    let base = endless_server(200, 4096, Duration::ZERO).await;
    let (client, _) = client_of(&base, |b| b.max_response_size(64 * 1024));
    let scope = EventScope::Token;
    let error = client
        .event_pages(&scope, &ListOptions::default())
        .next_page()
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ResponseTooLarge { limit: 65536, .. }),
        "{error:?}"
    );

    // Below the cap but never ending: the request's timeout ends it.
    let base = endless_server(200, 16, Duration::from_millis(20)).await;
    let (client, _) = client_of(&base, |b| b.timeout(Duration::from_millis(300)));
    let error = client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_429_on_the_projects_list_pauses_the_next_device_events_request() {
    let h = harness().await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}/projects")))
        .respond_with(json_error(429, "error-429.json").insert_header("retry-after", "0"))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(path(format!("/metal/v1/devices/{DEVICE}/events")))
        .respond_with(ok_json(fixture("device-events.json")))
        .expect(1)
        .mount(&h.server)
        .await;

    // Inventory: the projects list is rate limited and asks for no wait.
    let error = h
        .client
        .project_pages(&OrganizationId::new(ORG), &ListOptions::default())
        .next_page()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RateLimited { .. }), "{error:?}");
    let paused = h.client.rate_gate().paused_for();
    assert!(
        paused.is_some_and(|p| p > MIN_PAUSE / 2),
        "Retry-After: 0 still pauses at least {MIN_PAUSE:?}, got {paused:?}"
    );

    // An event list of another task waits at the same gate.
    let started = Instant::now();
    let scope = EventScope::Device(DeviceId::new(DEVICE));
    let page = h
        .client
        .event_pages(&scope, &ListOptions::default())
        .next_page()
        .await
        .unwrap();
    assert!(page.is_some());
    let waited = started.elapsed();
    assert!(
        waited >= MIN_PAUSE - Duration::from_millis(100),
        "the device events request went out after {waited:?}, inside the pause"
    );
    assert_eq!(h.client.rate_gate().paused_for(), None);
}

#[tokio::test]
async fn a_window_at_zero_pauses_every_client_sharing_the_gate_until_it_resets() {
    let gate = Arc::new(RateGate::default());
    let shared = Arc::clone(&gate);
    let h = harness_with(move |b| b.rate_gate(shared)).await;
    assert!(Arc::ptr_eq(h.client.rate_gate(), &gate));
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(
            ok_json(fixture("organization.json"))
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "1"),
        )
        .expect(1)
        .mount(&h.server)
        .await;
    h.client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap();
    let paused = gate.paused_for();
    assert!(
        paused.is_some_and(|p| p > Duration::from_millis(500)),
        "a window at zero pauses until its reset, got {paused:?}"
    );
    // Another client given the same gate waits too, before sending anything.
    let other = Client::builder(SecretString::from(TOKEN))
        .base_url(format!("{}/metal/v1", h.server.uri()))
        .rate_gate(Arc::clone(&gate))
        .build()
        .unwrap();
    let started = Instant::now();
    let requests_before = h.server.received_requests().await.unwrap().len();
    let waiting = tokio::spawn(async move {
        other
            .event_pages(
                &EventScope::Device(DeviceId::new(DEVICE)),
                &ListOptions::default(),
            )
            .next_page()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.server.received_requests().await.unwrap().len(),
        requests_before,
        "nothing is sent during the pause"
    );
    Mock::given(path(format!("/metal/v1/devices/{DEVICE}/events")))
        .respond_with(ok_json(fixture("device-events.json")))
        .expect(1)
        .mount(&h.server)
        .await;
    waiting.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn ids_from_the_api_never_change_the_path_they_are_put_in() {
    let h = harness().await;
    let list = |key: &str, ids: &[&str]| {
        let items: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
        ok_json(json!({ key: items, "meta": { "total": ids.len() } }).to_string())
    };
    Mock::given(method("GET"))
        .and(path(format!("/metal/v1/organizations/{ORG}/projects")))
        .respond_with(list("projects", &["a/b", "..", "."]))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/metal/v1/projects/a%2Fb/devices"))
        .respond_with(list("devices", &["x/../y", ".."]))
        .expect(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/metal/v1/devices/x%2F..%2Fy/events"))
        .respond_with(list("events", &[]))
        .expect(1)
        .mount(&h.server)
        .await;

    let projects = h
        .client
        .project_pages(&OrganizationId::new(ORG), &ListOptions::default())
        .collect_all(1)
        .await
        .unwrap();
    let mut devices = Vec::new();
    for project in &projects {
        let id = project.id.clone().unwrap();
        let read = h
            .client
            .device_pages(&id, &ListOptions::default())
            .collect_all(1)
            .await;
        match id.as_str() {
            "a/b" => devices.extend(read.unwrap()),
            // `/projects/../devices` would be `/devices`: refused unsent.
            dots => assert!(
                matches!(read, Err(Error::InvalidUrl { .. })),
                "{dots}: {read:?}"
            ),
        }
    }
    for device in &devices {
        let id = device.id.clone().unwrap();
        let scope = EventScope::Device(id.clone());
        let read = h
            .client
            .event_pages(&scope, &ListOptions::default())
            .collect_all(1)
            .await;
        match id.as_str() {
            "x/../y" => assert!(read.unwrap().is_empty()),
            dots => assert!(
                matches!(read, Err(Error::InvalidUrl { .. })),
                "{dots}: {read:?}"
            ),
        }
    }
    let error = h
        .client
        .organization(&OrganizationId::new(".."))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
    // Three requests, each on its own path; the catch-all saw none.
    assert_eq!(h.records().len(), 3);
    h.server.verify().await;
}
