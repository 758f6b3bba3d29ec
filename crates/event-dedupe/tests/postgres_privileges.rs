//! Least privilege against a real server: the two recipes of docs/ha.md (a
//! database owned by the receiver's role; a schema created in advance for a
//! role without `CREATE` on the database), a role with only `USAGE, CREATE`
//! on its schema, a role with only DML on tables an owner created, and the
//! error that names a missing privilege with the SQL that grants it.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use event_dedupe::postgres::{Database, Elector, PostgresOptions};
use event_dedupe::{Baseline, ManualClock, Tracker, TrackerOptions, Verdict, conformance};
use secrecy::SecretString;

mod pg_support;
use pg_support::{Pg, pg};

fn options(url: &str, schema: &str) -> PostgresOptions {
    PostgresOptions::new(SecretString::from(url.to_owned()), "org")
        .unwrap()
        .with_schema(schema)
        .unwrap()
        .with_connect_timeout(Duration::from_secs(2))
}

/// Whether `role` may create schemas in the test's database.
async fn creates_on_database(pg: &Pg, role: &str) -> bool {
    pg.admin
        .query_one(
            "SELECT has_database_privilege($1, current_database(), 'CREATE')",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

/// Starts as the role behind `options`, takes the lease, writes a delivered
/// id and reads it back through a second start: what a replica does.
async fn start_and_lead(options: &PostgresOptions) {
    let db = Database::connect(options).await.expect("starts");
    let elector = Elector::new(db.clone(), "a".into(), Duration::from_secs(5));
    let lease = elector
        .try_acquire()
        .await
        .expect("reaches the lease")
        .expect("takes the free lease");
    let at = conformance::t0() + TimeDelta::minutes(1);
    let tracker_options = TrackerOptions::new()
        .with_baseline(Baseline::All)
        .with_clock(Arc::new(ManualClock::new(conformance::t0())));
    let tracker = db
        .tracker(&lease, tracker_options.clone())
        .await
        .expect("loads the state");
    tracker.record_delivered("p", "e1", Some(at)).await.unwrap();
    tracker.advance_floor("p", at).await.unwrap();
    tracker.persist().await.expect("writes the state");
    elector.release(lease).await.expect("releases");

    let again = Database::connect(options).await.expect("starts again");
    let lease = Elector::new(again.clone(), "b".into(), Duration::from_secs(5))
        .try_acquire()
        .await
        .unwrap()
        .expect("takes the released lease");
    let reloaded = again.tracker(&lease, tracker_options).await.unwrap();
    assert_eq!(
        reloaded.check("p", "e1", Some(at)).await.unwrap(),
        Verdict::Delivered
    );
}

#[tokio::test]
async fn recipe_a_database_owned_by_the_role_starts_and_leads() {
    let Some(pg) = pg("own_db").await else {
        return;
    };
    let role = pg.role("own_db").await;
    let database = format!("d_{role}");
    pg.admin
        .batch_execute(&format!("CREATE DATABASE \"{database}\" OWNER \"{role}\""))
        .await
        .unwrap();
    pg.admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE \"{database}\" FROM PUBLIC"
        ))
        .await
        .unwrap();
    let url = pg.url_as(&role, Some(&database));
    start_and_lead(&options(&url, "equinix_receiver")).await;
    pg.admin
        .batch_execute(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
        .await
        .unwrap();
    pg.admin
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
    pg.done().await;
}

#[tokio::test]
async fn recipe_a_schema_created_in_advance_starts_and_leads_without_create_on_the_database() {
    let Some(pg) = pg("own_schema").await else {
        return;
    };
    let role = pg.role("own_schema").await;
    pg.admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{}\" AUTHORIZATION \"{role}\"",
            pg.schema
        ))
        .await
        .unwrap();
    assert!(
        !creates_on_database(&pg, &role).await,
        "the recipe's premise"
    );
    let url = pg.url_as(&role, None);
    start_and_lead(&options(&url, &pg.schema)).await;
    pg.drop_role(&role).await;
    pg.done().await;
}

#[tokio::test]
async fn a_role_with_usage_and_create_on_its_schema_starts_and_leads() {
    let Some(pg) = pg("schema_grant").await else {
        return;
    };
    let role = pg.role("schema_grant").await;
    pg.admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{0}\"; GRANT USAGE, CREATE ON SCHEMA \"{0}\" TO \"{role}\";",
            pg.schema
        ))
        .await
        .unwrap();
    let url = pg.url_as(&role, None);
    start_and_lead(&options(&url, &pg.schema)).await;
    pg.drop_role(&role).await;
    pg.done().await;
}

#[tokio::test]
async fn a_role_with_dml_only_starts_and_a_missing_privilege_is_named_with_its_grant() {
    let Some(pg) = pg("dml_only").await else {
        return;
    };
    // The owner (here the superuser) creates the tables.
    pg.db("setup").await;
    let role = pg.role("dml_only").await;
    let options = options(&pg.url_as(&role, None), &pg.schema);

    // Nothing granted: the schema's USAGE is named, with its GRANT.
    let err = Database::connect(&options).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, event_dedupe::Error::Privilege { .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&format!("USAGE on schema {}", pg.schema)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "GRANT USAGE ON SCHEMA \"{}\" TO {role};",
            pg.schema
        )),
        "{text}"
    );

    // USAGE only: the tables' privileges are named, with their GRANT.
    pg.admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA \"{}\" TO \"{role}\"",
            pg.schema
        ))
        .await
        .unwrap();
    let text = Database::connect(&options).await.unwrap_err().to_string();
    assert!(text.contains("SELECT, INSERT, UPDATE, DELETE"), "{text}");
    assert!(
        text.contains(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{}\" TO {role};",
            pg.schema
        )),
        "{text}"
    );

    // The grant as written; the function's EXECUTE (PUBLIC's by default)
    // revoked: named with its GRANT too.
    pg.admin
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{0}\" TO \"{role}\";
             REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA \"{0}\" FROM PUBLIC;",
            pg.schema
        ))
        .await
        .unwrap();
    let text = Database::connect(&options).await.unwrap_err().to_string();
    assert!(
        text.contains(&format!(
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA \"{}\" TO {role};",
            pg.schema
        )),
        "{text}"
    );

    // Granted: it starts and leads, with no DDL (it may not).
    pg.admin
        .batch_execute(&format!(
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA \"{}\" TO \"{role}\"",
            pg.schema
        ))
        .await
        .unwrap();
    start_and_lead(&options).await;
    pg.drop_role(&role).await;
    pg.done().await;
}
