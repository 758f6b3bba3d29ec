//! High availability (`state.postgres`): the state in PostgreSQL and one
//! leader per organization. Each term of leadership runs a receiver whose
//! every state write carries the term's generation; a standby waits, ready
//! while its database answers. See docs/ha.md.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use event_dedupe::postgres::{
    Database, Elector, LeaderEvent, LossReason, PostgresOptions, replica_identity,
};
use event_dedupe::{Tracker, TrackerOptions};
use receiver_engine::{Health, Metrics, Receiver, ScrubbedStdout};
use tokio_util::sync::CancellationToken;

use crate::settings::{PostgresSettings, Settings};

/// How long a term whose state could not be loaded waits before it ends.
const RETRY_TERM: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to reach the database at start.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
         (schema {})",
        report.delivered_ids,
        report.sources,
        path.display(),
        settings.equinix.organization_id,
        postgres.schema
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
    .context("state.postgres")
}

/// Campaigns for the organization's lease until `stop` fires; each term
/// runs a receiver from `build`. Fails only when the options are unusable.
pub(crate) async fn run(
    settings: &Settings,
    postgres: &PostgresSettings,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    stop: &CancellationToken,
    build: &dyn Fn(Arc<dyn Tracker>) -> Receiver,
) -> anyhow::Result<()> {
    let organization = settings.equinix.organization_id.clone();
    let options = options(settings, postgres)?;
    health.set_standby(true);
    metrics.leader.set(0);
    let Some(db) = connect(&options, health, stop).await else {
        return Ok(());
    };
    let identity = replica_identity();
    tracing::info!(replica = %identity, %organization, lease_s = postgres.lease_duration.as_secs_f64(),
        "high availability: standing by for the lease of the organization");

    let pulse = tokio::spawn(pulse(
        db.clone(),
        Arc::clone(health),
        postgres.lease_duration / 3,
        stop.clone(),
    ));
    let events = {
        let (metrics, health, identity) =
            (Arc::clone(metrics), Arc::clone(health), identity.clone());
        Arc::new(move |event| on_event(&event, &metrics, &health, &identity))
    };
    let elector = Elector::new(db.clone(), identity, postgres.lease_duration).with_events(events);
    let mut tracker_options = TrackerOptions::default();
    tracker_options.baseline = settings.equinix.start_from;
    tracker_options.overlap = settings.state.overlap;

    elector
        .lead(stop.clone(), |term| {
            let (db, tracker_options) = (db.clone(), tracker_options.clone());
            let metrics = Arc::clone(metrics);
            async move {
                let tracker = match db.tracker(term.generation, tracker_options).await {
                    Ok(tracker) => tracker,
                    Err(error) => {
                        tracing::warn!(%error, generation = %term.generation,
                            "could not load the state for this term; standing by");
                        // Not at once: the next campaign would likely fail alike.
                        tokio::select! {
                            () = term.lost.cancelled() => {}
                            () = tokio::time::sleep(RETRY_TERM) => {}
                        }
                        return;
                    }
                };
                let tracked = tracker.stats().tracked_ids;
                metrics
                    .tracked_events
                    .set(i64::try_from(tracked).unwrap_or(i64::MAX));
                // Asked right before each send: a resumed leader's tasks may
                // run before the elector gets to cancel `lost`.
                let current = term.clone();
                let receiver =
                    build(Arc::new(tracker)).with_send_gate(Arc::new(move || current.is_current()));
                lead_term(&receiver, &term.lost, stop).await;
            }
        })
        .await;
    pulse.abort();
    let _ = pulse.await;
    Ok(())
}

/// Runs `receiver` until `lost` fires. A shutdown (`stop`) lets the sweep in
/// flight finish within the shutdown grace, as without high availability; a
/// step-down drops it at once: what it did not record stays new for the
/// next leader, which may send it again (never a loss).
async fn lead_term(receiver: &Receiver, lost: &CancellationToken, stop: &CancellationToken) {
    let stepped_down = async {
        lost.cancelled().await;
        if stop.is_cancelled() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = receiver.run(lost.clone()) => {}
        () = stepped_down => {}
    }
}

/// Connects, retrying with backoff while the database is unreachable.
/// `None` when `stop` fired first.
async fn connect(
    options: &PostgresOptions,
    health: &Health,
    stop: &CancellationToken,
) -> Option<Database> {
    let mut wait = Duration::from_secs(1);
    loop {
        health.beat();
        match Database::connect(options).await {
            Ok(db) => {
                health.set_database_reachable(true);
                return Some(db);
            }
            Err(error) => {
                health.set_database_reachable(false);
                tracing::warn!(%error, retry_in_s = wait.as_secs_f64(),
                    "could not reach the PostgreSQL database of state.postgres; retrying");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// The standby's pulse: while standing by, beats the heartbeat and asks the
/// database every `every` whether it answers.
async fn pulse(db: Database, health: Arc<Health>, every: Duration, stop: CancellationToken) {
    loop {
        if health.standby() {
            health.beat();
            health.set_database_reachable(db.ping().await.is_ok());
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One log line, the metrics and the health at each gain or loss of the lease.
fn on_event(event: &LeaderEvent, metrics: &Metrics, health: &Health, identity: &str) {
    match event {
        LeaderEvent::Gained(generation) => {
            metrics.leader.set(1);
            metrics.lease_transitions.inc();
            health.set_standby(false);
            tracing::info!(replica = identity, %generation, "leading: this replica holds the lease and polls");
        }
        LeaderEvent::Lost { generation, reason } => {
            metrics.leader.set(0);
            metrics.lease_transitions.inc();
            health.set_standby(true);
            if *reason == LossReason::Stopped {
                tracing::info!(replica = identity, %generation, %reason, "standing by: released the lease");
            } else {
                tracing::warn!(replica = identity, %generation, %reason,
                    "standing by: lost the lease; polling and delivering stopped");
            }
        }
        LeaderEvent::DatabaseReachable(reachable) => health.set_database_reachable(*reachable),
        _ => {}
    }
}
