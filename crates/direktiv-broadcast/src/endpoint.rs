//! Building broadcast endpoint URLs from a Direktiv base URL and a namespace.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use crate::error::{Error, Result};

/// Everything but the RFC 3986 unreserved characters is encoded, so a
/// namespace is always exactly one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The two shapes of Direktiv's broadcast API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ApiGeneration {
    /// Direktiv v0.7 to v0.8.6: `POST /api/namespaces/{ns}/broadcast`.
    /// A repeated event id answers 409.
    #[default]
    V1,
    /// Direktiv v0.8.8 and later: `POST /api/v2/namespaces/{ns}/events/broadcast`.
    /// Structured and batch modes only; a repeated source and id answers 400
    /// with `Error appending CloudEvent to history`.
    V2,
}

impl ApiGeneration {
    /// The broadcast URL for `namespace` under `base`.
    ///
    /// `base` may end in a slash or not and may carry a path prefix (a
    /// reverse proxy's `/direktiv`); its query and fragment are dropped. The
    /// namespace is percent-encoded as one path segment.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedScheme`] when `base` is not http or https,
    /// [`Error::InvalidNamespace`] for an empty namespace, `.` or `..`.
    pub fn endpoint(self, base: &Url, namespace: &str) -> Result<Url> {
        check_scheme(base)?;
        if namespace.is_empty() || namespace == "." || namespace == ".." {
            return Err(Error::InvalidNamespace {
                namespace: namespace.to_owned(),
            });
        }
        let ns = utf8_percent_encode(namespace, SEGMENT);
        let prefix = base.path().trim_end_matches('/');
        let path = match self {
            Self::V1 => format!("{prefix}/api/namespaces/{ns}/broadcast"),
            Self::V2 => format!("{prefix}/api/v2/namespaces/{ns}/events/broadcast"),
        };
        let mut url = base.clone();
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        Ok(url)
    }
}

/// `{base}/api/namespaces/{ns}/broadcast` (Direktiv v0.7 to v0.8.6).
///
/// # Errors
///
/// As [`ApiGeneration::endpoint`].
pub fn endpoint_v1(base: &Url, namespace: &str) -> Result<Url> {
    ApiGeneration::V1.endpoint(base, namespace)
}

/// `{base}/api/v2/namespaces/{ns}/events/broadcast` (Direktiv v0.8.8 and later).
///
/// # Errors
///
/// As [`ApiGeneration::endpoint`].
pub fn endpoint_v2(base: &Url, namespace: &str) -> Result<Url> {
    ApiGeneration::V2.endpoint(base, namespace)
}

pub(crate) fn check_scheme(url: &Url) -> Result<()> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(Error::UnsupportedScheme {
            url: redacted(url),
            scheme: other.to_owned(),
        }),
    }
}

/// The URL without user, password or query, safe for logs and errors.
pub(crate) fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    // Both only fail for URLs that cannot have credentials; nothing to strip then.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        url.set_query(Some("redacted"));
    }
    url.set_fragment(None);
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn v1_and_v2_paths_from_a_bare_host() {
        let base = url("https://direktiv.example.com");
        assert_eq!(
            endpoint_v1(&base, "ops").unwrap().as_str(),
            "https://direktiv.example.com/api/namespaces/ops/broadcast"
        );
        assert_eq!(
            endpoint_v2(&base, "ops").unwrap().as_str(),
            "https://direktiv.example.com/api/v2/namespaces/ops/events/broadcast"
        );
    }

    #[test]
    fn trailing_slash_and_path_prefix_are_kept_once() {
        for base in ["http://h:8080/direktiv", "http://h:8080/direktiv/"] {
            assert_eq!(
                endpoint_v1(&url(base), "ops").unwrap().as_str(),
                "http://h:8080/direktiv/api/namespaces/ops/broadcast"
            );
            assert_eq!(
                endpoint_v2(&url(base), "ops").unwrap().as_str(),
                "http://h:8080/direktiv/api/v2/namespaces/ops/events/broadcast"
            );
        }
        assert_eq!(
            endpoint_v1(&url("http://h/?x=1#f"), "ops")
                .unwrap()
                .as_str(),
            "http://h/api/namespaces/ops/broadcast"
        );
    }

    #[test]
    fn namespace_is_one_encoded_segment() {
        let base = url("https://h/");
        let v1 = endpoint_v1(&base, "my team/ops?").unwrap();
        assert_eq!(
            v1.as_str(),
            "https://h/api/namespaces/my%20team%2Fops%3F/broadcast"
        );
        let v2 = endpoint_v2(&base, "my team/ops?").unwrap();
        assert_eq!(
            v2.as_str(),
            "https://h/api/v2/namespaces/my%20team%2Fops%3F/events/broadcast"
        );
        let segments: Vec<_> = v2.path_segments().unwrap().collect();
        assert_eq!(segments.len(), 6, "{segments:?}");
    }

    #[test]
    fn bad_namespace_and_scheme_are_errors() {
        let base = url("https://h/");
        for ns in ["", ".", ".."] {
            assert!(matches!(
                endpoint_v1(&base, ns),
                Err(Error::InvalidNamespace { .. })
            ));
        }
        let err = endpoint_v2(&url("ftp://user:pw@h/"), "ops").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Direktiv URL ftp://h/ must use http or https, not ftp"
        );
    }

    #[test]
    fn redaction_drops_credentials_and_query() {
        assert_eq!(
            redacted(&url("https://me:pw@h/api?token=abc#x")),
            "https://h/api?redacted"
        );
    }
}
