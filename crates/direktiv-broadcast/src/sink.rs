//! The [`Sink`]: one HTTP client that posts CloudEvents to one broadcast endpoint.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use cloudevents::{AttributesReader, Event};
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use tracing::Instrument;
use url::Url;

use crate::config::{Auth, AuthHeader, SinkConfig};
use crate::endpoint::{check_scheme, redacted};
use crate::error::{Error, Result};
use crate::outcome::{Delivery, Outcome, classify_response, classify_transport};
use crate::trace::{TRACEPARENT, new_span_id, new_trace_id, traceparent};

/// Content type of a single structured-mode event.
pub const CONTENT_TYPE_EVENT: &str = "application/cloudevents+json";
/// Content type of a batch of structured-mode events (a JSON array).
pub const CONTENT_TYPE_BATCH: &str = "application/cloudevents-batch+json";

/// At most this much of an answer's body is read.
const MAX_READ_BYTES: usize = 64 * 1024;

/// Delivers CloudEvents to one Direktiv broadcast endpoint.
///
/// Holds one HTTP client (connection pool, keep-alive) for its whole life.
/// Cheap to clone; clones share the client, so one sink can serve many
/// tasks. `Debug` never shows the token.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    endpoint: Url,
    /// The endpoint without credentials or query, for logs.
    endpoint_log: String,
    /// Each header carrying the token, with its value (marked sensitive).
    auth: Vec<(HeaderName, HeaderValue)>,
    /// The same headers as configured, for callers and logs.
    auth_headers: Vec<AuthHeader>,
}

impl Sink {
    /// Builds the HTTP client for `config`.
    ///
    /// Reads the CA file now, so a wrong path fails at start-up. With
    /// `insecure_skip_verify` it logs one warning.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedScheme`], [`Error::CaFileRead`],
    /// [`Error::CaFileInvalid`], [`Error::InvalidToken`], or
    /// [`Error::Client`] when the TLS setup cannot be built (for example no
    /// system CA certificates and no CA file).
    pub fn new(config: SinkConfig) -> Result<Self> {
        check_scheme(&config.endpoint)?;
        let endpoint_log = redacted(&config.endpoint);

        let mut auth = Vec::new();
        let mut auth_headers = Vec::new();
        if let Some(Auth { headers, token }) = &config.auth {
            for header in headers {
                let name = header.name();
                // `Auth::with_headers` drops repeats; a list built by hand may not.
                if auth.iter().any(|(sent, _)| *sent == name) {
                    continue;
                }
                let text = format!("{}{}", header.prefix(), token.expose_secret());
                let mut value = HeaderValue::from_str(&text).map_err(|_| Error::InvalidToken {
                    header: name.to_string(),
                })?;
                value.set_sensitive(true);
                auth.push((name, value));
                auth_headers.push(header.clone());
            }
        }

        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .tcp_keepalive(std::time::Duration::from_secs(60))
            // A redirect would carry the token to another place and turn the
            // POST into a GET: never follow one, classify it as permanent.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("direktiv-broadcast/", env!("CARGO_PKG_VERSION")));

        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| Error::CaFileRead {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::CaFileInvalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(Error::CaFileInvalid {
                    path: path.clone(),
                    reason: "no PEM certificate found".to_owned(),
                });
            }
            tracing::debug!(path = %path.display(), certificates = certs.len(), "trusting extra CA certificates for Direktiv");
            builder = builder.tls_certs_merge(certs);
        }

        if config.insecure_skip_verify {
            tracing::warn!(
                endpoint = %endpoint_log,
                "TLS certificate verification for Direktiv is disabled (insecure_skip_verify): \
                 anyone on the path can read the token and the events"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }

        let client = builder.build().map_err(Error::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                endpoint: config.endpoint,
                endpoint_log,
                auth,
                auth_headers,
            }),
        })
    }

    /// The endpoint every event is posted to.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// The headers the token is sent in, as configured (empty without
    /// authentication): what to name when Direktiv refuses the token.
    pub fn auth_headers(&self) -> &[AuthHeader] {
        &self.inner.auth_headers
    }

    /// Posts one event in structured mode
    /// (`Content-Type: application/cloudevents+json`).
    ///
    /// A copy of the event gets a fresh `traceparent` extension, equal to the
    /// request's `traceparent` header and to [`Delivery::traceparent`]; an
    /// existing `traceparent` extension is replaced. Never fails: every
    /// failure is an [`Outcome`].
    pub async fn send(&self, event: &Event) -> Delivery {
        let trace_id = new_trace_id();
        let tp = traceparent(trace_id, new_span_id());
        let mut event = event.clone();
        event.set_extension(TRACEPARENT, tp.clone());
        let span = tracing::info_span!(
            "direktiv_broadcast.send",
            endpoint = %self.inner.endpoint_log,
            traceparent = %tp,
            event_id = %event.id(),
            event_type = %event.ty(),
        );
        let body = serde_json::to_vec(&event);
        self.post(body, CONTENT_TYPE_EVENT, tp)
            .instrument(span)
            .await
    }

    /// Posts several events as one batch
    /// (`Content-Type: application/cloudevents-batch+json`, a JSON array).
    ///
    /// Direktiv v0.8.8+ documents batches; older releases may not accept
    /// them. All events share one trace id: the request's `traceparent`
    /// header (and [`Delivery::traceparent`]) carries the request's own span
    /// id, and each event's `traceparent` extension carries a span id of its
    /// own under that trace id. An empty slice sends nothing and is
    /// [`Outcome::Delivered`].
    pub async fn send_batch(&self, events: &[Event]) -> Delivery {
        let trace_id = new_trace_id();
        let tp = traceparent(trace_id, new_span_id());
        if events.is_empty() {
            return Delivery {
                outcome: Outcome::Delivered,
                traceparent: tp,
                status: None,
                elapsed: std::time::Duration::ZERO,
            };
        }
        let events: Vec<Event> = events
            .iter()
            .map(|event| {
                let mut event = event.clone();
                event.set_extension(TRACEPARENT, traceparent(trace_id, new_span_id()));
                event
            })
            .collect();
        let span = tracing::info_span!(
            "direktiv_broadcast.send_batch",
            endpoint = %self.inner.endpoint_log,
            traceparent = %tp,
            events = events.len(),
        );
        let body = serde_json::to_vec(&events);
        self.post(body, CONTENT_TYPE_BATCH, tp)
            .instrument(span)
            .await
    }

    async fn post(
        &self,
        body: serde_json::Result<Vec<u8>>,
        content_type: &'static str,
        tp: String,
    ) -> Delivery {
        let start = Instant::now();
        let (outcome, status) = match body {
            Err(e) => (
                Outcome::Unsendable {
                    reason: format!("cannot serialize the CloudEvent: {e}"),
                },
                None,
            ),
            Ok(body) => self.exchange(body, content_type, &tp).await,
        };
        let delivery = Delivery {
            outcome,
            traceparent: tp,
            status,
            elapsed: start.elapsed(),
        };
        log(
            &delivery,
            &self.inner.endpoint_log,
            &self.inner.auth_headers,
        );
        delivery
    }

    async fn exchange(
        &self,
        body: Vec<u8>,
        content_type: &'static str,
        tp: &str,
    ) -> (Outcome, Option<u16>) {
        let mut request = self
            .inner
            .client
            .post(self.inner.endpoint.clone())
            .header(CONTENT_TYPE, content_type)
            .header(TRACEPARENT, tp)
            .body(body);
        for (name, value) in &self.inner.auth {
            request = request.header(name.clone(), value.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return (classify_transport(&e), None),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match read_limited(&mut response).await {
            Ok(body) => body,
            // The status is what counts for success.
            Err(_) if status.is_success() => String::new(),
            // Cannot tell "already have it" from "bad event" without the body.
            Err(e) if status == StatusCode::BAD_REQUEST => {
                let mut outcome = classify_transport(&e);
                if let Outcome::Retryable { status: s, .. } = &mut outcome {
                    *s = Some(status.as_u16());
                }
                return (outcome, Some(status.as_u16()));
            }
            Err(_) => String::new(),
        };
        (
            classify_response(status, &headers, &body, SystemTime::now()),
            Some(status.as_u16()),
        )
    }
}

/// Reads up to [`MAX_READ_BYTES`] of the body, lossily as UTF-8.
async fn read_limited(response: &mut reqwest::Response) -> reqwest::Result<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_READ_BYTES - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_READ_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Logs how a send ended; a refused token names the headers it was sent in,
/// and an answer that is not Direktiv's names the endpoint, status and
/// content type at ERROR (an operator must act: a proxy swallows events).
fn log(delivery: &Delivery, endpoint: &str, auth_headers: &[AuthHeader]) {
    let elapsed_ms = u64::try_from(delivery.elapsed.as_millis()).unwrap_or(u64::MAX);
    match &delivery.outcome {
        outcome @ Outcome::NotDirektiv {
            status,
            content_type,
            ..
        } => tracing::error!(
            outcome = outcome.label(),
            endpoint,
            status,
            content_type = content_type.as_deref().unwrap_or(""),
            elapsed_ms,
            "{outcome}; the event was not delivered and stays pending"
        ),
        outcome if outcome.is_auth_refusal() => tracing::warn!(
            outcome = outcome.label(),
            status = delivery.status,
            elapsed_ms,
            auth_headers = %auth_headers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            "Direktiv refused the token: {outcome}"
        ),
        Outcome::Delivered | Outcome::AlreadyDelivered => tracing::debug!(
            outcome = delivery.outcome.label(),
            status = delivery.status,
            elapsed_ms,
            "Direktiv accepted the event"
        ),
        Outcome::Retryable { .. } => tracing::info!(
            outcome = delivery.outcome.label(),
            status = delivery.status,
            elapsed_ms,
            "Direktiv delivery failed, will be retried: {}",
            delivery.outcome
        ),
        _ => tracing::warn!(
            outcome = delivery.outcome.label(),
            status = delivery.status,
            elapsed_ms,
            "Direktiv rejected the event: {}",
            delivery.outcome
        ),
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("endpoint", &self.inner.endpoint_log)
            .field(
                "auth_headers",
                &self
                    .inner
                    .auth
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "token",
                &(!self.inner.auth.is_empty()).then_some("[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_token_headers_are_both_sensitive_and_never_shown() {
        let endpoint = Url::parse("http://127.0.0.1:1/api/namespaces/ops/broadcast").unwrap();
        let sink =
            Sink::new(SinkConfig::new(endpoint).with_auth(Auth::new("s3cr3t-t0ken"))).unwrap();
        let sent: Vec<&str> = sink.inner.auth.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(sent, ["direktiv-token", "direktiv-api-key"]);
        for (name, value) in &sink.inner.auth {
            assert!(value.is_sensitive(), "{name} is not marked sensitive");
            assert_eq!(value.as_bytes(), b"s3cr3t-t0ken");
        }
        assert_eq!(sink.auth_headers(), Auth::DEFAULT_HEADERS);
        let debug = format!("{sink:?}");
        assert!(!debug.contains("s3cr3t-t0ken"), "{debug}");
        assert!(
            debug.contains("direktiv-token") && debug.contains("direktiv-api-key"),
            "{debug}"
        );
    }

    #[test]
    fn a_repeated_header_in_a_hand_built_list_is_sent_once() {
        let endpoint = Url::parse("http://127.0.0.1:1/api/namespaces/ops/broadcast").unwrap();
        let mut auth = Auth::with_header(AuthHeader::ApiKey, "t");
        auth.headers.push(AuthHeader::ApiKey);
        let sink = Sink::new(SinkConfig::new(endpoint).with_auth(auth)).unwrap();
        assert_eq!(sink.inner.auth.len(), 1);
        assert_eq!(sink.auth_headers(), [AuthHeader::ApiKey]);
    }
}
