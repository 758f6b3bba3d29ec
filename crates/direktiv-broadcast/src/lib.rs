//! A client that delivers CloudEvents to a Direktiv namespace's broadcast
//! endpoint in structured mode, and tells the caller how each send ended.
//!
//! Every Direktiv release since v0.7 accepts structured mode (the event as
//! JSON, `Content-Type: application/cloudevents+json`), so that is the only
//! mode this crate sends. A [`Sink`] holds one HTTP client for its life;
//! [`Sink::send`] and [`Sink::send_batch`] never return an error but a
//! [`Delivery`] whose [`Outcome`] says what to do next:
//!
//! | Direktiv answered | [`Outcome`] | The caller should |
//! |---|---|---|
//! | 2xx with an empty or JSON body | [`Outcome::Delivered`] | record the event as sent |
//! | 2xx with a web page or other non-JSON body, or 204 (a proxy, not Direktiv) | [`Outcome::NotDirektiv`] | keep the event, stop sending: every event would be swallowed |
//! | 409, or 400 with `Error appending CloudEvent to history` | [`Outcome::AlreadyDelivered`] | record it as sent |
//! | no answer, timeout, 408, 429, 5xx | [`Outcome::Retryable`] | back off (honouring `retry_after`) and send again |
//! | any other 4xx, a redirect | [`Outcome::Permanent`] | log, count, move on |
//!
//! Each request carries a fresh W3C `traceparent`, both as an HTTP header and
//! as the event's `traceparent` extension. [`Auth::new`] sends the token in
//! both `Direktiv-Token` (Direktiv 2022 to 2025) and `Direktiv-Api-Key` (2025
//! on), so it works with every release; [`Auth::with_header`] sends it in one
//! header only. The token never appears in `Debug`, errors or logs.
//!
//! ```no_run
//! use direktiv_broadcast::{Auth, Sink, SinkConfig, endpoint_v2};
//! use cloudevents::{EventBuilder, EventBuilderV10};
//! use url::Url;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let base = Url::parse("https://direktiv.example.com")?;
//! // The token goes in `Direktiv-Token` and `Direktiv-Api-Key`, whichever
//! // this Direktiv reads; `Auth::with_header(AuthHeader::DirektivApiKey, ..)`
//! // would send it in one.
//! let config = SinkConfig::new(endpoint_v2(&base, "ops")?).with_auth(Auth::new("my-token"));
//! let sink = Sink::new(config)?;
//!
//! let event = EventBuilderV10::new()
//!     .id("cbe6eed5-b2ac-4bdb-bd82-b7b88866e200")
//!     .ty("provisioning.110")
//!     .source("direktiv/listener/equinix/Direktiv")
//!     .build()?;
//!
//! let delivery = sink.send(&event).await;
//! if delivery.outcome.is_acknowledged() {
//!     // Safe to advance past this event.
//! } else if let Some(wait) = delivery.outcome.retry_after() {
//!     tokio::time::sleep(wait).await;
//! }
//! # Ok(())
//! # }
//! ```

mod config;
mod endpoint;
mod error;
mod outcome;
mod sink;
mod trace;

pub use config::{
    Auth, AuthHeader, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, SinkConfig, header_names,
};
pub use endpoint::{ApiGeneration, endpoint_v1, endpoint_v2};
pub use error::{Error, Result};
pub use outcome::{Delivery, HISTORY_CONFLICT_MARKER, MAX_BODY_BYTES, Outcome, RetryReason};
pub use sink::{CONTENT_TYPE_BATCH, CONTENT_TYPE_EVENT, Sink};
pub use trace::TRACEPARENT;

/// The `cloudevents-sdk` crate this API uses, re-exported so callers build
/// events with the same version.
pub use cloudevents;
/// The `secrecy` crate used for [`Auth::token`].
pub use secrecy;
/// The `url` crate used for endpoints.
pub use url;

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;
