//! Stalls against a real server: a leader cut off in the middle of its
//! writes, an external exclusive lock on the state tables, a lease row that
//! goes backwards. No backend may be left waiting on a lock held for a
//! client that does not answer, standbys may not pile backends up behind a
//! lock, and two terms never both pass the fence.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use event_dedupe::postgres::{Database, Elector, LeaderEvent, LossReason, PostgresOptions};
use event_dedupe::{Baseline, ManualClock, Tracker, TrackerOptions, conformance};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod pg_support;
use pg_support::{Pg, pg};

const LEASE: Duration = Duration::from_secs(2);

fn tracker_options() -> TrackerOptions {
    TrackerOptions::new()
        .with_baseline(Baseline::All)
        .with_clock(Arc::new(ManualClock::new(conformance::t0())))
}

/// Options for replica `name`, connecting to `url`, named in
/// `pg_stat_activity` after the test's schema and `name`.
fn replica_options(pg: &Pg, url: &str, name: &str) -> PostgresOptions {
    pg.options_at(url, "org")
        .with_lease_duration(LEASE)
        .with_application_name(format!("{}-{name}", pg.schema))
}

/// A TCP proxy that the test freezes: bytes stop flowing both ways and the
/// sockets stay open, as for a process paused (SIGSTOP) or a partition.
/// Armed, it freezes itself once a state write's statement was both
/// prepared and executed (the request naming the fenced write or the lease
/// row's lock, then the next): the leader stops right inside its write, its
/// answer never arriving.
struct Freezer {
    port: u16,
    frozen: Arc<watch::Sender<bool>>,
    armed: Arc<AtomicBool>,
}

/// What marks a state write in the client's bytes: the fenced function, or
/// the lease row locked by an older receiver's multi-statement write.
const WRITE_MARKERS: [&[u8]; 2] = [b"write_state", b"FOR SHARE"];

async fn freezer(target: String) -> Freezer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frozen = Arc::new(watch::channel(false).0);
    let armed = Arc::new(AtomicBool::new(false));
    let (state, trigger) = (frozen.clone(), armed.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let (from_client, to_client) = client.into_split();
            let (from_server, to_server) = server.into_split();
            tokio::spawn(pump(
                from_client,
                to_server,
                state.clone(),
                Some(trigger.clone()),
            ));
            tokio::spawn(pump(from_server, to_client, state.clone(), None));
        }
    });
    Freezer {
        port,
        frozen,
        armed,
    }
}

/// Copies `from` to `to` until either closes; frozen, holds both open and
/// forwards nothing more. With `armed` set, freezes after forwarding the
/// chunk that follows one carrying a [`WRITE_MARKERS`] (its execution).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<watch::Sender<bool>>,
    armed: Option<Arc<AtomicBool>>,
) {
    let mut buffer = vec![0; 64 * 1024];
    let mut marked = false;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *frozen.borrow() {
            break;
        }
        let chunk = &buffer[..n];
        if to.write_all(chunk).await.is_err() {
            return;
        }
        if marked {
            // The statement after the marker's was sent: freeze now.
            frozen.send_replace(true);
            break;
        }
        marked = armed
            .as_ref()
            .is_some_and(|armed| armed.load(Ordering::SeqCst))
            && WRITE_MARKERS
                .iter()
                .any(|marker| chunk.windows(marker.len()).any(|w| w == *marker));
    }
    // Frozen: silent, the sockets open, until the test ends.
    std::future::pending::<()>().await;
}

fn server_of(pg: &Pg) -> String {
    let config: tokio_postgres::Config = pg.url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("a TCP host: {other:?}"),
    };
    format!(
        "{host}:{}",
        config.get_ports().first().copied().unwrap_or(5432)
    )
}

/// The backends of this test's replicas: (application_name, waiting on a lock).
async fn backends(pg: &Pg) -> Vec<(String, bool)> {
    pg.admin
        .query(
            "SELECT application_name, wait_event_type IS NOT DISTINCT FROM 'Lock'
             FROM pg_stat_activity WHERE application_name LIKE $1 || '-%'",
            &[&pg.schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// What the writing terms did: ids written, and when a write last succeeded.
#[derive(Default)]
struct Writes {
    persisted: Mutex<Vec<String>>,
    last_ok: Mutex<Option<(Instant, String)>>,
}

/// A replica that campaigns and, while it leads, records an id and writes
/// the state every 50 ms, as a leader delivering does.
fn replica(
    db: Database,
    name: &'static str,
    stop: CancellationToken,
    writes: Arc<Writes>,
) -> tokio::task::JoinHandle<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let elector = Elector::new(db.clone(), name.to_owned(), LEASE);
    tokio::spawn(async move {
        elector
            .lead(stop, |term| {
                let (db, writes) = (db.clone(), writes.clone());
                async move {
                    let Ok(tracker) = db.tracker(&term, tracker_options()).await else {
                        return;
                    };
                    let at = conformance::t0() + TimeDelta::minutes(1);
                    let mut unwritten = Vec::new();
                    while !term.lost.is_cancelled() {
                        let id = format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
                        tracker.record_delivered("p", &id, Some(at)).await.unwrap();
                        unwritten.push(id);
                        let written = tokio::select! {
                            () = term.lost.cancelled() => break,
                            written = tracker.persist() => written,
                        };
                        if written.is_ok() {
                            writes.persisted.lock().unwrap().append(&mut unwritten);
                            *writes.last_ok.lock().unwrap() = Some((Instant::now(), name.into()));
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
            .await;
    })
}

/// Every id some term saw written is in the database.
async fn nothing_lost(pg: &Pg, writes: &Writes) {
    let stored: std::collections::HashSet<String> = pg
        .admin
        .query(
            &format!("SELECT event_id FROM \"{}\".delivered", pg.schema),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let persisted = writes.persisted.lock().unwrap().clone();
    assert!(!persisted.is_empty());
    let lost: Vec<&String> = persisted
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "written, then gone: {lost:?}");
}

#[expect(clippy::print_stdout, reason = "the figures for docs/ha.md")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_in_the_middle_of_its_writes_strands_no_one() {
    let Some(pg) = pg("frozen").await else {
        return;
    };
    pg.db("setup").await;
    let proxy = freezer(server_of(&pg)).await;
    let via_proxy = pg
        .url_as("postgres", None)
        .replace(&server_of(&pg), &format!("127.0.0.1:{}", proxy.port));
    let a = Database::connect(&replica_options(&pg, &via_proxy, "a"))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let writes = Arc::new(Writes::default());
    let task_a = replica(a, "a", stop.clone(), writes.clone());
    // a leads and writes; then b stands by.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(writes.last_ok.lock().unwrap().as_ref().unwrap().1, "a");
    let b = Database::connect(&replica_options(&pg, &pg.url, "b"))
        .await
        .unwrap();
    let task_b = replica(b, "b", stop.clone(), writes.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;

    // a freezes in the middle of its next write.
    proxy.armed.store(true, Ordering::SeqCst);
    let mut wait = proxy.frozen.subscribe();
    tokio::time::timeout(Duration::from_secs(2), wait.wait_for(|f| *f))
        .await
        .expect("a writes")
        .unwrap();
    let frozen = Instant::now();
    let (mut most_waiting, mut most_backends) = (0, 0);
    let taken_over = loop {
        let now = backends(&pg).await;
        most_waiting = most_waiting.max(now.iter().filter(|(_, waits)| *waits).count());
        most_backends = most_backends.max(now.len());
        if let Some((when, who)) = writes.last_ok.lock().unwrap().clone()
            && who == "b"
        {
            break when;
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(10),
            "b never wrote; backends: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = taken_over - frozen;
    println!(
        "frozen leader: b wrote {took:?} after a froze; at most {most_waiting} backends waiting \
         on a lock, {most_backends} open"
    );
    assert!(
        took <= LEASE + Duration::from_secs(1),
        "b wrote {took:?} after a froze"
    );
    assert!(
        most_waiting <= 2,
        "{most_waiting} backends waited on a lock at once"
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task_b).await;
    task_a.abort();
    nothing_lost(&pg, &writes).await;
    pg.done().await;
}

#[expect(clippy::print_stdout, reason = "the figures for docs/ha.md")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_lock_on_the_state_tables_piles_up_no_backends() {
    let Some(pg) = pg("locked").await else {
        return;
    };
    pg.db("setup").await;
    let stop = CancellationToken::new();
    let writes = Arc::new(Writes::default());
    let mut tasks = Vec::new();
    for name in ["a", "b"] {
        let db = Database::connect(&replica_options(&pg, &pg.url, name))
            .await
            .unwrap();
        tasks.push(replica(db, name, stop.clone(), writes.clone()));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(writes.last_ok.lock().unwrap().is_some(), "a leader writes");

    // A DBA's exclusive lock on every table of the state, for 20 s.
    let (dba, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let schema = &pg.schema;
    dba.batch_execute(&format!(
        "BEGIN; LOCK TABLE \"{schema}\".leases, \"{schema}\".states, \"{schema}\".sources, \
         \"{schema}\".delivered IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let locked = Instant::now();
    let (mut most_waiting, mut most_backends) = (0, 0);
    while locked.elapsed() < Duration::from_secs(20) {
        let now = backends(&pg).await;
        most_waiting = most_waiting.max(now.iter().filter(|(_, waits)| *waits).count());
        most_backends = most_backends.max(now.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dba.batch_execute("COMMIT").await.unwrap();
    let released = Instant::now();
    let resumed = loop {
        if let Some((when, _)) = writes.last_ok.lock().unwrap().clone()
            && when > released
        {
            break when - released;
        }
        assert!(
            released.elapsed() < Duration::from_secs(10),
            "no write after the lock was released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "20 s exclusive lock: at most {most_waiting} backends waiting on it, {most_backends} \
         open; writes resumed {resumed:?} after the release"
    );
    // Each replica waits with at most its elector and its tracker at once.
    assert!(most_waiting <= 4, "{most_waiting} backends waited at once");
    assert!(most_backends <= 6, "{most_backends} backends open at once");
    assert!(
        resumed <= LEASE,
        "writes resumed {resumed:?} after the release"
    );
    stop.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    nothing_lost(&pg, &writes).await;
    pg.done().await;
}

#[tokio::test]
async fn a_lease_row_rolled_back_a_generation_never_lets_two_terms_pass_the_fence() {
    let Some(pg) = pg("rollback").await else {
        return;
    };
    let db = pg.db("org").await;
    let a = Elector::new(db.clone(), "a".into(), LEASE);
    let b = Elector::new(db.clone(), "b".into(), LEASE);
    let first = a.try_acquire().await.unwrap().unwrap();
    a.release(first).await.unwrap();
    let lease_a = a.try_acquire().await.unwrap().unwrap();
    assert_eq!(lease_a.generation.0, 2);
    let old = db.tracker(&lease_a, tracker_options()).await.unwrap();
    let at = conformance::t0() + TimeDelta::minutes(1);
    old.record_delivered("p", "e1", Some(at)).await.unwrap();
    old.persist().await.expect("a writes in its term");

    // The row goes back one generation (a restore, a promoted asynchronous
    // replica): generation 1, expired. b is given generation 2 again.
    pg.admin
        .execute(
            &format!(
                "UPDATE \"{}\".leases SET generation = 1, holder = 'x', expires_at = '-infinity'",
                pg.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let lease_b = b.try_acquire().await.unwrap().unwrap();
    assert_eq!(
        lease_b.generation, lease_a.generation,
        "the same number, twice"
    );
    let new = db.tracker(&lease_b, tracker_options()).await.unwrap();

    // a's term fails the fence: same generation, another holder.
    old.record_delivered("p", "e2", Some(at)).await.unwrap();
    let err = old.persist().await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert!(err.to_string().contains("held by b"), "{err}");
    new.record_delivered("p", "e3", Some(at)).await.unwrap();
    new.persist().await.expect("b writes in its term");
    let ids: Vec<String> = pg
        .admin
        .query(
            &format!(
                "SELECT event_id FROM \"{}\".delivered ORDER BY 1",
                pg.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, ["e1", "e3"]);
    // A fence of the generation alone (no holder) does not pass either.
    let err = db
        .tracker(lease_b.generation, tracker_options())
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    pg.done().await;
}

#[expect(clippy::print_stdout, reason = "the figures for docs/ha.md")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_write_its_state_for_a_lease_steps_down() {
    let Some(pg) = pg("unwritable").await else {
        return;
    };
    let db = Database::connect(&replica_options(&pg, &pg.url, "a"))
        .await
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let elector = Elector::new(db.clone(), "a".into(), LEASE).with_events(Arc::new(move |event| {
        sink.lock().unwrap().push((Instant::now(), event))
    }));
    let stop = CancellationToken::new();
    let writes = Arc::new(Writes::default());
    let lead = tokio::spawn({
        let (stop, writes) = (stop.clone(), writes.clone());
        async move {
            elector
                .lead(stop, |term| {
                    let (db, writes) = (db.clone(), writes.clone());
                    async move {
                        let Ok(tracker) = db.tracker(&term, tracker_options()).await else {
                            return;
                        };
                        let at = conformance::t0() + TimeDelta::minutes(1);
                        let mut n = 0;
                        while !term.lost.is_cancelled() {
                            n += 1;
                            let id = format!("g{}-{n}", term.generation);
                            tracker.record_delivered("p", &id, Some(at)).await.unwrap();
                            if tracker.persist().await.is_ok() {
                                *writes.last_ok.lock().unwrap() = Some((Instant::now(), id));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        writes.last_ok.lock().unwrap().is_some(),
        "a leads and writes"
    );

    // The delivered ids cannot be written; the lease row still can.
    let (dba, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    dba.batch_execute(&format!(
        "BEGIN; LOCK TABLE \"{}\".delivered IN ACCESS EXCLUSIVE MODE",
        pg.schema
    ))
    .await
    .unwrap();
    let locked = Instant::now();
    let stepped_down = loop {
        let found = log.lock().unwrap().iter().find_map(|(when, event)| {
            matches!(
                event,
                LeaderEvent::Lost {
                    reason: LossReason::StateUnwritable,
                    ..
                }
            )
            .then_some(*when)
        });
        if let Some(when) = found {
            break when - locked;
        }
        assert!(
            locked.elapsed() < LEASE * 3,
            "still leading: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("unwritable state: stepped down {stepped_down:?} after the lock");
    assert!(
        stepped_down >= LEASE && stepped_down <= LEASE + Duration::from_secs(1),
        "stepped down {stepped_down:?} after the writes began to fail"
    );
    dba.batch_execute("COMMIT").await.unwrap();
    let released = Instant::now();
    loop {
        if let Some((when, _)) = writes.last_ok.lock().unwrap().clone()
            && when > released
        {
            break;
        }
        assert!(released.elapsed() < LEASE * 2, "no write after the release");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), lead)
        .await
        .unwrap()
        .unwrap();
    pg.done().await;
}
