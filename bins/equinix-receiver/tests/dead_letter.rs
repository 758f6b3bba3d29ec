//! Refused events are kept, not lost: a CloudEvent Direktiv refuses for good
//! (400, 413, 422 ...) goes into the dead-letter file beside the state, with
//! Direktiv's answer, and `--redeliver-refused` sends it again once Direktiv
//! is fixed. Run as a user runs it: the built binary against a wiremock Metal
//! API and a wiremock Direktiv (see `pipeline_support`).

mod pipeline_support;
mod process_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline_support::*;
use process_support::{collect_stderr, metric_value};
use serde_json::Value;

/// The gauge of dead letters held, as Prometheus prints it.
const GAUGE: &str = "equinix_receiver_dead_letter_events";
/// The most a wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// The dead-letter file beside the state by default.
fn dead_letter_path(world: &World) -> PathBuf {
    world.dir.path().join("state.json.dead-letter.jsonl")
}

/// The entries of the dead-letter file, oldest first.
fn dead_letters(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn ids_of(entries: &[Value]) -> HashSet<String> {
    entries
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Direktiv refuses `bad` with 400, `too_big` with 413, accepts the rest.
fn refuse_two(world: &World, bad: &str, too_big: &str) {
    let (bad, too_big) = (bad.to_owned(), too_big.to_owned());
    world.direktiv.answer(move |event, _| {
        if event["id"] == bad.as_str() {
            Reply::new(400).body(r#"{"error":"invalid cloudevent: extension value too long"}"#)
        } else if event["id"] == too_big.as_str() {
            Reply::new(413).body("request entity too large")
        } else {
            Reply::ok()
        }
    });
}

/// The receiver run as a service (its health server on an ephemeral port),
/// killed when dropped.
struct Service {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Service {
    /// Starts the binary on `config` with its server on 127.0.0.1:0 and waits
    /// for the address it logs and for its state to be open (and locked).
    async fn start(config: &str, dir: &Path) -> Self {
        let config = config.replace(
            "server:\n  enabled: false\n",
            "server:\n  listen: 127.0.0.1:0\n",
        );
        let path = dir.join("service.yaml");
        std::fs::write(&path, config).expect("write the config");
        let mut child = Command::new(BIN)
            .arg(&path)
            .env_remove("METAL_AUTH_TOKEN")
            .env_remove("DIREKTIV_TOKEN")
            .env_remove("STATE_DIRECTORY")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the receiver");
        let logs = collect_stderr(&mut child);
        let mut service = Self {
            child,
            logs,
            addr: String::new(),
        };
        service.addr = service
            .wait_for("the server's address in the log", |s| {
                s.logs().lines().find_map(|line| {
                    let rest = line.split("/metrics on http://").nth(1)?;
                    Some(rest.split_whitespace().next()?.to_owned())
                })
            })
            .await;
        // The server answers before the state and the dead letters are
        // opened; the start-up line comes after.
        service
            .wait_for("the start-up line", |s| {
                s.logs().contains(" starting ").then_some(())
            })
            .await;
        service
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Polls `probe` until it gives a value, at most [`DEADLINE`].
    async fn wait_for<T>(&mut self, what: &str, mut probe: impl FnMut(&Self) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("the receiver exited ({status}); logs:\n{}", self.logs());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The value of one metric sample, once the receiver exports it.
    async fn metric(&mut self, sample: &str) -> f64 {
        let url = format!("http://{}/metrics", self.addr);
        let start = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && let Ok(text) = response.text().await
                && let Some(value) = metric_value(&text, sample)
            {
                return value;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{sample} never showed; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dead-letter gauge a receiver exports right after it started.
async fn gauge_at_start(world: &World, config: &str) -> f64 {
    let mut service = Service::start(config, world.dir.path()).await;
    service.metric(GAUGE).await
}

#[tokio::test]
async fn refused_events_are_kept_with_their_answers_and_resent_once_direktiv_is_fixed() {
    let world = World::start().await;
    let (bad, too_big, fine) = (eid(1), eid(2), eid(3));
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&bad, "provisioning.109", D1, ago(50)),
            device_event(&fine, "provisioning.110", D1, ago(30)),
        ],
    );
    world.metal.add(
        &device_events_path(D2),
        [device_event(&too_big, "power.on", D2, ago(40))],
    );
    refuse_two(&world, &bad, &too_big);
    let text = world.config(&["startFrom: all"], &[]);
    let config = world.write_config(&text);

    let run = world.run(&config, &["--once"]).await;
    run.assert_code(3);
    assert_eq!(world.direktiv.accepted_ids(), std::slice::from_ref(&fine));
    let file = dead_letter_path(&world);
    assert!(
        run.stderr.contains("refused the event for good; kept in")
            && run.stderr.contains("--redeliver-refused"),
        "the refusal says where the event went:\n{}",
        run.stderr
    );
    let kept = dead_letters(&file);
    assert_eq!(ids_of(&kept), set(&[&bad, &too_big]), "{kept:#?}");
    for entry in &kept {
        let id = entry["id"].as_str().unwrap();
        assert_eq!(entry["event"]["id"], id, "the whole CloudEvent is kept");
        assert!(entry["event"]["type"].is_string(), "{entry}");
        assert!(entry["refusedAt"].is_string(), "{entry}");
        let (status, detail) = if id == bad {
            (400, "extension value too long")
        } else {
            (413, "request entity too large")
        };
        assert_eq!(entry["answer"]["status"], status, "{entry}");
        assert!(
            entry["answer"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains(detail)),
            "{entry}"
        );
    }
    assert_eq!(gauge_at_start(&world, &text).await, 2.0);

    // The next run does not resend them: they are settled, and kept.
    world.direktiv.clear();
    world.run(&config, &["--once"]).await.assert_code(0);
    assert!(
        world.direktiv.posts().is_empty(),
        "a refused event was resent"
    );

    // Direktiv is fixed: exactly those two go out again, and the file empties.
    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    world.metal.clear_hits();
    let run = world.run(&config, &["--redeliver-refused"]).await;
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        "redelivered 2, still refused 0, left 0",
        "stderr:\n{}",
        run.stderr
    );
    let resent = world.direktiv.accepted_ids();
    assert_eq!(resent.len(), 2, "{resent:?}");
    assert_eq!(
        resent.into_iter().collect::<HashSet<_>>(),
        set(&[&bad, &too_big])
    );
    assert!(
        world.metal.hits().is_empty(),
        "--redeliver-refused asked the Metal API"
    );
    assert!(dead_letters(&file).is_empty(), "the file is emptied");
    assert_eq!(gauge_at_start(&world, &text).await, 0.0);
    world.verify().await;
}

/// Direktiv refuses every event with 400.
fn refuse_all(world: &World) {
    world
        .direktiv
        .answer(|_, _| Reply::new(400).body(r#"{"error":"invalid cloudevent"}"#));
}

/// Three refused events of D1, kept by one `--once`; returns the config
/// path, the ids (oldest first) and that run.
async fn three_kept(world: &World, state: &[&str]) -> (PathBuf, Vec<String>, Run) {
    let ids = vec![eid(1), eid(2), eid(3)];
    world.metal.add(
        &device_events_path(D1),
        ids.iter()
            .zip([50, 40, 30])
            .map(|(id, age)| device_event(id, "provisioning.109", D1, ago(age))),
    );
    refuse_all(world);
    let mut text = world.config(&["startFrom: all"], &[]);
    for line in state {
        text = text.replace("state:\n", &format!("state:\n  {line}\n"));
    }
    let config = world.write_config(&text);
    let run = world.run(&config, &["--once"]).await;
    run.assert_code(3);
    (config, ids, run)
}

#[tokio::test]
async fn past_the_bound_the_oldest_refused_events_are_dropped_with_a_warning() {
    let world = World::start().await;
    let (config, ids, run) = three_kept(&world, &["deadLetterMax: 2"]).await;
    let kept = dead_letters(&dead_letter_path(&world));
    let kept: Vec<&str> = kept.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(kept, [ids[1].as_str(), ids[2].as_str()], "oldest first");
    assert!(
        run.stderr.contains("dropped the oldest refused event") && run.stderr.contains(&ids[0]),
        "{}",
        run.stderr
    );
    // Reported once, by the run that dropped it.
    let run = world.run(&config, &["--once"]).await;
    run.assert_code(0);
    assert!(!run.stderr.contains("dropped the oldest"), "{}", run.stderr);
}

#[tokio::test]
async fn redelivery_keeps_what_is_still_refused_and_stops_at_an_endpoint_refusal() {
    let world = World::start().await;
    let (config, ids, _) = three_kept(&world, &[]).await;
    let file = dead_letter_path(&world);

    // Still refused: each is tried, kept with the new answer, exit 3.
    world
        .direktiv
        .answer(|_, _| Reply::new(422).body("still not acceptable"));
    world.direktiv.clear();
    let run = world.run(&config, &["--redeliver-refused"]).await;
    run.assert_code(3);
    assert_eq!(run.stdout.trim(), "redelivered 0, still refused 3, left 0");
    assert_eq!(world.direktiv.posts().len(), 3, "each tried once");
    let kept = dead_letters(&file);
    assert_eq!(ids_of(&kept), ids.iter().cloned().collect());
    for entry in &kept {
        assert_eq!(entry["answer"]["status"], 422, "{entry}");
        assert_eq!(entry["answer"]["detail"], "still not acceptable", "{entry}");
    }

    // A refused token concerns every event: the first answer stops the run.
    world
        .direktiv
        .answer(|_, _| Reply::new(401).body(r#"{"error":"invalid token"}"#));
    world.direktiv.clear();
    let run = world.run(&config, &["--redeliver-refused"]).await;
    run.assert_code(3);
    assert_eq!(run.stdout.trim(), "redelivered 0, still refused 0, left 3");
    assert_eq!(world.direktiv.posts().len(), 1, "stopped at the first 401");
    assert_eq!(dead_letters(&file), kept, "a 401 changes nothing kept");
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    world.verify().await;
}

#[tokio::test]
async fn redelivery_while_a_receiver_runs_on_the_state_is_refused() {
    let world = World::start().await;
    let (config, _, _) = three_kept(&world, &[]).await;
    let before = std::fs::read(dead_letter_path(&world)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let _service = Service::start(&text, world.dir.path()).await;

    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    let run = world.run(&config, &["--redeliver-refused"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("a receiver is running on this state: stop it first"),
        "{}",
        run.stderr
    );
    assert!(world.direktiv.posts().is_empty(), "sent while locked out");
    assert_eq!(std::fs::read(dead_letter_path(&world)).unwrap(), before);
}

#[tokio::test]
async fn a_symlinked_dead_letter_file_is_not_followed() {
    let world = World::start().await;
    let victim = world.dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dead_letter_path(&world)).unwrap();
    world.metal.add(
        &device_events_path(D1),
        [device_event(&eid(1), "provisioning.109", D1, ago(30))],
    );
    refuse_all(&world);

    let run = world.once(&["startFrom: all"], &[]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("is a symbolic link")
            && run.stderr.contains("state.json.dead-letter.jsonl"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(world.direktiv.posts().is_empty());
    let config = world.dir.path().join("config.yaml");
    let run = world.run(&config, &["--redeliver-refused"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("is a symbolic link"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[tokio::test]
async fn a_corrupt_dead_letter_file_is_a_clear_error_and_is_left_alone() {
    let world = World::start().await;
    let file = dead_letter_path(&world);
    let garbage = "this is not a dead letter\n";
    std::fs::write(&file, garbage).unwrap();
    let config = world.write_config(&world.config(&["startFrom: all"], &[]));

    for args in [&["--once"][..], &["--redeliver-refused"]] {
        let run = world.run(&config, args).await;
        run.assert_code(1);
        assert!(
            run.stderr.contains(&file.display().to_string())
                && run.stderr.contains("corrupt at line 1")
                && run.stderr.contains("move the file aside"),
            "{args:?}:\n{}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), garbage, "{args:?}");
    }
    assert!(world.direktiv.posts().is_empty());
}

#[tokio::test]
async fn one_refused_event_in_ten_is_kept_and_every_other_is_delivered() {
    let world = World::start().await;
    let mut all = HashSet::new();
    let mut refused = HashSet::new();
    let mut too_large = HashSet::new();
    for (d, device) in [D1, D2, D3].into_iter().enumerate() {
        let events: Vec<Value> = (0..40u32)
            .map(|n| {
                let id = eid(1000 * (d as u32 + 1) + n);
                all.insert(id.clone());
                if n % 10 == 3 {
                    refused.insert(id.clone());
                }
                if n % 20 == 13 {
                    too_large.insert(id.clone());
                }
                device_event(&id, "provisioning.110", device, ago(600 - i64::from(n)))
            })
            .collect();
        world.metal.add(&device_events_path(device), events);
    }
    let refuse = refused.clone();
    world
        .direktiv
        .answer(move |event, _| match event["id"].as_str() {
            Some(id) if too_large.contains(id) => Reply::new(413).body("too large"),
            Some(id) if refuse.contains(id) => Reply::new(400).body("bad"),
            _ => Reply::ok(),
        });
    let config = world.write_config(&world.config(&["startFrom: all", "perPage: 100"], &[]));

    world.run(&config, &["--once"]).await.assert_code(3);
    let delivered: HashSet<String> = world.direktiv.accepted_ids().into_iter().collect();
    let entries = dead_letters(&dead_letter_path(&world));
    let kept = ids_of(&entries);
    assert_eq!(kept, refused);
    let statuses: Vec<u64> = entries
        .iter()
        .filter_map(|e| e["answer"]["status"].as_u64())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 413).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        6,
        "{statuses:?}"
    );
    assert!(delivered.is_disjoint(&kept));
    assert_eq!(&delivered | &kept, all, "every event is delivered or kept");

    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    let run = world.run(&config, &["--redeliver-refused"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "redelivered 12, still refused 0, left 0");
    assert_eq!(
        world.direktiv.posts().len(),
        refused.len(),
        "one request each"
    );
    world.direktiv.clear();
    world.run(&config, &["--once"]).await.assert_code(0);
    assert!(world.direktiv.posts().is_empty());
}

/// The poison event of the tests below: a proxy in front of Direktiv
/// answers 502 for this one event (a body it chokes on), every time.
fn choke_on(world: &World, poison: &str) {
    let poison = poison.to_owned();
    world.direktiv.answer(move |event, _| {
        if event["id"] == poison.as_str() {
            Reply::new(502).body("<html><body>502 Bad Gateway</body></html>")
        } else {
            Reply::ok()
        }
    });
}

#[tokio::test]
async fn a_poison_event_is_kept_after_poison_after_and_its_devices_later_events_go_on() {
    const POISON_AFTER: Duration = Duration::from_secs(20);
    let world = World::start().await;
    let poison = eid(1);
    let later: Vec<String> = (2..=11).map(eid).collect();
    world.metal.add(
        &device_events_path(D1),
        std::iter::once(device_event(&poison, "provisioning.109", D1, ago(120))).chain(
            later
                .iter()
                .zip((0..).map(|n| 100 - n))
                .map(|(id, age)| device_event(id, "provisioning.110", D1, ago(age))),
        ),
    );
    choke_on(&world, &poison);
    let text = world.config(
        &["startFrom: all", "pollInterval: 1s"],
        &["poisonAfter: 20s"],
    );
    let started = Instant::now();
    let mut service = Service::start(&text, world.dir.path()).await;

    // Order is kept up to the bound: nothing of D1 goes out before it, then
    // every later event goes out within a minute.
    let expected: HashSet<String> = later.iter().cloned().collect();
    loop {
        let accepted: HashSet<String> = world.direktiv.accepted_ids().into_iter().collect();
        if started.elapsed() < POISON_AFTER {
            assert!(
                accepted.is_empty(),
                "{accepted:?} overtook the failing event before poisonAfter"
            );
        }
        if accepted == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after a minute only {} of 10 later events were delivered; logs:\n{}",
            accepted.len(),
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= POISON_AFTER);
    assert_eq!(
        service
            .metric("equinix_receiver_events_poisoned_total")
            .await,
        1.0
    );
    assert_eq!(
        service
            .metric("equinix_receiver_events_refused_total")
            .await,
        0.0
    );
    let kept = dead_letters(&dead_letter_path(&world));
    assert_eq!(ids_of(&kept), set(&[&poison]), "{kept:#?}");
    assert_eq!(kept[0]["answer"]["status"], 502, "{}", kept[0]);
    assert!(
        kept[0]["answer"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("502 Bad Gateway")),
        "the last answer is kept: {}",
        kept[0]
    );
    let warnings: Vec<String> = service
        .logs()
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("direktiv.poisonAfter"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one WARN per poison event: {warnings:#?}"
    );
    assert!(warnings[0].contains(&poison), "{}", warnings[0]);
    drop(service);

    // The proxy is fixed: --redeliver-refused sends it.
    world.direktiv.answer(|_, _| Reply::ok());
    world.direktiv.clear();
    let run = world
        .run(&world.write_config(&text), &["--redeliver-refused"])
        .await;
    run.assert_code(0);
    assert_eq!(world.direktiv.accepted_ids(), [poison]);
    assert!(dead_letters(&dead_letter_path(&world)).is_empty());
}

#[tokio::test]
async fn when_every_event_fails_nothing_is_kept_as_poison() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&eid(1), "provisioning.109", D1, ago(50)),
            device_event(&eid(2), "provisioning.110", D1, ago(40)),
        ],
    );
    world
        .direktiv
        .answer(|_, _| Reply::new(503).body("Direktiv is restarting"));
    let text = world
        .config(
            &["startFrom: all", "pollInterval: 1s"],
            &["poisonAfter: 10s"],
        )
        .replace("maxRetries: 2", "maxRetries: 0");
    let mut service = Service::start(&text, world.dir.path()).await;
    // Past the bound, both the event and the next one were tried and failed.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let posts = world.direktiv.posts();
    assert!(
        posts.iter().any(|p| p.event["id"] == eid(2).as_str()),
        "the next event was never tried; logs:\n{}",
        service.logs()
    );
    assert_eq!(
        service
            .metric("equinix_receiver_events_poisoned_total")
            .await,
        0.0
    );
    assert!(
        !dead_letter_path(&world).exists() || dead_letters(&dead_letter_path(&world)).is_empty()
    );
}
