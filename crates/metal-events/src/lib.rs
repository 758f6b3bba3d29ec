//! A typed, rate-limit-aware client for the Equinix Metal events API:
//! organizations, projects, devices and their event lists, read a page at a
//! time.
//!
//! The [`models`] (events, projects, devices, pagination metadata) are always
//! here; the HTTP client comes with the default `client` feature. Without it
//! the crate is the models alone, with no reqwest and no tokio in the tree.
#![cfg_attr(
    feature = "client",
    doc = r#"
```no_run
use metal_events::{Client, EventScope, ListOptions, ProjectId, SecretString};

# async fn run() -> metal_events::Result<()> {
let client = Client::new(SecretString::from(std::env::var("METAL_AUTH_TOKEN").unwrap()))?;
let scope = EventScope::Project(ProjectId::new("d894d0eb-2b6c-4741-b106-c7cb76018d32"));
let mut pages = client.event_pages(&scope, &ListOptions::default());
while let Some(page) = pages.next_page().await? {
    for event in &page.items {
        println!("{:?} {:?}", event.id(), event.event_type());
    }
    // Stop early: later pages hold older events.
    break;
}
# Ok(())
# }
```

# What it does

- [`Client`] sends the token as `X-Auth-Token` (never logged, never in an
  error or `Debug`), a `User-Agent` of `metal-events/<version>`, and uses
  connect and request timeouts. It is cheap to clone and safe to share
  between tasks: clones share one connection pool.
- Every answer body is read with a cap ([`ClientBuilder::max_response_size`],
  default [`DEFAULT_MAX_RESPONSE_SIZE`], 32 MiB): a larger or endless body is
  [`Error::ResponseTooLarge`] (not retryable) as soon as it passes the cap,
  so memory stays bounded whatever the server sends.
- [`Pager`] reads one page per call, follows `meta.next` (relative or
  absolute), falls back to `page=current_page + 1`, and ends with
  [`Error::PaginationLoop`] rather than looping on a server that repeats a
  page. Requests only ever go to the base URL's origin.
- Every answer's `X-RateLimit-*` headers become a [`RateLimit`]; a 429 is
  [`Error::RateLimited`] with the wait the server asked for.
- Every request of a client, inventory pages included, first waits at its
  [`RateGate`] ([`Client::rate_gate`]; share one between clients with
  [`ClientBuilder::rate_gate`]): a 429 pauses every request at least
  [`MIN_PAUSE`] (doubling while 429s keep coming, up to
  [`MAX_GROWN_PAUSE`]; `Retry-After: 0` too), `X-RateLimit-Remaining: 0`
  pauses until the window resets, and no answer pauses longer than
  [`MAX_PAUSE`]. One `tracing` warning per pause. The error is still
  returned: retrying is the caller's choice, and its retry waits at the gate.
- One bad event does not sink its page: a page that does not decode whole
  is decoded event by event, and an event that cannot be decoded (nested
  past serde_json's limit, a number out of range, a broken escape, not an
  object) is left out and reported in [`Page::skipped`] as an
  [`Undecodable`], with its id when readable. Bytes that are not UTF-8 become
  U+FFFD.
- A [`Transport`] ([`ClientBuilder::transport`]) carries requests somewhere
  else than the network, such as an in-memory API for a simulation; the rest
  of the client (rate gate, `Date`, statuses, body cap, decoding) stays the
  one shared path.
- [`Error::is_retryable`] says whether a failure is worth retrying.
- An [`Event`] is read-only: its typed view is read from the JSON the API
  sent, and it serializes back to that JSON text, key order included,
  without `serde_json`'s `preserve_order` feature (which this crate does not
  enable).
- An optional observer ([`ClientBuilder::observer`]) sees one
  [`RequestRecord`] per HTTP request, for metrics; `tracing` spans and
  events are emitted at debug level.
"#
)]

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod error;
pub mod models;
#[cfg(feature = "client")]
mod page;
#[cfg(feature = "client")]
mod rate_gate;
#[cfg(feature = "client")]
mod rate_limit;
#[cfg(feature = "client")]
mod split;

#[cfg(feature = "client")]
pub use client::{
    Client, ClientBuilder, DEFAULT_BASE_URL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_PER_PAGE, DEFAULT_TIMEOUT, Endpoint, EventScope, ListOptions, MAX_PER_PAGE, Observer,
    RequestRecord, Transport, TransportFuture, USER_AGENT,
};
#[cfg(feature = "client")]
pub use error::{Error, MAX_BODY_BYTES, Result};
pub use models::{
    Device, DeviceId, DeviceList, DeviceState, ErrorBody, Event, EventId, EventList, Href, Meta,
    Organization, OrganizationId, Project, ProjectId, ProjectList,
};
#[cfg(feature = "client")]
pub use page::{LazyEvent, Page, Pager, Undecodable};
#[cfg(feature = "client")]
pub use rate_gate::{
    DEFAULT_RATE_LIMIT_WAIT, MAX_GROWN_PAUSE, MAX_PAUSE, MIN_PAUSE, RateGate, RateLimitPause,
};
#[cfg(feature = "client")]
pub use rate_limit::RateLimit;
/// The HTTP client crate this one uses, for [`ClientBuilder::http_client`].
#[cfg(feature = "client")]
pub use reqwest;
/// HTTP status codes, as [`Error::status`] returns them.
#[cfg(feature = "client")]
pub use reqwest::StatusCode;
/// The token type [`Client::builder`] takes, re-exported from `secrecy`.
#[cfg(feature = "client")]
pub use secrecy::SecretString;
