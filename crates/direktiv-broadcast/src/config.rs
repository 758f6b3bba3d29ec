//! Settings for a [`Sink`](crate::Sink): endpoint, authentication, TLS and timeouts.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;
use secrecy::SecretString;
use url::Url;

use crate::error::Error;

/// Default time allowed to open a connection (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for a whole request, from connecting to reading the answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a [`Sink`](crate::Sink) needs to reach one Direktiv broadcast endpoint.
///
/// `Debug` never shows the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct SinkConfig {
    /// The full broadcast URL, e.g.
    /// `https://direktiv.example.com/api/namespaces/ops/broadcast`
    /// (see [`endpoint_v1`](crate::endpoint_v1) and [`endpoint_v2`](crate::endpoint_v2)).
    pub endpoint: Url,
    /// The token and the headers it travels in; `None` sends no authentication header.
    pub auth: Option<Auth>,
    /// A PEM file with extra CA certificates to trust, in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Dangerous; kept because the old
    /// receiver's configuration has it. Logged as a warning when the sink is built.
    pub insecure_skip_verify: bool,
    /// Time allowed to open a connection (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, including reading the answer.
    pub request_timeout: Duration,
}

impl SinkConfig {
    /// A configuration for `endpoint` with no authentication, system CAs,
    /// verification on and the default timeouts.
    pub fn new(endpoint: Url) -> Self {
        Self {
            endpoint,
            auth: None,
            ca_file: None,
            insecure_skip_verify: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The same configuration with `auth` set.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("endpoint", &crate::endpoint::redacted(&self.endpoint))
            .field("auth", &self.auth)
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A secret token and the headers that carry it.
///
/// [`Auth::new`] sends the token in both headers Direktiv has read over the
/// years, [`Auth::DEFAULT_HEADERS`], so one configuration works with every
/// release; [`Auth::with_header`] narrows it to one. Every header carries
/// the same value, marked sensitive (kept out of HTTP/2 header compression
/// tables and `Debug` output).
///
/// `Debug` shows the header names and `[REDACTED]` in place of the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct Auth {
    /// The headers that carry the token, each once, in the order given. An
    /// empty list sends no authentication header.
    pub headers: Vec<AuthHeader>,
    /// The token.
    pub token: SecretString,
}

impl Auth {
    /// The headers [`Auth::new`] uses: `Direktiv-Token` (what Direktiv read
    /// from 2022 to 2025) and `Direktiv-Api-Key` (what it reads since). Each
    /// release reads its own header and ignores the other.
    pub const DEFAULT_HEADERS: [AuthHeader; 2] =
        [AuthHeader::DirektivToken, AuthHeader::DirektivApiKey];

    /// A token sent in [`Auth::DEFAULT_HEADERS`], so that every Direktiv
    /// release since 2022 reads it.
    pub fn new(token: impl Into<String>) -> Self {
        Self::with_headers(Self::DEFAULT_HEADERS, token)
    }

    /// A token sent in `header` only.
    pub fn with_header(header: AuthHeader, token: impl Into<String>) -> Self {
        Self::with_headers([header], token)
    }

    /// A token sent in each of `headers`. A header named twice (also as
    /// [`AuthHeader::Custom`] with a known name) is sent once.
    pub fn with_headers(
        headers: impl IntoIterator<Item = AuthHeader>,
        token: impl Into<String>,
    ) -> Self {
        let mut unique: Vec<AuthHeader> = Vec::new();
        for header in headers {
            if !unique.iter().any(|h| h.name() == header.name()) {
                unique.push(header);
            }
        }
        Self {
            headers: unique,
            token: SecretString::from(token.into()),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("headers", &self.headers)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// An HTTP header that carries the token.
///
/// Direktiv read `apikey` in its early releases, `Direktiv-Token` from 2022
/// to 2025 (what the old Go receiver sent) and `Direktiv-Api-Key` since;
/// [`Auth::new`] sends both of the last two. It never reads `Authorization`;
/// [`AuthHeader::Bearer`] is for proxies in front of it.
///
/// Parsed from text case-insensitively: `direktiv-token`, `apikey`,
/// `direktiv-api-key`, `bearer` or `authorization` (both mean
/// `Authorization: Bearer <token>`), any other valid header name becomes
/// [`AuthHeader::Custom`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthHeader {
    /// `Direktiv-Token: <token>` (Direktiv 2022 to 2025).
    DirektivToken,
    /// `apikey: <token>`.
    ApiKey,
    /// `Direktiv-Api-Key: <token>` (Direktiv 2025 on).
    DirektivApiKey,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `<name>: <token>` for any other header.
    Custom(HeaderName),
}

impl AuthHeader {
    /// The header name sent on the wire.
    pub fn name(&self) -> HeaderName {
        match self {
            Self::DirektivToken => HeaderName::from_static("direktiv-token"),
            Self::ApiKey => HeaderName::from_static("apikey"),
            Self::DirektivApiKey => HeaderName::from_static("direktiv-api-key"),
            Self::Bearer => http::header::AUTHORIZATION,
            Self::Custom(name) => name.clone(),
        }
    }

    /// The text sent before the token: `"Bearer "` for [`AuthHeader::Bearer`],
    /// nothing otherwise.
    pub fn prefix(&self) -> &'static str {
        match self {
            Self::Bearer => "Bearer ",
            _ => "",
        }
    }
}

impl fmt::Display for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DirektivToken => f.write_str("Direktiv-Token"),
            Self::ApiKey => f.write_str("apikey"),
            Self::DirektivApiKey => f.write_str("Direktiv-Api-Key"),
            Self::Bearer => f.write_str("Authorization: Bearer"),
            Self::Custom(name) => f.write_str(name.as_str()),
        }
    }
}

impl FromStr for AuthHeader {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let lower = trimmed.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "direktiv-token" => Self::DirektivToken,
            "apikey" => Self::ApiKey,
            "direktiv-api-key" => Self::DirektivApiKey,
            "bearer" | "authorization" => Self::Bearer,
            _ => Self::Custom(HeaderName::from_str(&lower).map_err(|_| {
                Error::InvalidHeaderName {
                    name: trimmed.to_owned(),
                }
            })?),
        })
    }
}

/// Header names for people: `Direktiv-Token and Direktiv-Api-Key`.
///
/// ```
/// use direktiv_broadcast::{AuthHeader, header_names};
/// let both = [AuthHeader::DirektivToken, AuthHeader::DirektivApiKey];
/// assert_eq!(header_names(&both), "Direktiv-Token and Direktiv-Api-Key");
/// ```
pub fn header_names(headers: &[AuthHeader]) -> String {
    let names: Vec<String> = headers.iter().map(ToString::to_string).collect();
    match names.split_last() {
        None => "no header".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_parse_case_insensitively() {
        for (text, expected) in [
            ("Direktiv-Token", AuthHeader::DirektivToken),
            ("DIREKTIV-TOKEN", AuthHeader::DirektivToken),
            ("apikey", AuthHeader::ApiKey),
            ("ApiKey", AuthHeader::ApiKey),
            ("direktiv-api-key", AuthHeader::DirektivApiKey),
            ("Bearer", AuthHeader::Bearer),
            ("Authorization", AuthHeader::Bearer),
            (
                "X-Gateway-Key",
                AuthHeader::Custom(HeaderName::from_static("x-gateway-key")),
            ),
        ] {
            assert_eq!(text.parse::<AuthHeader>().unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn an_invalid_header_name_is_an_error_naming_it() {
        let err = "not a header".parse::<AuthHeader>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"not a header\" is not a valid HTTP header name"
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let config =
            SinkConfig::new(Url::parse("https://d.example/api/namespaces/ops/broadcast").unwrap())
                .with_auth(Auth::with_header(AuthHeader::Bearer, "s3cr3t-t0ken"));
        let debug = format!("{config:?} {:#?}", config.auth);
        assert!(!debug.contains("s3cr3t-t0ken"), "{debug}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
        assert!(debug.contains("Bearer"), "{debug}");

        let both = format!("{:?}", Auth::new("s3cr3t-t0ken"));
        assert!(!both.contains("s3cr3t-t0ken"), "{both}");
        assert!(
            both.contains("DirektivToken") && both.contains("DirektivApiKey"),
            "{both}"
        );
    }

    #[test]
    fn the_default_names_both_direktiv_headers_and_one_header_narrows_it() {
        assert_eq!(
            Auth::new("t").headers,
            [AuthHeader::DirektivToken, AuthHeader::DirektivApiKey]
        );
        assert_eq!(
            Auth::with_header(AuthHeader::ApiKey, "t").headers,
            [AuthHeader::ApiKey]
        );
        let custom = AuthHeader::Custom(HeaderName::from_static("direktiv-token"));
        assert_eq!(
            Auth::with_headers([AuthHeader::DirektivToken, custom], "t").headers,
            [AuthHeader::DirektivToken]
        );
    }
}
