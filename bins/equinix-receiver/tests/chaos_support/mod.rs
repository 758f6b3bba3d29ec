//! The chaos suite's harness: the simulated Metal API and Direktiv on
//! loopback, the built receiver as a child process, and the accounting that
//! proves nothing was lost.

#![allow(dead_code, reason = "each test binary uses part of it")]

use crate::process_support::send_signal;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};
use metal_sim::{
    DirektivSim, DirektivSimConfig, DirektivSimHandle, MetalSim, MetalSimConfig, MetalSimHandle,
};
use serde_json::Value;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_equinix-receiver");

/// Whether the long version was asked for (`CHAOS_LONG=1`).
pub(crate) fn long() -> bool {
    std::env::var("CHAOS_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Picks `short` in CI and `long` with `CHAOS_LONG=1`.
pub(crate) fn pick<T>(short: T, long_value: T) -> T {
    if long() { long_value } else { short }
}

/// The simulators, a scratch directory and the baseline the receiver starts
/// from: every event created after `baseline` must reach Direktiv.
pub(crate) struct World {
    /// The simulated Metal API.
    pub(crate) metal: MetalSimHandle,
    /// The simulated Direktiv.
    pub(crate) direktiv: DirektivSimHandle,
    /// Config, state and logs live here.
    pub(crate) dir: tempfile::TempDir,
    /// `equinix.startFrom`.
    pub(crate) baseline: DateTime<Utc>,
    /// The receiver's metrics address (`server.listen`).
    pub(crate) metrics_addr: String,
    /// Keys added to the config (`section` -> lines).
    extra: HashMap<&'static str, Vec<String>>,
}

impl World {
    /// Starts both simulators: a small fleet whose history ends two minutes
    /// ago, a baseline one minute ago, so history is never sent and every new
    /// event is.
    pub(crate) async fn start(seed: u64) -> World {
        let now = Utc::now().trunc_subsecs(0);
        let history_end = now - chrono::Duration::seconds(120);
        let metal = MetalSim::start(MetalSimConfig {
            seed,
            projects: 3,
            devices_per_project: 4,
            history_per_device: 12,
            history_end: Some(history_end),
            history_span: Duration::from_secs(24 * 3600),
            ..Default::default()
        })
        .await
        .expect("metal-sim starts");
        let direktiv = DirektivSim::start(DirektivSimConfig {
            seed,
            ..Default::default()
        })
        .await
        .expect("direktiv sim starts");
        let metrics_addr = free_addr();
        World {
            metal,
            direktiv,
            dir: tempfile::tempdir().expect("tempdir"),
            baseline: now - chrono::Duration::seconds(60),
            metrics_addr,
            extra: HashMap::new(),
        }
    }

    /// Adds `line` (e.g. `timeout: 1s`) to `section` (`equinix`, `direktiv`,
    /// `state`, or `""` for the top level) of the next config written.
    pub(crate) fn set(&mut self, section: &'static str, line: &str) {
        self.extra.entry(section).or_default().push(line.to_owned());
    }

    /// Whether a line added to `section` starts with `prefix`.
    fn extra_has(&self, section: &str, prefix: &str) -> bool {
        self.extra
            .get(section)
            .is_some_and(|lines| lines.iter().any(|l| l.starts_with(prefix)))
    }

    /// The state file.
    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.path().join("state").join("state.json")
    }

    /// The receiver's log (every instance appends to it).
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("receiver.log")
    }

    /// Writes the config file and returns its path.
    pub(crate) fn write_config(&self) -> PathBuf {
        let state = self.state_path();
        if let Some(parent) = state.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let mut sections: Vec<(&str, Vec<String>)> = vec![
            (
                "equinix",
                vec![
                    format!("organizationId: {}", self.metal.org_id()),
                    format!("packetAuthToken: {}", self.metal.token()),
                    format!("apiUrl: {}", self.metal.base_url()),
                    "pollInterval: 500ms".to_owned(),
                    "perPage: 20".to_owned(),
                    "maxPages: 50".to_owned(),
                    "levels: [organization, project, device]".to_owned(),
                    format!(
                        "startFrom: \"{}\"",
                        self.baseline.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                    "timeout: 2s".to_owned(),
                    "sweepTimeout: 30s".to_owned(),
                ],
            ),
            (
                "direktiv",
                vec![
                    format!("endpoint: {}", self.direktiv.endpoint_url()),
                    format!("token: {}", self.direktiv.token().unwrap_or_default()),
                    "timeout: 3s".to_owned(),
                    "maxRetries: 2".to_owned(),
                ],
            ),
            // `state.postgres` (high availability) replaces the file.
            (
                "state",
                if self.extra_has("state", "postgres:") {
                    Vec::new()
                } else {
                    vec![format!("path: {}", state.display())]
                },
            ),
            (
                "log",
                vec!["format: json".to_owned(), "level: info".to_owned()],
            ),
            ("server", vec![format!("listen: \"{}\"", self.metrics_addr)]),
        ];
        let mut top = Vec::new();
        for (section, lines) in &self.extra {
            if section.is_empty() {
                top.extend(lines.iter().cloned());
                continue;
            }
            let entry = sections.iter_mut().find(|(name, _)| name == section);
            let entry = entry.expect("a known section");
            for line in lines {
                // A later line replaces a default with the same key.
                let key = line.split(':').next().unwrap_or_default();
                entry.1.retain(|l| l.split(':').next() != Some(key));
                entry.1.push(line.clone());
            }
        }
        let mut yaml = String::new();
        for (name, lines) in sections {
            yaml.push_str(name);
            yaml.push_str(":\n");
            for line in lines {
                yaml.push_str("  ");
                yaml.push_str(&line);
                yaml.push('\n');
            }
        }
        for line in top {
            yaml.push_str(&line);
            yaml.push('\n');
        }
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, yaml).expect("config written");
        path
    }

    /// Starts a receiver on the current config, its stderr appended to the log.
    pub(crate) fn spawn(&self, args: &[&str]) -> Receiver {
        let config = self.write_config();
        Receiver::spawn(&config, args, &self.log_path())
    }

    /// The ids of the events created after the start of the simulator (all
    /// after the baseline).
    pub(crate) fn produced(&self) -> Vec<String> {
        let baseline = self.baseline;
        self.metal
            .events()
            .into_iter()
            .filter(|e| e.created_at > baseline)
            .map(|e| e.id)
            .collect()
    }

    /// The produced events Direktiv has not accepted.
    pub(crate) fn missing(&self) -> Vec<String> {
        let accepted: HashSet<String> = self.direktiv.accepted_ids().into_iter().collect();
        self.produced()
            .into_iter()
            .filter(|id| !accepted.contains(id))
            .collect()
    }

    /// Waits until every produced event was accepted, or `deadline` passes;
    /// returns how long it took, or the missing ids.
    pub(crate) async fn wait_all_delivered(
        &self,
        deadline: Duration,
    ) -> Result<Duration, Vec<String>> {
        let started = Instant::now();
        loop {
            let missing = self.missing();
            if missing.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= deadline {
                return Err(missing);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The receiver's log as JSON lines (lines that are not JSON are kept as
    /// `{"message": line}`).
    pub(crate) fn log_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }))
            })
            .collect()
    }

    /// The raw log text.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The `sweep done` log lines.
    pub(crate) fn sweeps(&self) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["message"] == "sweep done")
            .collect()
    }

    /// The duplicate check at the sink: Direktiv keeps each id once, so any
    /// id accepted twice is a bug in the simulator or the test.
    pub(crate) fn assert_sink_holds_each_id_once(&self) {
        let ids = self.direktiv.accepted_ids();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "Direktiv accepted an id twice");
    }

    /// Stops both simulators.
    pub(crate) async fn shutdown(&self) {
        self.metal.shutdown().await;
        self.direktiv.shutdown().await;
    }
}

/// A free loopback address for the receiver's metrics server.
pub(crate) fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// The built receiver, running as a child process.
pub(crate) struct Receiver {
    /// The process.
    pub(crate) child: Child,
}

impl Receiver {
    /// Starts the binary on `config` with `args`, stderr appended to `log`.
    pub(crate) fn spawn(config: &Path, args: &[&str], log: &Path) -> Receiver {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = crate::process_support::receiver_env(Command::new(BIN).args(args).arg(config))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the receiver starts");
        Receiver { child }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub(crate) fn term(&self) {
        send_signal(self.pid(), "TERM");
    }

    /// Whether the process has exited (and how), without waiting.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `limit` for the process to exit.
    pub(crate) async fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if started.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The resident set size in KiB, from `/proc/<pid>/status`.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill();
        }
    }
}

/// `GET /metrics` from the receiver's server, if it serves one.
pub(crate) fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// One scenario's figures, printed for docs/reliability.md.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// The scenario.
    pub(crate) scenario: &'static str,
    /// Events created after the baseline.
    pub(crate) produced: usize,
    /// Of those, accepted by Direktiv.
    pub(crate) delivered: usize,
    /// Produced but never accepted.
    pub(crate) lost: usize,
    /// Resends Direktiv refused as duplicates.
    pub(crate) duplicates: u64,
    /// Receiver processes started.
    pub(crate) restarts: usize,
    /// The largest RSS sampled, KiB.
    pub(crate) max_rss_kib: u64,
    /// Anything else worth a line.
    pub(crate) notes: Vec<String>,
}

impl Figures {
    /// Fills the event counts from the world.
    pub(crate) fn count(&mut self, world: &World) {
        let produced = world.produced();
        let accepted: HashSet<String> = world.direktiv.accepted_ids().into_iter().collect();
        self.produced = produced.len();
        self.delivered = produced.iter().filter(|id| accepted.contains(*id)).count();
        self.lost = self.produced - self.delivered;
        self.duplicates = world.direktiv.stats().duplicates_rejected;
    }

    /// Prints the figures (visible with `--nocapture`).
    #[expect(clippy::print_stdout, reason = "the suite's report")]
    pub(crate) fn print(&self) {
        println!(
            "CHAOS {} ({}): produced={} delivered={} lost={} duplicates={} restarts={} max_rss_kib={}{}",
            self.scenario,
            if long() { "long" } else { "short" },
            self.produced,
            self.delivered,
            self.lost,
            self.duplicates,
            self.restarts,
            self.max_rss_kib,
            self.notes
                .iter()
                .map(|n| format!(" {n}"))
                .collect::<String>()
        );
    }
}
