//! The simulated Direktiv broadcast endpoint: either generation's rules for
//! content types and duplicates, auth, faults, the JSON-lines sink and the
//! [`DirektivSimHandle`].

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::server::Listener;
use crate::util::{duration_ms, latency, roll};

/// Bodies larger than this get 400, as Direktiv answers.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Which Direktiv API the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Generation {
    /// v0.7 to v0.8.6: `POST /api/namespaces/{ns}/broadcast`; structured,
    /// batch and binary mode; a repeated id in a namespace gets 409.
    V1,
    /// v0.8.8 on: `POST /api/v2/namespaces/{ns}/events/broadcast`; structured
    /// and batch only (binary gets 400, other types 415); a repeated
    /// source+id gets 400 `Error appending CloudEvent to history`.
    #[default]
    V2,
}

/// How the simulated Direktiv is built and behaves.
#[derive(Debug, Clone)]
pub struct DirektivSimConfig {
    /// Where to listen; port 0 picks a free port. Default `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// The API generation. Default [`Generation::V2`].
    pub generation: Generation,
    /// The namespace [`DirektivSimHandle::endpoint_url`] names (any namespace
    /// is accepted). Default `metal`.
    pub namespace: String,
    /// The header carrying the token. Default `Direktiv-Token`.
    pub auth_header: String,
    /// The expected token; `None` accepts every request. Default
    /// `direktiv-sim-token`.
    pub token: Option<String>,
    /// Appends every accepted CloudEvent, one JSON object a line.
    pub jsonl_path: Option<PathBuf>,
    /// Seed of the fault draws. Default 42.
    pub seed: u64,
    /// Faults at start.
    pub faults: DirektivFaults,
}

impl Default for DirektivSimConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            generation: Generation::V2,
            namespace: "metal".to_owned(),
            auth_header: "Direktiv-Token".to_owned(),
            token: Some("direktiv-sim-token".to_owned()),
            jsonl_path: None,
            seed: 42,
            faults: DirektivFaults::default(),
        }
    }
}

/// Faults of the Direktiv endpoint, adjustable at runtime. In JSON, durations
/// are milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DirektivFaults {
    /// Added to every broadcast response.
    #[serde(with = "duration_ms", rename = "latency_ms")]
    pub latency: Duration,
    /// A uniform extra delay in `[0, jitter]`.
    #[serde(with = "duration_ms", rename = "jitter_ms")]
    pub jitter: Duration,
    /// Share of requests answered 503 (nothing accepted).
    pub unavailable: f64,
    /// Share of requests answered 500 (nothing accepted).
    pub internal_error: f64,
    /// Down mode: every broadcast gets 503 until switched off.
    pub down: bool,
}

impl Default for DirektivFaults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            unavailable: 0.0,
            internal_error: 0.0,
            down: false,
        }
    }
}

/// Counters of the Direktiv simulator, served at `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirektivStats {
    /// Broadcast requests (admin requests excluded).
    pub requests_total: u64,
    /// Requests by endpoint (`POST broadcast`, `POST (unknown)`).
    pub requests: BTreeMap<String, u64>,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Faults injected, by kind (`down`, `unavailable`, `internal_error`).
    pub faults: BTreeMap<String, u64>,
    /// CloudEvents accepted.
    pub events_accepted: u64,
    /// Requests (or batches) rejected because an event was already there.
    pub duplicates_rejected: u64,
    /// Batch requests accepted.
    pub batches_accepted: u64,
    /// Binary-mode requests rejected (v2).
    pub binary_rejected: u64,
    /// Requests with an unsupported content type (415).
    pub unsupported_media: u64,
    /// Requests with a malformed CloudEvent (400).
    pub malformed: u64,
    /// Requests with a missing or wrong token (401).
    pub unauthorized: u64,
}

/// How an accepted event arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `application/cloudevents+json` or `application/json`.
    Structured,
    /// `application/cloudevents-batch+json`.
    Batch,
    /// Binary mode (`ce-*` headers), v1 only.
    Binary,
}

/// One CloudEvent the simulator accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedEvent {
    /// The namespace it was broadcast to.
    pub namespace: String,
    /// The CloudEvent `id`.
    pub id: String,
    /// The CloudEvent `source`.
    pub source: String,
    /// The CloudEvent `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// How it arrived.
    pub mode: Mode,
    /// When it was accepted (wall clock).
    pub accepted_at: SystemTime,
    /// The whole CloudEvent as structured JSON.
    pub event: Value,
}

struct Inner {
    accepted: Vec<AcceptedEvent>,
    /// v1: (namespace, id); v2: (namespace, source, id) joined by NUL.
    seen: HashSet<String>,
    stats: DirektivStats,
    faults: DirektivFaults,
    rng: StdRng,
    sink: Option<io::BufWriter<File>>,
}

struct Shared {
    generation: Generation,
    namespace: String,
    /// As configured, for display.
    auth_header: String,
    /// Lowercase, for the lookup.
    auth_header_lower: String,
    token: Option<String>,
    state: Mutex<Inner>,
}

/// Starts the simulated Direktiv endpoint.
#[derive(Debug)]
pub struct DirektivSim;

impl DirektivSim {
    /// Binds the listener and starts serving; the JSON-lines file, when set,
    /// is created or appended to.
    pub async fn start(config: DirektivSimConfig) -> io::Result<DirektivSimHandle> {
        Self::start_with_shutdown(config, CancellationToken::new()).await
    }

    /// Like [`DirektivSim::start`], stopping when `shutdown` is cancelled.
    pub async fn start_with_shutdown(
        config: DirektivSimConfig,
        shutdown: CancellationToken,
    ) -> io::Result<DirektivSimHandle> {
        let sink = match &config.jsonl_path {
            Some(path) => Some(io::BufWriter::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            generation: config.generation,
            namespace: config.namespace.clone(),
            auth_header: config.auth_header.clone(),
            auth_header_lower: config.auth_header.to_ascii_lowercase(),
            token: config.token.clone(),
            state: Mutex::new(Inner {
                accepted: Vec::new(),
                seen: HashSet::new(),
                stats: DirektivStats::default(),
                faults: config.faults.clone(),
                rng: StdRng::seed_from_u64(config.seed),
                sink,
            }),
        });
        let path = match config.generation {
            Generation::V1 => "/api/namespaces/{ns}/broadcast",
            Generation::V2 => "/api/v2/namespaces/{ns}/events/broadcast",
        };
        let router = Router::new()
            .route(path, post(broadcast))
            .route("/_sim/stats", get(admin_stats))
            .route("/_sim/faults", get(admin_faults).put(admin_set_faults))
            .route("/_sim/down", put(admin_down))
            .route("/_sim/accepted", get(admin_accepted))
            .fallback(unknown)
            .with_state(shared.clone());
        let listener = Listener::bind(config.addr, router, shutdown.clone()).await?;
        tracing::info!(addr = %listener.addr(), generation = ?config.generation, "simulated Direktiv listening");
        Ok(DirektivSimHandle {
            shared,
            listener,
            shutdown,
        })
    }
}

fn count(shared: &Shared, endpoint: &str, status: StatusCode) {
    let mut state = shared.state.lock().expect("direktiv lock");
    state.stats.requests_total += 1;
    *state.stats.requests.entry(endpoint.to_owned()).or_default() += 1;
    *state.stats.statuses.entry(status.as_u16()).or_default() += 1;
}

async fn unknown(State(shared): State<Arc<Shared>>) -> Response {
    count(&shared, "(unknown)", StatusCode::NOT_FOUND);
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn broadcast(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = accept(&shared, ns, &headers, body).await;
    count(&shared, "POST broadcast", response.status());
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    let body =
        serde_json::json!({ "error": { "code": status.as_u16().to_string(), "message": message } });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn accept(shared: &Shared, ns: String, headers: &HeaderMap, body: Body) -> Response {
    let (delay, faults) = {
        let mut state = shared.state.lock().expect("direktiv lock");
        let (fixed, jitter) = (state.faults.latency, state.faults.jitter);
        (latency(&mut state.rng, fixed, jitter), state.faults.clone())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fault = |kind: &str| {
        *shared
            .state
            .lock()
            .expect("direktiv lock")
            .stats
            .faults
            .entry(kind.to_owned())
            .or_default() += 1;
    };
    if faults.down {
        fault("down");
        return error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable");
    }
    let presented = headers
        .get(shared.auth_header_lower.as_str())
        .and_then(|v| v.to_str().ok());
    if shared
        .token
        .as_deref()
        .is_some_and(|token| presented != Some(token))
    {
        shared
            .state
            .lock()
            .expect("direktiv lock")
            .stats
            .unauthorized += 1;
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (unavailable, internal) = {
        let mut state = shared.state.lock().expect("direktiv lock");
        let unavailable = roll(&mut state.rng, faults.unavailable);
        let internal = !unavailable && roll(&mut state.rng, faults.internal_error);
        (unavailable, internal)
    };
    if unavailable {
        fault("unavailable");
        return error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable");
    }
    if internal {
        fault("internal_error");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return error(StatusCode::BAD_REQUEST, "request body too large");
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let binary = headers.contains_key("ce-id") || headers.contains_key("ce-specversion");
    let parsed = match (content_type.as_str(), shared.generation) {
        ("application/cloudevents-batch+json", _) => {
            parse_batch(&bytes).map(|events| (events, Mode::Batch))
        }
        ("application/cloudevents+json", _) => {
            parse_one(&bytes).map(|event| (vec![event], Mode::Structured))
        }
        ("application/json", _) if !binary => {
            parse_one(&bytes).map(|event| (vec![event], Mode::Structured))
        }
        (_, Generation::V1) if binary => {
            from_binary(headers, &bytes, &content_type).map(|event| (vec![event], Mode::Binary))
        }
        (_, Generation::V2) if binary => {
            shared
                .state
                .lock()
                .expect("direktiv lock")
                .stats
                .binary_rejected += 1;
            return error(
                StatusCode::BAD_REQUEST,
                "binary mode is not supported: send structured CloudEvents",
            );
        }
        _ => {
            shared
                .state
                .lock()
                .expect("direktiv lock")
                .stats
                .unsupported_media += 1;
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported media type");
        }
    };
    let (events, mode) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => {
            shared.state.lock().expect("direktiv lock").stats.malformed += 1;
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    store(shared, ns, events, mode)
}

/// Checks duplicates (all or nothing for a batch), then records and writes
/// the events.
fn store(shared: &Shared, ns: String, events: Vec<Map<String, Value>>, mode: Mode) -> Response {
    let key = |event: &Map<String, Value>| {
        let id = event["id"].as_str().unwrap_or_default();
        match shared.generation {
            Generation::V1 => format!("{ns}\0{id}"),
            Generation::V2 => format!(
                "{ns}\0{}\0{id}",
                event["source"].as_str().unwrap_or_default()
            ),
        }
    };
    let mut state = shared.state.lock().expect("direktiv lock");
    let keys: Vec<String> = events.iter().map(key).collect();
    let unique: HashSet<&String> = keys.iter().collect();
    if unique.len() < keys.len() || keys.iter().any(|k| state.seen.contains(k)) {
        state.stats.duplicates_rejected += 1;
        drop(state);
        return match shared.generation {
            Generation::V1 => error(StatusCode::CONFLICT, "event with this id already exists"),
            Generation::V2 => error(
                StatusCode::BAD_REQUEST,
                "Error appending CloudEvent to history: duplicate key value violates unique constraint \"events_history_pkey\"",
            ),
        };
    }
    let now = SystemTime::now();
    let mut write_failed = false;
    for (event, key) in events.into_iter().zip(keys) {
        state.seen.insert(key);
        let event = Value::Object(event);
        if let Some(sink) = state.sink.as_mut() {
            let mut line = event.to_string();
            line.push('\n');
            if sink.write_all(line.as_bytes()).is_err() {
                write_failed = true;
            }
        }
        state.accepted.push(AcceptedEvent {
            namespace: ns.clone(),
            id: event["id"].as_str().unwrap_or_default().to_owned(),
            source: event["source"].as_str().unwrap_or_default().to_owned(),
            event_type: event["type"].as_str().unwrap_or_default().to_owned(),
            mode,
            accepted_at: now,
            event,
        });
        state.stats.events_accepted += 1;
    }
    if mode == Mode::Batch {
        state.stats.batches_accepted += 1;
    }
    if let Some(sink) = state.sink.as_mut() {
        write_failed |= sink.flush().is_err();
    }
    if write_failed {
        tracing::warn!("could not append to the simulator's JSON-lines file");
    }
    StatusCode::OK.into_response()
}

/// A structured CloudEvent: an object with `specversion` 1.0 and non-empty
/// `id`, `source` and `type`.
fn check(value: Value) -> Result<Map<String, Value>, String> {
    let Value::Object(event) = value else {
        return Err("a CloudEvent must be a JSON object".to_owned());
    };
    if event.get("specversion").and_then(Value::as_str) != Some("1.0") {
        return Err("specversion must be \"1.0\"".to_owned());
    }
    for field in ["id", "source", "type"] {
        if event
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("the CloudEvent has no {field}"));
        }
    }
    Ok(event)
}

fn parse_one(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    check(value)
}

fn parse_batch(bytes: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("a batch must be a JSON array".to_owned());
    };
    items.into_iter().map(check).collect()
}

/// Rebuilds a structured event from binary mode's `ce-*` headers and body.
fn from_binary(
    headers: &HeaderMap,
    bytes: &[u8],
    content_type: &str,
) -> Result<Map<String, Value>, String> {
    let mut event = Map::new();
    for (name, value) in headers {
        if let Some(attribute) = name.as_str().strip_prefix("ce-") {
            let value = value
                .to_str()
                .map_err(|_| format!("header {name} is not text"))?;
            event.insert(attribute.to_owned(), Value::String(value.to_owned()));
        }
    }
    if !content_type.is_empty() {
        event.insert(
            "datacontenttype".to_owned(),
            Value::String(content_type.to_owned()),
        );
    }
    if !bytes.is_empty() {
        let data = serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()));
        event.insert("data".to_owned(), data);
    }
    check(Value::Object(event))
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Json<DirektivStats> {
    Json(shared.state.lock().expect("direktiv lock").stats.clone())
}

async fn admin_faults(State(shared): State<Arc<Shared>>) -> Json<DirektivFaults> {
    Json(shared.state.lock().expect("direktiv lock").faults.clone())
}

async fn admin_set_faults(
    State(shared): State<Arc<Shared>>,
    Json(faults): Json<DirektivFaults>,
) -> Json<DirektivFaults> {
    shared.state.lock().expect("direktiv lock").faults = faults.clone();
    Json(faults)
}

#[derive(Deserialize)]
struct Down {
    down: bool,
}

async fn admin_down(State(shared): State<Arc<Shared>>, Json(down): Json<Down>) -> StatusCode {
    shared.state.lock().expect("direktiv lock").faults.down = down.down;
    StatusCode::NO_CONTENT
}

async fn admin_accepted(State(shared): State<Arc<Shared>>) -> Json<Vec<AcceptedEvent>> {
    Json(shared.state.lock().expect("direktiv lock").accepted.clone())
}

/// Controls a running Direktiv simulator. Dropping the handle does not stop
/// it; call [`DirektivSimHandle::shutdown`] or cancel the token.
pub struct DirektivSimHandle {
    shared: Arc<Shared>,
    listener: Listener,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for DirektivSimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirektivSimHandle")
            .field("addr", &self.listener.addr())
            .finish_non_exhaustive()
    }
}

impl DirektivSimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// The broadcast URL for the configured namespace and generation.
    pub fn endpoint_url(&self) -> String {
        self.endpoint_url_for(&self.shared.namespace)
    }

    /// The broadcast URL for another namespace.
    pub fn endpoint_url_for(&self, namespace: &str) -> String {
        match self.shared.generation {
            Generation::V1 => format!(
                "http://{}/api/namespaces/{namespace}/broadcast",
                self.addr()
            ),
            Generation::V2 => format!(
                "http://{}/api/v2/namespaces/{namespace}/events/broadcast",
                self.addr()
            ),
        }
    }

    /// The admin URL prefix, e.g. `http://127.0.0.1:41235/_sim`.
    pub fn admin_url(&self) -> String {
        format!("http://{}/_sim", self.addr())
    }

    /// The generation spoken.
    pub fn generation(&self) -> Generation {
        self.shared.generation
    }

    /// The auth header's name as configured (matched case-insensitively).
    pub fn auth_header(&self) -> &str {
        &self.shared.auth_header
    }

    /// The expected token, if any.
    pub fn token(&self) -> Option<&str> {
        self.shared.token.as_deref()
    }

    /// Every accepted event, in order of acceptance.
    pub fn accepted(&self) -> Vec<AcceptedEvent> {
        self.shared
            .state
            .lock()
            .expect("direktiv lock")
            .accepted
            .clone()
    }

    /// The ids of the accepted events, in order of acceptance.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .expect("direktiv lock")
            .accepted
            .iter()
            .map(|e| e.id.clone())
            .collect()
    }

    /// How many events were accepted.
    pub fn accepted_count(&self) -> usize {
        self.shared
            .state
            .lock()
            .expect("direktiv lock")
            .accepted
            .len()
    }

    /// The counters.
    pub fn stats(&self) -> DirektivStats {
        self.shared
            .state
            .lock()
            .expect("direktiv lock")
            .stats
            .clone()
    }

    /// The current faults.
    pub fn faults(&self) -> DirektivFaults {
        self.shared
            .state
            .lock()
            .expect("direktiv lock")
            .faults
            .clone()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: DirektivFaults) {
        self.shared.state.lock().expect("direktiv lock").faults = faults;
    }

    /// Down mode: every broadcast gets 503 while on.
    pub fn set_down(&self, down: bool) {
        self.shared.state.lock().expect("direktiv lock").faults.down = down;
    }

    /// Closes the listener (`true`: connections are refused) or opens it
    /// again on the same port (`false`).
    pub async fn set_refusing(&self, refusing: bool) -> io::Result<()> {
        if refusing {
            self.listener.close().await;
            Ok(())
        } else {
            self.listener.reopen().await
        }
    }

    /// The token that stops the simulator when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the simulator.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.listener.close().await;
        if let Some(sink) = self
            .shared
            .state
            .lock()
            .expect("direktiv lock")
            .sink
            .as_mut()
        {
            let _ = sink.flush();
        }
    }
}
