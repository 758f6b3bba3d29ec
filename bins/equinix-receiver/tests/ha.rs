//! High availability as a user runs it: `--import-state` into PostgreSQL,
//! and three replicas on one database under the chaos of docs/reliability.md
//! (the leader SIGKILLed, SIGSTOPped past its lease, cut off from the
//! database). Needs PostgreSQL (`TEST_POSTGRES_URL`, default the local test
//! server): without one these tests print why and pass, unless `CI` is set.

mod chaos_support;
mod ha_support;
mod process_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use chaos_support::{BIN, Receiver, World, free_addr, scrape};
use chrono::{DateTime, Utc};
use event_dedupe::{FileOptions, FileTracker, Tracker as _};
use ha_support::{Proxy, TestDb};
use metal_sim::DirektivFaults;
use process_support::{metric_value, send_signal};
use serde_json::Value;

const ORG: &str = "7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00";
const PASSWORD: &str = "s3cr3t-db-password";

/// Runs the binary with `STATE_POSTGRES_URL` set to `url`.
fn receiver(args: &[&str], url: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("STATE_POSTGRES_URL", url)
        .env_remove("METAL_AUTH_TOKEN")
        .env_remove("DIREKTIV_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("the receiver runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A config for `schema`, with `state` lines added.
fn config(dir: &Path, schema: &str, state: &str) -> PathBuf {
    let path = dir.join(format!("config-{}.yaml", state.len()));
    std::fs::write(
        &path,
        format!(
            "equinix:\n  organizationId: {ORG}\n  packetAuthToken: metal-token-123\n\
             direktiv:\n  endpoint: http://127.0.0.1:9/api/namespaces/ops/broadcast\n\
             state:\n  postgres:\n    schema: {schema}\n{state}"
        ),
    )
    .unwrap();
    path
}

/// A file state with two delivered ids and one floor.
async fn file_state(path: &Path, ids: &[&str]) {
    let tracker = FileTracker::open(path, FileOptions::default())
        .await
        .unwrap();
    let at = Utc::now() - chrono::Duration::minutes(5);
    for id in ids {
        tracker
            .record_delivered("device:d1", id, Some(at))
            .await
            .unwrap();
    }
    tracker
        .advance_floor("device:d1", at - chrono::Duration::minutes(1))
        .await
        .unwrap();
    tracker.persist().await.unwrap();
}

#[tokio::test]
async fn import_state_copies_a_file_state_once_and_never_shows_the_password() {
    let Some(db) = TestDb::get("import_state").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    file_state(&state, &["e1", "e2"]).await;
    let config = config(dir.path(), &db.schema, "");
    let args = [
        "--import-state",
        state.to_str().unwrap(),
        config.to_str().unwrap(),
    ];

    let first = receiver(&args, &db.url);
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("imported 2 delivered event ids and 1 list floors"),
        "{stdout}"
    );
    // A second run finds the same state there and writes nothing.
    let again = receiver(&args, &db.url);
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("already imported"), "{stdout}");
    // Another state is refused: the database already holds one.
    let other = dir.path().join("other.json");
    file_state(&other, &["e3"]).await;
    let refused = receiver(
        &[
            "--import-state",
            other.to_str().unwrap(),
            config.to_str().unwrap(),
        ],
        &db.url,
    );
    assert_eq!(refused.status.code(), Some(1), "{:?}", text(&refused));

    // Without state.postgres, or beside state.path: a config error.
    let with_path = self::config(dir.path(), &db.schema, "  path: /tmp/x/state.json\n");
    let both = receiver(
        &args[..2]
            .iter()
            .copied()
            .chain([with_path.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &db.url,
    );
    let (_, stderr) = text(&both);
    assert_eq!(both.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("`state.path` and `state.postgres`"),
        "{stderr}"
    );

    // The modes that work on a state file are refused with state.postgres.
    let once = receiver(&["--once", config.to_str().unwrap()], &db.url);
    let (_, stderr) = text(&once);
    assert_eq!(once.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("--once works on a state file"), "{stderr}");

    // The password shows nowhere: not in --check, not in a failure.
    let secret_url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/test",
        free_port()
    );
    let check = receiver(&["--check", config.to_str().unwrap()], &secret_url);
    let (stdout, stderr) = text(&check);
    assert_eq!(check.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("state postgres 127.0.0.1/test"), "{stdout}");
    let failed = receiver(&args, &secret_url);
    let (stdout, stderr) = text(&failed);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("connecting to the PostgreSQL database"),
        "{stderr}"
    );
    for shown in [&stdout, &stderr] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    db.drop_schema().await;
}

/// A port nothing listens on.
fn free_port() -> u16 {
    free_addr().rsplit(':').next().unwrap().parse().unwrap()
}

/// `leaseDuration` and `pollInterval` of the chaos test.
const LEASE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_secs(1);

/// One replica: a process, its proxy to the database, its own Direktiv
/// namespace (so each delivery says who made it), log and metrics address.
struct Replica {
    name: String,
    process: Receiver,
    proxy: Proxy,
    metrics: String,
    log: PathBuf,
    /// When the test SIGKILLed it.
    killed_at: Option<SystemTime>,
}

impl Replica {
    async fn spawn(world: &World, db: &TestDb, n: usize) -> Replica {
        let name = format!("r{n}");
        let proxy = Proxy::start(db.addr).await;
        let metrics = free_addr();
        let base = std::fs::read_to_string(world.write_config()).unwrap();
        let text = base
            .replace(
                &world.direktiv.endpoint_url(),
                &world.direktiv.endpoint_url_for(&name),
            )
            .replace(&world.metrics_addr, &metrics)
            .replace("@@URL@@", &db.url_via(proxy.addr));
        let config = world.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&config, text).unwrap();
        let log = world.dir.path().join(format!("{name}.log"));
        let process = Receiver::spawn(&config, &[], &log);
        Replica {
            name,
            process,
            proxy,
            metrics,
            log,
            killed_at: None,
        }
    }

    fn leads(&self) -> bool {
        scrape(&self.metrics).and_then(|text| metric_value(&text, "equinix_receiver_leader"))
            == Some(1.0)
    }

    fn kill(&mut self) {
        self.killed_at = Some(SystemTime::now());
        self.process.kill();
    }

    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// The status `GET path` gets from the server at `addr`.
fn status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Waits up to `limit` for `GET /readyz` of `replica` to answer `code`.
async fn wait_ready(replica: &Replica, code: u16, limit: Duration) {
    let started = Instant::now();
    while status(&replica.metrics, "/readyz") != Some(code) {
        assert!(
            started.elapsed() < limit,
            "{}: /readyz never answered {code}",
            replica.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The replica that leads now, waiting up to `limit` for exactly one.
async fn leader(replicas: &[Replica], skip: &HashSet<String>, limit: Duration) -> usize {
    let started = Instant::now();
    loop {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|&i| !skip.contains(&replicas[i].name) && replicas[i].killed_at.is_none())
            .filter(|&i| replicas[i].leads())
            .collect();
        if let [one] = leading[..] {
            return one;
        }
        assert!(
            started.elapsed() < limit,
            "no single leader within {limit:?}: {leading:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long after `fault` a replica other than `old` first had an event
/// accepted, waiting up to `limit`.
async fn failover(world: &World, old: &str, fault: SystemTime, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let first = world
            .direktiv
            .accepted()
            .into_iter()
            .filter(|e| e.namespace != old && e.accepted_at > fault)
            .map(|e| e.accepted_at)
            .min();
        if let Some(at) = first {
            return at.duration_since(fault).unwrap_or_default();
        }
        assert!(
            started.elapsed() < limit,
            "no other replica delivered within {limit:?} of the fault"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One term of leadership from a replica's log: its generation and when it
/// began and ended (`None`: still leading at the end).
#[derive(Debug)]
struct Term {
    replica: String,
    generation: i64,
    from: SystemTime,
    to: Option<SystemTime>,
}

fn timestamp(line: &Value) -> SystemTime {
    let text = line["timestamp"].as_str().expect("a timestamp");
    SystemTime::from(DateTime::parse_from_rfc3339(text).expect("RFC 3339"))
}

fn generation(line: &Value) -> i64 {
    match &line["generation"] {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("generation {other}"),
    }
}

/// Every term of `replica`, from its `leading:` and `standing by:` lines,
/// a SIGKILL ending the last.
fn terms(replica: &Replica) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    for line in replica.log_lines() {
        let message = line["message"].as_str().unwrap_or_default();
        if message.starts_with("leading:") {
            terms.push(Term {
                replica: replica.name.clone(),
                generation: generation(&line),
                from: timestamp(&line),
                to: None,
            });
        } else if message.starts_with("standing by:") && line.get("generation").is_some() {
            let term = terms.last_mut().expect("a loss follows a gain");
            assert_eq!(term.generation, generation(&line));
            term.to = Some(timestamp(&line));
        }
    }
    if let (Some(killed), Some(last)) = (replica.killed_at, terms.last_mut())
        && last.to.is_none()
    {
        // A request in flight at the kill may still land a moment later.
        last.to = Some(killed + Duration::from_millis(250));
    }
    terms
}

#[expect(clippy::print_stdout, reason = "the figures for docs/reliability.md")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_fail_over_without_loss_and_never_deliver_two_at_once() {
    let Some(db) = TestDb::get("ha chaos").await else {
        return;
    };
    let mut world = World::start(181).await;
    world.set("equinix", &format!("pollInterval: {}s", POLL.as_secs()));
    world.set(
        "state",
        &format!(
            // One deployment: each replica sends to a Direktiv namespace of
            // its own (to tell who delivered), so the name is set.
            "postgres: {{url: \"@@URL@@\", leaseDuration: {}s, schema: {}, name: chaos}}",
            LEASE.as_secs(),
            db.schema
        ),
    );
    world.direktiv.set_faults(DirektivFaults {
        unavailable: 0.2,
        ..Default::default()
    });
    world.metal.set_events_per_second(10.0);
    let bound = LEASE + POLL + Duration::from_secs(1);

    let mut replicas = Vec::new();
    for n in 1..=3 {
        replicas.push(Replica::spawn(&world, &db, n).await);
    }
    let mut failovers: Vec<(&str, Duration)> = Vec::new();
    let none = HashSet::new();
    let first = leader(&replicas, &none, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The standbys are live and ready (they reach the database) and say they
    // do not lead; the leader counts its one gain.
    for (i, replica) in replicas.iter().enumerate() {
        let text = scrape(&replica.metrics).expect("metrics");
        let leading = metric_value(&text, "equinix_receiver_leader");
        let transitions = metric_value(&text, "equinix_receiver_lease_transitions_total");
        assert_eq!(
            leading,
            Some(if i == first { 1.0 } else { 0.0 }),
            "{}",
            replica.name
        );
        assert_eq!(
            transitions,
            Some(if i == first { 1.0 } else { 0.0 }),
            "{}",
            replica.name
        );
        assert_eq!(
            status(&replica.metrics, "/healthz"),
            Some(200),
            "{}",
            replica.name
        );
        wait_ready(replica, 200, Duration::from_secs(5)).await;
    }

    // The leader SIGKILLed three times, each replaced by a new replica.
    for _ in 0..3 {
        let i = leader(&replicas, &none, Duration::from_secs(10)).await;
        replicas[i].kill();
        let fault = replicas[i].killed_at.unwrap();
        failovers.push((
            "SIGKILL",
            failover(&world, &replicas[i].name, fault, Duration::from_secs(20)).await,
        ));
        let n = replicas.len() + 1;
        replicas.push(Replica::spawn(&world, &db, n).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // SIGSTOPped past its lease, then resumed: it must step down, not deliver.
    let i = leader(&replicas, &none, Duration::from_secs(10)).await;
    let pid = replicas[i].process.pid();
    let fault = SystemTime::now();
    send_signal(pid, "STOP");
    let stopped: HashSet<String> = [replicas[i].name.clone()].into();
    failovers.push((
        "SIGSTOP",
        failover(&world, &replicas[i].name, fault, Duration::from_secs(20)).await,
    ));
    tokio::time::sleep((LEASE + Duration::from_secs(2)).saturating_sub(fault.elapsed().unwrap()))
        .await;
    send_signal(pid, "CONT");
    leader(&replicas, &stopped, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Cut off from PostgreSQL, then reconnected.
    let i = leader(&replicas, &none, Duration::from_secs(10)).await;
    let fault = SystemTime::now();
    replicas[i].proxy.cut();
    failovers.push((
        "partition",
        failover(&world, &replicas[i].name, fault, Duration::from_secs(20)).await,
    ));
    // Cut off, the old leader stands by and is not ready; reconnected, it is.
    wait_ready(&replicas[i], 503, Duration::from_secs(10)).await;
    assert_eq!(status(&replicas[i].metrics, "/healthz"), Some(200));
    replicas[i].proxy.restore();
    wait_ready(&replicas[i], 200, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // No new events; everything produced reaches Direktiv.
    world.metal.set_events_per_second(0.0);
    if let Err(missing) = world.wait_all_delivered(Duration::from_secs(60)).await {
        panic!(
            "{} events never reached Direktiv: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }

    // Who delivered what, when: each delivery inside a term of its replica,
    // and the generations of the deliveries never going down in time order
    // (two leaders at once would interleave them).
    let terms: Vec<Term> = replicas.iter().flat_map(terms).collect();
    let mut deliveries: Vec<(SystemTime, i64, String)> = Vec::new();
    for event in world.direktiv.accepted() {
        let term = terms.iter().find(|t| {
            t.replica == event.namespace
                && t.from <= event.accepted_at
                && t.to.is_none_or(|to| event.accepted_at <= to)
        });
        let Some(term) = term else {
            panic!(
                "{} delivered {} at {:?} outside its terms: {terms:#?}",
                event.namespace, event.id, event.accepted_at
            );
        };
        deliveries.push((event.accepted_at, term.generation, event.namespace.clone()));
    }
    deliveries.sort();
    for pair in deliveries.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "two leaders delivered at once: {pair:?}\nterms: {terms:#?}"
        );
    }

    // What it cost: the failover times and the events sent more than once.
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let accepted = world.direktiv.accepted();
    for event in &accepted {
        *by_id.entry(event.id.as_str()).or_default() += 1;
    }
    let resent = by_id.values().filter(|&&n| n > 1).count();
    let rejected = world.direktiv.stats().duplicates_rejected;
    let generations: BTreeMap<i64, &str> = terms
        .iter()
        .map(|t| (t.generation, t.replica.as_str()))
        .collect();
    println!(
        "HA chaos: produced={} delivered={} lost=0 replicas={} terms={} resent_across_replicas={} \
         duplicates_rejected={} failover_s={:?} bound_s={}",
        world.produced().len(),
        by_id.len(),
        replicas.len(),
        generations.len(),
        resent,
        rejected,
        failovers
            .iter()
            .map(|(what, d)| format!("{what}:{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        bound.as_secs_f64()
    );
    for (what, took) in &failovers {
        assert!(
            *took <= bound,
            "{what}: a new leader delivered {took:?} after the fault, more than {bound:?}"
        );
    }

    for replica in &replicas {
        if replica.killed_at.is_none() {
            replica.process.term();
        }
    }
    for replica in &mut replicas {
        replica.process.wait_for(Duration::from_secs(10)).await;
    }
    world.shutdown().await;
    db.drop_schema().await;
}

/// Production and staging of one organization on one database, each with
/// its own Direktiv endpoint and no `state.postgres.name`: two deployments
/// (named after their endpoints), each leading, each getting every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_of_one_organization_each_receive_every_event() {
    let Some(db) = TestDb::get("ha deployments").await else {
        return;
    };
    let mut world = World::start(23).await;
    world.set("equinix", &format!("pollInterval: {}s", POLL.as_secs()));
    world.set(
        "state",
        &format!(
            "postgres: {{url: \"@@URL@@\", leaseDuration: {}s, schema: {}}}",
            LEASE.as_secs(),
            db.schema
        ),
    );
    world.metal.set_events_per_second(10.0);
    let replicas = [
        Replica::spawn(&world, &db, 1).await,
        Replica::spawn(&world, &db, 2).await,
    ];
    tokio::time::sleep(Duration::from_secs(4)).await;
    world.metal.set_events_per_second(0.0);
    let produced: HashSet<String> = world.produced().into_iter().collect();
    assert!(produced.len() > 10, "{} events", produced.len());
    let started = Instant::now();
    for replica in &replicas {
        loop {
            let got: HashSet<String> = world
                .direktiv
                .accepted()
                .into_iter()
                .filter(|e| e.namespace == replica.name)
                .map(|e| e.id)
                .collect();
            let missing = produced.difference(&got).count();
            if missing == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} missed {missing} of {} events",
                replica.name,
                produced.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(replica.leads(), "{} leads its deployment", replica.name);
    }
    for replica in &replicas {
        replica.process.term();
    }
    for mut replica in replicas {
        replica.process.wait_for(Duration::from_secs(10)).await;
    }
    world.shutdown().await;
    db.drop_schema().await;
}
