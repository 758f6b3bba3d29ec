//! What the PostgreSQL test binaries share: the test server
//! (`TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
//! skipped with a reason when none answers unless `CI` is set, and a schema
//! of each test's own.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use event_dedupe::postgres::{Database, PostgresOptions};
use secrecy::SecretString;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of one test's own on the test server, dropped by [`Pg::done`].
pub(crate) struct Pg {
    pub(crate) url: String,
    pub(crate) schema: String,
    pub(crate) admin: tokio_postgres::Client,
}

/// The test server, or `None` (after saying why) when none answers and `CI`
/// is not set.
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
pub(crate) async fn pg(test: &str) -> Option<Pg> {
    let url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    let (admin, connection) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => return skip(&url, &error.to_string()),
        Err(_) => return skip(&url, "no answer within 5 s"),
    };
    tokio::spawn(connection);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let schema = format!(
        "t_{test}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        Utc::now().timestamp_subsec_micros()
    );
    Some(Pg { url, schema, admin })
}

#[allow(clippy::print_stderr, reason = "a skipped test says why")]
fn skip(url: &str, why: &str) -> Option<Pg> {
    if std::env::var_os("CI").is_some() {
        panic!("no PostgreSQL at {url} ({why}); CI needs one (set TEST_POSTGRES_URL)");
    }
    eprintln!("skipped: no PostgreSQL at {url} ({why}) (set TEST_POSTGRES_URL)");
    None
}

impl Pg {
    pub(crate) fn options(&self, organization: &str) -> PostgresOptions {
        self.options_at(&self.url, organization)
    }

    pub(crate) fn options_at(&self, url: &str, organization: &str) -> PostgresOptions {
        PostgresOptions::new(SecretString::from(url.to_owned()), organization)
            .expect("options")
            .with_schema(&self.schema)
            .expect("schema")
            .with_connect_timeout(Duration::from_secs(2))
    }

    pub(crate) async fn db(&self, organization: &str) -> Database {
        Database::connect(&self.options(organization))
            .await
            .expect("connect")
    }

    pub(crate) async fn generation(&self, organization: &str) -> i64 {
        self.admin
            .query_one(
                &format!(
                    "SELECT generation FROM \"{}\".leases WHERE organization_id = $1",
                    self.schema
                ),
                &[&organization],
            )
            .await
            .expect("lease row")
            .get(0)
    }

    pub(crate) async fn done(self) {
        self.admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await
            .expect("drop schema");
    }
}

impl Pg {
    /// The test URL as `user`, on database `dbname` (the test's own when `None`).
    pub(crate) fn url_as(&self, user: &str, dbname: Option<&str>) -> String {
        let config: tokio_postgres::Config = self.url.parse().expect("TEST_POSTGRES_URL");
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            other => panic!("a TCP host: {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let dbname = dbname.unwrap_or(config.get_dbname().unwrap_or("test"));
        format!("postgres://{user}@{host}:{port}/{dbname}?sslmode=disable")
    }

    /// A login role of this test's own (no privilege beyond PUBLIC's),
    /// dropped with what it owns by [`Pg::drop_role`].
    pub(crate) async fn role(&self, label: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let role = format!(
            "r_{label}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.admin
            .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN"))
            .await
            .expect("create role");
        role
    }

    /// Drops `role` and what it owns in the test's database.
    pub(crate) async fn drop_role(&self, role: &str) {
        self.admin
            .batch_execute(&format!(
                "DROP OWNED BY \"{role}\" CASCADE; DROP ROLE \"{role}\""
            ))
            .await
            .expect("drop role");
    }
}
