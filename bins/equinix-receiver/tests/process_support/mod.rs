//! What the process tests (ops, demo, chaos, dead letters) share: signalling
//! the receiver, collecting its log lines and reading one metric out of its
//! Prometheus text.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

/// The environment every spawned receiver gets: no token or log filter
/// from the test's own environment, and polling a local simulator faster
/// than the 1 s minimum allowed.
pub(crate) fn receiver_env(command: &mut Command) -> &mut Command {
    command
        .env_remove("RUST_LOG")
        .env_remove("METAL_AUTH_TOKEN")
        .env_remove("DIREKTIV_TOKEN")
        .env("EQUINIX_RECEIVER_ALLOW_FAST_POLL", "1")
}

/// Sends `signal` (`TERM`, `INT`) to the process `pid` with `kill`.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The value of one sample in a Prometheus text exposition: `sample` is the
/// metric name with its labels exactly as printed
/// (`equinix_receiver_errors_total{kind="auth"}`).
pub(crate) fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// Collects the child's stderr (piped), line by line, on a thread of its own
/// until the child closes it.
pub(crate) fn collect_stderr(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    logs
}
