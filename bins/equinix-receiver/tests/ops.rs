//! Operability, through the built binary: the health and metrics server,
//! error events, and graceful shutdown on SIGTERM. Each test starts the
//! in-process Metal and Direktiv simulators, writes a config into a temporary
//! directory (server on an ephemeral port, JSON logs), spawns the receiver
//! and reads the bound address from its startup log line.

#![cfg(unix)]

mod process_support;

use process_support::{collect_stderr, metric_value, receiver_env, send_signal};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metal_sim::{
    DirektivFaults, DirektivSim, DirektivSimConfig, DirektivSimHandle, EventScope, MetalFaults,
    MetalSim, MetalSimConfig, MetalSimHandle,
};
use serde_json::Value;

/// The most any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(25);

/// A small fleet: one project with two devices, a short history.
async fn metal(faults: MetalFaults) -> MetalSimHandle {
    MetalSim::start(MetalSimConfig {
        projects: 1,
        devices_per_project: 2,
        history_per_device: 2,
        history_per_project: 1,
        faults,
        ..MetalSimConfig::default()
    })
    .await
    .expect("start the Metal simulator")
}

async fn direktiv(faults: DirektivFaults) -> DirektivSimHandle {
    DirektivSim::start(DirektivSimConfig {
        faults,
        ..DirektivSimConfig::default()
    })
    .await
    .expect("start the Direktiv simulator")
}

/// A config for the simulators; `equinix_extra`, `direktiv_extra` and `top`
/// are extra YAML lines for those sections and the top level.
fn config(
    metal: &MetalSimHandle,
    metal_token: &str,
    direktiv: &DirektivSimHandle,
    state: &Path,
    equinix_extra: &str,
    direktiv_extra: &str,
    top: &str,
) -> String {
    let indent = |lines: &str| {
        lines
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    };
    format!(
        "equinix:\n  organizationId: {org}\n  packetAuthToken: {metal_token}\n  apiUrl: {api}\n{e}\
         direktiv:\n  endpoint: {endpoint}\n  token: {token}\n{d}\
         state:\n  path: {state}\n\
         log:\n  format: json\n  level: info\n\
         server:\n  listen: 127.0.0.1:0\n{top}",
        org = metal.org_id(),
        api = metal.base_url(),
        e = indent(equinix_extra),
        endpoint = direktiv.endpoint_url(),
        token = direktiv.token().expect("the simulator has a token"),
        d = indent(direktiv_extra),
        state = state.display(),
    )
}

/// A running receiver process; killed when dropped.
struct Receiver {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Receiver {
    /// Writes `config` to `dir/config.yaml`, spawns the binary and waits for
    /// the address of its health server.
    async fn spawn(dir: &Path, config: &str) -> Self {
        Self::spawn_with(dir, config, None).await
    }

    /// [`Receiver::spawn`], with at most `max_open_files` file handles
    /// (`ulimit -n`) when given.
    async fn spawn_with(dir: &Path, config: &str, max_open_files: Option<u32>) -> Self {
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).expect("write the config");
        let binary = env!("CARGO_BIN_EXE_equinix-receiver");
        let mut command = match max_open_files {
            None => Command::new(binary),
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    binary,
                ]);
                shell
            }
        };
        let mut child = receiver_env(command.arg(&path))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the receiver");
        let logs = collect_stderr(&mut child);
        let mut receiver = Self {
            child,
            logs,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let logs = Arc::clone(&receiver.logs);
        let found = wait_for("the server's address in the log", || {
            let logs = logs.lock().unwrap();
            logs.iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| v.get("address")?.as_str()?.parse::<SocketAddr>().ok())
        })
        .await;
        receiver.addr = found;
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status (0: no answer), content type and body of `GET path`.
    async fn get(&self, path: &str) -> (u16, String, String) {
        self.get_accepting(path, None).await
    }

    /// [`Receiver::get`] with an `Accept` header.
    async fn get_accepting(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut request = client.get(self.url(path));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let ty = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                (status, ty, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new(), String::new()),
        }
    }

    async fn status(&self, path: &str) -> u16 {
        self.get(path).await.0
    }

    /// The value of one metric sample (`name` with its labels, as printed).
    async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, _, text) = self.get("/metrics").await;
        metric_value(&text, sample)
    }

    fn sigterm(&self) {
        send_signal(self.child.id(), "TERM");
    }

    /// Waits for the process to end, at most `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the receiver did not exit within {limit:?}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(TICK).await;
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it gives a value, at most [`DEADLINE`].
async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(TICK).await;
    }
}

/// Polls an endpoint until it answers `status`, at most [`DEADLINE`].
async fn wait_status(receiver: &Receiver, path: &str, status: u16) {
    let start = Instant::now();
    loop {
        if receiver.status(path).await == status {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{path} never answered {status}; logs:\n{}",
            receiver.logs()
        );
        tokio::time::sleep(TICK).await;
    }
}

fn state_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state.json")
}

/// The `Accept` header Prometheus sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Checks the Prometheus text: every sample line is `name{labels} value`
/// with the receiver's prefix and a number.
fn assert_parses(text: &str) {
    let mut samples = 0;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "not a number: {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("equinix_receiver_"), "unprefixed: {line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line}"
            );
        }
        samples += 1;
    }
    assert!(samples > 20, "too few samples:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_before_and_after_the_first_sweep_and_metrics_move() {
    // A slow API: the first sweep takes a while, so the endpoints can be
    // seen before it completes.
    let metal = metal(MetalFaults {
        latency: Duration::from_millis(400),
        ..MetalFaults::default()
    })
    .await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 300ms\nsweepTimeout: 10s\ntimeout: 5s\nstartFrom: all",
        "",
        "",
    );
    let receiver = Receiver::spawn(dir.path(), &yaml).await;

    // Before the first sweep: alive, not ready.
    assert_eq!(
        receiver.status("/healthz").await,
        200,
        "{}",
        receiver.logs()
    );
    let (status, _, body) = receiver.get("/readyz").await;
    assert_eq!(status, 503, "not ready before the first sweep: {body}");
    let (status, ty, index) = receiver.get("/").await;
    assert_eq!(status, 200);
    assert!(ty.starts_with("text/plain"), "{ty}");
    assert!(index.contains(env!("CARGO_PKG_VERSION")), "{index}");
    for link in ["/healthz", "/readyz", "/metrics"] {
        assert!(index.contains(link), "{index}");
    }
    // Prometheus asks for OpenMetrics and gets it.
    let (status, ty, text) = receiver
        .get_accepting("/metrics", Some(PROMETHEUS_ACCEPT))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ty,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_parses(&text);
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    // curl (no Accept header, or */*) gets the text format 0.0.4, which
    // `promtool check metrics` reads.
    for accept in [None, Some("*/*")] {
        let (status, ty, text) = receiver.get_accepting("/metrics", accept).await;
        assert_eq!(status, 200);
        assert_eq!(ty, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        assert_parses(&text);
        assert!(!text.contains("# EOF"), "{accept:?}");
        assert!(
            text.contains("# TYPE equinix_receiver_build_info gauge\n")
                && text.contains("# TYPE equinix_receiver_events_delivered_total counter\n"),
            "{text}"
        );
    }
    assert_eq!(
        receiver
            .metric("equinix_receiver_events_delivered_total")
            .await,
        Some(0.0)
    );
    assert_eq!(receiver.status("/nope").await, 404);

    // After it: ready, and the history went out.
    wait_status(&receiver, "/readyz", 200).await;
    assert_eq!(receiver.status("/healthz").await, 200);
    // Everything of the configured organization below it (the simulator also
    // holds a foreign organization's events, which must not be sent).
    let history = metal
        .events()
        .iter()
        .filter(|e| e.organization_id == metal.org_id() && e.scope != EventScope::Organization)
        .count();
    let delivered = wait_for("every event delivered", || {
        (direktiv.accepted_count() >= history).then_some(direktiv.accepted_count())
    })
    .await;
    assert_eq!(delivered, history);
    // The counters may lag the simulator by one sweep's bookkeeping: poll.
    let sample = "equinix_receiver_events_delivered_total";
    let start = Instant::now();
    while receiver.metric(sample).await != Some(history as f64) {
        assert!(
            start.elapsed() < DEADLINE,
            "{sample} never reached {history}"
        );
        tokio::time::sleep(TICK).await;
    }
    let (_, _, text) = receiver.get("/metrics").await;
    assert_parses(&text);
    let value = |sample: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
    };
    assert!(value("equinix_receiver_sweeps_total") >= 1.0);
    assert!(value("equinix_receiver_last_successful_sweep_timestamp_seconds") > 1.7e9);
    assert!(value("equinix_receiver_events_received_total{level=\"device\"}") >= 4.0);
    // The history is days old: once delivered it sits below the floors, so
    // the state need not hold its ids.
    assert!(value("equinix_receiver_tracked_events") >= 0.0);
    assert_eq!(value("equinix_receiver_pending_events"), 0.0);
    assert_eq!(value("equinix_receiver_state_persistent"), 1.0);
    assert_eq!(value("equinix_receiver_tls_insecure_skip_verify"), 0.0);
    assert!(value("equinix_receiver_delivery_lag_seconds") > 0.0);
    // The simulator's budget: a million requests an hour.
    assert!(value("equinix_receiver_rate_limit_remaining") >= 0.0);
    assert_eq!(value("equinix_receiver_rate_limit_limit"), 1_000_000.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let reset = value("equinix_receiver_rate_limit_reset_timestamp_seconds");
    assert!(
        (now..=now + 3601.0).contains(&reset),
        "reset at {reset}, now {now}"
    );
    assert!(
        text.contains(
            "equinix_receiver_api_requests_total{endpoint=\"device_events\",code=\"200\"}"
        ),
        "{text}"
    );
    assert!(text.contains("equinix_receiver_sweep_duration_seconds_count"));
    assert!(text.contains(&format!(
        "equinix_receiver_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));

    // Startup logged the version and the config, without secrets.
    let logs = receiver.logs();
    let starting = format!("equinix-receiver {} starting", env!("CARGO_PKG_VERSION"));
    assert!(logs.contains(&starting), "{logs}");
    assert!(
        logs.contains("levels project+device, poll every 300ms"),
        "{logs}"
    );
    assert!(!logs.contains(metal.token()), "the Metal token was logged");
    assert!(
        !logs.contains(direktiv.token().unwrap()),
        "the Direktiv token was logged"
    );
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for key in ["timestamp", "level", "message"] {
            assert!(v.get(key).is_some(), "no {key} in {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_the_loop_is_stalled_and_recovers() {
    // Budget: 3 x 100ms + 1s = 1.3s. Loading the inventory takes four
    // requests one after another (org, projects, two device lists) of
    // 600ms each: 2.4s without a beat.
    let metal = MetalSim::start(MetalSimConfig {
        projects: 2,
        devices_per_project: 1,
        faults: MetalFaults {
            latency: Duration::from_millis(600),
            ..MetalFaults::default()
        },
        ..MetalSimConfig::default()
    })
    .await
    .unwrap();
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 100ms\nsweepTimeout: 1s\ntimeout: 1s\nconcurrency: 1",
        "",
        "",
    );
    let receiver = Receiver::spawn(dir.path(), &yaml).await;
    wait_status(&receiver, "/healthz", 503).await;
    let (_, _, body) = receiver.get("/healthz").await;
    assert!(body.contains("stalled"), "{body}");
    assert_eq!(receiver.status("/readyz").await, 503);

    // The API gets fast again: the loop beats, then sweeps.
    metal.set_faults(MetalFaults::default());
    wait_status(&receiver, "/healthz", 200).await;
    wait_status(&receiver, "/readyz", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_events_are_sent_rate_limited_and_without_secrets() {
    let metal = metal(MetalFaults::default()).await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong_token = "wrong-metal-token-s3cr3t";
    let interval = Duration::from_millis(1500);
    let yaml = config(
        &metal,
        wrong_token,
        &direktiv,
        &state_path(&dir),
        "pollInterval: 100ms",
        "event-on-error: true\nerrorEventInterval: 1500ms",
        "",
    );
    let receiver = Receiver::spawn(dir.path(), &yaml).await;

    let errors = || {
        direktiv
            .accepted()
            .into_iter()
            .filter(|e| e.event_type == "equinix.receiver.error")
            .collect::<Vec<_>>()
    };
    let first = wait_for("the first error event", || errors().into_iter().next()).await;
    let started = Instant::now();
    let data = &first.event["data"];
    assert_eq!(data["kind"], "auth", "{}", first.event);
    assert_eq!(data["status"], 401);
    assert_eq!(data["count"], 1);
    assert!(data["since"].is_string());
    assert!(data["message"].as_str().unwrap().contains("401"), "{data}");
    // The org name is unknown (the inventory never loaded): its id stands in.
    assert_eq!(
        first.source,
        format!("direktiv/listener/equinix/{}", metal.org_id())
    );
    assert_eq!(first.event["datacontenttype"], "application/json");
    assert!(first.event["time"].is_string());

    // The receiver retries the inventory every 100ms, growing; within the
    // interval nothing more is sent, after it one report counts the rest.
    let second = wait_for("the second error event", || errors().into_iter().nth(1)).await;
    assert!(
        started.elapsed() >= interval - Duration::from_millis(300),
        "the second report came after {:?}",
        started.elapsed()
    );
    assert!(
        second.event["data"]["count"].as_u64().unwrap() >= 2,
        "{}",
        second.event
    );
    assert_ne!(first.id, second.id);
    // One report per interval, however many occurrences.
    let sent = errors();
    for pair in sent.windows(2) {
        let gap = pair[1]
            .accepted_at
            .duration_since(pair[0].accepted_at)
            .unwrap_or_default();
        assert!(
            gap >= interval - Duration::from_millis(300),
            "two reports {gap:?} apart"
        );
    }

    // No secret anywhere in what went to Direktiv, nor in the logs.
    for event in direktiv.accepted() {
        let text = event.event.to_string();
        assert!(!text.contains(wrong_token), "{text}");
        assert!(!text.contains(direktiv.token().unwrap()), "{text}");
    }
    assert!(!receiver.logs().contains(wrong_token));
    let sent_metric = receiver
        .metric("equinix_receiver_error_events_sent_total")
        .await
        .unwrap();
    assert!(sent_metric >= 2.0);
    assert!(
        receiver
            .metric("equinix_receiver_errors_total{kind=\"auth\"}")
            .await
            .unwrap()
            >= 3.0
    );
}

/// Starts a receiver against `metal` and `direktiv` with `grace`, waits for
/// its first sweep, emits one event while Direktiv holds deliveries open for
/// `hold`, sends SIGTERM during that delivery and checks the exit.
async fn sigterm_during_delivery(hold: Duration, grace: &str) -> (String, Duration) {
    let metal = metal(MetalFaults::default()).await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 100ms",
        "maxRetries: 0",
        &format!("shutdownGrace: {grace}\n"),
    );
    let mut receiver = Receiver::spawn(dir.path(), &yaml).await;
    wait_status(&receiver, "/readyz", 200).await;
    assert_eq!(direktiv.accepted_count(), 0, "startFrom now: no history");

    direktiv.set_faults(DirektivFaults {
        latency: hold,
        ..DirektivFaults::default()
    });
    // The API reports whole seconds: let the clock pass the baseline's second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let served = metal.stats().events_served;
    let device = metal.projects()[0].devices[0].id.clone();
    let event = metal.emit_device_event(&device).expect("the device exists");
    // Wait until the receiver has read the event; its delivery starts at
    // once and Direktiv holds it open.
    wait_for("the event to be read", || {
        (metal.stats().events_served > served).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        direktiv.accepted_count(),
        0,
        "the delivery is still held open"
    );
    let signalled = Instant::now();
    receiver.sigterm();
    // Shutting down: not ready, but still answering until the end.
    let start = Instant::now();
    let mut saw_not_ready = false;
    while start.elapsed() < Duration::from_millis(300) {
        match receiver.status("/readyz").await {
            503 => {
                saw_not_ready = true;
                break;
            }
            0 => break,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(saw_not_ready, "/readyz stayed 200 during shutdown");
    let status = receiver.wait_exit(Duration::from_secs(15)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", receiver.logs());
    assert!(
        receiver.logs().contains("state saved"),
        "{}",
        receiver.logs()
    );
    drop(receiver);

    // Restart with Direktiv fast again: the event reaches Direktiv.
    direktiv.set_faults(DirektivFaults::default());
    let before = direktiv.accepted_ids();
    let receiver = Receiver::spawn(dir.path(), &yaml).await;
    wait_status(&receiver, "/readyz", 200).await;
    let id = event.id.clone();
    wait_for("the event after the restart", || {
        direktiv.accepted_ids().contains(&id).then_some(())
    })
    .await;
    // Give the restarted receiver a few sweeps to send anything twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let times = direktiv.accepted_ids().iter().filter(|a| **a == id).count();
    if before.contains(&id) {
        assert_eq!(
            times, 1,
            "acknowledged before the shutdown: sent exactly once"
        );
    } else {
        assert!(
            times >= 1,
            "not acknowledged before the shutdown: sent after restart"
        );
    }
    (
        if before.contains(&id) {
            "acknowledged"
        } else {
            "resent"
        }
        .to_owned(),
        took,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_held_delivery_finish_then_exits_zero_and_loses_nothing() {
    let (how, took) = sigterm_during_delivery(Duration::from_millis(1500), "10s").await;
    assert_eq!(
        how, "acknowledged",
        "the in-flight delivery finished within the grace"
    );
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_up_after_the_grace_and_the_event_goes_out_after_restart() {
    let (_, took) = sigterm_during_delivery(Duration::from_secs(5), "500ms").await;
    assert!(
        took < Duration::from_secs(3),
        "the grace (500ms) was not honoured: exit took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_left_out_by_event_types_are_counted_once_and_never_sent() {
    let metal = metal(MetalFaults::default()).await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ours: Vec<_> = metal
        .events()
        .into_iter()
        .filter(|e| e.organization_id == metal.org_id() && e.scope != EventScope::Organization)
        .collect();
    let wanted: std::collections::HashSet<String> = ours
        .iter()
        .filter(|e| e.event_type.starts_with("provisioning."))
        .map(|e| e.id.clone())
        .collect();
    let left_out = ours.len() - wanted.len();
    assert!(
        !wanted.is_empty() && left_out > 0,
        "the fleet needs both kinds: {ours:#?}"
    );
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 200ms\nstartFrom: all\neventTypes: [\"provisioning.*\"]",
        "",
        "",
    );
    let receiver = Receiver::spawn(dir.path(), &yaml).await;

    let sample = "equinix_receiver_events_filtered_total";
    let start = Instant::now();
    while receiver.metric(sample).await != Some(left_out as f64) {
        assert!(
            start.elapsed() < DEADLINE,
            "{sample} never reached {left_out}: {:?}\n{}",
            receiver.metric(sample).await,
            receiver.logs()
        );
        tokio::time::sleep(TICK).await;
    }
    // Later sweeps find them settled: counted once, never pending, never sent.
    let sweeps = "equinix_receiver_sweeps_total";
    let later = receiver.metric(sweeps).await.unwrap_or_default() + 2.0;
    while receiver.metric(sweeps).await.unwrap_or_default() < later {
        assert!(start.elapsed() < DEADLINE, "no two more sweeps");
        tokio::time::sleep(TICK).await;
    }
    assert_eq!(receiver.metric(sample).await, Some(left_out as f64));
    assert_eq!(
        receiver.metric("equinix_receiver_pending_events").await,
        Some(0.0)
    );
    let accepted: std::collections::HashSet<String> = direktiv.accepted_ids().into_iter().collect();
    assert_eq!(
        accepted, wanted,
        "exactly the provisioning events were sent"
    );
    assert_eq!(direktiv.accepted_count(), wanted.len(), "each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_address_is_a_clear_start_up_error() {
    let metal = metal(MetalFaults::default()).await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "",
        "",
        "",
    )
    .replace("listen: 127.0.0.1:0", &format!("listen: {addr}"));
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_equinix-receiver"))
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(stderr.contains("server.listen"), "{stderr}");
    assert_eq!(metal.stats().requests_total, 0, "nothing was requested");
}

/// The events of the simulator's organization that the default levels
/// (project and device lists) deliver.
fn deliverable_history(metal: &MetalSimHandle) -> usize {
    metal
        .events()
        .iter()
        .filter(|e| e.organization_id == metal.org_id() && e.scope != EventScope::Organization)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_direktiv_down_pending_events_stay_published_and_failures_carry_the_status() {
    // A slow API: every sweep spends a while reading lists, which is when a
    // gauge reset at the sweep's start would show 0.
    let metal = metal(MetalFaults {
        latency: Duration::from_millis(150),
        ..MetalFaults::default()
    })
    .await;
    let direktiv = direktiv(DirektivFaults {
        down: true,
        ..DirektivFaults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 100ms\nstartFrom: all",
        "maxRetries: 0",
        "",
    );
    let receiver = Receiver::spawn(dir.path(), &yaml).await;
    let history = deliverable_history(&metal) as f64;
    assert!(history > 0.0);

    let pending = "equinix_receiver_pending_events";
    let start = Instant::now();
    while receiver.metric(pending).await != Some(history) {
        assert!(
            start.elapsed() < DEADLINE,
            "{pending} never reached {history}; logs:\n{}",
            receiver.logs()
        );
        tokio::time::sleep(TICK).await;
    }
    // Sweep after sweep, a scrape at any moment sees what waits: an alert
    // on `min_over_time(pending_events[30m]) > 0` can fire.
    for _ in 0..30 {
        let (_, _, text) = receiver.get("/metrics").await;
        assert_eq!(metric_value(&text, pending), Some(history), "{text}");
        let age = metric_value(&text, "equinix_receiver_oldest_pending_event_age_seconds")
            .unwrap_or_else(|| panic!("no oldest pending age in\n{text}"));
        // The simulator's history spans a week before now.
        assert!(age > 3600.0, "oldest pending age {age}");
        assert_eq!(
            metric_value(
                &text,
                "equinix_receiver_last_successful_delivery_timestamp_seconds"
            ),
            Some(0.0),
            "nothing was acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, text) = receiver.get("/metrics").await;
    let unavailable = metric_value(
        &text,
        "equinix_receiver_delivery_failures_total{reason=\"retryable\",code=\"503\"}",
    )
    .unwrap_or_else(|| panic!("no 503 failures in\n{text}"));
    assert!(unavailable >= history, "{unavailable} failures");
    assert_eq!(
        metric_value(
            &text,
            "equinix_receiver_delivery_failures_total{reason=\"permanent\",code=\"401\"}"
        ),
        Some(0.0),
        "known codes exist at 0"
    );
    assert_eq!(direktiv.accepted_count(), 0);

    // Direktiv is back: the backlog goes out and the gauges say so.
    direktiv.set_faults(DirektivFaults::default());
    let start = Instant::now();
    while receiver.metric(pending).await != Some(0.0) {
        assert!(start.elapsed() < DEADLINE, "{pending} never went back to 0");
        tokio::time::sleep(TICK).await;
    }
    let (_, _, text) = receiver.get("/metrics").await;
    assert_eq!(
        metric_value(&text, "equinix_receiver_oldest_pending_event_age_seconds"),
        Some(0.0)
    );
    let acknowledged = metric_value(
        &text,
        "equinix_receiver_last_successful_delivery_timestamp_seconds",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&acknowledged),
        "last delivery at {acknowledged}, now {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_that_runs_out_of_time_shows_in_the_duration_histogram() {
    let metal = metal(MetalFaults::default()).await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 100ms\nsweepTimeout: 2s\ntimeout: 2s",
        "",
        "",
    );
    let receiver = Receiver::spawn(dir.path(), &yaml).await;
    wait_status(&receiver, "/readyz", 200).await;

    // Now every list takes 1.5 s: the device lists, then the project list,
    // take 3 s, more than the sweep's 2 s.
    metal.set_faults(MetalFaults {
        latency: Duration::from_millis(1500),
        ..MetalFaults::default()
    });
    let failures = "equinix_receiver_sweep_failures_total";
    let start = Instant::now();
    while receiver.metric(failures).await.unwrap_or(0.0) < 1.0 {
        assert!(
            start.elapsed() < DEADLINE,
            "no sweep timed out; logs:\n{}",
            receiver.logs()
        );
        tokio::time::sleep(TICK).await;
    }
    assert!(
        receiver.logs().contains("the sweep ran out of time"),
        "{}",
        receiver.logs()
    );
    let (_, _, text) = receiver.get("/metrics").await;
    let sum = metric_value(&text, "equinix_receiver_sweep_duration_seconds_sum").unwrap();
    assert!(
        sum >= 2.0,
        "the timed-out sweep (2 s) is not in the histogram: sum {sum}\n{text}"
    );
    // It lands in a finite bucket: the largest one reaches sweepTimeout.
    let count = metric_value(&text, "equinix_receiver_sweep_duration_seconds_count").unwrap();
    let (largest, in_largest) = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("equinix_receiver_sweep_duration_seconds_bucket{le=\"")?;
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.parse::<f64>().ok()?, value.trim().parse::<f64>().ok()?))
        })
        .filter(|(le, _)| le.is_finite())
        .fold((0.0, 0.0), |best, b| if b.0 > best.0 { b } else { best });
    assert!(largest >= 2.0, "largest finite bucket {largest}");
    assert_eq!(in_largest, count, "every sweep within the finite buckets");
}

/// Opens a TCP connection to `addr` and sends the start of a request whose
/// head never ends.
async fn half_sent_request(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the health server");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nX-Slow: ")
        .await
        .expect("send half a request");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_take_the_file_handles_or_keep_healthz_away() {
    let metal = metal(MetalFaults::default()).await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 200ms",
        "",
        "",
    );
    // 256 file handles, 400 idle connections: more than the process has.
    let receiver = Receiver::spawn_with(dir.path(), &yaml, Some(256)).await;
    wait_status(&receiver, "/readyz", 200).await;
    // A connect the server's backlog cannot take hangs: give each a moment.
    let mut idle = Vec::new();
    for _ in 0..400 {
        let connect = tokio::net::TcpStream::connect(receiver.addr);
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            idle.push(stream);
        }
    }
    // Liveness answers within a few seconds although every idle connection
    // is still open on this side, and sweeps go on (their connections to the
    // API need file handles too).
    let flooded = Instant::now();
    let sweeps = receiver
        .metric("equinix_receiver_sweeps_total")
        .await
        .unwrap_or(0.0);
    loop {
        if receiver.status("/healthz").await == 200 {
            break;
        }
        assert!(
            flooded.elapsed() < Duration::from_secs(10),
            "/healthz did not answer within 10 s of 400 idle connections; logs:\n{}",
            receiver.logs()
        );
        tokio::time::sleep(TICK).await;
    }
    let start = Instant::now();
    while receiver
        .metric("equinix_receiver_sweeps_total")
        .await
        .unwrap_or(0.0)
        <= sweeps + 1.0
    {
        assert!(
            start.elapsed() < DEADLINE,
            "sweeps stopped; logs:\n{}",
            receiver.logs()
        );
        tokio::time::sleep(TICK).await;
    }
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_though_a_request_is_half_sent() {
    let metal = metal(MetalFaults::default()).await;
    let direktiv = direktiv(DirektivFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &metal,
        metal.token(),
        &direktiv,
        &state_path(&dir),
        "pollInterval: 200ms",
        "",
        "shutdownGrace: 2s\n",
    );
    let mut receiver = Receiver::spawn(dir.path(), &yaml).await;
    wait_status(&receiver, "/readyz", 200).await;
    let _slow = half_sent_request(receiver.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    receiver.sigterm();
    // The grace and a little: the half-sent request is dropped, not awaited.
    let status = receiver.wait_exit(Duration::from_secs(4)).await;
    assert_eq!(status.code(), Some(0), "{}", receiver.logs());
}
