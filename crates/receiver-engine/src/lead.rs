//! High availability: one leader per organization on PostgreSQL (cargo
//! feature `postgres`). [`lead`] campaigns for the organization's lease and
//! runs a [`Receiver`] for each term of leadership; a standby waits, ready
//! while its database answers.

use std::sync::Arc;
use std::time::Duration;

use event_dedupe::postgres::{
    Database, Elector, LeaderEvent, LossReason, PostgresOptions, replica_identity,
};
use event_dedupe::{Tracker, TrackerOptions};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::receiver::Receiver;

/// How long a term whose state could not be loaded waits before it ends.
const RETRY_TERM: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to reach the database at start.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Campaigns for the organization's lease until `stop` fires; each term
/// runs a receiver from `build` on a [`PostgresTracker`](event_dedupe::postgres::PostgresTracker)
/// of the term's generation, every send gated by
/// [`Term::is_current`](event_dedupe::postgres::Term::is_current). While it
/// stands by, `health` is ready as long as the database answers; `metrics`
/// show the lease (`equinix_receiver_leader`,
/// `equinix_receiver_lease_transitions_total`), and one log line marks each
/// gain or loss. Connecting is retried with backoff until `stop` fires.
pub async fn lead(
    options: &PostgresOptions,
    lease_duration: Duration,
    tracker_options: TrackerOptions,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    stop: &CancellationToken,
    build: &dyn Fn(Arc<dyn Tracker>) -> Receiver,
) {
    let organization = options.organization_id().to_owned();
    health.set_standby(true);
    metrics.leader.set(0);
    let identity = replica_identity();
    // Every connection's server-side timeouts derive from the lease, and its
    // name in pg_stat_activity is this replica's.
    let options = options
        .clone()
        .with_lease_duration(lease_duration)
        .with_application_name(format!("equinix-receiver {identity}"));
    let Some(db) = connect(&options, health, stop).await else {
        return;
    };
    tracing::info!(replica = %identity, %organization, lease_s = lease_duration.as_secs_f64(),
        "high availability: standing by for the lease of the organization");

    let pulse = tokio::spawn(pulse(
        db.clone(),
        Arc::clone(health),
        Arc::clone(metrics),
        lease_duration / 3,
        stop.clone(),
    ));
    let events = {
        let (metrics, health, identity) =
            (Arc::clone(metrics), Arc::clone(health), identity.clone());
        Arc::new(move |event| on_event(&event, &metrics, &health, &identity))
    };
    let elector = Elector::new(db.clone(), identity, lease_duration).with_events(events);

    elector
        .lead(stop.clone(), |term| {
            let (db, tracker_options) = (db.clone(), tracker_options.clone());
            let metrics = Arc::clone(metrics);
            async move {
                let tracker = match db.tracker(&term, tracker_options).await {
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
                    build(Arc::new(tracker)).with_send_gate(Arc::new(move || current.time_left()));
                lead_term(&receiver, &term.lost, stop).await;
            }
        })
        .await;
    pulse.abort();
    let _ = pulse.await;
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
            Err(error @ event_dedupe::Error::Privilege { .. }) => {
                // It answers, but the role may not use the schema: a person
                // must grant what the error names.
                health.set_database_reachable(false);
                tracing::error!(%error, retry_in_s = wait.as_secs_f64(),
                    "the PostgreSQL role of state.postgres lacks a privilege; retrying");
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
/// database every `every` whether it answers; on every replica, gauges the
/// connections open.
async fn pulse(
    db: Database,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        metrics
            .postgres_connections
            .set(i64::try_from(db.open_connections()).unwrap_or(i64::MAX));
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
        LeaderEvent::SettingsDiffer {
            holder,
            theirs,
            ours,
        } => {
            tracing::error!(replica = identity, leader = %holder, leader_settings = %theirs,
                settings = %ours,
                "replicas of this deployment disagree on what is delivered: not taking the \
                 lease while the other leads (give each deployment its own state.postgres.name, \
                 or the same settings)");
        }
        _ => {}
    }
}
