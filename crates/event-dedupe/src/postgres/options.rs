//! [`PostgresOptions`]: the connection URL (libpq style, with `sslmode` and
//! `sslrootcert`), the schema and the organization, validated up front.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::postgres::tls::Verify;

/// The schema the receiver's tables live in unless configured otherwise.
pub const DEFAULT_SCHEMA: &str = "equinix_receiver";

/// The deployment name unless set ([`PostgresOptions::with_deployment`]).
pub const DEFAULT_DEPLOYMENT: &str = "default";

/// The lease duration the connections' timeouts derive from unless set.
const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// Whether to encrypt (libpq's `sslmode` without the verification part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encrypt {
    /// `disable`: plain TCP.
    Never,
    /// `prefer` (libpq's default): TLS when the server offers it.
    IfOffered,
    /// `require`, `verify-ca`, `verify-full`: TLS or no connection.
    Always,
}

/// Where and as whom: parsed from a libpq-style URL
/// (`postgres://user:pass@host:port/db?sslmode=require`).
///
/// `sslmode` follows libpq: `disable`; `prefer` (the default: TLS when the
/// server offers it); `require` (TLS, the certificate not verified);
/// `verify-ca` (the chain verified); `verify-full` (the chain and the host
/// name). The roots are the file named by `sslrootcert` (PEM) when given,
/// else the system's. `Debug` and every error hide the password.
#[derive(Clone)]
pub struct PostgresOptions {
    url: SecretString,
    password: Option<SecretString>,
    pub(crate) config: tokio_postgres::Config,
    pub(crate) encrypt: Encrypt,
    pub(crate) verify: Verify,
    pub(crate) root_cert: Option<PathBuf>,
    schema: String,
    organization_id: String,
    deployment: String,
    settings: Option<String>,
    connect_timeout: Duration,
    lease_duration: Duration,
    application_name: Option<String>,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.redacted_url())
            .field("encrypt", &self.encrypt)
            .field("verify", &self.verify)
            .field("root_cert", &self.root_cert)
            .field("schema", &self.schema)
            .field("organization_id", &self.organization_id)
            .field("deployment", &self.deployment)
            .field("settings", &self.settings)
            .field("connect_timeout", &self.connect_timeout)
            .field("lease_duration", &self.lease_duration)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl PostgresOptions {
    /// Options for `organization_id`'s state in the database at `url`, in the
    /// schema [`DEFAULT_SCHEMA`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] naming what is wrong with the URL (never
    /// showing its password).
    pub fn new(url: SecretString, organization_id: impl Into<String>) -> Result<Self> {
        let organization_id = organization_id.into();
        if organization_id.trim().is_empty() {
            return Err(invalid("the organization id is empty"));
        }
        let password = password_of(url.expose_secret());
        let scrub = |text: String| scrub_with(password.as_ref(), &text);
        let parsed = split_url(url.expose_secret()).map_err(|e| invalid(&scrub(e)))?;
        let config = tokio_postgres::Config::from_str(&parsed.rest)
            .map_err(|e| invalid(&scrub(format!("the URL: {e}"))))?;
        if config.get_hosts().is_empty() {
            return Err(invalid("the URL names no host"));
        }
        let connect_timeout = Duration::from_secs(10);
        Ok(Self {
            url,
            password,
            config,
            encrypt: parsed.encrypt,
            verify: parsed.verify,
            root_cert: parsed.root_cert,
            schema: DEFAULT_SCHEMA.to_owned(),
            organization_id,
            deployment: DEFAULT_DEPLOYMENT.to_owned(),
            settings: None,
            connect_timeout,
            lease_duration: DEFAULT_LEASE_DURATION,
            application_name: None,
        })
    }

    /// The same options with the tables in `schema`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] when `schema` is not a plain lower-case
    /// identifier (letters, digits, `_`, at most 63 bytes, not starting with a
    /// digit or `pg_`).
    pub fn with_schema(mut self, schema: impl Into<String>) -> Result<Self> {
        let schema = schema.into();
        let plain = !schema.is_empty()
            && schema.len() <= 63
            && !schema.starts_with("pg_")
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(invalid(&format!(
                "schema {schema:?} is not a plain identifier (lower-case letters, digits and _, \
                 at most 63 bytes, not starting with a digit or pg_)"
            )));
        }
        self.schema = schema;
        Ok(self)
    }

    /// The same options for the deployment `name` of the organization:
    /// the state and the lease are keyed by organization *and* deployment,
    /// so two deployments of one organization on one database (production
    /// and staging) each keep their own, and the replicas of one deployment
    /// share them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] when `name` is empty, longer than 200 bytes
    /// or holds a control character.
    pub fn with_deployment(mut self, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(invalid(&format!(
                "deployment name {name:?} must be 1 to 200 bytes without control characters"
            )));
        }
        self.deployment = name;
        Ok(self)
    }

    /// The same options with `settings` describing what this replica
    /// delivers (where to, which lists, which event types). It is written
    /// into the lease row at acquire; a replica of the same deployment whose
    /// description differs does not take the lease while that holder renews
    /// it, nor for a lease after it expired, and reports
    /// [`LeaderEvent::SettingsDiffer`](crate::postgres::LeaderEvent::SettingsDiffer)
    /// instead of splitting the stream. A released lease (a rolling update)
    /// goes to any replica at once.
    #[must_use]
    pub fn with_settings(mut self, settings: impl Into<String>) -> Self {
        self.settings = Some(settings.into());
        self
    }

    /// What this replica delivers, compared between replicas.
    pub fn settings(&self) -> Option<&str> {
        self.settings.as_deref()
    }

    /// The deployment the state and the lease belong to.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// The same options giving up a connection attempt (and any single
    /// request) after `timeout` (default 10 s).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The same options for leases of `lease_duration` (default 15 s): every
    /// connection's server-side timeouts derive from it, see
    /// [`PostgresOptions::lock_timeout`].
    #[must_use]
    pub fn with_lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = lease_duration;
        self
    }

    /// The same options naming each connection `name` in the server's
    /// `pg_stat_activity` (`application_name`, at most 63 bytes), unless the
    /// URL sets `application_name` itself.
    #[must_use]
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        let mut name: String = name.into();
        while name.len() > 63 {
            name.pop();
        }
        self.application_name = Some(name);
        self
    }

    /// The lease duration the timeouts derive from.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long a statement waits for a lock before the server cancels it
    /// (`lock_timeout`): a tenth of the lease, at least 100 ms. A standby's
    /// acquire and a leader's write never queue behind a lock for longer,
    /// so a locked table cannot pile backends up.
    pub fn lock_timeout(&self) -> Duration {
        (self.lease_duration / 10).max(Duration::from_millis(100))
    }

    /// How long a statement may run before the server cancels it
    /// (`statement_timeout`): half the lease, at least 1 s.
    pub fn statement_timeout(&self) -> Duration {
        (self.lease_duration / 2).max(Duration::from_secs(1))
    }

    /// How long a transaction may wait for this client before the server
    /// ends the session (`idle_in_transaction_session_timeout`): a third of
    /// the lease, at least 500 ms. Only the state's load and the migrations
    /// use a transaction of several round trips; no write does.
    pub fn idle_in_transaction_timeout(&self) -> Duration {
        (self.lease_duration / 3).max(Duration::from_millis(500))
    }

    /// The TCP keepalive idle time, on both ends: a third of the lease, at
    /// least 1 s; probes every second, three of them. A peer gone silent is
    /// noticed within about the lease.
    pub fn keepalive_idle(&self) -> Duration {
        (self.lease_duration / 3).max(Duration::from_secs(1))
    }

    /// How long sent data may stay unacknowledged before the connection is
    /// closed (`tcp_user_timeout`, on both ends): the lease, at least 2 s.
    pub fn tcp_user_timeout(&self) -> Duration {
        self.lease_duration.max(Duration::from_secs(2))
    }

    /// The `application_name` connections carry unless the URL sets one.
    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The organization whose state and lease these options address.
    pub fn organization_id(&self) -> &str {
        &self.organization_id
    }

    /// How long a connection attempt may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long one request may take before its connection is given up.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The URL with its password replaced by `[redacted]`, for messages.
    pub fn redacted_url(&self) -> String {
        self.scrub(self.url.expose_secret())
    }

    /// `text` with every occurrence of the password replaced.
    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub_with(self.password.as_ref(), text)
    }
}

fn invalid(reason: &str) -> Error {
    Error::InvalidOptions {
        reason: reason.to_owned(),
    }
}

/// `text` without the password (raw and percent-decoded). Passwords shorter
/// than 3 characters are not searched for (they would mangle every message
/// and can hardly be recognised in one).
fn scrub_with(password: Option<&SecretString>, text: &str) -> String {
    let Some(password) = password.map(ExposeSecret::expose_secret) else {
        return text.to_owned();
    };
    let mut text = text.to_owned();
    let decoded = percent_decode(password);
    for needle in [password, decoded.as_str()] {
        if needle.len() >= 3 {
            text = text.replace(needle, "[redacted]");
        }
    }
    text
}

/// The password of a URL's user info, raw (as written).
fn password_of(url: &str) -> Option<SecretString> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = &authority[..authority.rfind('@')?];
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| SecretString::from(password.to_owned()))
}

/// A URL with the parameters tokio-postgres does not know taken out.
struct SplitUrl {
    rest: String,
    encrypt: Encrypt,
    verify: Verify,
    root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL (tokio-postgres
/// knows `disable`, `prefer` and `require` only).
fn split_url(url: &str) -> std::result::Result<SplitUrl, String> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            "expected a URL such as postgres://user:password@host:5432/database?sslmode=require"
                .to_owned(),
        );
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut encrypt, mut verify, mut root_cert) = (Encrypt::IfOffered, Verify::Nothing, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                (encrypt, verify) = match percent_decode(value).as_str() {
                    "disable" => (Encrypt::Never, Verify::Nothing),
                    "allow" | "prefer" => (Encrypt::IfOffered, Verify::Nothing),
                    "require" => (Encrypt::Always, Verify::Nothing),
                    "verify-ca" => (Encrypt::Always, Verify::Chain),
                    "verify-full" => (Encrypt::Always, Verify::Full),
                    other => {
                        return Err(format!(
                            "sslmode {other:?} is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        ));
                    }
                };
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value))),
            _ => kept.push(pair),
        }
    }
    let mode = match encrypt {
        Encrypt::Never => "disable",
        Encrypt::IfOffered => "prefer",
        Encrypt::Always => "require",
    };
    kept.push(match mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    Ok(SplitUrl {
        rest: format!("{base}?{}", kept.join("&")),
        encrypt,
        verify,
        root_cert,
    })
}

/// `%XX` decoded (invalid escapes kept as written).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Result<PostgresOptions> {
        PostgresOptions::new(SecretString::from(url.to_owned()), "org")
    }

    #[test]
    fn sslmodes_follow_libpq() {
        let o = options("postgres://u:p4ss@db:5432/x").unwrap();
        assert_eq!((o.encrypt, o.verify), (Encrypt::IfOffered, Verify::Nothing));
        let o = options("postgres://u:p4ss@db/x?sslmode=require").unwrap();
        assert_eq!((o.encrypt, o.verify), (Encrypt::Always, Verify::Nothing));
        let o = options("postgresql://u@db/x?sslmode=verify-full&sslrootcert=%2Fca.pem").unwrap();
        assert_eq!((o.encrypt, o.verify), (Encrypt::Always, Verify::Full));
        assert_eq!(o.root_cert, Some(PathBuf::from("/ca.pem")));
        let o = options("postgres://u@db/x?sslmode=disable&application_name=r").unwrap();
        assert_eq!(o.encrypt, Encrypt::Never);
        assert_eq!(o.config.get_application_name(), Some("r"));
    }

    #[test]
    fn errors_name_the_problem_never_the_password() {
        for url in [
            "postgres://user:s3cret-pw@db/x?sslmode=maybe",
            "postgres://user:s3cret-pw@db/x?nosuchoption=1",
            "mysql://user:s3cret-pw@db/x",
        ] {
            let err = options(url).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{url}: {err}");
            assert!(
                err.starts_with("invalid PostgreSQL options"),
                "{url}: {err}"
            );
        }
        let err = options("postgres://user:pw@db/x?sslmode=maybe").unwrap_err();
        assert!(err.to_string().contains("sslmode \"maybe\""), "{err}");
        let o = options("postgres://user:s3cret-pw@db/x").unwrap();
        assert!(!format!("{o:?}").contains("s3cret"), "{o:?}");
        assert_eq!(o.redacted_url(), "postgres://user:[redacted]@db/x");
        assert_eq!(
            o.scrub("password authentication failed for s3cret-pw"),
            "password authentication failed for [redacted]"
        );
    }

    #[test]
    fn schemas_are_plain_identifiers() {
        let o = options("postgres://u@db/x").unwrap();
        assert_eq!(o.schema(), DEFAULT_SCHEMA);
        assert!(o.clone().with_schema("receiver_2").is_ok());
        for bad in [
            "",
            "Upper",
            "a-b",
            "a\"b",
            "pg_catalog",
            "1st",
            &"x".repeat(64),
        ] {
            assert!(o.clone().with_schema(bad).is_err(), "{bad:?}");
        }
    }
}
