//! What the process tests (ops, demo, chaos) share: signalling the receiver
//! and reading one metric out of its Prometheus text.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::process::Command;

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
