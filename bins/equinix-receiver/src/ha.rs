//! High availability (`state.postgres`): the state in PostgreSQL and one
//! leader per organization. Each term of leadership runs a receiver whose
//! every state write carries the term's generation; a standby waits, ready
//! while its database answers. See docs/ha.md.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use event_dedupe::postgres::{Database, PostgresOptions};
use event_dedupe::{Tracker, TrackerOptions};
use receiver_engine::{Health, Metrics, Receiver, ScrubbedStdout};
use tokio_util::sync::CancellationToken;

use crate::settings::{PostgresSettings, Settings};

/// `--import-state`: copies the state file at `path` into the database of
/// `state.postgres` once and says what it did on stdout.
pub(crate) async fn import(
    settings: &Settings,
    postgres: &PostgresSettings,
    path: &Path,
    stdout: &ScrubbedStdout,
) -> anyhow::Result<()> {
    let options = options(settings, postgres)?;
    let db = Database::connect(&options)
        .await
        .context("connecting to the PostgreSQL database of state.postgres")?;
    let report = db.import_state(path).await.with_context(|| {
        format!(
            "importing the state file {} into PostgreSQL",
            path.display()
        )
    })?;
    let what = if report.imported {
        "imported"
    } else {
        "already imported, nothing written:"
    };
    stdout.write_line(&format!(
        "{what} {} delivered event ids and {} list floors from {} for organization {} \
         (schema {}, deployment {})",
        report.delivered_ids,
        report.sources,
        path.display(),
        settings.equinix.organization_id,
        postgres.schema,
        options.deployment()
    ))?;
    Ok(())
}

/// The store's options from `state.postgres`.
fn options(settings: &Settings, postgres: &PostgresSettings) -> anyhow::Result<PostgresOptions> {
    PostgresOptions::new(
        postgres.url.clone(),
        settings.equinix.organization_id.clone(),
    )
    .and_then(|options| options.with_schema(postgres.schema.clone()))
    .and_then(|options| options.with_deployment(postgres.deployment(&settings.direktiv.endpoint)))
    .map(|options| options.with_settings(delivers(settings)))
    .context("state.postgres")
}

/// What this replica delivers, compared between the replicas of one
/// deployment: the levels read and the event types. Not the endpoint: with
/// the default `state.postgres.name` two endpoints are two deployments
/// anyway, and the HA chaos test sends each replica to a Direktiv namespace
/// of its own to tell who delivered.
fn delivers(settings: &Settings) -> String {
    let levels = &settings.equinix.levels;
    let read: Vec<&str> = [
        (levels.organization, "organization"),
        (levels.project, "project"),
        (levels.device, "device"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let types = if settings.equinix.event_types.is_all() {
        "all".to_owned()
    } else {
        settings.equinix.event_types.patterns().join(" ")
    };
    format!("levels {}; event types {types}", read.join("+"))
}

/// Campaigns for the organization's lease until `stop` fires; each term
/// runs a receiver from `build` ([`receiver_engine::lead`]). Fails only when
/// the options are unusable.
pub(crate) async fn run(
    settings: &Settings,
    postgres: &PostgresSettings,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    stop: &CancellationToken,
    build: &dyn Fn(Arc<dyn Tracker>) -> Receiver,
) -> anyhow::Result<()> {
    let options = options(settings, postgres)?;
    let mut tracker_options = TrackerOptions::default();
    tracker_options.baseline = settings.equinix.start_from;
    tracker_options.overlap = settings.state.overlap;
    receiver_engine::lead(
        &options,
        postgres.lease_duration,
        tracker_options,
        metrics,
        health,
        stop,
        build,
    )
    .await;
    Ok(())
}
