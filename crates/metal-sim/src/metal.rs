//! The simulated Equinix Metal API: configuration, faults, counters, the HTTP
//! handlers and the [`MetalSimHandle`] that drives it.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::server::Listener;
use crate::util::{duration_ms, error_response, json_response, latency, roll};
use crate::world::{EventRecord, World, WorldShape};

/// How the simulated Metal API is built and behaves. Every field has a
/// sensible default: a small fleet, no new events, no faults.
#[derive(Debug, Clone)]
pub struct MetalSimConfig {
    /// Where to listen; port 0 picks a free port. Default `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// The API's base path. Default `/metal/v1`.
    pub base_path: String,
    /// The token `X-Auth-Token` must carry. Default `metal-sim-token`.
    pub token: String,
    /// Seed of every random choice (ids, history, faults). Default 42.
    pub seed: u64,
    /// The configured organization's id; drawn from the seed when `None`.
    pub org_id: Option<String>,
    /// The configured organization's name. Default `Direktiv`.
    pub org_name: String,
    /// Projects in the configured organization. Default 3.
    pub projects: usize,
    /// Devices in each project. Default 4.
    pub devices_per_project: usize,
    /// Historical events per device at start (the first ten are the
    /// provisioning steps). Default 12.
    pub history_per_device: usize,
    /// Historical project-level events per project. Default 2.
    pub history_per_project: usize,
    /// Historical organization-level events per organization. Default 2.
    pub history_per_org: usize,
    /// How far back the history reaches. Default 7 days.
    pub history_span: Duration,
    /// When the history ends; `None` means the start time.
    pub history_end: Option<DateTime<Utc>>,
    /// New events per second across the configured organization, at random
    /// moments (Poisson arrivals). Default 0: only [`MetalSimHandle::emit_events`].
    pub events_per_second: f64,
    /// Share of new random events that are project-level. Default 0.08.
    pub project_event_share: f64,
    /// Share of new random events that are organization-level. Default 0.02.
    pub org_event_share: f64,
    /// Whether a project's event list also shows its devices' events, as the
    /// real API does in practice. Default true.
    pub project_lists_include_devices: bool,
    /// Whether an organization's event list also shows its projects' and
    /// devices' events. Default false (organization-level events only).
    pub org_lists_include_projects: bool,
    /// The largest `per_page` honoured; larger values are capped. Default 1000.
    pub max_per_page: u64,
    /// The request budget reported in `X-RateLimit-*` and enforced with 429.
    pub rate_limit: RateLimit,
    /// Faults at start; change them later with [`MetalSimHandle::set_faults`].
    pub faults: MetalFaults,
    /// The API's clock minus this host's (positive: the API runs ahead).
    /// New events are dated by the API's clock and every answer's `Date`
    /// header tells it, as a real API whose clock is not the receiver's
    /// host's. Default 0.
    pub clock_offset: chrono::Duration,
}

impl Default for MetalSimConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_path: "/metal/v1".to_owned(),
            token: "metal-sim-token".to_owned(),
            seed: 42,
            org_id: None,
            org_name: "Direktiv".to_owned(),
            projects: 3,
            devices_per_project: 4,
            history_per_device: 12,
            history_per_project: 2,
            history_per_org: 2,
            history_span: Duration::from_secs(7 * 24 * 3600),
            history_end: None,
            events_per_second: 0.0,
            project_event_share: 0.08,
            org_event_share: 0.02,
            project_lists_include_devices: true,
            org_lists_include_projects: false,
            max_per_page: 1000,
            rate_limit: RateLimit::default(),
            faults: MetalFaults::default(),
            clock_offset: chrono::Duration::zero(),
        }
    }
}

/// A request budget per window, per simulator (the real API counts per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per window. Default 1,000,000 (never reached by tests
    /// unless they lower it).
    pub limit: u64,
    /// The window's length. Default one hour.
    #[serde(with = "duration_ms", rename = "window_ms")]
    pub window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            limit: 1_000_000,
            window: Duration::from_secs(3600),
        }
    }
}

/// Faults of the Metal API, adjustable at runtime. Shares are probabilities
/// in `[0, 1]` drawn per request from the seeded generator; `1.0` and `0.0`
/// are certain. In JSON, durations are milliseconds (`latency_ms`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetalFaults {
    /// Added to every API response.
    #[serde(with = "duration_ms", rename = "latency_ms")]
    pub latency: Duration,
    /// A uniform extra delay in `[0, jitter]` on top of `latency`.
    #[serde(with = "duration_ms", rename = "jitter_ms")]
    pub jitter: Duration,
    /// Share of requests answered 429 with `Retry-After`.
    pub rate_limited: f64,
    /// The `Retry-After` sent with an injected 429 (whole seconds, at least 1).
    #[serde(with = "duration_ms", rename = "retry_after_ms")]
    pub retry_after: Duration,
    /// Share of requests answered with `server_error_status`.
    pub server_error: f64,
    /// The 5xx status of an injected server error. Default 503.
    pub server_error_status: u16,
    /// Share of requests answered only after `slow_delay`.
    pub slow: f64,
    /// How long a slow response takes. Default 30 s.
    #[serde(with = "duration_ms", rename = "slow_delay_ms")]
    pub slow_delay: Duration,
    /// Share of list pages cut in half (truncated JSON).
    pub truncated: f64,
    /// Share of list pages made invalid JSON (full length, bad syntax).
    pub invalid_json: f64,
    /// Share of list pages whose `meta.next` points at the page itself.
    pub repeat_next: f64,
    /// Stop injecting after this many faults (latency does not count);
    /// `None` for no limit.
    pub max_faults: Option<u64>,
}

impl Default for MetalFaults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_limited: 0.0,
            retry_after: Duration::from_secs(1),
            server_error: 0.0,
            server_error_status: 503,
            slow: 0.0,
            slow_delay: Duration::from_secs(30),
            truncated: 0.0,
            invalid_json: 0.0,
            repeat_next: 0.0,
            max_faults: None,
        }
    }
}

/// Counters of the Metal simulator, served at `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetalStats {
    /// API requests (admin requests excluded).
    pub requests_total: u64,
    /// API requests by endpoint, e.g. `GET /projects/{id}/events`.
    pub requests: BTreeMap<String, u64>,
    /// API requests by event list, keyed by the list's path with its id
    /// (e.g. `/devices/{id}/events`): how often each list was read.
    #[serde(default)]
    pub list_requests: BTreeMap<String, u64>,
    /// API responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Faults injected, by kind (`rate_limited`, `server_error`, `slow`,
    /// `truncated`, `invalid_json`, `repeat_next`).
    pub faults: BTreeMap<String, u64>,
    /// Requests refused because the rate-limit budget was spent.
    pub rate_limited: u64,
    /// Events in the log, history included.
    pub events_total: u64,
    /// Events generated after start (emitted, by the rate, or by device changes).
    pub events_generated: u64,
    /// Event items served in list pages (what the receiver downloaded).
    pub events_served: u64,
}

struct FaultState {
    faults: MetalFaults,
    rng: StdRng,
    injected: u64,
}

impl FaultState {
    /// Draws a fault of the given share, honouring `max_faults`.
    fn draw(&mut self, share: f64) -> bool {
        if self
            .faults
            .max_faults
            .is_some_and(|max| self.injected >= max)
        {
            return false;
        }
        let hit = roll(&mut self.rng, share);
        if hit {
            self.injected += 1;
        }
        hit
    }
}

struct RateWindow {
    started: Instant,
    used: u64,
}

struct Shared {
    base_path: String,
    token: String,
    max_per_page: u64,
    project_lists_include_devices: bool,
    org_lists_include_projects: bool,
    rate_limit: RateLimit,
    history_len: usize,
    clock_offset: chrono::Duration,
    world: RwLock<World>,
    faults: Mutex<FaultState>,
    stats: Mutex<MetalStats>,
    window: Mutex<RateWindow>,
}

impl Shared {
    fn count_fault(&self, kind: &str) {
        *self
            .stats
            .lock()
            .expect("stats lock")
            .faults
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    fn emitted(&self, n: u64) {
        let mut stats = self.stats.lock().expect("stats lock");
        stats.events_generated += n;
    }
}

/// Starts the simulated Metal API.
#[derive(Debug)]
pub struct MetalSim;

impl MetalSim {
    /// Builds the world from `config`, binds the listener and starts serving.
    /// The simulator stops when the handle's [`MetalSimHandle::shutdown`] is
    /// called or its token is cancelled.
    pub async fn start(config: MetalSimConfig) -> io::Result<MetalSimHandle> {
        Self::start_with_shutdown(config, CancellationToken::new()).await
    }

    /// Like [`MetalSim::start`], stopping when `shutdown` is cancelled.
    pub async fn start_with_shutdown(
        config: MetalSimConfig,
        shutdown: CancellationToken,
    ) -> io::Result<MetalSimHandle> {
        let base_path = format!("/{}", config.base_path.trim_matches('/'));
        let base_path = if base_path == "/" {
            String::new()
        } else {
            base_path
        };
        let mut rng = StdRng::seed_from_u64(config.seed);
        let fault_rng = StdRng::seed_from_u64(rand::Rng::random(&mut rng));
        let shape = WorldShape {
            base_path: base_path.clone(),
            org_id: config.org_id.clone(),
            org_name: config.org_name.clone(),
            projects: config.projects,
            devices_per_project: config.devices_per_project,
            history_per_device: config.history_per_device,
            history_per_project: config.history_per_project,
            history_per_org: config.history_per_org,
            history_span: chrono::Duration::from_std(config.history_span)
                .unwrap_or(chrono::Duration::days(7)),
            history_end: config
                .history_end
                .unwrap_or_else(|| Utc::now() + config.clock_offset),
            project_share: config.project_event_share,
            org_share: config.org_event_share,
            clock_offset: config.clock_offset,
        };
        let world = World::generate(&shape, rng);
        let history_len = world.events.len();
        let shared = Arc::new(Shared {
            base_path,
            token: config.token.clone(),
            max_per_page: config.max_per_page.max(1),
            project_lists_include_devices: config.project_lists_include_devices,
            org_lists_include_projects: config.org_lists_include_projects,
            rate_limit: config.rate_limit,
            history_len,
            clock_offset: config.clock_offset,
            world: RwLock::new(world),
            faults: Mutex::new(FaultState {
                faults: config.faults.clone(),
                rng: fault_rng,
                injected: 0,
            }),
            stats: Mutex::new(MetalStats {
                events_total: history_len as u64,
                ..MetalStats::default()
            }),
            window: Mutex::new(RateWindow {
                started: Instant::now(),
                used: 0,
            }),
        });
        let rate = Arc::new(watch::channel(config.events_per_second).0);
        let rate_rx = rate.subscribe();
        let router = Router::new()
            .route("/_sim/stats", get(admin_stats))
            .route("/_sim/faults", get(admin_faults).put(admin_set_faults))
            .route("/_sim/emit", post(admin_emit))
            .route("/_sim/events", get(admin_events))
            .route("/_sim/rate", post(admin_rate))
            .route("/_sim/projects/{id}/devices", post(admin_add_device))
            .route("/_sim/devices/{id}", delete(admin_delete_device))
            .fallback(api)
            .with_state(AppState {
                shared: shared.clone(),
                rate: rate.clone(),
            });
        let listener = Listener::bind(config.addr, router, shutdown.clone()).await?;
        let generator = tokio::spawn(generate(
            shared.clone(),
            rate_rx,
            shutdown.clone(),
            config.seed,
        ));
        tracing::info!(addr = %listener.addr(), "simulated Metal API listening");
        Ok(MetalSimHandle {
            shared,
            listener,
            shutdown,
            rate,
            generator: Mutex::new(Some(generator)),
        })
    }
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    rate: Arc<watch::Sender<f64>>,
}

/// Produces events at the configured rate, at Poisson-distributed moments
/// drawn from a generator seeded from `seed`.
async fn generate(
    shared: Arc<Shared>,
    mut rate: watch::Receiver<f64>,
    shutdown: CancellationToken,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut next_due: Option<Instant> = None;
    loop {
        let per_second = *rate.borrow_and_update();
        if per_second <= 0.0 || !per_second.is_finite() {
            next_due = None;
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = rate.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let gap = |rng: &mut StdRng| {
            let u: f64 = rand::Rng::random_range(rng, f64::EPSILON..1.0);
            Duration::from_secs_f64((-u.ln() / per_second).min(3600.0))
        };
        let due = *next_due.get_or_insert_with(|| Instant::now() + gap(&mut rng));
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = rate.changed() => {
                if changed.is_err() { return }
                next_due = None;
            }
            () = tokio::time::sleep_until(due) => {
                let now = Instant::now();
                let mut due = due;
                let mut n = 0u64;
                {
                    let mut world = shared.world.write().expect("world lock");
                    while due <= now {
                        world.emit_random();
                        n += 1;
                        due += gap(&mut rng);
                    }
                }
                shared.emitted(n);
                next_due = Some(due);
            }
        }
    }
}

/// A parsed API route: the endpoint's name for the counters and what to serve.
enum Route {
    Org(String),
    OrgProjects(String),
    OrgEvents(String),
    Projects,
    Project(String),
    ProjectDevices(String),
    ProjectEvents(String),
    Device(String),
    DeviceEvents(String),
    Events,
    Event(String),
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let id = |s: &str| s.to_owned();
        Some(match segments.as_slice() {
            ["organizations", o] => Route::Org(id(o)),
            ["organizations", o, "projects"] => Route::OrgProjects(id(o)),
            ["organizations", o, "events"] => Route::OrgEvents(id(o)),
            ["projects"] => Route::Projects,
            ["projects", p] => Route::Project(id(p)),
            ["projects", p, "devices"] => Route::ProjectDevices(id(p)),
            ["projects", p, "events"] => Route::ProjectEvents(id(p)),
            ["devices", d] => Route::Device(id(d)),
            ["devices", d, "events"] => Route::DeviceEvents(id(d)),
            ["events"] => Route::Events,
            ["events", e] => Route::Event(id(e)),
            _ => return None,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Route::Org(_) => "GET /organizations/{id}",
            Route::OrgProjects(_) => "GET /organizations/{id}/projects",
            Route::OrgEvents(_) => "GET /organizations/{id}/events",
            Route::Projects => "GET /projects",
            Route::Project(_) => "GET /projects/{id}",
            Route::ProjectDevices(_) => "GET /projects/{id}/devices",
            Route::ProjectEvents(_) => "GET /projects/{id}/events",
            Route::Device(_) => "GET /devices/{id}",
            Route::DeviceEvents(_) => "GET /devices/{id}/events",
            Route::Events => "GET /events",
            Route::Event(_) => "GET /events/{id}",
        }
    }
}

/// Every API request: latency, auth, the rate budget, injected faults, then
/// the route itself; counted on the way out.
async fn api(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let shared = &state.shared;
    let path = uri.path();
    let route = path
        .strip_prefix(shared.base_path.as_str())
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .and_then(Route::parse);
    let endpoint = match (&route, method == Method::GET) {
        (Some(route), true) => route.name().to_owned(),
        _ => format!("{method} (unknown)"),
    };
    let list = match (&route, method == Method::GET) {
        (Some(Route::OrgEvents(id)), true) => Some(format!("/organizations/{id}/events")),
        (Some(Route::ProjectEvents(id)), true) => Some(format!("/projects/{id}/events")),
        (Some(Route::DeviceEvents(id)), true) => Some(format!("/devices/{id}/events")),
        _ => None,
    };
    let response = serve(
        shared,
        route.filter(|_| method == Method::GET),
        uri.query(),
        &headers,
    )
    .await;
    let mut response = response;
    let date = (Utc::now() + shared.clock_offset)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(date) = HeaderValue::from_str(&date) {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, date);
    }
    let mut stats = shared.stats.lock().expect("stats lock");
    stats.requests_total += 1;
    *stats.requests.entry(endpoint).or_default() += 1;
    if let Some(list) = list {
        *stats.list_requests.entry(list).or_default() += 1;
    }
    *stats
        .statuses
        .entry(response.status().as_u16())
        .or_default() += 1;
    response
}

async fn serve(
    shared: &Shared,
    route: Option<Route>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let (delay, faults) = {
        let mut f = shared.faults.lock().expect("faults lock");
        let (fixed, jitter) = (f.faults.latency, f.faults.jitter);
        (latency(&mut f.rng, fixed, jitter), f.faults.clone())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if headers.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(shared.token.as_str()) {
        return error_response(StatusCode::UNAUTHORIZED, "Invalid authentication token");
    }
    let (remaining, reset) = match take_budget(shared) {
        Ok(budget) => budget,
        Err(retry) => {
            shared.stats.lock().expect("stats lock").rate_limited += 1;
            return too_many(shared, retry, retry);
        }
    };
    let draw = |share: f64| share > 0.0 && shared.faults.lock().expect("faults lock").draw(share);
    if draw(faults.rate_limited) {
        shared.count_fault("rate_limited");
        return too_many(shared, faults.retry_after, reset);
    }
    if draw(faults.server_error) {
        shared.count_fault("server_error");
        let status = StatusCode::from_u16(faults.server_error_status)
            .ok()
            .filter(|s| s.is_server_error())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return error_response(status, "The service is temporarily unavailable");
    }
    if draw(faults.slow) {
        shared.count_fault("slow");
        tokio::time::sleep(faults.slow_delay).await;
    }
    let Some(route) = route else {
        return error_response(StatusCode::NOT_FOUND, "Not found");
    };
    let mut response = match respond(shared, route, query) {
        Ok(Body::Object(json)) => json_response(StatusCode::OK, json),
        Ok(Body::RepeatablePage { page, repeated }) => {
            if draw(faults.repeat_next) {
                shared.count_fault("repeat_next");
                json_response(StatusCode::OK, repeated)
            } else if draw(faults.truncated) {
                shared.count_fault("truncated");
                json_response(StatusCode::OK, truncate(page))
            } else if draw(faults.invalid_json) {
                shared.count_fault("invalid_json");
                json_response(StatusCode::OK, page.replacen('{', "{,", 1))
            } else {
                json_response(StatusCode::OK, page)
            }
        }
        Err(refusal) => refusal.into_response(),
    };
    rate_headers(shared, response.headers_mut(), remaining, reset);
    response
}

fn truncate(mut page: String) -> String {
    let mut cut = page.len() / 2;
    while !page.is_char_boundary(cut) {
        cut -= 1;
    }
    page.truncate(cut);
    page
}

/// Spends one request of the budget: `Ok((remaining, until reset))`, or
/// `Err(until reset)` when the budget is spent.
fn take_budget(shared: &Shared) -> Result<(u64, Duration), Duration> {
    let mut window = shared.window.lock().expect("rate lock");
    let now = Instant::now();
    let limit = shared.rate_limit;
    if now.duration_since(window.started) >= limit.window {
        window.started = now;
        window.used = 0;
    }
    let reset = limit
        .window
        .saturating_sub(now.duration_since(window.started));
    if window.used >= limit.limit {
        return Err(reset);
    }
    window.used += 1;
    Ok((limit.limit - window.used, reset))
}

fn rate_headers(shared: &Shared, headers: &mut HeaderMap, remaining: u64, reset: Duration) {
    let reset_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + reset;
    let number = |n: u64| HeaderValue::from(n);
    headers.insert("x-ratelimit-limit", number(shared.rate_limit.limit));
    headers.insert("x-ratelimit-remaining", number(remaining));
    headers.insert(
        "x-ratelimit-reset",
        number(reset_at.as_secs() + u64::from(reset_at.subsec_nanos() > 0)),
    );
}

fn too_many(shared: &Shared, retry_after: Duration, reset: Duration) -> Response {
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(seconds.max(1)));
    rate_headers(shared, response.headers_mut(), 0, reset);
    response
}

/// What a route answers: one object, or a list page (with its variant whose
/// `meta.next` repeats the page, for the `repeat_next` fault).
enum Body {
    Object(String),
    RepeatablePage { page: String, repeated: String },
}

struct Paging {
    page: u64,
    per_page: u64,
}

fn paging(shared: &Shared, query: Option<&str>) -> Result<Paging, Refusal> {
    let mut paging = Paging {
        page: 1,
        per_page: 10,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let target = match key {
            "page" => &mut paging.page,
            "per_page" => &mut paging.per_page,
            _ => continue,
        };
        match value.parse::<u64>() {
            Ok(n) if n >= 1 => *target = n,
            _ => {
                return Err(Refusal::BadQuery(format!(
                    "{key} must be a positive integer"
                )));
            }
        }
    }
    paging.per_page = paging.per_page.min(shared.max_per_page);
    Ok(paging)
}

/// Renders one page of a list: `{"<key>": [...], "meta": {...}}`. `item(i)`
/// is the i-th item in list order (newest first for events).
fn render_page<'a>(
    key: &str,
    href: &str,
    paging: &Paging,
    total: usize,
    item: impl Fn(usize) -> &'a str,
) -> (String, String, usize) {
    let total = total as u64;
    let last_page = total.div_ceil(paging.per_page).max(1);
    let start = (paging.page - 1).saturating_mul(paging.per_page).min(total);
    let end = start.saturating_add(paging.per_page).min(total);
    let mut out = String::with_capacity(64 + (end - start) as usize * 600);
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":[");
    for (n, i) in (start..end).enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(item(i as usize));
    }
    out.push_str("],");
    let link = |page: u64| serde_json::json!({ "href": format!("{href}?page={page}&per_page={}", paging.per_page) });
    let meta = |next: Value| {
        serde_json::json!({
            "first": link(1),
            "previous": if paging.page > 1 { link((paging.page - 1).min(last_page)) } else { Value::Null },
            "self": link(paging.page),
            "next": next,
            "last": link(last_page),
            "total": total,
            "current_page": paging.page,
            "last_page": last_page,
        })
    };
    let next = if paging.page < last_page {
        link(paging.page + 1)
    } else {
        Value::Null
    };
    let mut repeated = out.clone();
    out.push_str(&format!("\"meta\":{}}}", meta(next)));
    repeated.push_str(&format!("\"meta\":{}}}", meta(link(paging.page))));
    (out, repeated, (end - start) as usize)
}

fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "Not found")
}

/// Why a route gives no body.
enum Refusal {
    /// 404: no such resource, or a deleted device.
    NotFound,
    /// 422: a malformed `page` or `per_page`.
    BadQuery(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotFound => not_found(),
            Refusal::BadQuery(message) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({ "errors": [message] }).to_string(),
            ),
        }
    }
}

fn respond(shared: &Shared, route: Route, query: Option<&str>) -> Result<Body, Refusal> {
    let world = shared.world.read().expect("world lock");
    let base = &shared.base_path;
    // `None` is the user's whole log; positions are newest first.
    let events_page = |href: String, list: Option<&[u32]>| -> Result<Body, Refusal> {
        let paging = paging(shared, query)?;
        let len = list.map_or(world.events.len(), <[u32]>::len);
        let (page, repeated, served) = render_page("events", &href, &paging, len, |i| {
            let at = list.map_or(len - 1 - i, |list| list[len - 1 - i] as usize);
            &world.events[at].json
        });
        shared.stats.lock().expect("stats lock").events_served += served as u64;
        Ok(Body::RepeatablePage { page, repeated })
    };
    match route {
        Route::Org(id) => {
            let o = *world.org_by_id.get(&id).ok_or(Refusal::NotFound)?;
            Ok(Body::Object(world.org_json(o).to_string()))
        }
        Route::OrgProjects(id) => {
            let o = *world.org_by_id.get(&id).ok_or(Refusal::NotFound)?;
            let projects: Vec<String> = world.orgs[o as usize]
                .projects
                .iter()
                .map(|p| world.project_json(*p))
                .collect();
            let paging = paging(shared, query)?;
            let (page, repeated, _) = render_page(
                "projects",
                &format!("{base}/organizations/{id}/projects"),
                &paging,
                projects.len(),
                |i| &projects[i],
            );
            Ok(Body::RepeatablePage { page, repeated })
        }
        Route::Projects => {
            let projects: Vec<String> = (0..world.projects.len())
                .map(|p| world.project_json(p as u32))
                .collect();
            let paging = paging(shared, query)?;
            let (page, repeated, _) = render_page(
                "projects",
                &format!("{base}/projects"),
                &paging,
                projects.len(),
                |i| &projects[i],
            );
            Ok(Body::RepeatablePage { page, repeated })
        }
        Route::Project(id) => {
            let p = *world.project_by_id.get(&id).ok_or(Refusal::NotFound)?;
            Ok(Body::Object(world.project_json(p)))
        }
        Route::ProjectDevices(id) => {
            let p = *world.project_by_id.get(&id).ok_or(Refusal::NotFound)?;
            let devices = &world.projects[p as usize].devices;
            let paging = paging(shared, query)?;
            let (page, repeated, _) = render_page(
                "devices",
                &format!("{base}/projects/{id}/devices"),
                &paging,
                devices.len(),
                |i| &world.devices[devices[i] as usize].json,
            );
            Ok(Body::RepeatablePage { page, repeated })
        }
        Route::Device(id) => {
            let d = *world.device_by_id.get(&id).ok_or(Refusal::NotFound)?;
            let device = &world.devices[d as usize];
            if device.deleted {
                return Err(Refusal::NotFound);
            }
            Ok(Body::Object(device.json.to_string()))
        }
        Route::OrgEvents(id) => {
            let o = *world.org_by_id.get(&id).ok_or(Refusal::NotFound)?;
            let org = &world.orgs[o as usize];
            let list = if shared.org_lists_include_projects {
                &org.all_events
            } else {
                &org.own_events
            };
            events_page(format!("{base}/organizations/{id}/events"), Some(list))
        }
        Route::ProjectEvents(id) => {
            let p = *world.project_by_id.get(&id).ok_or(Refusal::NotFound)?;
            let project = &world.projects[p as usize];
            let list = if shared.project_lists_include_devices {
                &project.all_events
            } else {
                &project.own_events
            };
            events_page(format!("{base}/projects/{id}/events"), Some(list))
        }
        Route::DeviceEvents(id) => {
            let d = *world.device_by_id.get(&id).ok_or(Refusal::NotFound)?;
            let device = &world.devices[d as usize];
            if device.deleted {
                return Err(Refusal::NotFound);
            }
            events_page(format!("{base}/devices/{id}/events"), Some(&device.events))
        }
        Route::Events => events_page(format!("{base}/events"), None),
        Route::Event(id) => {
            let e = *world
                .event_by_id
                .get(id.as_str())
                .ok_or(Refusal::NotFound)?;
            Ok(Body::Object(world.events[e as usize].json.to_string()))
        }
    }
}

async fn admin_stats(State(state): State<AppState>) -> Json<MetalStats> {
    Json(stats_of(&state.shared))
}

async fn admin_faults(State(state): State<AppState>) -> Json<MetalFaults> {
    Json(
        state
            .shared
            .faults
            .lock()
            .expect("faults lock")
            .faults
            .clone(),
    )
}

async fn admin_set_faults(
    State(state): State<AppState>,
    Json(faults): Json<MetalFaults>,
) -> Json<MetalFaults> {
    set_faults(&state.shared, faults.clone());
    Json(faults)
}

#[derive(Deserialize)]
struct CountQuery {
    count: Option<usize>,
}

async fn admin_emit(
    State(state): State<AppState>,
    Query(q): Query<CountQuery>,
) -> Json<Vec<EventRecord>> {
    Json(emit(&state.shared, q.count.unwrap_or(1)))
}

#[derive(Deserialize)]
struct SinceQuery {
    since: Option<usize>,
}

async fn admin_events(
    State(state): State<AppState>,
    Query(q): Query<SinceQuery>,
) -> Json<Vec<EventRecord>> {
    Json(events_since(&state.shared, q.since.unwrap_or(0)))
}

async fn admin_rate(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let rate = query
        .as_deref()
        .and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("events_per_second="))
        })
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r >= 0.0);
    match rate {
        Some(rate) => {
            state.rate.send_replace(rate);
            Json(serde_json::json!({ "events_per_second": rate })).into_response()
        }
        None => error_response(
            StatusCode::BAD_REQUEST,
            "events_per_second must be a number >= 0",
        ),
    }
}

async fn admin_add_device(State(state): State<AppState>, Path(project): Path<String>) -> Response {
    match add_device(&state.shared, &project) {
        Some(id) => Json(serde_json::json!({ "id": id })).into_response(),
        None => not_found(),
    }
}

async fn admin_delete_device(
    State(state): State<AppState>,
    Path(device): Path<String>,
) -> Response {
    if delete_device(&state.shared, &device) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

fn stats_of(shared: &Shared) -> MetalStats {
    let total = shared.world.read().expect("world lock").events.len() as u64;
    let mut stats = shared.stats.lock().expect("stats lock").clone();
    stats.events_total = total;
    stats
}

fn set_faults(shared: &Shared, faults: MetalFaults) {
    let mut state = shared.faults.lock().expect("faults lock");
    state.faults = faults;
    state.injected = 0;
}

fn emit(shared: &Shared, n: usize) -> Vec<EventRecord> {
    let records = {
        let mut world = shared.world.write().expect("world lock");
        let first = world.events.len();
        for _ in 0..n {
            world.emit_random();
        }
        (first..world.events.len())
            .map(|i| world.record(i as u32))
            .collect::<Vec<_>>()
    };
    shared.emitted(records.len() as u64);
    records
}

fn events_since(shared: &Shared, since: usize) -> Vec<EventRecord> {
    let world = shared.world.read().expect("world lock");
    (since.min(world.events.len())..world.events.len())
        .map(|i| world.record(i as u32))
        .collect()
}

fn add_device(shared: &Shared, project: &str) -> Option<String> {
    let (id, events) = {
        let mut world = shared.world.write().expect("world lock");
        let p = *world.project_by_id.get(project)?;
        let before = world.events.len();
        let d = world.create_device(p);
        (
            world.devices[d as usize].id.clone(),
            world.events.len() - before,
        )
    };
    shared.emitted(events as u64);
    Some(id)
}

fn delete_device(shared: &Shared, device: &str) -> bool {
    {
        let mut world = shared.world.write().expect("world lock");
        let Some(&d) = world.device_by_id.get(device) else {
            return false;
        };
        if world.devices[d as usize].deleted {
            return false;
        }
        world.delete_device(d);
    }
    shared.emitted(1);
    true
}

/// A project of the simulated fleet, as [`MetalSimHandle::projects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimProject {
    /// The project id.
    pub id: String,
    /// The project name (contains spaces, to exercise percent-encoding).
    pub name: String,
    /// The owning organization's id.
    pub organization_id: String,
    /// The project's live devices.
    pub devices: Vec<SimDevice>,
}

/// A device of the simulated fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimDevice {
    /// The device id.
    pub id: String,
    /// The device hostname.
    pub hostname: String,
}

/// Controls a running Metal simulator. Dropping the handle does not stop it;
/// call [`MetalSimHandle::shutdown`] or cancel the token.
pub struct MetalSimHandle {
    shared: Arc<Shared>,
    listener: Listener,
    shutdown: CancellationToken,
    rate: Arc<watch::Sender<f64>>,
    generator: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for MetalSimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetalSimHandle")
            .field("addr", &self.listener.addr())
            .finish_non_exhaustive()
    }
}

impl MetalSimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// The API's base URL, e.g. `http://127.0.0.1:41234/metal/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr(), self.shared.base_path)
    }

    /// The admin URL prefix, e.g. `http://127.0.0.1:41234/_sim`.
    pub fn admin_url(&self) -> String {
        format!("http://{}/_sim", self.addr())
    }

    /// The configured organization's id.
    pub fn org_id(&self) -> String {
        self.shared.world.read().expect("world lock").orgs[0]
            .id
            .clone()
    }

    /// The configured organization's name.
    pub fn org_name(&self) -> String {
        self.shared.world.read().expect("world lock").orgs[0]
            .name
            .clone()
    }

    /// The foreign organization's id: its project shows only in `GET /projects`.
    pub fn foreign_org_id(&self) -> String {
        self.shared.world.read().expect("world lock").orgs[1]
            .id
            .clone()
    }

    /// The token `X-Auth-Token` must carry.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Every project of the configured organization with its live devices.
    pub fn projects(&self) -> Vec<SimProject> {
        self.projects_of(0)
    }

    /// The foreign organization's projects.
    pub fn foreign_projects(&self) -> Vec<SimProject> {
        self.projects_of(1)
    }

    fn projects_of(&self, org: usize) -> Vec<SimProject> {
        let world = self.shared.world.read().expect("world lock");
        world.orgs[org]
            .projects
            .iter()
            .map(|&p| {
                let project = &world.projects[p as usize];
                SimProject {
                    id: project.id.clone(),
                    name: project.name.clone(),
                    organization_id: world.orgs[org].id.clone(),
                    devices: project
                        .devices
                        .iter()
                        .map(|&d| SimDevice {
                            id: world.devices[d as usize].id.clone(),
                            hostname: world.devices[d as usize].hostname.clone(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> MetalStats {
        stats_of(&self.shared)
    }

    /// The current faults.
    pub fn faults(&self) -> MetalFaults {
        self.shared
            .faults
            .lock()
            .expect("faults lock")
            .faults
            .clone()
    }

    /// Replaces the faults (and restarts the `max_faults` count).
    pub fn set_faults(&self, faults: MetalFaults) {
        set_faults(&self.shared, faults);
    }

    /// Changes the rate of new random events (0 stops it).
    pub fn set_events_per_second(&self, rate: f64) {
        self.rate
            .send_replace(if rate.is_finite() { rate.max(0.0) } else { 0.0 });
    }

    /// Generates `n` events now on random devices, projects and the
    /// organization, and returns them.
    pub fn emit_events(&self, n: usize) -> Vec<EventRecord> {
        emit(&self.shared, n)
    }

    /// Generates one event now on the given device; `None` if unknown.
    pub fn emit_device_event(&self, device_id: &str) -> Option<EventRecord> {
        let record = {
            let mut world = self.shared.world.write().expect("world lock");
            let d = *world.device_by_id.get(device_id)?;
            let i = world.emit_for_device(d);
            world.record(i)
        };
        self.shared.emitted(1);
        Some(record)
    }

    /// Generates one event on the given device dated `created_at` (by the
    /// API's clock; it may lie in the past), listed where its time puts it:
    /// an event the API lists late. `None` if the device is unknown.
    pub fn emit_device_event_at(
        &self,
        device_id: &str,
        created_at: DateTime<Utc>,
    ) -> Option<EventRecord> {
        let record = {
            let mut world = self.shared.world.write().expect("world lock");
            let d = *world.device_by_id.get(device_id)?;
            let i = world.emit_for_device_at(d, created_at);
            world.record(i)
        };
        self.shared.emitted(1);
        Some(record)
    }

    /// Moves a device event to `position` (1: the newest) of its device's
    /// list, whatever its time: a list that is not newest first. False if
    /// the event is unknown or belongs to no device.
    pub fn list_device_event_at(&self, event_id: &str, position: usize) -> bool {
        let mut world = self.shared.world.write().expect("world lock");
        let Some(&i) = world.event_by_id.get(event_id) else {
            return false;
        };
        world.list_at(i, position)
    }

    /// The API's clock now (this host's plus [`MetalSimConfig::clock_offset`]).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.shared.clock_offset
    }

    /// Every event in the log, oldest first, history included.
    pub fn events(&self) -> Vec<EventRecord> {
        events_since(&self.shared, 0)
    }

    /// The events from position `since` on (positions are oldest first), so
    /// a poller can read only what is new.
    pub fn events_since(&self, since: usize) -> Vec<EventRecord> {
        events_since(&self.shared, since)
    }

    /// Events generated after start (all positions past the history).
    pub fn new_events(&self) -> Vec<EventRecord> {
        events_since(&self.shared, self.shared.history_len)
    }

    /// How many events the log holds.
    pub fn event_count(&self) -> usize {
        self.shared.world.read().expect("world lock").events.len()
    }

    /// The JSON object the API serves for an event.
    pub fn event_json(&self, id: &str) -> Option<Value> {
        let world = self.shared.world.read().expect("world lock");
        let i = *world.event_by_id.get(id)?;
        serde_json::from_str(&world.events[i as usize].json).ok()
    }

    /// Adds a device to a project (with `instance.created` and provisioning
    /// events); returns its id, or `None` if the project is unknown.
    pub fn add_device(&self, project_id: &str) -> Option<String> {
        add_device(&self.shared, project_id)
    }

    /// Deletes a device (with an `instance.deleted` event); its event list
    /// then answers 404. False if unknown or already deleted.
    pub fn delete_device(&self, device_id: &str) -> bool {
        delete_device(&self.shared, device_id)
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

    /// Stops the simulator and waits for its tasks.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.listener.close().await;
        let generator = self.generator.lock().expect("generator lock").take();
        if let Some(generator) = generator {
            let _ = generator.await;
        }
    }
}
