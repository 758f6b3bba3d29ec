//! Deployments against a real server: two deployments of one organization
//! on one database (production and staging) each hold their own lease and
//! state, replicas of one deployment share theirs, and the state written
//! before deployments existed goes to the first deployment that starts.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use event_dedupe::postgres::{Database, Elector, LeaderEvent, PostgresOptions};
use event_dedupe::{Baseline, ManualClock, Tracker, TrackerOptions, Verdict, conformance};

mod pg_support;
use pg_support::{Pg, pg};

fn tracker_options() -> TrackerOptions {
    TrackerOptions::new()
        .with_baseline(Baseline::All)
        .with_clock(Arc::new(ManualClock::new(conformance::t0())))
}

fn deployment(pg: &Pg, name: &str) -> PostgresOptions {
    pg.options("org").with_deployment(name).unwrap()
}

async fn delivered(db: &Database, fence: &event_dedupe::postgres::Lease, id: &str) -> Verdict {
    let tracker = db.tracker(fence, tracker_options()).await.unwrap();
    let at = conformance::t0() + TimeDelta::minutes(1);
    tracker.check("p", id, Some(at)).await.unwrap()
}

#[tokio::test]
async fn two_deployments_of_one_organization_each_lead_with_their_own_state() {
    let Some(pg) = pg("deployments").await else {
        return;
    };
    let prod = Database::connect(&deployment(&pg, "prod")).await.unwrap();
    let staging = Database::connect(&deployment(&pg, "staging"))
        .await
        .unwrap();
    let lease = Duration::from_secs(5);
    let prod_a = Elector::new(prod.clone(), "prod-a".into(), lease);
    let prod_b = Elector::new(prod.clone(), "prod-b".into(), lease);
    let staging_a = Elector::new(staging.clone(), "staging-a".into(), lease);

    // Both deployments lead at once; replicas of one deployment share its lease.
    let prod_lease = prod_a.try_acquire().await.unwrap().expect("prod leads");
    let staging_lease = staging_a
        .try_acquire()
        .await
        .unwrap()
        .expect("staging leads too");
    assert!(
        prod_b.try_acquire().await.unwrap().is_none(),
        "prod-a leads prod"
    );

    // Each delivers every event and records it in its own state.
    let at = conformance::t0() + TimeDelta::minutes(1);
    for (db, lease, ids) in [
        (&prod, &prod_lease, ["e1", "e2"]),
        (&staging, &staging_lease, ["e1", "e3"]),
    ] {
        let tracker = db.tracker(lease, tracker_options()).await.unwrap();
        for id in ids {
            assert_eq!(
                tracker.check("p", id, Some(at)).await.unwrap(),
                Verdict::New
            );
            tracker.record_delivered("p", id, Some(at)).await.unwrap();
        }
        tracker.advance_floor("p", at).await.unwrap();
        tracker
            .persist()
            .await
            .expect("each writes under its own lease");
    }
    assert_eq!(
        delivered(&prod, &prod_lease, "e2").await,
        Verdict::Delivered
    );
    assert_eq!(delivered(&prod, &prod_lease, "e3").await, Verdict::New);
    assert_eq!(
        delivered(&staging, &staging_lease, "e3").await,
        Verdict::Delivered
    );
    assert_eq!(
        delivered(&staging, &staging_lease, "e2").await,
        Verdict::New
    );

    // The other prod replica takes over prod's state, not staging's.
    prod_a.release(prod_lease).await.unwrap();
    let taken = prod_b.try_acquire().await.unwrap().expect("released");
    assert_eq!(delivered(&prod, &taken, "e2").await, Verdict::Delivered);
    assert_eq!(delivered(&prod, &taken, "e3").await, Verdict::New);
    pg.done().await;
}

#[tokio::test]
async fn the_state_from_before_deployments_goes_to_the_first_deployment_to_start() {
    let Some(pg) = pg("undeployed").await else {
        return;
    };
    // A state and a lease as an upgrade leaves them: deployment ''.
    let old = Database::connect(&deployment(&pg, "old")).await.unwrap();
    let elector = Elector::new(old.clone(), "a".into(), Duration::from_secs(5));
    let lease = elector.try_acquire().await.unwrap().unwrap();
    let tracker = old.tracker(&lease, tracker_options()).await.unwrap();
    let at = conformance::t0() + TimeDelta::minutes(1);
    tracker.record_delivered("p", "e1", Some(at)).await.unwrap();
    tracker.persist().await.unwrap();
    elector.release(lease).await.unwrap();
    pg.admin
        .batch_execute(&format!(
            "UPDATE \"{0}\".states SET deployment = ''; UPDATE \"{0}\".leases SET deployment = ''",
            pg.schema
        ))
        .await
        .unwrap();

    let prod = Database::connect(&deployment(&pg, "prod")).await.unwrap();
    let staging = Database::connect(&deployment(&pg, "staging"))
        .await
        .unwrap();
    let prod_lease = Elector::new(prod.clone(), "p".into(), Duration::from_secs(5))
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    assert!(
        prod_lease.generation.0 > 1,
        "the lease row went with the state"
    );
    assert_eq!(
        delivered(&prod, &prod_lease, "e1").await,
        Verdict::Delivered
    );
    let staging_lease = Elector::new(staging.clone(), "s".into(), Duration::from_secs(5))
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        delivered(&staging, &staging_lease, "e1").await,
        Verdict::New
    );
    pg.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_settings_differ_does_not_take_a_live_lease_and_says_why() {
    let Some(pg) = pg("settings").await else {
        return;
    };
    let lease = Duration::from_secs(2);
    let a = Database::connect(&deployment(&pg, "prod").with_settings("event types all"))
        .await
        .unwrap();
    let b = Database::connect(&deployment(&pg, "prod").with_settings("event types power.*"))
        .await
        .unwrap();
    let held = Elector::new(a, "a".into(), lease)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    let taken = tokio::time::Instant::now();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    let elector = Elector::new(b, "b".into(), lease).with_events(Arc::new(move |event| {
        sink.lock()
            .unwrap()
            .push((tokio::time::Instant::now(), event));
    }));
    let stop = tokio_util::sync::CancellationToken::new();
    let lead = tokio::spawn({
        let stop = stop.clone();
        async move {
            elector
                .lead(stop, |term| async move { term.lost.cancelled().await })
                .await;
        }
    });
    // a never renews: its lease expires after 2 s. b, whose settings
    // differ, says why it waits and takes the lease only a lease later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let events = log.lock().unwrap();
        assert!(
            events.iter().any(|(_, e)| matches!(
                e,
                LeaderEvent::SettingsDiffer { holder, theirs, ours }
                    if holder == "a" && theirs == "event types all" && ours == "event types power.*"
            )),
            "{events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|(_, e)| matches!(e, LeaderEvent::Gained(_))),
            "took a lease held with other settings: {events:?}"
        );
    }
    let gained = loop {
        if let Some((when, _)) = log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, e)| matches!(e, LeaderEvent::Gained(_)))
        {
            break *when - taken;
        }
        assert!(taken.elapsed() < lease * 4, "b never took the lease over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        gained >= lease * 2,
        "took it over {gained:?} after a took it"
    );
    drop(held);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), lead)
        .await
        .unwrap()
        .unwrap();
    pg.done().await;
}
