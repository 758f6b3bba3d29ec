//! The `direktiv` section: where events are delivered, with which token in
//! which header, over which TLS, and how they are named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use direktiv_broadcast::{Auth, AuthHeader};
use metal_cloudevents::MapOptions;

use super::secrets::{DIREKTIV_TOKEN_ENV, TokenSource};
use super::section::Field;
use super::tree::{Node, Value};
use super::urls::plain_http_warning;
use super::walker::Walker;
use crate::settings::DirektivSettings;
use crate::small_file;

/// The default of `direktiv.poisonAfter`.
const DEFAULT_POISON_AFTER: Duration = Duration::from_secs(15 * 60);

/// A CA file larger than this is refused (the whole Mozilla bundle is about
/// 220 KB).
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

impl Walker<'_> {
    pub(super) fn direktiv(&mut self, node: Option<&Node>) -> Option<DirektivSettings> {
        const EXAMPLE: &str = "https://direktiv.example.com/api/namespaces/ops/broadcast";
        let mut section = self.open("direktiv", node);
        let endpoint = section.get("endpoint");
        let token = section.get("token");
        let token_file = section.get("tokenFile");
        let apikey = section.get("apikey");
        let auth_header = section.get("authHeader");
        let insecure_skip_verify = section.get("insecureSkipVerify");
        let ca_file = section.get("caFile");
        let timeout = section.get("timeout");
        let concurrency = section.get("concurrency");
        let max_retries = section.get("maxRetries");
        let poison_after = section.get("poisonAfter");
        let event_on_error = section.get("event-on-error");
        let error_event_interval = section.get("errorEventInterval");
        let type_prefix = section.get("typePrefix");
        let source_prefix = section.get("sourcePrefix");
        self.close(section);

        let url = match endpoint.node {
            None => {
                self.problem(
                    &endpoint.path,
                    0,
                    format!(
                        "is missing: set it to the namespace's broadcast URL, e.g. `{EXAMPLE}`"
                    ),
                );
                None
            }
            Some(n) if n.value == Value::Null => {
                self.problem(
                    &endpoint.path,
                    n.line,
                    format!("is empty: set it to the namespace's broadcast URL, e.g. `{EXAMPLE}`"),
                );
                None
            }
            Some(_) => self.http_url(
                &endpoint,
                EXAMPLE,
                &format!(
                    "give the Direktiv token in `direktiv.token`, `direktiv.tokenFile` or \
                     {DIREKTIV_TOKEN_ENV}"
                ),
            ),
        };

        let header = self.auth_header(&auth_header);
        let secret = self.secret(DIREKTIV_TOKEN_ENV, &token_file, &token);
        let key = self.optional_string(&apikey);
        let (token, source) = match secret {
            Ok(Some((token, source))) => {
                if key.is_some() {
                    self.warnings.push(
                        "direktiv.apikey is ignored because a Direktiv token is set (token, \
                         tokenFile or DIREKTIV_TOKEN)"
                            .to_owned(),
                    );
                }
                (Some(token), Some(source))
            }
            Ok(None) => match key {
                Some(key) => {
                    if self.check_secret(&apikey.path, apikey.line(), &key, "the value") {
                        (Some(key.into()), Some(TokenSource::ApiKey))
                    } else {
                        (None, None)
                    }
                }
                None => (None, None),
            },
            Err(()) => (None, None),
        };
        let auth_headers = match (header, source) {
            (Some(header), _) => vec![header],
            (None, Some(TokenSource::ApiKey)) => vec![AuthHeader::ApiKey],
            (None, _) => Auth::DEFAULT_HEADERS.to_vec(),
        };
        if token.is_none() && auth_header.node.is_some_and(|n| n.value != Value::Null) {
            self.warnings.push(
                "direktiv.authHeader is set but there is no Direktiv token: no auth header will \
                 be sent"
                    .to_owned(),
            );
        }

        let insecure_skip_verify = self.boolean(&insecure_skip_verify, false);
        let ca_file = self.ca_file(&ca_file);
        if insecure_skip_verify && ca_file.is_some() {
            self.warnings.push(
                "direktiv.caFile has no effect while direktiv.insecureSkipVerify is true"
                    .to_owned(),
            );
        }
        if token.is_some()
            && let Some(warning) = url
                .as_ref()
                .and_then(|url| plain_http_warning(&endpoint.path, url, "Direktiv token"))
        {
            self.warnings.push(warning);
        }
        let timeout = self.duration(&timeout, Duration::from_secs(10), false);
        let concurrency = self.integer(&concurrency, 8, 1, 256);
        let max_retries = self.integer(&max_retries, 5, 0, 100);
        let poison_after = self.poison_after(&poison_after);
        let event_on_error = self.boolean(&event_on_error, false);
        let error_event_interval =
            self.duration(&error_event_interval, Duration::from_secs(300), false);
        let map_options = self.map_options(&type_prefix, &source_prefix);

        Some(DirektivSettings {
            endpoint: url?,
            token,
            auth_headers,
            insecure_skip_verify,
            ca_file,
            timeout,
            concurrency: concurrency as usize,
            max_retries,
            poison_after,
            event_on_error,
            error_event_interval,
            map_options,
        })
    }

    /// `direktiv.poisonAfter`: `0` (never), or from 10 s to 24 h. Shorter,
    /// one slow answer would dead-letter an event that a retry delivers;
    /// longer, a device's events wait behind a poison event for more than
    /// a day.
    fn poison_after(&mut self, field: &Field<'_>) -> Option<Duration> {
        const MIN: Duration = Duration::from_secs(10);
        const MAX: Duration = Duration::from_secs(24 * 60 * 60);
        let value = self.duration(field, DEFAULT_POISON_AFTER, true);
        if value.is_zero() {
            return None;
        }
        if !(MIN..=MAX).contains(&value) {
            self.problem(
                &field.path,
                field.line(),
                format!(
                    "{} is outside 10s to 24h: an event that fails while later events of its \
                     device wait is kept as a dead letter after this long (`0` never keeps it; \
                     the default is 15m)",
                    super::units::format_duration(value)
                ),
            );
            return Some(DEFAULT_POISON_AFTER);
        }
        Some(value)
    }

    /// `direktiv.typePrefix` and `direktiv.sourcePrefix`: checked once here so
    /// that every event with an id and a type maps.
    fn map_options(&mut self, type_prefix: &Field<'_>, source_prefix: &Field<'_>) -> MapOptions {
        let mut options = MapOptions::default();
        if let Some(prefix) = self.optional_string(type_prefix) {
            if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.problem(
                    &type_prefix.path,
                    type_prefix.line(),
                    format!(
                        "`{}` holds a space or a control character: a CloudEvent type prefix \
                         is one word such as `com.example.`",
                        prefix.escape_debug()
                    ),
                );
            } else {
                options.type_prefix = Some(prefix);
            }
        }
        if let Some(prefix) = self.optional_string(source_prefix) {
            let default = std::mem::replace(&mut options.source_prefix, prefix);
            if let Err(error) = options.validate() {
                options.source_prefix = default;
                self.problem(
                    &source_prefix.path,
                    source_prefix.line(),
                    format!(
                        "{error}: write a URI path such as `{}` or a URI such as \
                         `https://example.com/equinix` (encode other characters as %XX)",
                        metal_cloudevents::DEFAULT_SOURCE_PREFIX
                    ),
                );
            }
        }
        options
    }

    fn auth_header(&mut self, field: &Field<'_>) -> Option<AuthHeader> {
        let text = self.optional_string(field)?;
        let header = match text.to_ascii_lowercase().as_str() {
            "direktiv-token" => AuthHeader::DirektivToken,
            "apikey" => AuthHeader::ApiKey,
            "direktiv-api-key" => AuthHeader::DirektivApiKey,
            "authorization" | "bearer" => AuthHeader::Bearer,
            _ => {
                self.problem(
                    &field.path,
                    field.line(),
                    format!(
                        "unknown header `{text}`: use `Direktiv-Token`, `Direktiv-Api-Key`, \
                         `apikey` or `Authorization` (Bearer), or remove the key to send the \
                         token in both Direktiv-Token and Direktiv-Api-Key"
                    ),
                );
                return None;
            }
        };
        Some(header)
    }

    fn ca_file(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        let file = self.optional_string(field)?;
        let line = field.line();
        match small_file::read(Path::new(&file), MAX_CA_FILE_BYTES) {
            Ok(bytes)
                if bytes
                    .windows(27)
                    .any(|w| w == b"-----BEGIN CERTIFICATE-----") =>
            {
                Some(PathBuf::from(file))
            }
            Ok(_) => {
                self.problem(
                    &field.path,
                    line,
                    format!("`{file}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                );
                None
            }
            Err(err) => {
                self.problem(
                    &field.path,
                    line,
                    format!("`{file}` {err}: give the path of a PEM bundle"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use direktiv_broadcast::AuthHeader;
    use metal_cloudevents::MapOptions;
    use secrecy::ExposeSecret;

    use super::super::tests::{MINIMAL, load, minimal_with, problems};

    #[test]
    fn poison_after_is_15m_by_default_0_for_never_and_otherwise_10s_to_24h() {
        let poison_after = |yaml: &str| load(yaml).unwrap().settings.direktiv.poison_after;
        assert_eq!(
            poison_after(MINIMAL),
            Some(std::time::Duration::from_secs(900))
        );
        assert_eq!(
            poison_after(&minimal_with("direktiv", "poisonAfter: 20s")),
            Some(std::time::Duration::from_secs(20))
        );
        assert_eq!(
            poison_after(&minimal_with("direktiv", "poisonAfter: 0s")),
            None
        );
        assert_eq!(
            poison_after(&minimal_with("direktiv", "poisonAfter: 24h")),
            Some(std::time::Duration::from_secs(86_400))
        );
        for bad in ["9s", "500ms", "25h"] {
            let found = problems(&minimal_with("direktiv", &format!("poisonAfter: {bad}")));
            assert_eq!(
                found,
                [format!(
                    "direktiv.poisonAfter (line 5): {bad} is outside 10s to 24h: an event that \
                     fails while later events of its device wait is kept as a dead letter after \
                     this long (`0` never keeps it; the default is 15m)"
                )]
            );
        }
        let found = problems(&minimal_with("direktiv", "poisonAfter: 15"));
        assert!(found[0].contains("a bare number has no unit"), "{found:?}");
    }

    #[test]
    fn apikey_alone_is_sent_as_apikey_unless_auth_header_says_otherwise() {
        let yaml = minimal_with("direktiv", "apikey: k1");
        let d = load(&yaml).unwrap().settings.direktiv;
        assert_eq!(d.token.unwrap().expose_secret(), "k1");
        assert_eq!(d.auth_headers, [AuthHeader::ApiKey]);

        let yaml = minimal_with(
            "direktiv",
            "apikey: k1\n  token: \"\"\n  authHeader: Direktiv-Api-Key",
        );
        let d = load(&yaml).unwrap().settings.direktiv;
        assert_eq!(d.token.unwrap().expose_secret(), "k1");
        assert_eq!(d.auth_headers, [AuthHeader::DirektivApiKey]);
    }

    #[test]
    fn type_and_source_prefixes_reach_the_mapper_validated() {
        let d = load(&minimal_with(
            "direktiv",
            "typePrefix: com.example.\n  sourcePrefix: https://example.com/metal/",
        ))
        .unwrap()
        .settings
        .direktiv;
        assert_eq!(d.map_options.type_prefix.as_deref(), Some("com.example."));
        assert_eq!(d.map_options.source_prefix, "https://example.com/metal/");
        // Empty means unset, as for the other string keys.
        let d = load(&minimal_with(
            "direktiv",
            "typePrefix: \"\"\n  sourcePrefix: \"\"",
        ))
        .unwrap()
        .settings
        .direktiv;
        assert_eq!(d.map_options, MapOptions::default());

        let found = problems(&minimal_with("direktiv", "sourcePrefix: \"a b\""));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("direktiv.sourcePrefix (line 5): the source prefix \"a b\""),
            "{found:?}"
        );
    }

    #[test]
    fn auth_header_names_exactly_one_header() {
        for (value, expected) in [
            ("Direktiv-Token", AuthHeader::DirektivToken),
            ("direktiv-api-key", AuthHeader::DirektivApiKey),
            ("APIKEY", AuthHeader::ApiKey),
            ("Authorization", AuthHeader::Bearer),
        ] {
            let yaml = minimal_with("direktiv", &format!("token: t\n  authHeader: {value}"));
            let d = load(&yaml).unwrap().settings.direktiv;
            assert_eq!(d.auth_headers, [expected], "{value}");
        }
    }
}
