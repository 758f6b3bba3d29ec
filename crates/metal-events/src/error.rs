//! The crate's one error type, [`Error`], and how an HTTP failure becomes one.
//!
//! Every error names the request it came from by its URL path and query (never
//! the host's credentials: the token travels in a header and this crate never
//! puts it in an error, its `Display` or its `Debug`). An error body that
//! echoes the token is kept as the API sent it ([`Error::Status`]): scrub it
//! before logging or forwarding it.

use std::time::Duration;

use reqwest::StatusCode;

use crate::models::ErrorBody;
use crate::rate_limit::RateLimit;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most bytes of a response body an [`Error::Status`] keeps.
pub const MAX_BODY_BYTES: usize = 512;

/// Everything that can go wrong talking to the Metal API.
///
/// Use [`Error::is_retryable`] and [`Error::retry_after`] to decide on a
/// retry rather than matching on messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be sent or its answer not read: connection
    /// refused or reset, DNS, TLS, a body cut short.
    #[error("request to {path} failed: {source}")]
    Transport {
        /// The URL path and query of the request.
        path: String,
        /// What reqwest reported (without the URL).
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer arrived within the configured timeout.
    #[error("request to {path} timed out")]
    Timeout {
        /// The URL path and query of the request.
        path: String,
        /// What reqwest reported (without the URL).
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error status other than 429.
    #[error("{path} answered {status}{}", describe(message.as_deref(), body))]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The URL path and query of the request.
        path: String,
        /// The API's message, from `{"error": ...}` or `{"errors": [...]}`.
        message: Option<String>,
        /// The response body, trimmed to [`MAX_BODY_BYTES`], HTML collapsed to text.
        body: String,
    },
    /// The API answered 429 Too Many Requests.
    #[error("{path} answered 429 Too Many Requests{}", describe_wait(*retry_after))]
    RateLimited {
        /// The URL path and query of the request.
        path: String,
        /// How long to wait: from `Retry-After` (seconds or HTTP date), else
        /// from `X-RateLimit-Reset`, else unknown.
        retry_after: Option<Duration>,
        /// The rate-limit headers of the 429 answer, when it carried any.
        rate_limit: Option<RateLimit>,
        /// The API's message, when the body carried one.
        message: Option<String>,
    },
    /// The answer was not the JSON this client expected.
    #[error("could not decode the answer of {path} at JSON path `{json_path}`: {source}")]
    Decode {
        /// The URL path and query of the request.
        path: String,
        /// Where in the document decoding failed, such as `events[3]`
        /// (`.` when it failed at the top).
        json_path: String,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
    /// A successful answer's body was larger than the client's cap
    /// ([`ClientBuilder::max_response_size`](crate::ClientBuilder::max_response_size)):
    /// refused from its `Content-Length`, or as soon as it grew past the cap;
    /// no more of it was read. Not retryable: the same request would get the
    /// same answer.
    #[error("the answer of {path} is larger than the limit of {limit} bytes; not read further")]
    ResponseTooLarge {
        /// The URL path and query of the request.
        path: String,
        /// The cap, in bytes.
        limit: u64,
    },
    /// A URL could not be built or parsed: a bad base URL, or a `meta.next`
    /// link that is not a URL.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The offending URL or link.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The server pointed pagination back at a page already read; reading on
    /// would never end.
    #[error("pagination loop: {path} was already read by this pager")]
    PaginationLoop {
        /// The URL path and query of the repeated page.
        path: String,
    },
    /// A list had more pages than the caller reads at most
    /// ([`Pager::collect_complete`](crate::Pager::collect_complete)): what
    /// was read is not the whole list.
    #[error(
        "{path} has more than {max_pages} pages: the list was not read to its end (a larger \
         page size reads it in fewer pages)"
    )]
    TooManyPages {
        /// The URL path of the list's last page read.
        path: String,
        /// The cap.
        max_pages: usize,
    },
    /// The token cannot be sent as a header value (it holds control or
    /// non-ASCII characters). The token itself is never shown.
    #[error("the API token cannot be sent as a header value")]
    InvalidToken,
    /// The HTTP client could not be built (TLS back end, bad settings).
    #[error("could not build the HTTP client: {source}")]
    Build {
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
}

impl Error {
    /// Whether the same request may succeed later: transport errors,
    /// timeouts, 408, 429 and 5xx are; 401, 403, 404, 422, other 4xx,
    /// decode errors, answers too large, bad URLs and pagination loops are
    /// not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } | Self::RateLimited { .. } => true,
            Self::Status { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
            }
            Self::Decode { .. }
            | Self::ResponseTooLarge { .. }
            | Self::InvalidUrl { .. }
            | Self::PaginationLoop { .. }
            | Self::TooManyPages { .. }
            | Self::InvalidToken
            | Self::Build { .. } => false,
        }
    }

    /// How long the server asked to wait before retrying (429 only).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status of an error answer ([`Error::Status`] or
    /// [`Error::RateLimited`]); `None` for every other error, including a
    /// successful answer that could not be used ([`Error::Decode`],
    /// [`Error::ResponseTooLarge`]).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(StatusCode::TOO_MANY_REQUESTS),
            _ => None,
        }
    }

    /// Whether the API answered 404: the resource is gone (a deleted device
    /// or project), so the caller's inventory is stale.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// Whether the API answered 401 or 403: the token is wrong, expired or
    /// lacks access.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self.status(),
            Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        )
    }

    /// Builds the error for a failed `reqwest` call, dropping the URL reqwest
    /// keeps (the path is named instead).
    pub(crate) fn from_reqwest(path: &str, source: reqwest::Error) -> Self {
        let path = path.to_owned();
        if source.is_timeout() {
            Self::Timeout {
                path,
                source: source.without_url(),
            }
        } else {
            Self::Transport {
                path,
                source: source.without_url(),
            }
        }
    }

    /// Builds the error for a non-success status from its body.
    pub(crate) fn from_status(
        status: StatusCode,
        path: &str,
        body: &[u8],
        retry_after: Option<Duration>,
        rate_limit: Option<RateLimit>,
    ) -> Self {
        let message = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .and_then(|b| b.message())
            .map(|m| trim_text(&m));
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Self::RateLimited {
                path: path.to_owned(),
                retry_after,
                rate_limit,
                message,
            };
        }
        Self::Status {
            status,
            path: path.to_owned(),
            message,
            body: trim_body(body),
        }
    }
}

fn describe(message: Option<&str>, body: &str) -> String {
    match message {
        Some(message) => format!(": {message}"),
        None if !body.is_empty() => format!(": {body}"),
        None => String::new(),
    }
}

fn describe_wait(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(" (retry after {}s)", wait.as_secs_f64().ceil()),
        None => String::new(),
    }
}

/// Makes a body fit for an error message: HTML tags dropped, whitespace runs
/// collapsed to one space, cut to [`MAX_BODY_BYTES`] on a character boundary.
pub(crate) fn trim_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    // JSON and plain text do not start with `<`; HTML and XML pages do.
    let looks_html = trimmed.starts_with('<');
    if looks_html {
        trim_text(&strip_tags(trimmed))
    } else {
        trim_text(trimmed)
    }
}

/// Collapses whitespace and cuts to [`MAX_BODY_BYTES`].
fn trim_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_BODY_BYTES + 4));
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > MAX_BODY_BYTES {
            break;
        }
    }
    if out.len() > MAX_BODY_BYTES {
        let mut cut = MAX_BODY_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Drops everything between `<` and `>`, and the contents of `<script>` and
/// `<style>` elements, leaving the text a browser would show.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len().min(4096));
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        out.push(' ');
        let after = &rest[start..];
        let lower_head = after.get(..7).unwrap_or(after).to_ascii_lowercase();
        let skip_until = if lower_head.starts_with("<script") {
            Some("</script")
        } else if lower_head.starts_with("<style") {
            Some("</style")
        } else {
            None
        };
        let after = match skip_until {
            Some(close) => match after.to_ascii_lowercase().find(close) {
                Some(at) => &after[at..],
                None => "",
            },
            None => after,
        };
        rest = match after.find('>') {
            Some(end) => &after[end + 1..],
            None => "",
        };
        if out.len() > MAX_BODY_BYTES * 4 {
            break;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_collapsed_to_its_text() {
        let html = b"<html>\r\n<head><title>502 Bad Gateway</title><style>body{x:1}</style></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        assert_eq!(trim_body(html), "502 Bad Gateway 502 Bad Gateway nginx");
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(1000);
        let trimmed = trim_body(body.as_bytes());
        assert!(trimmed.len() <= MAX_BODY_BYTES + '…'.len_utf8());
        assert!(trimmed.ends_with('…'));
    }

    #[test]
    fn plain_bodies_keep_their_text() {
        assert_eq!(trim_body(b"  upstream\n\n failed "), "upstream failed");
        assert_eq!(trim_body(b"a < b and c > d"), "a < b and c > d");
    }

    #[test]
    fn status_error_prefers_the_api_message() {
        let err = Error::from_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "/metal/v1/x",
            br#"{"errors": ["per_page is invalid", "page is invalid"]}"#,
            None,
            None,
        );
        assert_eq!(
            err.to_string(),
            "/metal/v1/x answered 422 Unprocessable Entity: per_page is invalid; page is invalid"
        );
        assert!(!err.is_retryable());
    }
}
