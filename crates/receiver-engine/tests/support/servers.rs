//! The two wiremock servers both end-to-end harnesses share: a Metal API that
//! serves paged, newest-first event lists from a store the test can change
//! between runs, and a Direktiv whose answers the test scripts. The engine's
//! in-process tests (`support/mod.rs`) and the binary's process tests
//! (`bins/equinix-receiver/tests/pipeline_support`, through `#[path]`) use
//! this one file.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{any, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub(crate) const ORG: &str = "ed49fa53-743f-43aa-836b-e24f88f94d9c";
pub(crate) const ORG_NAME: &str = "Direktiv Labs GmbH";
/// "Edge Fleet #2": devices D1 and D2.
pub(crate) const P1: &str = "ca9259c5-dfae-41ab-bc35-982473f59a3f";
pub(crate) const P1_NAME: &str = "Edge Fleet #2";
/// "Direktiv EKS Project": device D3.
pub(crate) const P2: &str = "d894d0eb-2b6c-4741-b106-c7cb76018d32";
pub(crate) const P2_NAME: &str = "Direktiv EKS Project";
pub(crate) const D1: &str = "9c0a0bb8-4456-4cf9-b2e3-f56cc2c4f39f";
pub(crate) const D1_HOST: &str = "edge-fra-02";
pub(crate) const D2: &str = "0caf4d6d-fafc-470b-86b1-d889eb838afa";
pub(crate) const D2_HOST: &str = "c3-small-x86-01";
pub(crate) const D3: &str = "7f3e2a91-1b4c-4d0e-8f6a-2c9d5e4b3a10";
pub(crate) const D3_HOST: &str = "c3-small-x86-02";
/// A project of another organization that the token can also see.
pub(crate) const OTHER_PROJECT: &str = "5b1e6f0a-3c1d-4e27-9a0b-7f4f6d2c8e11";

pub(crate) const METAL_TOKEN: &str = "metal-e2e-token-0123456789";
pub(crate) const DIREKTIV_TOKEN: &str = "direktiv-e2e-token-9876543210";
pub(crate) const BROADCAST: &str = "/api/v2/namespaces/ops/events/broadcast";

/// `source` of events of P1 and P2.
pub(crate) const P1_SOURCE: &str =
    "direktiv/listener/equinix/Direktiv%20Labs%20GmbH/Edge%20Fleet%20%232";
pub(crate) const P2_SOURCE: &str =
    "direktiv/listener/equinix/Direktiv%20Labs%20GmbH/Direktiv%20EKS%20Project";

/// The organization as `GET /organizations/{id}` answers it.
pub(crate) fn organization_json() -> Value {
    fixture_json("receiver/organization.json")
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

pub(crate) fn fixture_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `seconds` ago, whole seconds (as the API writes times).
pub(crate) fn ago(seconds: i64) -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now - seconds, 0).expect("valid time")
}

/// A device event in the spec's shape (relationships name the device).
pub(crate) fn device_event(id: &str, ty: &str, device: &str, at: DateTime<Utc>) -> Value {
    json!({
        "id": id,
        "type": ty,
        "body": format!("{ty} on {{{{device}}}}"),
        "state": null,
        "interpolated": format!("{ty} on device {device}"),
        "relationships": [{ "href": format!("#{device}") }],
        "created_at": rfc3339(at),
        "modified_by": {
            "id": "3e6b1c2a-9d8f-4e7a-b6c5-d4e3f2a1b0c9",
            "full_name": "Jane Operator",
            "email": "jane@example.com",
            "href": "/metal/v1/users/3e6b1c2a-9d8f-4e7a-b6c5-d4e3f2a1b0c9"
        },
        "ip": "203.0.113.24",
        "href": format!("/metal/v1/events/{id}")
    })
}

/// A project-level event: no device among its relationships.
pub(crate) fn project_event(id: &str, ty: &str, project: &str, at: DateTime<Utc>) -> Value {
    json!({
        "id": id,
        "type": ty,
        "body": "{{actor}} updated the project",
        "state": null,
        "interpolated": "Jane Operator updated the project",
        "relationships": [{ "href": format!("/metal/v1/projects/{project}") }],
        "created_at": rfc3339(at),
        "href": format!("/metal/v1/events/{id}")
    })
}

/// The fixture event with fields the spec does not list (device D1).
pub(crate) fn unknown_fields_event(at: DateTime<Utc>) -> Value {
    let mut event = fixture_json("receiver/event-unknown-fields.json");
    event["created_at"] = json!(rfc3339(at));
    event
}

/// A deterministic uuid-shaped event id.
pub(crate) fn eid(n: u32) -> String {
    format!("e0000000-0000-4000-8000-{n:012}")
}

pub(crate) fn device_events_path(device: &str) -> String {
    format!("/metal/v1/devices/{device}/events")
}

pub(crate) fn org_events_path() -> String {
    format!("/metal/v1/organizations/{ORG}/events")
}

pub(crate) fn project_events_path(project: &str) -> String {
    format!("/metal/v1/projects/{project}/events")
}

/// An answer a test scripts: a status, headers and a body.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
}

impl Reply {
    pub(crate) fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn ok() -> Self {
        Self::new(200)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn body(mut self, body: &str) -> Self {
        self.body = Some(body.as_bytes().to_vec());
        self
    }

    /// A 200 whose JSON body is these bytes, as they are (UTF-8 or not).
    pub(crate) fn raw_json(body: &[u8]) -> Self {
        let mut reply = Self::new(200).header("content-type", "application/json");
        reply.body = Some(body.to_vec());
        reply
    }

    /// A Metal error answer: `{"errors": [message]}`.
    pub(crate) fn metal_error(status: u16, message: &str) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(&json!({ "errors": [message] }).to_string())
    }

    /// A JSON answer.
    pub(crate) fn json(status: u16, body: &Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(&body.to_string())
    }

    pub(crate) fn template(&self) -> ResponseTemplate {
        let mut template = ResponseTemplate::new(self.status);
        for (name, value) in &self.headers {
            template = template.insert_header(name.as_str(), value.as_str());
        }
        if let Some(body) = &self.body {
            template = template.set_body_raw(body.clone(), "application/json");
        }
        template
    }
}

/// A request the Metal mock answered, with the moment it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) at: Instant,
    pub(crate) status: u16,
}

#[derive(Default)]
struct MetalState {
    /// Event lists by path, in any order (served newest first).
    lists: HashMap<String, Vec<Value>>,
    /// Paths whose list is served in the order it is stored, not sorted.
    as_stored: HashSet<String>,
    /// The API's clock minus this host's, sent as every answer's `Date`.
    clock_offset: Option<chrono::TimeDelta>,
    /// One-shot answers by path, used before the list.
    scripted: HashMap<String, VecDeque<Reply>>,
    /// Paths that answer 404 for good.
    gone: Vec<String>,
    /// Paths that answer every request with this reply.
    fixed: HashMap<String, Reply>,
    hits: Vec<Hit>,
}

/// The Metal API's event lists and inventory, shared with the mock server.
#[derive(Clone, Default)]
pub(crate) struct Metal(Arc<Mutex<MetalState>>);

impl Metal {
    fn lock(&self) -> std::sync::MutexGuard<'_, MetalState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds events to the list at `path`.
    pub(crate) fn add(&self, path: &str, events: impl IntoIterator<Item = Value>) {
        self.lock()
            .lists
            .entry(path.to_owned())
            .or_default()
            .extend(events);
    }

    /// Puts `event` at `position` (from 0) of the list at `path` as served,
    /// which from then on is served in its stored order rather than newest
    /// first: a list out of order.
    pub(crate) fn insert_at(&self, path: &str, position: usize, event: Value) {
        let mut state = self.lock();
        let sorted = !state.as_stored.contains(path);
        let list = state.lists.entry(path.to_owned()).or_default();
        if sorted {
            sort_newest_first(list);
        }
        list.insert(position.min(list.len()), event);
        state.as_stored.insert(path.to_owned());
    }

    /// The API's clock runs `offset` from this host's: every answer's
    /// `Date` header says so (events are dated by the test, on that clock).
    pub(crate) fn set_clock_offset(&self, offset: chrono::TimeDelta) {
        self.lock().clock_offset = Some(offset);
    }

    /// The next request to `path` gets `answer` instead of the list.
    pub(crate) fn script(&self, path: &str, answer: Reply) {
        self.lock()
            .scripted
            .entry(path.to_owned())
            .or_default()
            .push_back(answer);
    }

    /// Every request to `path` gets `answer` from now on (after any
    /// scripted one).
    pub(crate) fn fixed(&self, path: &str, answer: Reply) {
        self.lock().fixed.insert(path.to_owned(), answer);
    }

    /// `path` is served from its list again.
    pub(crate) fn unfix(&self, path: &str) {
        self.lock().fixed.remove(path);
    }

    /// `path` answers 404 from now on.
    pub(crate) fn gone(&self, path: &str) {
        self.lock().gone.push(path.to_owned());
    }

    /// Every request answered so far.
    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.lock().hits.clone()
    }

    /// Requests to `path` so far.
    pub(crate) fn hits_to(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    pub(crate) fn clear_hits(&self) {
        self.lock().hits.clear();
    }
}

/// Serves inventory fixtures and paged event lists from [`Metal`].
pub(crate) struct MetalResponder {
    pub(crate) state: Metal,
}

impl Respond for MetalResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_owned();
        let query = request.url.query().unwrap_or("").to_owned();
        let mut state = self.state.lock();
        let reply = if request
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            != Some(METAL_TOKEN)
        {
            Reply::metal_error(401, "Invalid authentication token")
        } else if let Some(answer) = state.scripted.get_mut(&path).and_then(VecDeque::pop_front) {
            answer
        } else if state.gone.contains(&path) {
            Reply::metal_error(404, "Not found")
        } else if let Some(answer) = state.fixed.get(&path) {
            answer.clone()
        } else if path == format!("/metal/v1/organizations/{ORG}") {
            Reply::json(200, &fixture_json("receiver/organization.json"))
        } else if path == format!("/metal/v1/organizations/{ORG}/projects") {
            Reply::json(200, &fixture_json("receiver/projects.json"))
        } else if path == format!("/metal/v1/projects/{P1}/devices") {
            Reply::json(200, &fixture_json("receiver/devices-edge-fleet.json"))
        } else if path == format!("/metal/v1/projects/{P2}/devices") {
            Reply::json(200, &fixture_json("receiver/devices-eks.json"))
        } else {
            let mut events = state.lists.get(&path).cloned().unwrap_or_default();
            if !state.as_stored.contains(&path) {
                sort_newest_first(&mut events);
            }
            Reply::json(200, &page_of(&path, &query, events))
        };
        state.hits.push(Hit {
            path,
            query,
            at: Instant::now(),
            status: reply.status,
        });
        let mut template = reply.template();
        if let Some(offset) = state.clock_offset {
            let date = Utc::now() + offset;
            template = template
                .insert_header("Date", date.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        }
        template
    }
}

/// Sorts events newest first, as the API lists them.
fn sort_newest_first(events: &mut [Value]) {
    events.sort_by(|a, b| {
        b["created_at"]
            .as_str()
            .cmp(&a["created_at"].as_str())
            .then_with(|| b["id"].as_str().cmp(&a["id"].as_str()))
    });
}

/// One page of `events` in the order given, with `meta` as the API writes it.
fn page_of(path: &str, query: &str, events: Vec<Value>) -> Value {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let page = param("page").unwrap_or(1).max(1);
    let per_page = param("per_page").unwrap_or(10).max(1);
    let total = events.len();
    let last_page = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = events
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let href = |n: usize| json!({ "href": format!("{path}?page={n}&per_page={per_page}") });
    json!({
        "events": items,
        "meta": {
            "first": href(1),
            "previous": if page > 1 { href(page - 1) } else { Value::Null },
            "self": href(page),
            "next": if page < last_page { href(page + 1) } else { Value::Null },
            "last": href(last_page),
            "total": total,
            "current_page": page,
            "last_page": last_page
        }
    })
}

/// How Direktiv answers: given the event (parsed body) and how many times
/// this id was sent before (0 for the first attempt).
pub(crate) type Answer = Arc<dyn Fn(&Value, usize) -> Reply + Send + Sync>;

/// A request Direktiv received.
#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub(crate) event: Value,
    pub(crate) content_type: Option<String>,
    /// The `Direktiv-Token` header.
    pub(crate) token: Option<String>,
    /// The `Direktiv-Api-Key` header.
    pub(crate) api_key: Option<String>,
    /// The old `apikey` header.
    pub(crate) apikey: Option<String>,
    /// The `Authorization` header.
    pub(crate) authorization: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) status: u16,
}

#[derive(Default)]
struct DirektivState {
    posts: Vec<Post>,
    /// The one header this Direktiv reads the token from; without the
    /// token there it answers 401 whatever the script says.
    reads: Option<&'static str>,
}

/// The broadcast endpoint's script and log.
#[derive(Clone)]
pub(crate) struct Direktiv {
    state: Arc<Mutex<DirektivState>>,
    answer: Arc<Mutex<Answer>>,
}

impl Direktiv {
    /// From now on, Direktiv answers with `answer`.
    pub(crate) fn answer(&self, answer: impl Fn(&Value, usize) -> Reply + Send + Sync + 'static) {
        *self.answer.lock().expect("lock") = Arc::new(answer);
    }

    /// From now on, Direktiv reads the token from `header` only (as each
    /// Direktiv release does) and answers 401 when it is not there.
    pub(crate) fn reads_token_from(&self, header: &'static str) {
        self.state.lock().expect("lock").reads = Some(header);
    }

    /// Every request received.
    pub(crate) fn posts(&self) -> Vec<Post> {
        self.state.lock().expect("lock").posts.clone()
    }

    /// The events Direktiv accepted (2xx), in the order they arrived.
    pub(crate) fn accepted(&self) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|p| (200..300).contains(&p.status))
            .map(|p| p.event)
            .collect()
    }

    /// Ids of the accepted events, in arrival order.
    pub(crate) fn accepted_ids(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.state.lock().expect("lock").posts.clear();
    }
}

pub(crate) struct DirektivResponder(pub(crate) Direktiv);

impl Respond for DirektivResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let event: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let answer = Arc::clone(&self.0.answer.lock().expect("lock"));
        let mut state = self.0.state.lock().expect("lock");
        let earlier = state
            .posts
            .iter()
            .filter(|p| p.event["id"].as_str() == Some(id.as_str()))
            .count();
        let reply = match state.reads {
            Some(name) if header(name).as_deref() != Some(DIREKTIV_TOKEN) => {
                Reply::new(401).body(r#"{"error":"unauthorized"}"#)
            }
            _ => answer(&event, earlier),
        };
        state.posts.push(Post {
            event,
            content_type: header("content-type"),
            token: header("direktiv-token"),
            api_key: header("direktiv-api-key"),
            apikey: header("apikey"),
            authorization: header("authorization"),
            traceparent: header("traceparent"),
            status: reply.status,
        });
        reply.template()
    }
}

/// Both mock servers and the stores they answer from.
pub(crate) struct Servers {
    pub(crate) metal_server: MockServer,
    pub(crate) direktiv_server: MockServer,
    pub(crate) metal: Metal,
    pub(crate) direktiv: Direktiv,
}

impl Servers {
    /// Starts both servers: every known Metal route is served from the
    /// store, `/projects` and any other route must never be requested, and
    /// Direktiv accepts everything until told otherwise.
    pub(crate) async fn start() -> Self {
        let metal_server = MockServer::start().await;
        let direktiv_server = MockServer::start().await;
        let metal = Metal::default();
        let direktiv = Direktiv {
            state: Arc::default(),
            answer: Arc::new(Mutex::new(Arc::new(|_: &Value, _| Reply::ok()))),
        };

        // Listing every project the token can see is the old receiver's
        // first fault: it must never happen.
        Mock::given(method("GET"))
            .and(path("/metal/v1/projects"))
            .respond_with(Reply::json(200, &fixture_json("receiver/all-projects.json")).template())
            .expect(0)
            .named("GET /projects (another organization's projects)")
            .with_priority(1)
            .mount(&metal_server)
            .await;
        let known = [
            format!("^/metal/v1/organizations/{ORG}$"),
            format!("^/metal/v1/organizations/{ORG}/(projects|events)$"),
            format!("^/metal/v1/projects/({P1}|{P2})/(devices|events)$"),
            format!("^/metal/v1/devices/({D1}|{D2}|{D3})/events$"),
        ];
        for pattern in known {
            Mock::given(method("GET"))
                .and(path_regex(pattern))
                .respond_with(MetalResponder {
                    state: metal.clone(),
                })
                .with_priority(2)
                .mount(&metal_server)
                .await;
        }
        Mock::given(any())
            .respond_with(ResponseTemplate::new(599))
            .expect(0)
            .named("an unexpected Metal API route")
            .with_priority(u8::MAX)
            .mount(&metal_server)
            .await;

        Mock::given(method("POST"))
            .and(path(BROADCAST))
            .respond_with(DirektivResponder(direktiv.clone()))
            .with_priority(1)
            .mount(&direktiv_server)
            .await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(599))
            .expect(0)
            .named("an unexpected Direktiv route")
            .with_priority(u8::MAX)
            .mount(&direktiv_server)
            .await;
        Self {
            metal_server,
            direktiv_server,
            metal,
            direktiv,
        }
    }
}
