//! The receiver under test: its config file, the child process, its sweep log
//! lines and what `/proc` says about its CPU time and memory.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

/// What the harness puts in the receiver's config file.
#[derive(Debug, Clone)]
pub(crate) struct ReceiverConfig {
    pub(crate) api_url: String,
    pub(crate) org_id: String,
    pub(crate) metal_token: String,
    pub(crate) direktiv_url: String,
    pub(crate) direktiv_token: String,
    pub(crate) poll_interval: Duration,
    pub(crate) per_page: u32,
    pub(crate) concurrency: u32,
    pub(crate) direktiv_concurrency: u32,
    pub(crate) state_path: PathBuf,
    /// `equinix.maxPollInterval`; `None` leaves the key out (its default).
    pub(crate) max_poll_interval: Option<Duration>,
    /// `equinix.startFrom`: `now`, or an RFC 3339 instant.
    pub(crate) start_from: String,
}

impl ReceiverConfig {
    /// The YAML file: levels project+device, JSON logs at info, no server.
    pub(crate) fn yaml(&self) -> String {
        format!(
            "equinix:
  organizationId: {org}
  packetAuthToken: {metal_token}
  apiUrl: {api}
  pollInterval: {interval}ms{max_poll}
  perPage: {per_page}
  concurrency: {concurrency}
  levels: [project, device]
  startFrom: '{start_from}'
direktiv:
  endpoint: {direktiv}
  token: {direktiv_token}
  concurrency: {direktiv_concurrency}
state:
  path: {state}
log:
  format: json
  level: info
server:
  enabled: false
shutdownGrace: 5s
",
            org = self.org_id,
            metal_token = self.metal_token,
            api = self.api_url,
            interval = self.poll_interval.as_millis(),
            max_poll = self
                .max_poll_interval
                .map(|max| format!("\n  maxPollInterval: {}ms", max.as_millis()))
                .unwrap_or_default(),
            per_page = self.per_page,
            concurrency = self.concurrency,
            direktiv = self.direktiv_url,
            direktiv_token = self.direktiv_token,
            direktiv_concurrency = self.direktiv_concurrency,
            state = self.state_path.display(),
            start_from = self.start_from,
        )
    }

    /// Writes the config into `dir` and returns its path.
    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("config.yaml");
        std::fs::write(&path, self.yaml()).context("writing the receiver config")?;
        Ok(path)
    }
}

/// One `sweep done` log line.
#[derive(Debug, Clone)]
pub(crate) struct SweepLine {
    pub(crate) lists: u64,
    pub(crate) pages: u64,
    pub(crate) list_errors: u64,
    pub(crate) delivered: u64,
    pub(crate) deferred: u64,
    pub(crate) duration: Duration,
}

impl SweepLine {
    fn parse(line: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = value.get("fields").unwrap_or(&value);
        if fields.get("message")?.as_str()? != "sweep done" {
            return None;
        }
        let n = |key: &str| fields.get(key).and_then(serde_json::Value::as_u64);
        Some(Self {
            lists: n("lists")?,
            pages: n("pages")?,
            list_errors: n("list_errors").unwrap_or(0),
            delivered: n("delivered").unwrap_or(0),
            deferred: n("deferred").unwrap_or(0),
            duration: Duration::from_millis(n("duration_ms")?),
        })
    }
}

/// A running receiver child process.
pub(crate) struct Receiver {
    child: Child,
    sweeps: mpsc::UnboundedReceiver<SweepLine>,
    tail: Arc<Mutex<VecDeque<String>>>,
    warnings: Arc<Mutex<Vec<String>>>,
    clock_ticks: f64,
}

impl Receiver {
    /// Spawns `binary` with the config and extra arguments; stderr (JSON
    /// log lines) is read on a thread.
    ///
    /// Diagnostics: with `BENCH_RECEIVER_LOG_DIR` set, every stderr line is
    /// also written to `<dir>/receiver-<pid>.log`; `BENCH_RECEIVER_RUST_LOG`
    /// becomes the receiver's `RUST_LOG` (e.g. `equinix_receiver=debug`).
    pub(crate) fn spawn(binary: &Path, config: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_wrapped(&[], binary, config, args)
    }

    /// As [`Receiver::spawn`], with `binary` run by `wrapper` (e.g.
    /// `valgrind --tool=callgrind`), which must keep the process id and
    /// pass stderr through.
    pub(crate) fn spawn_wrapped(
        wrapper: &[String],
        binary: &Path,
        config: &Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command.args(args).arg(config).env_remove("RUST_LOG");
        if let Ok(filter) = std::env::var("BENCH_RECEIVER_RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        let mut child = command
            .env_remove("METAL_AUTH_TOKEN")
            .env_remove("DIREKTIV_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("the receiver's stderr")?;
        let (tx, sweeps) = mpsc::unbounded_channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let (tail_w, warnings_w) = (Arc::clone(&tail), Arc::clone(&warnings));
        let mut log_file = match std::env::var_os("BENCH_RECEIVER_LOG_DIR") {
            Some(dir) => {
                std::fs::create_dir_all(&dir).context("creating BENCH_RECEIVER_LOG_DIR")?;
                let path = Path::new(&dir).join(format!("receiver-{}.log", child.id()));
                eprintln!("the receiver's log: {}", path.display());
                Some(std::io::BufWriter::new(
                    std::fs::File::create(&path).context("creating the receiver's log file")?,
                ))
            }
            None => None,
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(file) = log_file.as_mut() {
                    let _ = writeln!(file, "{line}");
                    if line.contains("sweep done") {
                        let _ = file.flush();
                    }
                }
                if line.contains("\"WARN\"") || line.contains("\"ERROR\"") {
                    warnings_w.lock().expect("warnings lock").push(line.clone());
                }
                if let Some(sweep) = SweepLine::parse(&line) {
                    let _ = tx.send(sweep);
                }
                let mut tail = tail_w.lock().expect("tail lock");
                if tail.len() == 40 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            if let Some(file) = log_file.as_mut() {
                let _ = file.flush();
            }
        });
        Ok(Self {
            child,
            sweeps,
            tail,
            warnings,
            clock_ticks: clock_ticks(),
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the next `sweep done` line.
    pub(crate) async fn next_sweep(&mut self, timeout: Duration) -> anyhow::Result<SweepLine> {
        match tokio::time::timeout(timeout, self.sweeps.recv()).await {
            Ok(Some(sweep)) => Ok(sweep),
            Ok(None) => bail!("the receiver exited; its last lines:\n{}", self.tail()),
            Err(_) => bail!(
                "no sweep finished within {timeout:?}; the receiver's last lines:\n{}",
                self.tail()
            ),
        }
    }

    /// Sweep lines already read and not yet taken.
    pub(crate) fn drain_sweeps(&mut self) -> Vec<SweepLine> {
        let mut out = Vec::new();
        while let Ok(sweep) = self.sweeps.try_recv() {
            out.push(sweep);
        }
        out
    }

    /// Warning and error log lines so far.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.warnings.lock().expect("warnings lock").clone()
    }

    /// The last log lines, for error messages.
    pub(crate) fn tail(&self) -> String {
        let tail = self.tail.lock().expect("tail lock");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// User plus system CPU time so far (`/proc/<pid>/stat`, clock-tick
    /// resolution, usually 10 ms).
    pub(crate) fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .context("reading /proc/<pid>/stat")?;
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("parsing /proc/<pid>/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the command: field 3 (state) is index 0; utime is field 14, stime 15.
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields
                .get(i)
                .context("short /proc/<pid>/stat")?
                .parse::<u64>()? as f64)
        };
        let ticks = ticks(11)? + ticks(12)?;
        Ok(Duration::from_secs_f64(ticks / self.clock_ticks))
    }

    /// Peak resident set size (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> anyhow::Result<u64> {
        self.status_bytes("VmHWM:")
    }

    /// Resident set size now (`VmRSS`), in bytes.
    pub(crate) fn rss(&self) -> anyhow::Result<u64> {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, key: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .context("reading /proc/<pid>/status")?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no {key} in /proc/<pid>/status"))?;
        Ok(kib * 1024)
    }

    /// Waits for the process to exit by itself (e.g. `--once`).
    pub(crate) async fn wait(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!(
                    "the receiver did not exit within {timeout:?}; its last lines:\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM (the receiver persists its state and exits) and waits;
    /// kills it after 15 s.
    pub(crate) async fn terminate(self) -> anyhow::Result<ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        self.wait(Duration::from_secs(15)).await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sweep_line_and_ignores_others() {
        let line = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"INFO","message":"sweep done","lists":1020,"pages":1020,"list_errors":0,"new":3,"delivered":3,"already":0,"rejected":0,"deferred":0,"tracked":3,"duration_ms":2612,"target":"equinix_receiver::app"}"#;
        let sweep = SweepLine::parse(line).expect("a sweep line");
        assert_eq!((sweep.lists, sweep.pages, sweep.delivered), (1020, 1020, 3));
        assert_eq!(sweep.duration, Duration::from_millis(2612));
        let other = r#"{"level":"INFO","message":"inventory loaded","projects":20}"#;
        assert!(SweepLine::parse(other).is_none());
        assert!(SweepLine::parse("not json").is_none());
    }

    #[test]
    fn config_names_every_key_the_harness_relies_on() {
        let config = ReceiverConfig {
            api_url: "http://127.0.0.1:1/metal/v1".into(),
            org_id: "org".into(),
            metal_token: "t".into(),
            direktiv_url: "http://127.0.0.1:2/api".into(),
            direktiv_token: "d".into(),
            poll_interval: Duration::from_millis(1500),
            per_page: 100,
            concurrency: 8,
            direktiv_concurrency: 8,
            state_path: PathBuf::from("/tmp/x/state.json"),
            max_poll_interval: None,
            start_from: "now".into(),
        };
        let yaml = config.yaml();
        for needle in [
            "pollInterval: 1500ms",
            "perPage: 100",
            "concurrency: 8",
            "levels: [project, device]",
            "path: /tmp/x/state.json",
            "format: json",
            "enabled: false",
            "startFrom: 'now'",
        ] {
            assert!(yaml.contains(needle), "{needle} missing from\n{yaml}");
        }
        assert!(!yaml.contains("maxPollInterval"), "{yaml}");
        let adaptive = ReceiverConfig {
            max_poll_interval: Some(Duration::from_secs(60)),
            ..config
        };
        assert!(
            adaptive
                .yaml()
                .contains("  pollInterval: 1500ms\n  maxPollInterval: 60000ms\n"),
            "{}",
            adaptive.yaml()
        );
    }
}
