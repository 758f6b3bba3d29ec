//! Sending to a wiremock Direktiv: outcomes, headers, bodies, timeouts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use direktiv_broadcast::{
    Auth, AuthHeader, CONTENT_TYPE_BATCH, CONTENT_TYPE_EVENT, Delivery, Error, Outcome,
    RetryReason, Sink, SinkConfig,
};
use serde_json::json;
use url::Url;
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BROADCAST: &str = "/api/namespaces/ops/broadcast";
const TOKEN: &str = "tok-3f9a1c-very-secret";

/// A wiremock Direktiv with a catch-all that fails the test on any route
/// nobody mounted, and a sink pointed at its broadcast endpoint.
async fn setup(auth: Option<Auth>) -> (MockServer, Sink) {
    setup_with(auth, |config| config).await
}

async fn setup_with(
    auth: Option<Auth>,
    tweak: impl FnOnce(SinkConfig) -> SinkConfig,
) -> (MockServer, Sink) {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(418).set_body_string("unexpected route"))
        .with_priority(u8::MAX)
        .named("catch-all: unexpected request")
        .expect(0)
        .mount(&server)
        .await;
    let endpoint = Url::parse(&format!("{}{BROADCAST}", server.uri())).unwrap();
    let mut config = SinkConfig::new(endpoint);
    config.auth = auth;
    let sink = Sink::new(tweak(config)).unwrap();
    (server, sink)
}

/// An event shaped like the receiver's (design notes §4).
fn event() -> Event {
    EventBuilderV10::new()
        .id("cbe6eed5-b2ac-4bdb-bd82-b7b88866e200")
        .ty("provisioning.110")
        .source("direktiv/listener/equinix/Direktiv/Direktiv%20EKS%20Project")
        .time("2023-02-10T03:56:32Z")
        .extension("orgid", "ed49fa53-743f-43aa-836b-e24f88f94d9c")
        .extension("orgname", "Direktiv")
        .extension("projid", "d894d0eb-2b6c-4741-b106-c7cb76018d32")
        .extension("projname", "Direktiv EKS Project")
        .extension("hostname", "c3-small-x86-01")
        .extension("deviceid", "0caf4d6d-fafc-470b-86b1-d889eb838afa")
        .data(
            "application/json",
            json!({
                "body": "Provision complete! Your device is ready to go.",
                "created_at": "2023-02-10T03:56:32Z",
                "href": "/metal/v1/events/cbe6eed5-b2ac-4bdb-bd82-b7b88866e200",
                "id": "cbe6eed5-b2ac-4bdb-bd82-b7b88866e200",
                "interpolated": "Provision complete! Your device is ready to go.",
                "relationships": [{ "href": "#0caf4d6d-fafc-470b-86b1-d889eb838afa" }],
                "state": null,
                "type": "provisioning.110"
            }),
        )
        .build()
        .unwrap()
}

fn event_with_id(id: &str) -> Event {
    let mut e = event();
    cloudevents::event::AttributesWriter::set_id(&mut e, id);
    e
}

/// Sends one event to a server answering `response` once and returns the delivery.
async fn deliver(response: ResponseTemplate) -> Delivery {
    let (server, sink) = setup(None).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    sink.send(&event()).await
}

fn traceparent_parts(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert_eq!(parts[1].len(), 32, "{tp}");
    assert_eq!(parts[2].len(), 16, "{tp}");
    assert_eq!(parts[3], "01", "{tp}");
    assert!(
        tp[3..].chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{tp}"
    );
    assert_ne!(parts[1], "0".repeat(32));
    assert_ne!(parts[2], "0".repeat(16));
    (parts[1].to_owned(), parts[2].to_owned())
}

fn string_ext(event: &Event, name: &str) -> String {
    event
        .extension(name)
        .unwrap_or_else(|| panic!("no {name} extension"))
        .to_string()
}

#[tokio::test]
async fn success_statuses_are_delivered() {
    for code in [200, 202] {
        let delivery = deliver(ResponseTemplate::new(code)).await;
        assert_eq!(delivery.outcome, Outcome::Delivered, "{code}");
        assert_eq!(delivery.status, Some(code));
        assert!(delivery.outcome.is_acknowledged());
    }
    // A newer Direktiv might answer JSON: still Direktiv.
    let delivery = deliver(ResponseTemplate::new(200).set_body_json(json!({}))).await;
    assert_eq!(delivery.outcome, Outcome::Delivered);
}

#[tokio::test]
async fn a_login_page_answered_with_200_is_not_a_delivery() {
    let page = "<!doctype html><html><head><title>Sign in</title></head>\
                <body><form action=\"/sso/login\"></form></body></html>";
    let delivery = deliver(
        ResponseTemplate::new(200)
            .set_body_raw(page.as_bytes().to_vec(), "text/html; charset=utf-8"),
    )
    .await;
    assert!(
        !delivery.outcome.is_acknowledged(),
        "{:?}",
        delivery.outcome
    );
    assert!(delivery.outcome.is_endpoint_refusal());
    let Outcome::NotDirektiv {
        status,
        content_type,
        body,
    } = &delivery.outcome
    else {
        panic!("{:?}", delivery.outcome);
    };
    assert_eq!(*status, 200);
    assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
    assert!(body.contains("Sign in"), "{body}");
    assert!(
        delivery
            .outcome
            .to_string()
            .contains("a web page, not Direktiv"),
        "{}",
        delivery.outcome
    );
}

#[tokio::test]
async fn a_204_is_not_a_delivery_because_direktiv_never_answers_it() {
    let delivery = deliver(ResponseTemplate::new(204)).await;
    assert!(
        matches!(delivery.outcome, Outcome::NotDirektiv { status: 204, .. }),
        "{:?}",
        delivery.outcome
    );
    assert!(delivery.outcome.is_endpoint_refusal());
}

#[tokio::test]
async fn duplicates_are_already_delivered_in_both_generations() {
    let v1 = deliver(ResponseTemplate::new(409).set_body_string("event id already exists")).await;
    assert_eq!(v1.outcome, Outcome::AlreadyDelivered);
    assert_eq!(v1.status, Some(409));

    let v2 = deliver(ResponseTemplate::new(400).set_body_json(json!({
        "error": {
            "code": "request_data_invalid",
            "message": "Error appending CloudEvent to history: duplicate key value violates unique constraint"
        }
    })))
    .await;
    assert_eq!(v2.outcome, Outcome::AlreadyDelivered);
    assert!(v2.outcome.is_acknowledged());
}

#[tokio::test]
async fn other_client_errors_are_permanent_with_the_body() {
    for (code, body) in [
        (
            400,
            r#"{"error":{"code":"request_data_invalid","message":"invalid cloudevent"}}"#,
        ),
        (401, "unauthorized"),
        (403, "forbidden"),
        (
            404,
            r#"{"error":{"code":"resource_not_found","message":"namespace not found"}}"#,
        ),
        (415, "unsupported media type"),
    ] {
        let delivery = deliver(ResponseTemplate::new(code).set_body_string(body)).await;
        assert_eq!(
            delivery.outcome,
            Outcome::Permanent {
                status: code,
                body: body.to_owned()
            }
        );
        assert!(delivery.outcome.is_permanent());
        assert!(!delivery.outcome.is_acknowledged());
    }
}

#[tokio::test]
async fn a_huge_error_body_is_trimmed() {
    let delivery = deliver(ResponseTemplate::new(400).set_body_string("x".repeat(100_000))).await;
    let Outcome::Permanent { status: 400, body } = delivery.outcome else {
        panic!("{:?}", delivery.outcome)
    };
    assert!(
        body.len() <= direktiv_broadcast::MAX_BODY_BYTES + 3,
        "{}",
        body.len()
    );
}

#[tokio::test]
async fn server_trouble_is_retryable() {
    for code in [408, 429, 500, 502, 503] {
        let delivery = deliver(ResponseTemplate::new(code).set_body_string("busy")).await;
        assert_eq!(
            delivery.outcome,
            Outcome::Retryable {
                reason: RetryReason::Status,
                status: Some(code),
                retry_after: None,
                detail: "busy".to_owned(),
            }
        );
    }
}

#[tokio::test]
async fn retry_after_is_honoured_as_seconds_and_as_a_date() {
    let seconds = deliver(ResponseTemplate::new(429).insert_header("Retry-After", "17")).await;
    assert_eq!(seconds.outcome.retry_after(), Some(Duration::from_secs(17)));

    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let date = deliver(ResponseTemplate::new(503).insert_header("Retry-After", at.as_str())).await;
    let wait = date
        .outcome
        .retry_after()
        .expect("a wait from the HTTP date");
    // The date has one-second resolution and a little time passes.
    assert!(
        (Duration::from_secs(110)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (server, sink) = setup(Some(Auth::new(TOKEN))).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(307).insert_header("Location", "/elsewhere"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(any())
        .and(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let delivery = sink.send(&event()).await;
    assert!(
        matches!(delivery.outcome, Outcome::Permanent { status: 307, .. }),
        "{:?}",
        delivery.outcome
    );
}

#[tokio::test]
async fn structured_mode_body_and_traceparent() {
    let (server, sink) = setup(None).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .and(header("content-type", CONTENT_TYPE_EVENT))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let original = event();
    let delivery = sink.send(&original).await;
    assert_eq!(delivery.outcome, Outcome::Delivered);

    let requests = server.received_requests().await.unwrap();
    let request = &requests[0];
    let header_tp = request.headers["traceparent"].to_str().unwrap();
    assert_eq!(header_tp, delivery.traceparent);
    traceparent_parts(header_tp);

    let mut received: Event = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(string_ext(&received, "traceparent"), header_tp);
    received.remove_extension("traceparent");
    assert_eq!(received, original);
    // The caller's event is untouched.
    assert!(original.extension("traceparent").is_none());
}

#[tokio::test]
async fn an_existing_traceparent_is_replaced_and_each_send_gets_a_new_one() {
    let (server, sink) = setup(None).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&server)
        .await;
    let mut original = event();
    original.set_extension(
        "traceparent",
        "00-41bf58306274f26d0089209b0ad17caf-d3dd31d5d1f79415-00",
    );
    let first = sink.send(&original).await;
    let second = sink.send(&original).await;
    assert_ne!(first.traceparent, second.traceparent);
    for (request, delivery) in server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .zip([&first, &second])
    {
        let received: Event = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(string_ext(&received, "traceparent"), delivery.traceparent);
    }
}

#[tokio::test]
async fn each_auth_header_carries_the_token() {
    let cases = [
        (
            AuthHeader::DirektivToken,
            "direktiv-token",
            TOKEN.to_owned(),
        ),
        (AuthHeader::ApiKey, "apikey", TOKEN.to_owned()),
        (
            AuthHeader::DirektivApiKey,
            "direktiv-api-key",
            TOKEN.to_owned(),
        ),
        (
            AuthHeader::Bearer,
            "authorization",
            format!("Bearer {TOKEN}"),
        ),
        (
            "X-Gateway-Key".parse().unwrap(),
            "x-gateway-key",
            TOKEN.to_owned(),
        ),
    ];
    for (auth_header, name, value) in cases {
        let (server, sink) = setup(Some(Auth::with_header(auth_header.clone(), TOKEN))).await;
        Mock::given(method("POST"))
            .and(path(BROADCAST))
            .and(header(name, value.as_str()))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .named(format!("{auth_header} header"))
            .mount(&server)
            .await;
        let delivery = sink.send(&event()).await;
        assert_eq!(delivery.outcome, Outcome::Delivered, "{auth_header}");
    }
}

#[tokio::test]
async fn by_default_the_token_goes_in_both_direktiv_headers() {
    let (server, sink) = setup(Some(Auth::new(TOKEN))).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .and(header("Direktiv-Token", TOKEN))
        .and(header("Direktiv-Api-Key", TOKEN))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(sink.send(&event()).await.outcome, Outcome::Delivered);
    let request = &server.received_requests().await.unwrap()[0];
    for name in ["direktiv-token", "direktiv-api-key"] {
        assert_eq!(
            request.headers.get_all(name).iter().count(),
            1,
            "{name} sent once"
        );
    }
    for name in ["apikey", "authorization"] {
        assert!(!request.headers.contains_key(name), "{name} was sent");
    }
}

/// A Direktiv of one era: it reads only `header` and answers 401 without it.
async fn direktiv_reading_only(header_name: &'static str) -> (MockServer, Sink) {
    let (server, sink) = setup(Some(Auth::new(TOKEN))).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .and(header(header_name, TOKEN))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(401).set_body_string("unauthorized"))
        .with_priority(2)
        .mount(&server)
        .await;
    (server, sink)
}

#[tokio::test]
async fn the_default_is_accepted_by_every_direktiv_era() {
    for header_name in ["Direktiv-Token", "Direktiv-Api-Key"] {
        let (_server, sink) = direktiv_reading_only(header_name).await;
        assert_eq!(
            sink.send(&event()).await.outcome,
            Outcome::Delivered,
            "a Direktiv that reads only {header_name}"
        );
    }
}

#[tokio::test]
async fn listed_headers_each_carry_the_token_once() {
    let auth = Auth::with_headers(
        [
            AuthHeader::ApiKey,
            AuthHeader::Bearer,
            AuthHeader::ApiKey,
            "APIKEY".parse().unwrap(),
        ],
        TOKEN,
    );
    assert_eq!(auth.headers, [AuthHeader::ApiKey, AuthHeader::Bearer]);
    let (server, sink) = setup(Some(auth)).await;
    assert_eq!(
        sink.auth_headers(),
        [AuthHeader::ApiKey, AuthHeader::Bearer]
    );
    Mock::given(method("POST"))
        .and(header("apikey", TOKEN))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(sink.send(&event()).await.outcome, Outcome::Delivered);
    let request = &server.received_requests().await.unwrap()[0];
    assert_eq!(request.headers.get_all("apikey").iter().count(), 1);
    for name in ["direktiv-token", "direktiv-api-key"] {
        assert!(!request.headers.contains_key(name), "{name} was sent");
    }
}

#[tokio::test]
async fn one_header_sends_only_that_header() {
    let (server, sink) = setup(Some(Auth::with_header(AuthHeader::DirektivToken, TOKEN))).await;
    Mock::given(method("POST"))
        .and(header("Direktiv-Token", TOKEN))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(sink.send(&event()).await.outcome, Outcome::Delivered);
    let request = &server.received_requests().await.unwrap()[0];
    for name in ["direktiv-api-key", "apikey", "authorization"] {
        assert!(!request.headers.contains_key(name), "{name} was sent");
    }
}

#[tokio::test]
async fn no_auth_sends_no_auth_header() {
    let (server, sink) = setup(None).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(sink.send(&event()).await.outcome, Outcome::Delivered);
    let requests = server.received_requests().await.unwrap();
    for name in [
        "direktiv-token",
        "apikey",
        "direktiv-api-key",
        "authorization",
    ] {
        assert!(!requests[0].headers.contains_key(name), "{name} was sent");
    }
}

#[tokio::test]
async fn a_batch_is_a_json_array_under_one_trace() {
    let (server, sink) = setup(Some(Auth::new(TOKEN))).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .and(header("content-type", CONTENT_TYPE_BATCH))
        .and(header("direktiv-token", TOKEN))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let originals = vec![
        event_with_id("a-1"),
        event_with_id("a-2"),
        event_with_id("a-3"),
    ];
    let delivery = sink.send_batch(&originals).await;
    assert_eq!(delivery.outcome, Outcome::Delivered);

    let request = &server.received_requests().await.unwrap()[0];
    let header_tp = request.headers["traceparent"].to_str().unwrap();
    assert_eq!(header_tp, delivery.traceparent);
    let (trace_id, request_span) = traceparent_parts(header_tp);

    let received: Vec<Event> = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(received.len(), 3);
    let mut spans = vec![request_span];
    for (mut got, want) in received.into_iter().zip(&originals) {
        let (event_trace, event_span) = traceparent_parts(&string_ext(&got, "traceparent"));
        assert_eq!(event_trace, trace_id, "one trace id for the whole batch");
        assert!(!spans.contains(&event_span), "span ids must differ");
        spans.push(event_span);
        got.remove_extension("traceparent");
        assert_eq!(&got, want);
    }
}

#[tokio::test]
async fn an_empty_batch_sends_nothing() {
    let (_server, sink) = setup(None).await;
    let delivery = sink.send_batch(&[]).await;
    assert_eq!(delivery.outcome, Outcome::Delivered);
    assert_eq!(delivery.status, None);
}

#[tokio::test]
async fn a_batch_duplicate_is_classified_like_a_single_one() {
    let (server, sink) = setup(None).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(409))
        .expect(1)
        .mount(&server)
        .await;
    let delivery = sink.send_batch(&[event()]).await;
    assert_eq!(delivery.outcome, Outcome::AlreadyDelivered);
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let endpoint = Url::parse(&format!("http://{addr}{BROADCAST}")).unwrap();
    let sink = Sink::new(SinkConfig::new(endpoint)).unwrap();
    let delivery = sink.send(&event()).await;
    let Outcome::Retryable { reason, status, .. } = &delivery.outcome else {
        panic!("{:?}", delivery.outcome)
    };
    assert_eq!(*reason, RetryReason::Connect, "{}", delivery.outcome);
    assert_eq!(*status, None);
    assert_eq!(delivery.status, None);
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_retryable() {
    // Real time on purpose: the delay happens on wiremock's own runtime, and
    // a paused clock would fire the timeout before the request was even sent.
    let (server, sink) = setup_with(None, |mut config| {
        config.request_timeout = Duration::from_millis(200);
        config
    })
    .await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let delivery = sink.send(&event()).await;
    assert!(
        matches!(
            delivery.outcome,
            Outcome::Retryable {
                reason: RetryReason::Timeout,
                status: None,
                ..
            }
        ),
        "{:?}",
        delivery.outcome
    );
    assert!(
        delivery.elapsed < Duration::from_secs(3),
        "{:?}",
        delivery.elapsed
    );
}

#[tokio::test]
async fn clones_share_one_client_across_tasks() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Sink>();

    let (server, sink) = setup(Some(Auth::new(TOKEN))).await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .and(header("direktiv-token", TOKEN))
        .respond_with(ResponseTemplate::new(200))
        .expect(8)
        .mount(&server)
        .await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.send(&event_with_id(&format!("e-{i}"))).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().outcome, Outcome::Delivered);
    }
}

#[tokio::test]
async fn the_body_is_the_event_json() {
    let (server, sink) = setup(None).await;
    let original = event();
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    sink.send(&original).await;
    let request = &server.received_requests().await.unwrap()[0];
    let mut body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    body.as_object_mut().unwrap().remove("traceparent");
    assert_eq!(body, serde_json::to_value(&original).unwrap());
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(
        body["data"]["relationships"][0]["href"],
        "#0caf4d6d-fafc-470b-86b1-d889eb838afa"
    );
    assert_eq!(
        original.source().as_str(),
        "direktiv/listener/equinix/Direktiv/Direktiv%20EKS%20Project"
    );
}

/// A `MakeWriter` that keeps everything logged in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_token_never_shows_in_debug_display_or_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (server, sink) = setup_with(
        Some(Auth::with_header(AuthHeader::Bearer, TOKEN)),
        |mut c| {
            c.insecure_skip_verify = true;
            c
        },
    )
    .await;
    Mock::given(method("POST"))
        .and(path(BROADCAST))
        .respond_with(ResponseTemplate::new(401).set_body_string("unauthorized"))
        .expect(1)
        .mount(&server)
        .await;
    let delivery = sink.send(&event()).await;

    let mut seen = vec![
        format!("{sink:?}"),
        format!("{delivery:?}"),
        delivery.outcome.to_string(),
    ];
    let mut config = SinkConfig::new(sink.endpoint().clone());
    config.auth = Some(Auth::with_header(AuthHeader::Bearer, format!("{TOKEN}\n")));
    seen.push(format!("{config:?}"));
    let err = Sink::new(config).unwrap_err();
    assert!(matches!(err, Error::InvalidToken { .. }));
    seen.push(err.to_string());
    seen.push(format!("{err:?}"));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("insecure_skip_verify"),
        "the warning is logged:\n{logs}"
    );
    assert!(
        logs.contains("rejected (HTTP 401)"),
        "the rejection is logged:\n{logs}"
    );
    assert!(
        logs.contains("refused the token") && logs.contains("auth_headers=Authorization: Bearer"),
        "the refusal names the header the token went in:\n{logs}"
    );
    seen.push(logs);
    for text in seen {
        assert!(!text.contains(TOKEN), "token leaked in: {text}");
    }
}

#[test]
fn ca_file_problems_name_the_path() {
    let endpoint = Url::parse("https://127.0.0.1:1/api/namespaces/ops/broadcast").unwrap();

    let missing = std::env::temp_dir().join("direktiv-broadcast-no-such-ca.pem");
    let mut config = SinkConfig::new(endpoint.clone());
    config.ca_file = Some(missing.clone());
    let err = Sink::new(config).unwrap_err();
    assert!(matches!(err, Error::CaFileRead { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), "this is not a certificate\n").unwrap();
    let mut config = SinkConfig::new(endpoint);
    config.ca_file = Some(garbage.path().to_owned());
    let err = Sink::new(config).unwrap_err();
    assert!(matches!(err, Error::CaFileInvalid { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&garbage.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_non_http_endpoint_is_refused() {
    let endpoint = Url::parse("ftp://direktiv.example.com/api/namespaces/ops/broadcast").unwrap();
    let err = Sink::new(SinkConfig::new(endpoint)).unwrap_err();
    assert!(matches!(err, Error::UnsupportedScheme { .. }), "{err:?}");
}
