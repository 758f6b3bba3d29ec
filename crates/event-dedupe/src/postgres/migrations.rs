//! The versioned, idempotent schema migrations: run in one transaction under
//! an advisory lock per schema, each recorded in the table `migrations`.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::postgres::Inner;

/// The migrations, in order: (version, description, SQL with `{schema}` for
/// the quoted schema). Append only; never edit one that shipped.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "leases, states, sources and delivered ids per organization",
    r#"
CREATE TABLE {schema}.leases (
    organization_id text PRIMARY KEY,
    holder          text,
    generation      bigint NOT NULL DEFAULT 0,
    expires_at      timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at     timestamptz,
    renewed_at      timestamptz
);
CREATE TABLE {schema}.states (
    organization_id    text PRIMARY KEY,
    format_version     integer NOT NULL,
    baseline           timestamptz,
    created            timestamptz NOT NULL,
    horizon            timestamptz,
    written_generation bigint NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN {schema}.states.baseline IS 'NULL: every event counts (start point "all")';
CREATE TABLE {schema}.sources (
    organization_id text NOT NULL REFERENCES {schema}.states ON DELETE CASCADE,
    source          text NOT NULL,
    floor           timestamptz NOT NULL,
    advanced_at     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, source)
);
CREATE TABLE {schema}.delivered (
    organization_id text NOT NULL REFERENCES {schema}.states ON DELETE CASCADE,
    event_id        text NOT NULL,
    dated           boolean NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (organization_id, event_id)
);
COMMENT ON COLUMN {schema}.delivered.at IS 'created_at when dated, else when it was recorded';
CREATE INDEX delivered_by_time ON {schema}.delivered (organization_id, dated, at);
"#,
)];

/// The newest schema version this build knows.
pub(crate) const LATEST: i32 = MIGRATIONS.len() as i32;

/// Brings the schema up to date; a no-op when it is.
pub(crate) async fn run(inner: &Inner, client: &mut Client) -> Result<()> {
    let schema = inner.schema();
    let fail = |version: i32, error: &tokio_postgres::Error| Error::Migration {
        version,
        reason: inner.options.scrub(&super::describe(error)),
    };
    let timeout = inner.options.request_timeout() * 3;
    let work = async {
        let tx = client.transaction().await.map_err(|e| fail(0, &e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key(inner.options.schema())],
        )
        .await
        .map_err(|e| fail(0, &e))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.migrations (
                 version     integer PRIMARY KEY,
                 description text NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(|e| fail(0, &e))?;
        let applied: Vec<i32> = tx
            .query(&format!("SELECT version FROM {schema}.migrations"), &[])
            .await
            .map_err(|e| fail(0, &e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if let Some(newer) = applied.iter().copied().filter(|v| *v > LATEST).max() {
            return Err(Error::Migration {
                version: newer,
                reason: format!(
                    "schema {schema} was migrated to version {newer} by a newer receiver; this \
                     build knows versions up to {LATEST}: run the newer receiver"
                ),
            });
        }
        for (version, description, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(&sql.replace("{schema}", &schema))
                .await
                .map_err(|e| fail(*version, &e))?;
            tx.execute(
                &format!("INSERT INTO {schema}.migrations (version, description) VALUES ($1, $2)"),
                &[version, description],
            )
            .await
            .map_err(|e| fail(*version, &e))?;
            tracing::info!(schema = %inner.options.schema(), version, description, "applied a database migration");
        }
        tx.commit().await.map_err(|e| fail(0, &e))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(Error::Migration {
            version: 0,
            reason: format!("no answer within {timeout:?}"),
        }),
    }
}

/// The advisory lock of one schema's migrations: a stable hash (FNV-1a) of
/// its name, so different schemas migrate independently.
fn lock_key(schema: &str) -> i64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in "equinix-receiver migrations ".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}
