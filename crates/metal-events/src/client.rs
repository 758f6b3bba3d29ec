//! The HTTP client: [`Client`], how it is built, and the one function every
//! request goes through (auth, rate limits, errors, the observer, tracing).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue, USER_AGENT as USER_AGENT_HEADER};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::{Position, Url};

use crate::error::{Error, Result};
use crate::models::{DeviceId, DeviceList, Organization, OrganizationId, ProjectId, ProjectList};
use crate::page::{Decoded, LazyEvent, Pager, decode_events, decode_lazy_events};
use crate::rate_gate::RateGate;
use crate::rate_limit::{self, RateLimit};

/// The Metal API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.equinix.com/metal/v1";
/// The `User-Agent` every request carries: `metal-events/<version>`.
pub const USER_AGENT: &str = concat!("metal-events/", env!("CARGO_PKG_VERSION"));
/// The default time allowed for a whole request, answer body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default page size.
pub const DEFAULT_PER_PAGE: u32 = 100;
/// The largest page size the API accepts.
pub const MAX_PER_PAGE: u32 = 1000;
/// The default cap on the body of an answer: 32 MiB. A page of 1,000 events
/// is about 1 MB.
pub const DEFAULT_MAX_RESPONSE_SIZE: u64 = 32 * 1024 * 1024;
/// The most bytes of an error answer's body that are read (the error keeps
/// [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES) of them); the rest is never read.
const MAX_ERROR_BODY_READ: u64 = 64 * 1024;
/// The header that carries the token.
const AUTH_HEADER: &str = "x-auth-token";
/// The path prefix the real API puts in front of every `href`.
const API_PREFIX: &str = "/metal/v1";

/// A callback the client calls once per HTTP request, for metrics.
pub type Observer = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// What [`Transport::execute`] returns: the answer's head and a body still
/// to be read, or the failure to get one.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send + 'a>>;

/// Carries one request of a [`Client`] to the API and brings back its
/// answer: the only step of a request that touches the network. Everything
/// around it (the rate gate, the `Date` header that sets
/// [`Client::api_now`], the rate-limit headers, status classification, the
/// capped body read, decoding and paging) is the client's one shared path,
/// whatever the transport.
///
/// The default is the client's `reqwest::Client` (which implements this
/// trait). Set another with [`ClientBuilder::transport`]: an in-memory API
/// for a deterministic simulation, a recording proxy. A transport builds
/// its answer from an `http::Response<T>` with `T: Into<reqwest::Body>`
/// (reqwest converts it with `From`). It should honour
/// [`reqwest::Request::timeout`] when it can wait; its failures are
/// `reqwest::Error`s, so a transport of its own answers with a status (a
/// 503 for an outage) rather than failing.
///
/// ```
/// use metal_events::{Client, SecretString, Transport, TransportFuture};
///
/// #[derive(Debug)]
/// struct Empty;
///
/// impl Transport for Empty {
///     fn execute(&self, _request: reqwest::Request) -> TransportFuture<'_> {
///         Box::pin(async {
///             let answer = http::Response::builder()
///                 .header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
///                 .body(r#"{"events": [], "meta": {"total": 0}}"#)
///                 .expect("a valid answer");
///             Ok(reqwest::Response::from(answer))
///         })
///     }
/// }
///
/// let client = Client::builder(SecretString::from("token"))
///     .transport(std::sync::Arc::new(Empty))
///     .build()?;
/// # Ok::<_, metal_events::Error>(())
/// ```
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends `request` and returns the answer (its body unread).
    fn execute(&self, request: reqwest::Request) -> TransportFuture<'_>;
}

impl Transport for reqwest::Client {
    fn execute(&self, request: reqwest::Request) -> TransportFuture<'_> {
        Box::pin(reqwest::Client::execute(self, request))
    }
}

/// Which API operation a request belongs to: a bounded label for metrics
/// (ids never appear in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /organizations/{id}`.
    Organization,
    /// `GET /organizations/{id}/projects`.
    Projects,
    /// `GET /projects/{id}/devices`.
    Devices,
    /// `GET /projects/{id}/events`.
    ProjectEvents,
    /// `GET /devices/{id}/events`.
    DeviceEvents,
    /// `GET /organizations/{id}/events`.
    OrganizationEvents,
    /// `GET /events`: the events the token can see.
    Events,
}

impl Endpoint {
    /// Every endpoint, for pre-registering metric labels.
    pub const ALL: [Endpoint; 7] = [
        Self::Organization,
        Self::Projects,
        Self::Devices,
        Self::ProjectEvents,
        Self::DeviceEvents,
        Self::OrganizationEvents,
        Self::Events,
    ];

    /// A short snake_case label, such as `project_events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Projects => "projects",
            Self::Devices => "devices",
            Self::ProjectEvents => "project_events",
            Self::DeviceEvents => "device_events",
            Self::OrganizationEvents => "organization_events",
            Self::Events => "events",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the observer learns about one HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestRecord {
    /// The operation.
    pub endpoint: Endpoint,
    /// The answer's status; `None` when no answer arrived (transport error
    /// or timeout).
    pub status: Option<StatusCode>,
    /// Whether the request ran out of time.
    pub timed_out: bool,
    /// From sending the request to the end of its body (or the failure).
    pub duration: Duration,
    /// The rate-limit headers of the answer, when it carried any.
    pub rate_limit: Option<RateLimit>,
}

/// Whose events to list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventScope {
    /// `GET /organizations/{id}/events`.
    Organization(OrganizationId),
    /// `GET /projects/{id}/events`.
    Project(ProjectId),
    /// `GET /devices/{id}/events`.
    Device(DeviceId),
    /// `GET /events`: every event the token can see.
    Token,
}

impl EventScope {
    /// The endpoint label of this scope.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Self::Organization(_) => Endpoint::OrganizationEvents,
            Self::Project(_) => Endpoint::ProjectEvents,
            Self::Device(_) => Endpoint::DeviceEvents,
            Self::Token => Endpoint::Events,
        }
    }
}

/// Options of a list request. Build with [`ListOptions::new`] and the
/// `with_*` methods, or set fields of a default value: the struct may gain
/// fields, so it cannot be written as a literal outside this crate.
///
/// ```
/// use metal_events::ListOptions;
/// let opts = ListOptions::new().with_per_page(50);
/// assert_eq!(opts.per_page, 50);
/// assert!(opts.include.is_empty());
///
/// let mut opts = ListOptions::default();
/// opts.exclude = vec!["modified_by".into()];
/// ```
///
/// ```compile_fail
/// let opts = metal_events::ListOptions { per_page: 50, ..Default::default() };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Items per page, sent as `per_page`. Clamped to `1..=1000`
    /// ([`MAX_PER_PAGE`]); default 100.
    pub per_page: u32,
    /// Nested attributes to include, sent as `include=a,b` when not empty.
    pub include: Vec<String>,
    /// Attributes to leave out, sent as `exclude=a,b` when not empty.
    pub exclude: Vec<String>,
    /// The page to start at (from 1), sent as `page` when it is past the
    /// first; default 1. A reader that stopped at page *n* of a long list
    /// continues there later instead of paging down again from the top.
    pub page: u32,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            per_page: DEFAULT_PER_PAGE,
            include: Vec::new(),
            exclude: Vec::new(),
            page: 1,
        }
    }
}

impl ListOptions {
    /// The default options: 100 items per page, nothing included or
    /// excluded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same options with `per_page` items per page.
    #[must_use]
    pub fn with_per_page(mut self, per_page: u32) -> Self {
        self.per_page = per_page;
        self
    }

    /// The same options starting at page `page` (from 1; 0 counts as 1).
    #[must_use]
    pub fn with_page(mut self, page: u32) -> Self {
        self.page = page.max(1);
        self
    }

    /// The same options including the nested attributes `include`.
    #[must_use]
    pub fn with_include<I: IntoIterator<Item = S>, S: Into<String>>(mut self, include: I) -> Self {
        self.include = include.into_iter().map(Into::into).collect();
        self
    }

    /// The same options leaving out the attributes `exclude`.
    #[must_use]
    pub fn with_exclude<I: IntoIterator<Item = S>, S: Into<String>>(mut self, exclude: I) -> Self {
        self.exclude = exclude.into_iter().map(Into::into).collect();
        self
    }
}

/// Builds a [`Client`]; start with [`Client::builder`].
pub struct ClientBuilder {
    token: SecretString,
    base_url: Option<String>,
    http: Option<reqwest::Client>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_response_size: u64,
    observer: Option<Observer>,
    rate_gate: Option<Arc<RateGate>>,
    transport: Option<Arc<dyn Transport>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("token", &"[REDACTED]")
            .field("base_url", &self.base_url)
            .field("custom_http_client", &self.http.is_some())
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_size", &self.max_response_size)
            .field("observer", &self.observer.is_some())
            .field("rate_gate", &self.rate_gate)
            .field("transport", &self.transport)
            .finish()
    }
}

impl ClientBuilder {
    /// The API's base URL, default [`DEFAULT_BASE_URL`]. Any `http` or
    /// `https` URL works, with or without a path prefix (a proxy, a test
    /// server on loopback).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Sends requests through this `reqwest::Client` (its connection pool,
    /// proxy and TLS settings) instead of building one. Its own timeouts and
    /// redirect policy apply (the client this crate builds follows redirects
    /// only within the base URL's origin, so the token never leaves it; give
    /// yours the same care); a [`timeout`](Self::timeout) set here is added
    /// per request.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The time allowed for a whole request, body included (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The time allowed to open a connection (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]); used only when the client builds its own
    /// `reqwest::Client`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The largest answer body read, in bytes (default
    /// [`DEFAULT_MAX_RESPONSE_SIZE`], 32 MiB), whatever the server sends: a
    /// successful answer whose `Content-Length` exceeds it is refused before
    /// its body is read, and one that grows past it (a chunked or endless
    /// body) is refused as soon as it does, both with
    /// [`Error::ResponseTooLarge`]. Every request is capped: event pages,
    /// projects, devices and the organization. Of an error answer (4xx, 5xx)
    /// at most 64 KiB is read, so its status still counts. Zero is read as
    /// one byte.
    pub fn max_response_size(mut self, bytes: u64) -> Self {
        self.max_response_size = bytes.max(1);
        self
    }

    /// Calls `observer` once per HTTP request with a [`RequestRecord`]. It
    /// runs on the request's task: keep it short (update a metric).
    pub fn observer(mut self, observer: impl Fn(&RequestRecord) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Sends every request through `gate` instead of a gate of the
    /// client's own, so that several clients (or a program's other callers
    /// of the same API) share one rate-limit pause. See [`RateGate`].
    pub fn rate_gate(mut self, gate: Arc<RateGate>) -> Self {
        self.rate_gate = Some(gate);
        self
    }

    /// Carries every request through `transport` instead of the HTTP
    /// client (see [`Transport`]): an in-memory API for tests and
    /// simulations. The rest of the client (rate gate, `Date`, statuses,
    /// body cap, decoding) is unchanged. The timeouts set here reach the
    /// transport as each request's [`reqwest::Request::timeout`].
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a base URL that is not `http(s)://host[/path]`
    /// (a query or fragment is refused too), [`Error::InvalidToken`] for a
    /// token that cannot be a header value, [`Error::Build`] when reqwest
    /// cannot build its client.
    pub fn build(self) -> Result<Client> {
        let raw = self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let base = parse_base_url(raw)?;
        let base_path = base.path().trim_end_matches('/').to_owned();

        let mut token = HeaderValue::from_str(self.token.expose_secret().trim())
            .map_err(|_| Error::InvalidToken)?;
        token.set_sensitive(true);

        let (transport, per_request_timeout): (Arc<dyn Transport>, _) =
            match (self.transport, self.http) {
                // A transport of its own gets the timeout with each request.
                (Some(transport), _) => (transport, Some(self.timeout.unwrap_or(DEFAULT_TIMEOUT))),
                (None, Some(http)) => (Arc::new(http), self.timeout),
                (None, None) => {
                    let http = reqwest::Client::builder()
                        .user_agent(USER_AGENT)
                        .redirect(same_origin_redirects())
                        .timeout(self.timeout.unwrap_or(DEFAULT_TIMEOUT))
                        .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
                        .build()
                        .map_err(|source| Error::Build { source })?;
                    (Arc::new(http), None)
                }
            };

        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                base,
                base_path,
                token,
                per_request_timeout,
                timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                max_response_size: self.max_response_size,
                observer: self.observer,
                rate_gate: self.rate_gate.unwrap_or_default(),
                last_rate_limit: Mutex::new(None),
                api_clock: Mutex::new(None),
            }),
        })
    }
}

/// Follows at most five redirects, and only within one origin: reqwest
/// strips `Authorization` on a cross-host redirect but not `X-Auth-Token`, so
/// a redirect elsewhere is answered as the 3xx it is, never followed.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if same_origin && attempt.previous().len() <= 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

fn parse_base_url(raw: &str) -> Result<Url> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid("the URL must name a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("the base URL must not carry a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("the base URL must not carry credentials"));
    }
    Ok(url)
}

/// A client of the Metal API.
///
/// Cheap to clone (one `Arc`): clones share the connection pool, the
/// observer and [`last_rate_limit`](Self::last_rate_limit), so one client can
/// serve many concurrent requests. `Debug` never shows the token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Sends the requests: a `reqwest::Client` unless
    /// [`ClientBuilder::transport`] set another.
    transport: Arc<dyn Transport>,
    base: Url,
    /// The base URL's path without a trailing slash; empty at the root.
    base_path: String,
    token: HeaderValue,
    per_request_timeout: Option<Duration>,
    timeout: Duration,
    max_response_size: u64,
    observer: Option<Observer>,
    rate_gate: Arc<RateGate>,
    last_rate_limit: Mutex<Option<RateLimit>>,
    /// The API's clock: the `Date` of the latest answer that carried one,
    /// and when (by the monotonic clock) it arrived.
    api_clock: Mutex<Option<(DateTime<Utc>, tokio::time::Instant)>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field("token", &"[REDACTED]")
            .field("timeout", &self.inner.timeout)
            .field("max_response_size", &self.inner.max_response_size)
            .field("observer", &self.inner.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// A successful answer: its body and rate-limit headers.
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    pub(crate) rate_limit: Option<RateLimit>,
    /// The answer's `Date` header, when it carried a valid one.
    pub(crate) date: Option<DateTime<Utc>>,
}

impl Client {
    /// Starts building a client that authenticates with `token`.
    pub fn builder(token: SecretString) -> ClientBuilder {
        ClientBuilder {
            token,
            base_url: None,
            http: None,
            timeout: None,
            connect_timeout: None,
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            observer: None,
            rate_gate: None,
            transport: None,
        }
    }

    /// A client of the real API with default settings.
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::build`].
    pub fn new(token: SecretString) -> Result<Self> {
        Self::builder(token).build()
    }

    /// The base URL requests are made against.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The rate-limit gate every request of this client (and its clones)
    /// waits at: to see the pause in force, to share it with another
    /// client ([`ClientBuilder::rate_gate`]), or to wait for it before work
    /// of one's own.
    pub fn rate_gate(&self) -> &Arc<RateGate> {
        &self.inner.rate_gate
    }

    /// The rate-limit headers of the most recent answer that carried any,
    /// on this client or any of its clones; `None` before the first.
    pub fn last_rate_limit(&self) -> Option<RateLimit> {
        *self
            .inner
            .last_rate_limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The API's clock now: the `Date` header of the latest answer (on this
    /// client or a clone) plus the time since it arrived, by the monotonic
    /// clock (tokio's, so paused time in tests moves it too). `None` before
    /// any answer carried a `Date`.
    ///
    /// A header has whole seconds; the estimate adds half a second, so it is
    /// within half a second of the API's clock plus the answer's transit.
    /// Use it, not this host's wall clock, for anything that must not pass
    /// an event the API lists (a floor, a start point): the two clocks may
    /// differ by minutes or hours.
    pub fn api_now(&self) -> Option<DateTime<Utc>> {
        let clock = *self
            .inner
            .api_clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        clock.map(|(date, at)| {
            let since = chrono::TimeDelta::from_std(at.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
            date.checked_add_signed(since).unwrap_or(date)
        })
    }

    /// How far this host's wall clock runs ahead of the API's (negative:
    /// behind), from the latest `Date` header; `None` before one arrived.
    pub fn clock_skew(&self) -> Option<chrono::TimeDelta> {
        self.api_now().map(|api| Utc::now() - api)
    }

    /// `GET /organizations/{id}`.
    ///
    /// # Errors
    ///
    /// Any [`Error`] but [`Error::PaginationLoop`].
    pub async fn organization(&self, id: &OrganizationId) -> Result<Organization> {
        let url = self.url(&["organizations", id.as_str()], None)?;
        let path = path_of(&url);
        let fetched = self.fetch(Endpoint::Organization, &url, &path).await?;
        decode(&fetched.body, &path)
    }

    /// The projects of an organization (`GET /organizations/{id}/projects`),
    /// a page at a time.
    pub fn project_pages(
        &self,
        organization: &OrganizationId,
        options: &ListOptions,
    ) -> Pager<crate::models::Project> {
        let url = self.url(
            &["organizations", organization.as_str(), "projects"],
            Some(options),
        );
        Pager::new(self.clone(), Endpoint::Projects, url, |body, path| {
            decode::<ProjectList>(body, path).map(|list| Decoded::whole(list.projects, list.meta))
        })
    }

    /// The devices of a project (`GET /projects/{id}/devices`), a page at a
    /// time.
    pub fn device_pages(
        &self,
        project: &ProjectId,
        options: &ListOptions,
    ) -> Pager<crate::models::Device> {
        let url = self.url(&["projects", project.as_str(), "devices"], Some(options));
        Pager::new(self.clone(), Endpoint::Devices, url, |body, path| {
            decode::<DeviceList>(body, path).map(|list| Decoded::whole(list.devices, list.meta))
        })
    }

    /// The events of `scope`, a page at a time (in practice newest first;
    /// the API does not promise an order). An event that cannot be decoded
    /// is left out of its page's items and reported in
    /// [`Page::skipped`](crate::Page::skipped); the rest of the page is kept.
    pub fn event_pages(
        &self,
        scope: &EventScope,
        options: &ListOptions,
    ) -> Pager<crate::models::Event> {
        let url = self.event_url(scope, options);
        Pager::new(self.clone(), scope.endpoint(), url, decode_events)
    }

    /// The events of `scope`, a page at a time, like
    /// [`event_pages`](Self::event_pages), but each event's id and creation
    /// time are read and the rest is decoded only on
    /// [`LazyEvent::decode`]: for a poller that needs whole events only for
    /// the few it has not seen. A page decodes (the same items, the same
    /// skipped events, or the same error naming the same JSON path) exactly as
    /// with `event_pages`.
    pub fn lazy_event_pages(&self, scope: &EventScope, options: &ListOptions) -> Pager<LazyEvent> {
        Pager::new(
            self.clone(),
            scope.endpoint(),
            self.event_url(scope, options),
            decode_lazy_events,
        )
    }

    fn event_url(&self, scope: &EventScope, options: &ListOptions) -> Result<Url> {
        match scope {
            EventScope::Organization(id) => {
                self.url(&["organizations", id.as_str(), "events"], Some(options))
            }
            EventScope::Project(id) => {
                self.url(&["projects", id.as_str(), "events"], Some(options))
            }
            EventScope::Device(id) => self.url(&["devices", id.as_str(), "events"], Some(options)),
            EventScope::Token => self.url(&["events"], Some(options)),
        }
    }

    /// The base URL with `segments` appended (each percent-encoded, so an id
    /// can never change the path) and the list options as the query.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a segment that is `.` or `..` (an id from
    /// an answer or the config): a URL path cannot carry it as a segment
    /// (the URL standard removes it, in any encoding), so
    /// `GET /organizations/..` would become `GET /organizations`. Every Metal
    /// id is a UUID; such an id is refused rather than sent.
    fn url(&self, segments: &[&str], options: Option<&ListOptions>) -> Result<Url> {
        if let Some(dots) = segments.iter().find(|s| matches!(**s, "." | "..")) {
            return Err(Error::InvalidUrl {
                url: format!("{}/{}", self.inner.base, segments.join("/")),
                reason: format!("the id `{dots}` cannot be a URL path segment"),
            });
        }
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .expect("the base URL was checked to be a base")
            .pop_if_empty()
            .extend(segments);
        if let Some(options) = options {
            let per_page = options.per_page.clamp(1, MAX_PER_PAGE);
            if per_page != options.per_page {
                tracing::debug!(
                    requested = options.per_page,
                    sent = per_page,
                    "per_page clamped to 1..=1000"
                );
            }
            let mut query = url.query_pairs_mut();
            if options.page > 1 {
                query.append_pair("page", &options.page.to_string());
            }
            query.append_pair("per_page", &per_page.to_string());
            if !options.include.is_empty() {
                query.append_pair("include", &options.include.join(","));
            }
            if !options.exclude.is_empty() {
                query.append_pair("exclude", &options.exclude.join(","));
            }
        }
        Ok(url)
    }

    /// Resolves a `meta.next` link against the page it came from.
    ///
    /// A link relative to the page (`?page=2`) is joined to it. A link with
    /// a path (`/metal/v1/projects/x/events?page=2`) or an absolute URL is
    /// placed under the base URL: when its path already starts with the base
    /// URL's path it is kept, otherwise the API's `/metal/v1` prefix (when
    /// present) is replaced by the base URL's path. The result always has
    /// the base URL's origin, so the token never travels to another host.
    pub(crate) fn resolve_next(&self, current: &Url, href: &str) -> Result<Url> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: href.to_owned(),
            reason,
        };
        let joined = current.join(href).map_err(|e| invalid(e.to_string()))?;
        if !matches!(joined.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".to_owned()));
        }
        let base = &self.inner.base;
        let same_origin = joined.origin() == base.origin();
        let relative_to_page = !href.starts_with('/') && Url::parse(href).is_err();
        if relative_to_page && same_origin {
            return Ok(joined);
        }
        if !same_origin {
            tracing::debug!(
                next = %path_of(&joined),
                "meta.next names another origin; following its path on the base URL"
            );
        }
        let path = joined.path();
        let base_path = self.inner.base_path.as_str();
        let new_path = if !base_path.is_empty() && starts_with_segments(path, base_path) {
            path.to_owned()
        } else if starts_with_segments(path, API_PREFIX) {
            format!("{base_path}{}", &path[API_PREFIX.len()..])
        } else {
            format!("{base_path}{path}")
        };
        let mut url = base.clone();
        url.set_path(&new_path);
        url.set_query(joined.query());
        Ok(url)
    }

    /// Waits at the rate gate, sends one `GET`, reads the body (up to the
    /// size cap), and turns anything but a 2xx into an [`Error`]. Records
    /// the rate limit, tells the gate about the answer, calls the observer
    /// once, and emits a debug event.
    pub(crate) async fn fetch(&self, endpoint: Endpoint, url: &Url, path: &str) -> Result<Fetched> {
        let span = tracing::debug_span!("metal_request", endpoint = endpoint.as_str(), path);
        self.inner.rate_gate.admit().await;
        self.fetch_inner(endpoint, url, path).instrument(span).await
    }

    async fn fetch_inner(&self, endpoint: Endpoint, url: &Url, path: &str) -> Result<Fetched> {
        let inner = &*self.inner;
        let mut request = reqwest::Request::new(reqwest::Method::GET, url.clone());
        let headers = request.headers_mut();
        headers.insert(AUTH_HEADER, inner.token.clone());
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        *request.timeout_mut() = inner.per_request_timeout;

        let started = Instant::now();
        let sent = inner.transport.execute(request).await;
        let mut response = match sent {
            Ok(response) => response,
            Err(source) => {
                let error = Error::from_reqwest(path, source);
                self.observe(endpoint, None, &error, started, None);
                return Err(error);
            }
        };
        let status = response.status();
        let date = self.note_date(response.headers());
        let rate_limit = RateLimit::from_headers(response.headers());
        if let Some(rate_limit) = rate_limit {
            *inner
                .last_rate_limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(rate_limit);
        }
        let now = SystemTime::now();
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| rate_limit::retry_after(response.headers(), rate_limit.as_ref(), now));
        self.gate_answer(status, retry_after, rate_limit, path, now);
        let limit = inner.max_response_size;
        let too_large = || Error::ResponseTooLarge {
            path: path.to_owned(),
            limit,
        };
        if status.is_success() && response.content_length().is_some_and(|len| len > limit) {
            let error = too_large();
            self.observe(endpoint, Some(status), &error, started, rate_limit);
            return Err(error);
        }
        // Of an error answer only a prefix is needed (its message, a trimmed
        // body); what follows is never read.
        let read_limit = if status.is_success() {
            limit
        } else {
            limit.min(MAX_ERROR_BODY_READ)
        };
        let body = match read_capped(&mut response, read_limit).await {
            Ok(Capped::Whole(body)) => body,
            Ok(Capped::Cut(body)) if !status.is_success() => body,
            Ok(Capped::Cut(_)) => {
                let error = too_large();
                self.observe(endpoint, Some(status), &error, started, rate_limit);
                return Err(error);
            }
            Err(source) => {
                let error = Error::from_reqwest(path, source);
                self.observe(endpoint, Some(status), &error, started, rate_limit);
                return Err(error);
            }
        };
        let duration = started.elapsed();
        if let Some(observer) = &inner.observer {
            observer(&RequestRecord {
                endpoint,
                status: Some(status),
                timed_out: false,
                duration,
                rate_limit,
            });
        }
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = duration.as_millis() as u64,
            bytes = body.len(),
            remaining = rate_limit.and_then(|r| r.remaining),
            "metal answered"
        );
        if !status.is_success() {
            return Err(Error::from_status(
                status,
                path,
                &body,
                retry_after.flatten(),
                rate_limit,
            ));
        }
        Ok(Fetched {
            body,
            rate_limit,
            date,
        })
    }

    /// Reads an answer's `Date` header and, when it is valid, sets the API's
    /// clock from it ([`Client::api_now`]).
    fn note_date(&self, headers: &reqwest::header::HeaderMap) -> Option<DateTime<Utc>> {
        let date = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(DateTime::<Utc>::from)?;
        let estimate = date + chrono::TimeDelta::milliseconds(500);
        *self
            .inner
            .api_clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((estimate, tokio::time::Instant::now()));
        Some(date)
    }

    /// Tells the rate gate about an answer: a success ends a streak of
    /// 429s; a 429 pauses every request for the wait it named (at least
    /// [`MIN_PAUSE`](crate::MIN_PAUSE)); any other answer with
    /// `X-RateLimit-Remaining: 0` pauses until the window resets. A 429's own
    /// wait is not stretched to the window's reset as well: that overrode
    /// `Retry-After` (an hour-long window stalled every request).
    fn gate_answer(
        &self,
        status: StatusCode,
        retry_after: Option<Option<Duration>>,
        rate_limit: Option<RateLimit>,
        path: &str,
        now: SystemTime,
    ) {
        let gate = &self.inner.rate_gate;
        if status.is_success() {
            gate.answered();
        }
        if let Some(asked) = retry_after {
            gate.rate_limited(asked, path);
        } else if let Some(limit) = rate_limit
            && limit.remaining == Some(0)
            && let Some(wait) = limit.reset_after(now)
        {
            gate.pause_for(wait);
        }
    }

    fn observe(
        &self,
        endpoint: Endpoint,
        status: Option<StatusCode>,
        error: &Error,
        started: Instant,
        rate_limit: Option<RateLimit>,
    ) {
        let duration = started.elapsed();
        tracing::debug!(
            status = status.map(|s| s.as_u16()),
            elapsed_ms = duration.as_millis() as u64,
            error = %error,
            "metal request failed"
        );
        if let Some(observer) = &self.inner.observer {
            observer(&RequestRecord {
                endpoint,
                status,
                timed_out: matches!(error, Error::Timeout { .. }),
                duration,
                rate_limit,
            });
        }
    }
}

/// A body read up to a limit.
enum Capped {
    /// The whole body.
    Whole(Bytes),
    /// The first `limit` bytes of a longer body; the rest was not read.
    Cut(Bytes),
}

/// Reads `response`'s body chunk by chunk, never holding more than `limit`
/// bytes: a body that goes on past it (however long, or endless) is cut
/// there and the rest is left unread.
async fn read_capped(response: &mut reqwest::Response, limit: u64) -> reqwest::Result<Capped> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let expected = response
        .content_length()
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(expected.min(limit));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Capped::Cut(body.into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped::Whole(body.into()))
}

/// Whether `path` is `prefix` or starts with `prefix/`.
fn starts_with_segments(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The path and query of a URL, as errors and logs name a request.
pub(crate) fn path_of(url: &Url) -> String {
    url[Position::BeforePath..Position::AfterQuery].to_owned()
}

/// Decodes a JSON body, naming the JSON path that failed.
///
/// Tracking the path costs on every field of every event (it keeps each key),
/// so a body is decoded plainly first and only a body that fails is decoded
/// again with the path tracked, to name where it failed.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8], path: &str) -> Result<T> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(_) => decode_tracked(body, path),
    }
}

/// [`decode`] with the JSON path tracked: the error names where it failed.
fn decode_tracked<T: DeserializeOwned>(body: &[u8], path: &str) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let json_path = e.path().to_string();
        Error::Decode {
            path: path.to_owned(),
            json_path,
            source: e.into_inner(),
        }
    })?;
    deserializer.end().map_err(|source| Error::Decode {
        path: path.to_owned(),
        json_path: ".".to_owned(),
        source,
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::builder(SecretString::from("t0ken"))
            .base_url(base)
            .build()
            .unwrap()
    }

    /// An in-memory API: records each request, answers from `answer`.
    #[derive(Debug)]
    struct Canned {
        requests: Mutex<Vec<reqwest::Request>>,
        status: u16,
    }

    impl Transport for Canned {
        fn execute(&self, request: reqwest::Request) -> TransportFuture<'_> {
            let status = self.status;
            self.requests.lock().unwrap().push(request);
            Box::pin(async move {
                let body = if status == 200 {
                    r#"{"events": [{"id": "e1", "type": "t", "created_at": "1994-11-06T08:00:00Z"}],
                        "meta": {"current_page": 2, "last_page": 2, "total": 6}}"#
                } else {
                    r#"{"errors": ["down"]}"#
                };
                let answer = http::Response::builder()
                    .status(status)
                    .header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
                    .body(body)
                    .unwrap();
                Ok(reqwest::Response::from(answer))
            })
        }
    }

    fn canned(status: u16) -> (Arc<Canned>, Client) {
        let transport = Arc::new(Canned {
            requests: Mutex::new(Vec::new()),
            status,
        });
        let client = Client::builder(SecretString::from("t0ken"))
            .base_url("http://metal.invalid/metal/v1")
            .transport(transport.clone())
            .build()
            .unwrap();
        (transport, client)
    }

    #[tokio::test]
    async fn a_transport_of_its_own_goes_through_the_shared_path() {
        let (transport, client) = canned(200);
        let scope = EventScope::Device(DeviceId::new("d1"));
        let options = ListOptions::new().with_per_page(5).with_page(2);
        let page = client
            .event_pages(&scope, &options)
            .next_page()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.items.len(), 1);
        // The `Date` header set the API's clock.
        let date = DateTime::parse_from_rfc3339("1994-11-06T08:49:37Z").unwrap();
        assert_eq!(page.date, Some(date.with_timezone(&Utc)));
        assert!(client.api_now().unwrap() >= date);
        let requests = transport.requests.lock().unwrap();
        let request = &requests[0];
        assert_eq!(
            request.url().as_str(),
            "http://metal.invalid/metal/v1/devices/d1/events?page=2&per_page=5"
        );
        assert_eq!(request.headers()[AUTH_HEADER], "t0ken");
        assert_eq!(request.timeout(), Some(&DEFAULT_TIMEOUT));
    }

    #[tokio::test]
    async fn a_transport_s_error_status_is_classified_as_over_http() {
        let (_transport, client) = canned(503);
        let error = client
            .organization(&OrganizationId::new("o1"))
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(error.is_retryable(), "{error}");
    }

    #[test]
    fn list_options_builder_sets_each_field() {
        let opts = ListOptions::new()
            .with_per_page(25)
            .with_include(["devices"])
            .with_exclude(vec![String::from("modified_by"), "ip".into()]);
        assert_eq!(opts.per_page, 25);
        assert_eq!(opts.include, ["devices"]);
        assert_eq!(opts.exclude, ["modified_by", "ip"]);
        assert_eq!(ListOptions::new(), ListOptions::default());
        assert_eq!(ListOptions::new().per_page, DEFAULT_PER_PAGE);
    }

    #[test]
    fn next_links_stay_under_the_base_url() {
        let cases = [
            // (base, href, expected)
            (
                "http://127.0.0.1:1234/metal/v1",
                "/metal/v1/projects/p/events?page=2&per_page=100",
                "http://127.0.0.1:1234/metal/v1/projects/p/events?page=2&per_page=100",
            ),
            (
                "http://127.0.0.1:1234/metal/v1/",
                "/projects/p/events?page=2",
                "http://127.0.0.1:1234/metal/v1/projects/p/events?page=2",
            ),
            (
                "http://127.0.0.1:1234",
                "/metal/v1/projects/p/events?page=2",
                "http://127.0.0.1:1234/projects/p/events?page=2",
            ),
            (
                "http://127.0.0.1:1234/proxy/metal/v1",
                "/metal/v1/projects/p/events?page=2",
                "http://127.0.0.1:1234/proxy/metal/v1/projects/p/events?page=2",
            ),
            (
                "http://127.0.0.1:1234/metal/v1",
                "https://api.equinix.com/metal/v1/projects/p/events?page=3",
                "http://127.0.0.1:1234/metal/v1/projects/p/events?page=3",
            ),
            (
                "http://127.0.0.1:1234/metal/v1",
                "//evil.example/metal/v1/events?page=3",
                "http://127.0.0.1:1234/metal/v1/events?page=3",
            ),
            (
                "http://127.0.0.1:1234/metal/v1",
                "?page=4&per_page=100",
                "http://127.0.0.1:1234/metal/v1/projects/p/events?page=4&per_page=100",
            ),
            (
                "https://api.equinix.com/metal/v1",
                "https://api.equinix.com/metal/v1/events?page=2",
                "https://api.equinix.com/metal/v1/events?page=2",
            ),
        ];
        for (base, href, expected) in cases {
            let client = client(base);
            let current = client
                .url(&["projects", "p", "events"], Some(&ListOptions::default()))
                .unwrap();
            let next = client.resolve_next(&current, href).unwrap();
            assert_eq!(next.as_str(), expected, "base {base}, href {href}");
        }
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for base in [
            "ftp://x/metal",
            "not a url",
            "mailto:a@b",
            "http://h/?q=1",
            "http://u:p@h/",
        ] {
            let err = Client::builder(SecretString::from("t"))
                .base_url(base)
                .build()
                .unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{base}: {err}");
        }
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        let client = client("http://h/metal/v1");
        let url = client
            .url(&["devices", "../../x?y", "events"], None)
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://h/metal/v1/devices/..%2F..%2Fx%3Fy/events"
        );
        let url = client.url(&["projects", "a/b", "devices"], None).unwrap();
        assert_eq!(url.as_str(), "http://h/metal/v1/projects/a%2Fb/devices");
        let url = client.url(&["devices", "%2e%2e", "events"], None).unwrap();
        assert_eq!(url.as_str(), "http://h/metal/v1/devices/%252e%252e/events");
        // A dot segment cannot be carried at all: refused, never shortened.
        for dots in [".", ".."] {
            let error = client
                .url(&["organizations", dots, "projects"], None)
                .unwrap_err();
            assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
        }
    }

    #[test]
    fn per_page_is_clamped() {
        let client = client("http://h/metal/v1");
        let opts = ListOptions {
            per_page: 5000,
            include: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let url = client.url(&["events"], Some(&opts)).unwrap();
        assert_eq!(url.query(), Some("per_page=1000&include=a%2Cb"));
        let opts = ListOptions {
            per_page: 0,
            ..Default::default()
        };
        assert_eq!(
            client.url(&["events"], Some(&opts)).unwrap().query(),
            Some("per_page=1")
        );
    }
}
