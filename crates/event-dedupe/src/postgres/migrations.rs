//! The versioned, idempotent schema migrations: run in one transaction under
//! an advisory lock per schema, each recorded in the table `migrations`.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::postgres::Inner;

/// The migrations, in order: (version, description, SQL with `{schema}` for
/// the quoted schema). Append only; never edit one that shipped.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
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
    ),
    (
        2,
        "write_state: a fenced state write in one statement",
        r#"
CREATE FUNCTION {schema}.write_state(
    p_org text, p_generation bigint, p_holder text,
    p_create_format integer, p_created timestamptz,
    p_baseline timestamptz, p_horizon timestamptz,
    p_delete_sources text[],
    p_upsert_sources text[], p_upsert_floors timestamptz[], p_upsert_advanced timestamptz[],
    p_delete_undated text[], p_prune_below timestamptz,
    p_ids text[], p_dated boolean[], p_at timestamptz[],
    OUT o_generation bigint, OUT o_holder text)
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO {schema}.leases (organization_id) VALUES (p_org)
        ON CONFLICT (organization_id) DO NOTHING;
    SELECT l.generation, l.holder INTO o_generation, o_holder
        FROM {schema}.leases l WHERE l.organization_id = p_org FOR SHARE;
    IF o_generation <> p_generation OR o_holder IS DISTINCT FROM p_holder THEN
        RETURN;
    END IF;
    IF p_create_format IS NOT NULL THEN
        INSERT INTO {schema}.states
            (organization_id, format_version, baseline, created, horizon, written_generation)
            VALUES (p_org, p_create_format, p_baseline, p_created, p_horizon, p_generation);
    END IF;
    DELETE FROM {schema}.sources s
        WHERE s.organization_id = p_org AND s.source = ANY(p_delete_sources);
    INSERT INTO {schema}.sources AS s (organization_id, source, floor, advanced_at)
        SELECT p_org, u.* FROM unnest(p_upsert_sources, p_upsert_floors, p_upsert_advanced) AS u
        ON CONFLICT (organization_id, source) DO UPDATE
        SET floor = excluded.floor, advanced_at = excluded.advanced_at;
    DELETE FROM {schema}.delivered d
        WHERE d.organization_id = p_org AND NOT d.dated AND d.event_id = ANY(p_delete_undated);
    IF p_prune_below IS NOT NULL THEN
        DELETE FROM {schema}.delivered d
            WHERE d.organization_id = p_org AND d.dated AND d.at < p_prune_below;
    END IF;
    INSERT INTO {schema}.delivered AS d (organization_id, event_id, dated, at)
        SELECT p_org, u.* FROM unnest(p_ids, p_dated, p_at) AS u
        ON CONFLICT (organization_id, event_id) DO UPDATE
        SET dated = true, at = excluded.at
        WHERE excluded.dated AND NOT d.dated;
    UPDATE {schema}.states st
        SET baseline = p_baseline, horizon = p_horizon, written_generation = p_generation,
            updated_at = now()
        WHERE st.organization_id = p_org;
END
$fn$;
"#,
    ),
    (
        3,
        "deployments: state and lease keyed by organization and deployment name",
        r#"
ALTER TABLE {schema}.leases ADD COLUMN deployment text NOT NULL DEFAULT '';
ALTER TABLE {schema}.states ADD COLUMN deployment text NOT NULL DEFAULT '';
ALTER TABLE {schema}.sources ADD COLUMN deployment text NOT NULL DEFAULT '';
ALTER TABLE {schema}.delivered ADD COLUMN deployment text NOT NULL DEFAULT '';
COMMENT ON COLUMN {schema}.states.deployment IS
    'state.postgres.name; empty: written before deployments, claimed by the first to start';
ALTER TABLE {schema}.sources DROP CONSTRAINT sources_organization_id_fkey;
ALTER TABLE {schema}.delivered DROP CONSTRAINT delivered_organization_id_fkey;
ALTER TABLE {schema}.leases DROP CONSTRAINT leases_pkey,
    ADD PRIMARY KEY (organization_id, deployment);
ALTER TABLE {schema}.states DROP CONSTRAINT states_pkey,
    ADD PRIMARY KEY (organization_id, deployment);
ALTER TABLE {schema}.sources DROP CONSTRAINT sources_pkey,
    ADD PRIMARY KEY (organization_id, deployment, source),
    ADD FOREIGN KEY (organization_id, deployment) REFERENCES {schema}.states
        ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE {schema}.delivered DROP CONSTRAINT delivered_pkey,
    ADD PRIMARY KEY (organization_id, deployment, event_id),
    ADD FOREIGN KEY (organization_id, deployment) REFERENCES {schema}.states
        ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE {schema}.leases ALTER COLUMN deployment DROP DEFAULT;
ALTER TABLE {schema}.states ALTER COLUMN deployment DROP DEFAULT;
ALTER TABLE {schema}.sources ALTER COLUMN deployment DROP DEFAULT;
ALTER TABLE {schema}.delivered ALTER COLUMN deployment DROP DEFAULT;
DROP INDEX {schema}.delivered_by_time;
CREATE INDEX delivered_by_time ON {schema}.delivered (organization_id, deployment, dated, at);
DROP FUNCTION {schema}.write_state(text, bigint, text, integer, timestamptz, timestamptz,
    timestamptz, text[], text[], timestamptz[], timestamptz[], text[], timestamptz, text[],
    boolean[], timestamptz[]);
CREATE FUNCTION {schema}.write_state(
    p_org text, p_deployment text, p_generation bigint, p_holder text,
    p_create_format integer, p_created timestamptz,
    p_baseline timestamptz, p_horizon timestamptz,
    p_delete_sources text[],
    p_upsert_sources text[], p_upsert_floors timestamptz[], p_upsert_advanced timestamptz[],
    p_delete_undated text[], p_prune_below timestamptz,
    p_ids text[], p_dated boolean[], p_at timestamptz[],
    OUT o_generation bigint, OUT o_holder text)
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO {schema}.leases (organization_id, deployment) VALUES (p_org, p_deployment)
        ON CONFLICT (organization_id, deployment) DO NOTHING;
    SELECT l.generation, l.holder INTO o_generation, o_holder
        FROM {schema}.leases l
        WHERE l.organization_id = p_org AND l.deployment = p_deployment FOR SHARE;
    IF o_generation <> p_generation OR o_holder IS DISTINCT FROM p_holder THEN
        RETURN;
    END IF;
    IF p_create_format IS NOT NULL THEN
        INSERT INTO {schema}.states
            (organization_id, deployment, format_version, baseline, created, horizon,
             written_generation)
            VALUES (p_org, p_deployment, p_create_format, p_baseline, p_created, p_horizon,
                    p_generation);
    END IF;
    DELETE FROM {schema}.sources s
        WHERE s.organization_id = p_org AND s.deployment = p_deployment
          AND s.source = ANY(p_delete_sources);
    INSERT INTO {schema}.sources AS s (organization_id, deployment, source, floor, advanced_at)
        SELECT p_org, p_deployment, u.*
        FROM unnest(p_upsert_sources, p_upsert_floors, p_upsert_advanced) AS u
        ON CONFLICT (organization_id, deployment, source) DO UPDATE
        SET floor = excluded.floor, advanced_at = excluded.advanced_at;
    DELETE FROM {schema}.delivered d
        WHERE d.organization_id = p_org AND d.deployment = p_deployment AND NOT d.dated
          AND d.event_id = ANY(p_delete_undated);
    IF p_prune_below IS NOT NULL THEN
        DELETE FROM {schema}.delivered d
            WHERE d.organization_id = p_org AND d.deployment = p_deployment AND d.dated
              AND d.at < p_prune_below;
    END IF;
    INSERT INTO {schema}.delivered AS d (organization_id, deployment, event_id, dated, at)
        SELECT p_org, p_deployment, u.* FROM unnest(p_ids, p_dated, p_at) AS u
        ON CONFLICT (organization_id, deployment, event_id) DO UPDATE
        SET dated = true, at = excluded.at
        WHERE excluded.dated AND NOT d.dated;
    UPDATE {schema}.states st
        SET baseline = p_baseline, horizon = p_horizon, written_generation = p_generation,
            updated_at = now()
        WHERE st.organization_id = p_org AND st.deployment = p_deployment;
END
$fn$;
"#,
    ),
    (
        4,
        "leases: what the holder delivers, compared between replicas of a deployment",
        r#"
ALTER TABLE {schema}.leases ADD COLUMN settings text;
COMMENT ON COLUMN {schema}.leases.settings IS
    'what the holder delivers (endpoint, levels, event types); NULL: not compared';
"#,
    ),
];

/// The newest schema version this build knows.
pub(crate) const LATEST: i32 = MIGRATIONS.len() as i32;

/// Brings the schema up to date. At the current version it runs no DDL and
/// takes no lock, so a role with only DML on the tables starts; a privilege
/// the role lacks is named with the SQL that grants it ([`Error::Privilege`]).
pub(crate) async fn run(inner: &Inner, client: &mut Client) -> Result<()> {
    let timeout = inner.options.request_timeout() * 3;
    match tokio::time::timeout(timeout, migrate(inner, client, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Migration {
            version: 0,
            reason: format!("no answer within {timeout:?}"),
        }),
    }
}

/// What the role may do with the schema, read from the catalogs (which every
/// role may read) before anything needs a privilege.
struct Found {
    role: String,
    database: String,
    schema_exists: bool,
    create_on_database: bool,
    usage: bool,
    create_in_schema: bool,
    has_migrations: bool,
    select_migrations: bool,
}

async fn look(inner: &Inner, client: &Client) -> Result<Found> {
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text, n.oid IS NOT NULL,
                    has_database_privilege(current_database(), 'CREATE'),
                    n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'USAGE'),
                    n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE'),
                    c.oid IS NOT NULL,
                    c.oid IS NOT NULL AND has_table_privilege(c.oid, 'SELECT')
             FROM (SELECT 1) AS one
             LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1
             LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = 'migrations'",
            &[&inner.options.schema()],
        )
        .await
        .map_err(|e| fail(inner, 0, &e))?;
    Ok(Found {
        role: row.get(0),
        database: row.get(1),
        schema_exists: row.get(2),
        create_on_database: row.get(3),
        usage: row.get(4),
        create_in_schema: row.get(5),
        has_migrations: row.get(6),
        select_migrations: row.get(7),
    })
}

fn fail(inner: &Inner, version: i32, error: &tokio_postgres::Error) -> Error {
    Error::Migration {
        version,
        reason: inner.options.scrub(&super::describe(error)),
    }
}

/// A name quoted for SQL as `quote_ident` would (for the grant messages).
fn ident(name: &str) -> String {
    let plain = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

async fn migrate(inner: &Inner, client: &mut Client, timeout: std::time::Duration) -> Result<()> {
    let schema = inner.schema();
    let name = inner.options.schema();
    let found = look(inner, client).await?;
    let role = ident(&found.role);
    let privilege = |missing: String, grant: String| Error::Privilege {
        role: found.role.clone(),
        missing,
        grant,
    };
    if found.schema_exists && !found.usage {
        return Err(privilege(
            format!("USAGE on schema {name}"),
            format!("GRANT USAGE ON SCHEMA {schema} TO {role};"),
        ));
    }
    if found.has_migrations && !found.select_migrations {
        return Err(privilege(
            format!("SELECT, INSERT, UPDATE, DELETE on the tables of schema {name}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};"
            ),
        ));
    }
    let version = if found.has_migrations {
        client
            .query_one(
                &format!("SELECT max(version) FROM {schema}.migrations"),
                &[],
            )
            .await
            .map_err(|e| fail(inner, 0, &e))?
            .get::<_, Option<i32>>(0)
    } else {
        None
    };
    if let Some(newer) = version.filter(|v| *v > LATEST) {
        return Err(newer_receiver(&schema, newer));
    }
    if version != Some(LATEST) {
        let at = version.map_or_else(|| "no tables".to_owned(), |v| format!("version {v}"));
        if !found.schema_exists && !found.create_on_database {
            return Err(privilege(
                format!(
                    "CREATE on database {} to create schema {name}",
                    found.database
                ),
                format!(
                    "CREATE SCHEMA {schema} AUTHORIZATION {role}; (or GRANT CREATE ON DATABASE {} \
                     TO {role};)",
                    ident(&found.database)
                ),
            ));
        }
        if found.schema_exists && !found.create_in_schema {
            return Err(privilege(
                format!(
                    "CREATE on schema {name} to bring it from {at} to version {LATEST} (or run \
                     this receiver once as the schema's owner)"
                ),
                format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role};"),
            ));
        }
        apply(inner, client, timeout).await?;
    }
    check_tables(inner, client, &found.role).await
}

/// Runs the migrations not yet applied, in one transaction under the
/// schema's advisory lock (waiting for a replica that migrates meanwhile).
async fn apply(inner: &Inner, client: &mut Client, timeout: std::time::Duration) -> Result<()> {
    let schema = inner.schema();
    let tx = client.transaction().await.map_err(|e| fail(inner, 0, &e))?;
    // Another replica may be migrating: wait for it, longer than the
    // connection's lock_timeout allows.
    tx.batch_execute(&format!("SET LOCAL lock_timeout = {}", timeout.as_millis()))
        .await
        .map_err(|e| fail(inner, 0, &e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(inner.options.schema())],
    )
    .await
    .map_err(|e| fail(inner, 0, &e))?;
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[&inner.options.schema()],
        )
        .await
        .map_err(|e| fail(inner, 0, &e))?
        .get(0);
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(|e| fail(inner, 0, &e))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.migrations (
             version     integer PRIMARY KEY,
             description text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(|e| fail(inner, 0, &e))?;
    let applied: Vec<i32> = tx
        .query(&format!("SELECT version FROM {schema}.migrations"), &[])
        .await
        .map_err(|e| fail(inner, 0, &e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(newer) = applied.iter().copied().filter(|v| *v > LATEST).max() {
        return Err(newer_receiver(&schema, newer));
    }
    for (version, description, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(&sql.replace("{schema}", &schema))
            .await
            .map_err(|e| fail(inner, *version, &e))?;
        tx.execute(
            &format!("INSERT INTO {schema}.migrations (version, description) VALUES ($1, $2)"),
            &[version, description],
        )
        .await
        .map_err(|e| fail(inner, *version, &e))?;
        tracing::info!(schema = %inner.options.schema(), version, description, "applied a database migration");
    }
    tx.commit().await.map_err(|e| fail(inner, 0, &e))
}

fn newer_receiver(schema: &str, newer: i32) -> Error {
    Error::Migration {
        version: newer,
        reason: format!(
            "schema {schema} was migrated to version {newer} by a newer receiver; this build \
             knows versions up to {LATEST}: run the newer receiver"
        ),
    }
}

/// Gives the organization's state and lease written before deployments
/// existed (deployment `''`, migration 3) to this deployment, when it has
/// none of its own: the first deployment to start after the upgrade carries
/// on from it. One statement (the children follow the state by `ON UPDATE
/// CASCADE`).
pub(crate) async fn claim_undeployed(inner: &Inner, client: &Client) -> Result<()> {
    let schema = inner.schema();
    let row = client
        .query_one(
            &format!(
                "WITH s AS (
                     UPDATE {schema}.states SET deployment = $2
                     WHERE organization_id = $1 AND deployment = ''
                       AND NOT EXISTS (SELECT 1 FROM {schema}.states
                                       WHERE organization_id = $1 AND deployment = $2)
                     RETURNING 1),
                 l AS (
                     UPDATE {schema}.leases SET deployment = $2
                     WHERE organization_id = $1 AND deployment = ''
                       AND NOT EXISTS (SELECT 1 FROM {schema}.leases
                                       WHERE organization_id = $1 AND deployment = $2)
                     RETURNING 1)
                 SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM l)"
            ),
            &[
                &inner.options.organization_id(),
                &inner.options.deployment(),
            ],
        )
        .await
        .map_err(|e| inner.db_error("claiming the state from before deployments", &e))?;
    let (states, leases): (i64, i64) = (row.get(0), row.get(1));
    if states + leases > 0 {
        tracing::info!(
            organization = %inner.options.organization_id(),
            deployment = %inner.options.deployment(),
            "the state written before deployments now belongs to this deployment"
        );
    }
    Ok(())
}

/// The privileges the receiver uses on each table, by table.
const TABLE_PRIVILEGES: &[(&str, &[&str])] = &[
    ("leases", &["SELECT", "INSERT", "UPDATE"]),
    ("states", &["SELECT", "INSERT", "UPDATE"]),
    ("sources", &["SELECT", "INSERT", "UPDATE", "DELETE"]),
    ("delivered", &["SELECT", "INSERT", "UPDATE", "DELETE"]),
];

/// Refuses with [`Error::Privilege`] when the role lacks a privilege the
/// receiver uses on a table (a role given DML on tables an owner created).
async fn check_tables(inner: &Inner, client: &Client, role: &str) -> Result<()> {
    let (mut tables, mut privileges) = (Vec::new(), Vec::new());
    for (table, wanted) in TABLE_PRIVILEGES {
        for privilege in *wanted {
            tables.push((*table).to_owned());
            privileges.push((*privilege).to_owned());
        }
    }
    let missing: Vec<String> = client
        .query(
            "SELECT w.privilege || ' on ' || w.tab
             FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS w (tab, privilege, n)
             JOIN pg_catalog.pg_namespace s ON s.nspname = $1
             LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = s.oid AND c.relname = w.tab
             WHERE c.oid IS NULL OR NOT has_table_privilege(c.oid, w.privilege)
             ORDER BY w.n",
            &[&inner.options.schema(), &tables, &privileges],
        )
        .await
        .map_err(|e| fail(inner, 0, &e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let schema = inner.schema();
    if missing.is_empty() {
        let execute: bool = client
            .query_one(
                "SELECT has_function_privilege(p.oid, 'EXECUTE')
                 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = $1 AND p.proname = 'write_state'
                 ORDER BY p.pronargs DESC LIMIT 1",
                &[&inner.options.schema()],
            )
            .await
            .map_err(|e| fail(inner, 0, &e))?
            .get(0);
        if execute {
            return Ok(());
        }
        return Err(Error::Privilege {
            role: role.to_owned(),
            missing: format!(
                "EXECUTE on the function write_state of schema {}",
                inner.options.schema()
            ),
            grant: format!(
                "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {};",
                ident(role)
            ),
        });
    }
    Err(Error::Privilege {
        role: role.to_owned(),
        missing: format!("{} (schema {})", missing.join(", "), inner.options.schema()),
        grant: format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {};",
            ident(role)
        ),
    })
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
