//! The PostgreSQL store and the lease against a real server (`TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`). Each test works in a
//! schema of its own, so they run in parallel. Without a server they skip
//! (and say why), unless `CI` is set: then they fail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use event_dedupe::postgres::{
    Database, Elector, Generation, LeaderEvent, LossReason, PostgresOptions, PostgresTracker,
};
use event_dedupe::{
    Baseline, FileOptions, FileTracker, ManualClock, Tracker, TrackerOptions, Verdict, conformance,
};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod pg_support;
use pg_support::{Pg, pg};

fn at(minutes: i64) -> chrono::DateTime<Utc> {
    conformance::t0() + TimeDelta::minutes(minutes)
}

fn options_at_t0() -> (TrackerOptions, ManualClock) {
    let clock = ManualClock::new(conformance::t0());
    let options = TrackerOptions::new()
        .with_baseline(Baseline::All)
        .with_clock(Arc::new(clock.clone()));
    (options, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tracker_conforms() {
    let Some(pg) = pg("conforms").await else {
        return;
    };
    let db = pg.db("setup").await;
    let next = AtomicU64::new(0);
    conformance::run_all(|options: TrackerOptions| {
        // Each check gets an organization of its own.
        let org = format!("org-{}", next.fetch_add(1, Ordering::Relaxed));
        let db = db.clone();
        let options_db = pg.options(&org);
        async move {
            let db = Database::connect(&options_db).await.unwrap_or(db);
            Arc::new(db.tracker(Generation(0), options).await.expect("tracker")) as Arc<dyn Tracker>
        }
    })
    .await;
    pg.done().await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_shared() {
    let Some(pg) = pg("migrate").await else {
        return;
    };
    // Replicas starting together migrate once.
    let (oa, ob) = (pg.options("a"), pg.options("b"));
    let (a, b) = tokio::join!(Database::connect(&oa), Database::connect(&ob));
    a.expect("a");
    b.expect("b");
    pg.db("c").await.ping().await.expect("ping");
    let versions: Vec<i32> = pg
        .admin
        .query(
            &format!("SELECT version FROM \"{}\".migrations", pg.schema),
            &[],
        )
        .await
        .expect("migrations")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    // A schema migrated by a newer receiver is refused, naming the way out.
    pg.admin
        .execute(
            &format!(
                "INSERT INTO \"{}\".migrations (version, description) VALUES (99, 'future')",
                pg.schema
            ),
            &[],
        )
        .await
        .expect("insert");
    let err = Database::connect(&pg.options("a")).await.unwrap_err();
    assert!(err.to_string().contains("newer receiver"), "{err}");
    pg.done().await;
}

#[tokio::test]
async fn the_state_survives_a_new_tracker_and_writes_only_changes() {
    let Some(pg) = pg("reload").await else {
        return;
    };
    let db = pg.db("org").await;
    let (options, clock) = options_at_t0();
    let t = db
        .tracker(Generation(0), options.clone())
        .await
        .expect("tracker");
    t.record_delivered("device:a", "e1", Some(at(1)))
        .await
        .unwrap();
    t.record_delivered("device:a", "undated", None)
        .await
        .unwrap();
    t.advance_floor("device:a", at(2)).await.unwrap();
    t.advance_floor("project:p", at(3)).await.unwrap();
    t.advance_floor("device:gone", at(3)).await.unwrap();
    assert_eq!(t.stats().unpersisted, 2);
    t.persist().await.expect("persist");
    assert!(!t.stats().dirty);
    t.forget_source("device:gone").await.unwrap();
    // Far ahead: the horizon moves past e1, which is pruned in the database too.
    clock.advance(TimeDelta::hours(2));
    t.record_delivered("device:a", "e2", Some(at(100)))
        .await
        .unwrap();
    t.advance_floor("device:a", at(110)).await.unwrap();
    t.advance_floor("project:p", at(110)).await.unwrap();
    t.persist().await.expect("persist");

    let reloaded = db.tracker(Generation(0), options).await.expect("reload");
    for (source, id, created, verdict) in [
        ("device:a", "e2", Some(at(100)), Verdict::Delivered),
        ("device:a", "undated", None, Verdict::Delivered),
        ("device:a", "e1", Some(at(1)), Verdict::BelowFloor),
        ("device:a", "e3", Some(at(105)), Verdict::New),
    ] {
        assert_eq!(
            reloaded.check(source, id, created).await.unwrap(),
            verdict,
            "{id}"
        );
        assert_eq!(t.check(source, id, created).await.unwrap(), verdict, "{id}");
    }
    assert_eq!(reloaded.floor("device:a").await.unwrap(), Some(at(110)));
    assert_eq!(reloaded.floor("device:gone").await.unwrap(), None);
    assert_eq!(reloaded.baseline(), Baseline::All);
    assert_eq!(reloaded.stats().tracked_ids, t.stats().tracked_ids);
    assert_eq!(reloaded.stats().horizon, t.stats().horizon);
    let rows: i64 = pg
        .admin
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".delivered", pg.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 2,
        "e1 pruned below the horizon, e2 and the undated id kept"
    );
    pg.done().await;
}

#[tokio::test]
async fn lease_acquire_renew_release_and_takeover_after_expiry() {
    let Some(pg) = pg("lease").await else {
        return;
    };
    let db = pg.db("org").await;
    let lease = Duration::from_secs(2);
    let a = Elector::new(db.clone(), "a".into(), lease);
    let b = Elector::new(db.clone(), "b".into(), lease);
    let first = a
        .try_acquire()
        .await
        .unwrap()
        .expect("a takes the free lease");
    assert_eq!(first.generation, Generation(1));
    assert!(b.try_acquire().await.unwrap().is_none(), "a holds it");
    let renewed = a.renew(&first).await.unwrap().expect("a renews");
    assert_eq!(renewed.generation, first.generation);
    assert!(renewed.deadline > first.deadline);
    let again = a.try_acquire().await.unwrap().expect("ours: renewed");
    assert_eq!(again.generation, first.generation);

    // Released: b takes it at once, with the next generation.
    a.release(again).await.unwrap();
    let taken = b
        .try_acquire()
        .await
        .unwrap()
        .expect("b takes the released lease");
    assert_eq!(taken.generation, Generation(2));
    assert!(a.renew(&first).await.unwrap().is_none(), "a lost it");

    // b stops renewing: a takes over once the database says it expired.
    assert!(a.try_acquire().await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let over = a
        .try_acquire()
        .await
        .unwrap()
        .expect("expired: a takes over");
    assert_eq!(over.generation, Generation(3));
    assert!(b.renew(&taken).await.unwrap().is_none(), "b lost it");
    pg.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_racing_electors_exactly_one_wins() {
    let Some(pg) = pg("race").await else {
        return;
    };
    let db = pg.db("org").await;
    for round in 0..5 {
        let org = format!("org-{round}");
        let db = Database::connect(&pg.options(&org))
            .await
            .unwrap_or(db.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let elector = Elector::new(db.clone(), format!("r{i}"), Duration::from_secs(5));
            tasks.spawn(async move { elector.try_acquire().await.expect("acquire").is_some() });
        }
        let winners = tasks.join_all().await.into_iter().filter(|w| *w).count();
        assert_eq!(winners, 1, "round {round}");
    }
    pg.done().await;
}

#[tokio::test]
async fn a_stale_writer_is_fenced_and_moves_nothing() {
    let Some(pg) = pg("fence").await else {
        return;
    };
    let db = pg.db("org").await;
    let a = Elector::new(db.clone(), "a".into(), Duration::from_secs(2));
    let b = Elector::new(db.clone(), "b".into(), Duration::from_secs(2));
    let (options, _) = options_at_t0();
    let lease_a = a.try_acquire().await.unwrap().unwrap();
    let old = db.tracker(&lease_a, options.clone()).await.unwrap();
    old.record_delivered("p", "e1", Some(at(1))).await.unwrap();
    old.advance_floor("p", at(1)).await.unwrap();
    old.persist().await.expect("the leader writes");

    // a pauses past its lease; b takes over and loads what a wrote.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let lease_b = b.try_acquire().await.unwrap().unwrap();
    assert!(lease_b.generation > lease_a.generation);
    let new = db.tracker(&lease_b, options.clone()).await.unwrap();
    assert_eq!(
        new.check("p", "e1", Some(at(1))).await.unwrap(),
        Verdict::Delivered
    );

    // a wakes up and writes: refused, nothing moves.
    old.record_delivered("p", "e2", Some(at(2))).await.unwrap();
    old.advance_floor("p", at(50)).await.unwrap();
    let err = old.persist().await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert!(!err.is_retryable());
    assert!(
        matches!(err, event_dedupe::Error::Fenced { ours, current, .. } if ours == lease_a.generation.0 && current == lease_b.generation.0),
        "{err:?}"
    );
    let err = db.tracker(&lease_a, options.clone()).await.unwrap_err();
    assert!(
        err.is_fenced(),
        "a new tracker of the old generation: {err}"
    );
    let check: PostgresTracker = db.tracker(&lease_b, options).await.unwrap();
    assert_eq!(check.floor("p").await.unwrap(), Some(at(1)));
    assert_eq!(
        check.check("p", "e2", Some(at(2))).await.unwrap(),
        Verdict::New
    );
    pg.done().await;
}

/// What an elector reported, with when.
type Log = Arc<Mutex<Vec<(Instant, LeaderEvent)>>>;

fn observe(elector: Elector) -> (Elector, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let elector = elector.with_events(Arc::new(move |event| {
        sink.lock().unwrap().push((Instant::now(), event));
    }));
    (elector, log)
}

async fn wait_for(log: &Log, within: Duration, what: impl Fn(&LeaderEvent) -> bool) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if let Some((when, _)) = log.lock().unwrap().iter().find(|(_, e)| what(e)) {
            return *when;
        }
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_write_ends_the_term_at_once() {
    let Some(pg) = pg("fenced_term").await else {
        return;
    };
    let db = pg.db("org").await;
    // A long lease: the renewal does not notice first.
    let (elector, log) = observe(Elector::new(
        db.clone(),
        "a".into(),
        Duration::from_secs(30),
    ));
    let stop = CancellationToken::new();
    let write = Arc::new(tokio::sync::Notify::new());
    let lead = tokio::spawn({
        let (db, stop, write) = (db.clone(), stop.clone(), write.clone());
        async move {
            elector
                .lead(stop, move |term| {
                    let (db, write) = (db.clone(), write.clone());
                    async move {
                        let (options, _) = options_at_t0();
                        let t = db.tracker(&term, options).await.unwrap();
                        write.notified().await;
                        t.record_delivered("p", "e1", Some(at(1))).await.unwrap();
                        assert!(t.persist().await.unwrap_err().is_fenced());
                        term.lost.cancelled().await;
                    }
                })
                .await;
        }
    });
    wait_for(&log, Duration::from_secs(5), |e| {
        matches!(e, LeaderEvent::Gained(_))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another replica became the leader behind this one's back.
    pg.admin
        .execute(
            &format!(
                "UPDATE \"{}\".leases SET generation = generation + 1, holder = 'b'",
                pg.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let fenced = Instant::now();
    write.notify_one();
    let lost = wait_for(&log, Duration::from_secs(5), |e| {
        matches!(e, LeaderEvent::Lost { .. })
    })
    .await;
    assert!(
        lost - fenced < Duration::from_secs(1),
        "stepped down at once"
    );
    let events = log.lock().unwrap().clone();
    assert!(
        events.iter().any(|(_, e)| matches!(
            e,
            LeaderEvent::Lost {
                generation: Generation(1),
                reason: LossReason::Fenced
            }
        )),
        "{events:?}"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), lead)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pg.generation("org").await,
        2,
        "the other leader's lease is left alone"
    );
    pg.done().await;
}

/// A TCP proxy to the server that the test cuts (every connection closed,
/// new ones refused) and restores.
struct Proxy {
    port: u16,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

async fn proxy(target: String) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cut, _) = tokio::sync::watch::channel(false);
    let cut = Arc::new(cut);
    let state = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if *state.borrow() {
                drop(client);
                continue;
            }
            let mut cut = state.subscribe();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut.wait_for(|cut| *cut) => {}
                }
            });
        }
    });
    Proxy { port, cut }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_database_steps_down_in_time_and_resumes() {
    let Some(pg) = pg("cut").await else {
        return;
    };
    let lease = Duration::from_secs(2);
    // The server's address, from the test URL.
    let config: tokio_postgres::Config = pg.url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("a TCP host: {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let proxy = proxy(format!("{host}:{port}")).await;
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("test");
    let via_proxy = format!(
        "postgres://{user}@127.0.0.1:{}/{dbname}?sslmode=disable",
        proxy.port
    );
    let db = Database::connect(&pg.options_at(&via_proxy, "org"))
        .await
        .unwrap();
    let (elector, log) = observe(Elector::new(db, "a".into(), lease));
    let stop = CancellationToken::new();
    let terms = Arc::new(Mutex::new(Vec::new()));
    let first_term = Arc::new(Mutex::new(None));
    let lead = tokio::spawn({
        let (stop, terms, first) = (stop.clone(), terms.clone(), first_term.clone());
        async move {
            elector
                .lead(stop, move |term| {
                    let terms = terms.clone();
                    first.lock().unwrap().get_or_insert_with(|| term.clone());
                    async move {
                        term.lost.cancelled().await;
                        terms
                            .lock()
                            .unwrap()
                            .push((term.generation, Instant::now()));
                    }
                })
                .await;
        }
    });
    wait_for(&log, Duration::from_secs(5), |e| {
        *e == LeaderEvent::Gained(Generation(1))
    })
    .await;
    // Some renewals go through first, each moving the term's deadline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let term = first_term.lock().unwrap();
        let term = term.as_ref().unwrap();
        assert!(term.is_current());
        assert!(term.deadline() > Instant::now() + Duration::from_millis(500));
    }
    let cut = Instant::now();
    proxy.cut.send_replace(true);
    wait_for(&log, Duration::from_secs(3), |e| {
        matches!(
            e,
            LeaderEvent::Lost {
                reason: LossReason::RenewalFailed,
                ..
            }
        )
    })
    .await;
    let ended = terms.lock().unwrap()[0].1;
    assert!(!first_term.lock().unwrap().as_ref().unwrap().is_current());
    assert!(
        ended - cut < lease,
        "the term ended {:?} after the cut, before the lease could expire ({lease:?})",
        ended - cut
    );
    wait_for(&log, Duration::from_secs(1), |e| {
        *e == LeaderEvent::DatabaseReachable(false)
    })
    .await;

    // Back: the replica leads again, with a new generation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut.send_replace(false);
    let back = Instant::now();
    let regained = wait_for(
        &log,
        Duration::from_secs(5),
        |e| matches!(e, LeaderEvent::Gained(g) if *g > Generation(1)),
    )
    .await;
    assert!(
        regained - back < Duration::from_secs(3),
        "{:?}",
        regained - back
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), lead)
        .await
        .unwrap()
        .unwrap();
    let events = log.lock().unwrap().clone();
    assert!(
        matches!(
            events.last(),
            Some((
                _,
                LeaderEvent::Lost {
                    reason: LossReason::Stopped,
                    ..
                }
            ))
        ),
        "{events:?}"
    );
    pg.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connection_is_terminated_keeps_leading() {
    let Some(pg) = pg("terminate").await else {
        return;
    };
    let url = format!(
        "{}{}application_name={}",
        pg.url,
        if pg.url.contains('?') { '&' } else { '?' },
        pg.schema
    );
    let db = Database::connect(&pg.options_at(&url, "org"))
        .await
        .unwrap();
    let (elector, log) = observe(Elector::new(db, "a".into(), Duration::from_secs(2)));
    let stop = CancellationToken::new();
    let lead = tokio::spawn({
        let stop = stop.clone();
        async move {
            elector
                .lead(stop, |term| async move { term.lost.cancelled().await })
                .await;
        }
    });
    wait_for(&log, Duration::from_secs(5), |e| {
        matches!(e, LeaderEvent::Gained(_))
    })
    .await;
    // The server restarts its backends under the leader.
    let killed: i64 = pg
        .admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&pg.schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    // Renewals reconnect: the term goes on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = log.lock().unwrap().clone();
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, LeaderEvent::Lost { .. })),
        "{events:?}"
    );
    assert_eq!(pg.generation("org").await, 1);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), lead)
        .await
        .unwrap()
        .unwrap();
    pg.done().await;
}

#[tokio::test]
async fn a_file_state_is_imported_once() {
    let Some(pg) = pg("import").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (options, _) = options_at_t0();
    let file = FileTracker::open(&path, FileOptions::new(options.clone()))
        .await
        .unwrap();
    file.record_delivered("device:a", "e1", Some(at(1)))
        .await
        .unwrap();
    file.record_delivered("device:a", "e2", Some(at(2)))
        .await
        .unwrap();
    file.record_delivered("device:a", "undated", None)
        .await
        .unwrap();
    file.advance_floor("device:a", at(2)).await.unwrap();
    file.advance_floor("project:p", at(3)).await.unwrap();
    file.persist().await.unwrap();

    let db = pg.db("org").await;
    let report = db.import_state(&path).await.expect("import");
    assert!(report.imported);
    assert_eq!((report.delivered_ids, report.sources), (3, 2));
    let again = db
        .import_state(&path)
        .await
        .expect("a second run is a no-op");
    assert!(!again.imported);

    let t = db.tracker(Generation(0), options).await.unwrap();
    for source in ["device:a", "project:p"] {
        assert_eq!(
            t.floor(source).await.unwrap(),
            file.floor(source).await.unwrap()
        );
    }
    for (id, created) in [
        ("e1", Some(at(1))),
        ("e2", Some(at(2))),
        ("undated", None),
        ("e9", Some(at(9))),
    ] {
        assert_eq!(
            t.check("device:a", id, created).await.unwrap(),
            file.check("device:a", id, created).await.unwrap(),
            "{id}"
        );
    }
    assert_eq!(t.baseline(), file.baseline());
    assert_eq!(t.stats().tracked_ids, 3);

    // The file moved on: importing it again would mix two histories.
    file.record_delivered("device:a", "e3", Some(at(3)))
        .await
        .unwrap();
    file.persist().await.unwrap();
    let err = db.import_state(&path).await.unwrap_err();
    assert!(
        matches!(err, event_dedupe::Error::ImportRefused { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("already has a state"), "{err}");
    drop(file);
    pg.done().await;
}

#[tokio::test]
async fn sslmode_require_encrypts_without_verifying() {
    let Some(pg) = pg("tls").await else {
        return;
    };
    let with_mode = |mode: &str| {
        let base = pg.url.split('?').next().unwrap_or(&pg.url).to_owned();
        format!("{base}?sslmode={mode}")
    };
    let ssl: String = pg.admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        #[allow(clippy::print_stderr, reason = "a skipped check says why")]
        {
            eprintln!("skipped: the test server does not offer TLS (ssl = {ssl})");
        }
        pg.done().await;
        return;
    }
    let db = Database::connect(&pg.options_at(&with_mode("require"), "org"))
        .await
        .expect("sslmode=require connects to a server with a self-signed certificate");
    db.ping().await.unwrap();
    let t = db.tracker(Generation(0), options_at_t0().0).await.unwrap();
    t.record_delivered("p", "e1", Some(at(1))).await.unwrap();
    t.persist().await.unwrap();
    let encrypted: i64 = pg
        .admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE s.ssl AND a.datname = current_database() AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "no encrypted connection");
    // verify-full does not trust a certificate no root vouches for.
    let err = Database::connect(&pg.options_at(&with_mode("verify-full"), "org"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    pg.done().await;
}

#[tokio::test]
async fn errors_never_show_the_password() {
    // A port nobody listens on: no server needed.
    let url = "postgres://receiver:hunter2-secret@127.0.0.1:1/test?sslmode=disable";
    let options = PostgresOptions::new(SecretString::from(url.to_owned()), "org")
        .unwrap()
        .with_connect_timeout(Duration::from_secs(2));
    let err = Database::connect(&options).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{options:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

/// The rows of a table with the transaction that last wrote each.
async fn versions(pg: &Pg, table: &str) -> Vec<(String, String)> {
    let key = if table == "delivered" {
        "event_id"
    } else {
        "source"
    };
    pg.admin
        .query(
            &format!(
                "SELECT {key}, xmin::text FROM \"{}\".{table} ORDER BY 1",
                pg.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn a_batch_writes_its_own_rows_only() {
    let Some(pg) = pg("batch").await else {
        return;
    };
    let db = pg.db("org").await;
    let (options, clock) = options_at_t0();
    let t = db.tracker(Generation(0), options).await.unwrap();
    for i in 0..2_000 {
        t.record_delivered("device:a", &format!("e{i}"), Some(at(1)))
            .await
            .unwrap();
    }
    for i in 0..50 {
        t.advance_floor(&format!("device:{i}"), at(1))
            .await
            .unwrap();
    }
    t.persist().await.unwrap();
    let (ids, sources) = (
        versions(&pg, "delivered").await,
        versions(&pg, "sources").await,
    );
    assert_eq!((ids.len(), sources.len()), (2_000, 50));

    // The next batch: two deliveries and one source's floor.
    clock.advance(TimeDelta::minutes(10));
    t.record_delivered("device:a", "new-1", Some(at(2)))
        .await
        .unwrap();
    t.record_delivered("device:a", "new-2", Some(at(2)))
        .await
        .unwrap();
    t.advance_floor("device:7", at(2)).await.unwrap();
    t.persist().await.unwrap();
    let (ids_after, sources_after) = (
        versions(&pg, "delivered").await,
        versions(&pg, "sources").await,
    );
    let written = |before: &[(String, String)], after: &[(String, String)]| {
        after
            .iter()
            .filter(|row| !before.contains(row))
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(written(&ids, &ids_after), ["new-1", "new-2"]);
    assert_eq!(written(&sources, &sources_after), ["device:7"]);
    pg.done().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_term_paused_past_its_deadline_is_not_current_before_lost_fires() {
    let Some(pg) = pg("paused").await else {
        return;
    };
    let db = pg.db("org").await;
    let elector = Elector::new(db, "a".into(), Duration::from_secs(2));
    let stop = CancellationToken::new();
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let end = stop.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        elector.lead(stop, move |term| {
            let (record, end) = (record.clone(), end.clone());
            async move {
                let before = term.is_current();
                // The whole process stalls past the lease (as under SIGSTOP):
                // no task runs, the elector cannot cancel `lost`.
                std::thread::sleep(Duration::from_millis(2_500));
                let lost_yet = term.lost.is_cancelled();
                *record.lock().unwrap() = Some((before, lost_yet, term.is_current()));
                end.cancel();
                term.lost.cancelled().await;
            }
        }),
    )
    .await
    .expect("lead returns when stopped");
    assert_eq!(
        *seen.lock().unwrap(),
        Some((true, false, false)),
        "(current before, lost fired, current after the stall)"
    );
    pg.done().await;
}
