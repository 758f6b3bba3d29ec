//! What a send ended in: [`Delivery`], [`Outcome`], [`RetryReason`], and the
//! rules that map an HTTP answer or a transport failure onto them.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

/// At most this many bytes of an error body are kept in an [`Outcome`].
pub const MAX_BODY_BYTES: usize = 512;

/// The marker Direktiv v0.8.8+ puts in a 400 body when it already stored an
/// event with the same source and id.
pub const HISTORY_CONFLICT_MARKER: &str = "Error appending CloudEvent to history";

/// The result of one send: how it ended and how to find it in traces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// How the send ended.
    pub outcome: Outcome,
    /// The W3C `traceparent` sent as the HTTP header of this request.
    /// For a single event it is also the event's `traceparent` extension.
    pub traceparent: String,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// Time from sending the request to classifying the answer.
    pub elapsed: Duration,
}

/// How a send ended. Every send ends in exactly one of these; there is no
/// separate error path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Direktiv answered 2xx with a body it could have sent (empty, or
    /// JSON): the event is stored.
    Delivered,
    /// Direktiv already had this event: 409 (v0.7 to v0.8.6), or 400 whose
    /// body holds `Error appending CloudEvent to history` (v0.8.8+). As good
    /// as delivered.
    AlreadyDelivered,
    /// Try again later: a transport failure, a timeout, 408, 429 or 5xx.
    Retryable {
        /// Why it failed.
        reason: RetryReason,
        /// The HTTP status, when an answer arrived.
        status: Option<u16>,
        /// How long Direktiv asked to wait (`Retry-After`, seconds or HTTP
        /// date), when it said so.
        retry_after: Option<Duration>,
        /// A short human-readable description (a trimmed error body or the
        /// transport error). The sink never puts the token there, but a body
        /// that echoes it is kept as Direktiv sent it: scrub it before
        /// logging or forwarding it.
        detail: String,
    },
    /// Direktiv refused the event and sending it again will not help:
    /// any other 4xx (401 wrong token, 404 wrong namespace, 415 wrong
    /// content type, ...) or a redirect (the endpoint is misconfigured;
    /// redirects are never followed so the token never leaves the endpoint).
    Permanent {
        /// The HTTP status.
        status: u16,
        /// The answer's body, trimmed to at most [`MAX_BODY_BYTES`].
        body: String,
    },
    /// A 2xx that Direktiv did not send: a web page (an SSO proxy's login
    /// page answers `200 text/html`), any other body that is not JSON, or a
    /// `204 No Content`, which no Direktiv release answers to a broadcast
    /// (success is `200` with an empty body). Something stands between the
    /// receiver and Direktiv and swallowed the event: it is not delivered,
    /// and every other event would be swallowed the same way
    /// ([`Outcome::is_endpoint_refusal`]).
    NotDirektiv {
        /// The HTTP status (2xx).
        status: u16,
        /// The answer's `Content-Type`, trimmed, when it had one.
        content_type: Option<String>,
        /// The answer's body, trimmed to at most [`MAX_BODY_BYTES`].
        body: String,
    },
    /// The event could not be turned into JSON, so nothing was sent.
    /// Sending it again will not help.
    Unsendable {
        /// What went wrong.
        reason: String,
    },
}

impl Outcome {
    /// How the sink classifies an answer of Direktiv with HTTP `status`
    /// (100..=999, else 500), body `body` and a `Retry-After` of
    /// `retry_after`: the one policy, for a stand-in of Direktiv (a
    /// simulation's) that must answer as the real endpoint would be read.
    ///
    /// ```
    /// use direktiv_broadcast::{HISTORY_CONFLICT_MARKER, Outcome};
    /// assert_eq!(Outcome::of_answer(200, "", None), Outcome::Delivered);
    /// assert_eq!(Outcome::of_answer(400, HISTORY_CONFLICT_MARKER, None), Outcome::AlreadyDelivered);
    /// assert!(Outcome::of_answer(503, "", None).is_retryable());
    /// assert!(Outcome::of_answer(400, "bad event", None).is_permanent());
    /// ```
    pub fn of_answer(status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut outcome = classify_response(status, &HeaderMap::new(), body, SystemTime::now());
        if let Self::Retryable {
            retry_after: wait, ..
        } = &mut outcome
        {
            *wait = retry_after;
        }
        outcome
    }

    /// Direktiv has the event ([`Outcome::Delivered`] or
    /// [`Outcome::AlreadyDelivered`]): it may be recorded as sent.
    pub fn is_acknowledged(&self) -> bool {
        matches!(self, Self::Delivered | Self::AlreadyDelivered)
    }

    /// The send should be repeated after a backoff.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// Repeating the send will not help ([`Outcome::Permanent`],
    /// [`Outcome::NotDirektiv`] or [`Outcome::Unsendable`]).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Permanent { .. } | Self::NotDirektiv { .. } | Self::Unsendable { .. }
        )
    }

    /// Direktiv refused the token: [`Outcome::Permanent`] with 401 (no or
    /// unknown token) or 403 (a token without the right to broadcast). Every
    /// event will be refused the same way until the token or the header it
    /// travels in ([`Auth::headers`](crate::Auth::headers)) changes.
    pub fn is_auth_refusal(&self) -> bool {
        matches!(
            self,
            Self::Permanent {
                status: 401 | 403,
                ..
            }
        )
    }

    /// Direktiv refused the request for a reason that concerns every event,
    /// not this one: [`Outcome::Permanent`] with a redirect (3xx, the URL is
    /// wrong), 401 or 403 (the token, see [`Outcome::is_auth_refusal`]), 404
    /// (no such namespace), 405 (not a broadcast endpoint), 407 (a proxy
    /// wants credentials) or 415 (the endpoint does not take this content
    /// type), or [`Outcome::NotDirektiv`] (a proxy answered in Direktiv's
    /// place). Sending any other event now would be refused the same way, so a
    /// caller stops sending until the configuration changes; the event itself
    /// is not at fault and should be kept to send again. Any other permanent
    /// refusal (400, 413, 422, ...) or [`Outcome::Unsendable`] concerns only
    /// this event.
    pub fn is_endpoint_refusal(&self) -> bool {
        matches!(
            self,
            Self::Permanent {
                status: 300..=399 | 401 | 403 | 404 | 405 | 407 | 415,
                ..
            } | Self::NotDirektiv { .. }
        )
    }

    /// The wait Direktiv asked for, if this is a retryable outcome that had one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short lowercase label for metrics: `delivered`, `already_delivered`,
    /// `retryable`, `permanent`, `not_direktiv` or `unsendable`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::AlreadyDelivered => "already_delivered",
            Self::Retryable { .. } => "retryable",
            Self::Permanent { .. } => "permanent",
            Self::NotDirektiv { .. } => "not_direktiv",
            Self::Unsendable { .. } => "unsendable",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delivered => f.write_str("delivered"),
            Self::AlreadyDelivered => f.write_str("already delivered"),
            Self::Retryable {
                reason,
                status,
                retry_after,
                detail,
            } => {
                write!(f, "retryable ({reason}")?;
                if let Some(status) = status {
                    write!(f, ", HTTP {status}")?;
                }
                if let Some(wait) = retry_after {
                    write!(f, ", retry after {}s", wait.as_secs())?;
                }
                f.write_str(")")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            Self::Permanent { status, body } => {
                write!(f, "rejected (HTTP {status})")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            Self::NotDirektiv {
                status,
                content_type,
                ..
            } => {
                let content_type = content_type.as_deref().unwrap_or("no content type");
                if *status == 204 {
                    write!(
                        f,
                        "the endpoint answered HTTP 204 ({content_type}), which no Direktiv \
                         release answers to a broadcast: a proxy in the way?"
                    )
                } else {
                    write!(
                        f,
                        "the endpoint answered a web page, not Direktiv (HTTP {status}, \
                         {content_type}): a login or proxy in the way?"
                    )
                }
            }
            Self::Unsendable { reason } => write!(f, "not sent: {reason}"),
        }
    }
}

/// Why a send is [`Outcome::Retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// No connection could be opened (refused, unreachable, DNS).
    Connect,
    /// The TLS handshake failed, usually an untrusted or mismatched
    /// certificate. Retryable because a certificate may be renewed or a CA
    /// fixed while the Metal API keeps the events; it stays distinct so an
    /// operator sees a configuration problem, not an outage.
    Tls,
    /// The connect or request timeout elapsed.
    Timeout,
    /// The connection broke while sending or reading.
    Transport,
    /// Direktiv answered 408, 429 or 5xx.
    Status,
}

impl RetryReason {
    /// A short lowercase label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::Status => "status",
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Classifies a Direktiv answer. `body` is what was read of it (possibly cut short).
pub(crate) fn classify_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: SystemTime,
) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        if from_direktiv(status, headers, body) {
            Outcome::Delivered
        } else {
            Outcome::NotDirektiv {
                status: code,
                content_type: headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|value| trim_text(&String::from_utf8_lossy(value.as_bytes()), 128)),
                body: trim_body(body),
            }
        }
    } else if status == StatusCode::CONFLICT
        || (status == StatusCode::BAD_REQUEST && body.contains(HISTORY_CONFLICT_MARKER))
    {
        Outcome::AlreadyDelivered
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Outcome::Retryable {
            reason: RetryReason::Status,
            status: Some(code),
            retry_after: retry_after(headers, now),
            detail: trim_body(body),
        }
    } else {
        // Other 4xx, 3xx (never followed) and 1xx that reached us.
        Outcome::Permanent {
            status: code,
            body: trim_body(body),
        }
    }
}

/// Whether a 2xx could have come from Direktiv. Every supported release
/// answers a broadcast with `200` and an empty body (design notes §3); a
/// newer one might add a JSON body. So: not `204` (no release sends it, a
/// proxy that drops requests does), not a `text/html` or XHTML page, and a
/// body that is empty or parses as JSON.
fn from_direktiv(status: StatusCode, headers: &HeaderMap, body: &str) -> bool {
    if status == StatusCode::NO_CONTENT {
        return false;
    }
    let essence = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase());
    if matches!(
        essence.as_deref(),
        Some("text/html" | "application/xhtml+xml")
    ) {
        return false;
    }
    let body = body.trim();
    body.is_empty() || serde_json::from_str::<serde_json::Value>(body).is_ok()
}

/// Classifies a failure before any answer arrived.
pub(crate) fn classify_transport(err: &reqwest::Error) -> Outcome {
    let reason = if err.is_timeout() {
        RetryReason::Timeout
    } else if err.is_connect() && is_tls_failure(err) {
        RetryReason::Tls
    } else if err.is_connect() {
        RetryReason::Connect
    } else {
        RetryReason::Transport
    };
    Outcome::Retryable {
        reason,
        status: None,
        retry_after: None,
        detail: error_chain(err),
    }
}

/// rustls reports handshake failures as `io::ErrorKind::InvalidData`
/// (wrapped by the connector in another `io::Error`), while plain TCP
/// failures carry kinds such as `ConnectionRefused`.
fn is_tls_failure(err: &reqwest::Error) -> bool {
    fn invalid_data(io: &std::io::Error) -> bool {
        io.kind() == std::io::ErrorKind::InvalidData
            || io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<std::io::Error>())
                .is_some_and(invalid_data)
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(invalid_data) {
            return true;
        }
        source = e.source();
    }
    false
}

/// The error and its causes on one line, without the URL (which may carry
/// credentials) and without repeats.
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            let mut text = r.to_string();
            if let Some(url) = r.url() {
                text = text.replace(&format!(" ({url})"), "");
            }
            text
        } else {
            e.to_string()
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    trim_body(&parts.join(": "))
}

/// `Retry-After` as delta-seconds or an HTTP date; a date in the past is zero.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whitespace-trimmed and cut to at most [`MAX_BODY_BYTES`] on a character boundary.
pub(crate) fn trim_body(body: &str) -> String {
    trim_text(body, MAX_BODY_BYTES)
}

/// Whitespace-trimmed and cut to at most `max` bytes on a character boundary.
fn trim_text(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn classify(code: u16, body: &str) -> Outcome {
        classify_response(
            StatusCode::from_u16(code).unwrap(),
            &HeaderMap::new(),
            body,
            SystemTime::now(),
        )
    }

    fn classify_typed(code: u16, content_type: &str, body: &str) -> Outcome {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        classify_response(
            StatusCode::from_u16(code).unwrap(),
            &headers,
            body,
            SystemTime::now(),
        )
    }

    #[test]
    fn a_2xx_is_delivered_only_with_a_body_direktiv_could_have_sent() {
        assert_eq!(classify(200, ""), Outcome::Delivered);
        assert_eq!(classify(200, " \n"), Outcome::Delivered);
        assert_eq!(classify(202, ""), Outcome::Delivered);
        assert_eq!(classify(200, "{}"), Outcome::Delivered);
        assert_eq!(
            classify_typed(200, "application/json; charset=utf-8", r#"{"ok":true}"#),
            Outcome::Delivered
        );
        assert_eq!(
            classify_typed(200, "text/plain; charset=utf-8", ""),
            Outcome::Delivered
        );

        let page = "<!DOCTYPE html><html><body>Sign in</body></html>";
        let login = classify_typed(200, "text/html; charset=utf-8", page);
        assert_eq!(
            login,
            Outcome::NotDirektiv {
                status: 200,
                content_type: Some("text/html; charset=utf-8".into()),
                body: page.into(),
            }
        );
        assert!(login.is_endpoint_refusal() && !login.is_acknowledged());
        assert_eq!(
            login.to_string(),
            "the endpoint answered a web page, not Direktiv (HTTP 200, text/html; \
             charset=utf-8): a login or proxy in the way?"
        );
        // A page without a content type, an empty page typed HTML, plain text.
        for outcome in [
            classify(200, page),
            classify_typed(200, "text/html", ""),
            classify_typed(201, "text/plain", "OK"),
            classify_typed(200, "application/json", "{\"truncated\": "),
        ] {
            assert!(
                matches!(outcome, Outcome::NotDirektiv { .. }),
                "{outcome:?}"
            );
            assert!(outcome.is_endpoint_refusal(), "{outcome:?}");
        }
    }

    #[test]
    fn a_204_is_a_proxy_because_no_direktiv_release_answers_it() {
        let outcome = classify(204, "");
        assert_eq!(
            outcome,
            Outcome::NotDirektiv {
                status: 204,
                content_type: None,
                body: String::new(),
            }
        );
        assert!(outcome.is_endpoint_refusal());
        assert_eq!(outcome.label(), "not_direktiv");
        assert!(outcome.to_string().contains("HTTP 204"), "{outcome}");
    }

    #[test]
    fn status_codes_map_to_outcomes() {
        assert_eq!(classify(200, ""), Outcome::Delivered);
        assert_eq!(classify(409, "conflict"), Outcome::AlreadyDelivered);
        assert_eq!(
            classify(
                400,
                r#"{"error":"Error appending CloudEvent to history: duplicate"}"#
            ),
            Outcome::AlreadyDelivered
        );
        assert_eq!(
            classify(400, "invalid cloudevent"),
            Outcome::Permanent {
                status: 400,
                body: "invalid cloudevent".into()
            }
        );
        for code in [401, 403, 404, 413, 415, 422, 301] {
            assert!(classify(code, "").is_permanent(), "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(classify(code, "").is_retryable(), "{code}");
        }
    }

    #[test]
    fn only_401_and_403_are_refusals_of_the_token() {
        for code in [401, 403] {
            assert!(classify(code, "").is_auth_refusal(), "{code}");
        }
        for code in [200, 400, 404, 407, 409, 415, 500] {
            assert!(!classify(code, "").is_auth_refusal(), "{code}");
        }
    }

    #[test]
    fn endpoint_refusals_concern_every_event_and_event_refusals_only_one() {
        for code in [300, 301, 302, 307, 308, 401, 403, 404, 405, 407, 415] {
            assert!(classify(code, "").is_endpoint_refusal(), "{code}");
        }
        for code in [200, 202, 400, 402, 406, 409, 410, 413, 422, 429, 500, 503] {
            assert!(!classify(code, "").is_endpoint_refusal(), "{code}");
        }
        let unsendable = Outcome::Unsendable {
            reason: "not JSON".into(),
        };
        assert!(!unsendable.is_endpoint_refusal());
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static(" 120 "));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));

        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        headers.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));

        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        headers.insert("retry-after", HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));

        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(400); // 800 bytes
        let trimmed = trim_body(&body);
        assert!(trimmed.len() <= MAX_BODY_BYTES + '…'.len_utf8());
        assert!(trimmed.ends_with('…'));
        assert_eq!(trim_body("  short \n"), "short");
    }

    #[test]
    fn display_is_one_readable_line() {
        let outcome = Outcome::Retryable {
            reason: RetryReason::Status,
            status: Some(429),
            retry_after: Some(Duration::from_secs(7)),
            detail: "slow down".into(),
        };
        assert_eq!(
            outcome.to_string(),
            "retryable (status, HTTP 429, retry after 7s): slow down"
        );
        assert_eq!(
            Outcome::Permanent {
                status: 401,
                body: "unauthorized".into()
            }
            .to_string(),
            "rejected (HTTP 401): unauthorized"
        );
    }
}
