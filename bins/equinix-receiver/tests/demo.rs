//! The demo as a person runs it: the built binary with `--demo`, its stdout
//! read line by line against a deadline.

mod process_support;

use process_support::send_signal;

use std::cell::Cell;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running demo and its stdout, one line at a time.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    /// Starts the demo as a newcomer does: without `RUST_LOG`.
    fn start(args: &[&str]) -> Self {
        Self::start_with_log(args, None)
    }

    /// Starts the demo with `RUST_LOG` set to `rust_log`, or unset.
    fn start_with_log(args: &[&str], rust_log: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_equinix-receiver"));
        command.arg("--demo").args(args).env_remove("RUST_LOG");
        if let Some(rust_log) = rust_log {
            command.env("RUST_LOG", rust_log);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one matches, failing with everything seen when the
    /// deadline passes or stdout closes first.
    fn wait_for(&mut self, what: &str, within: Duration, matches: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = matches(&line);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    panic!(
                        "no {what} within {within:?}; stdout so far:\n{}",
                        self.output()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let stderr = self.stderr();
                    panic!(
                        "stdout closed before {what}; stdout:\n{}\nstderr:\n{stderr}",
                        self.output()
                    );
                }
            }
        }
    }

    /// Waits for the process to end by itself, reading the rest of stdout.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The reader thread drains what is left.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "the demo did not exit within {within:?}; stdout so far:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn interrupt(&self) {
        send_signal(self.child.id(), "INT");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }

    /// The display's warning lines (`HH:MM:SS !!! ...`).
    fn warning_lines(&self) -> Vec<&String> {
        self.seen.iter().filter(|l| is_warning_line(l)).collect()
    }

    /// The per-event lines: they end in the CloudEvent's source.
    fn event_lines(&self) -> Vec<&String> {
        self.seen
            .iter()
            .filter(|l| l.contains("direktiv/listener/equinix/Direktiv"))
            .collect()
    }

    /// The number after `label` in the summary, e.g. `lost: 0`.
    fn summary_number(&self, label: &str) -> u64 {
        let line = self
            .seen
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{}", self.output()));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number in `{line}`"))
    }
}

fn is_event_line(line: &str) -> bool {
    line.contains("direktiv/listener/equinix/Direktiv")
}

fn is_warning_line(line: &str) -> bool {
    line.get(8..).is_some_and(|rest| rest.starts_with(" !!! "))
}

/// Between two status lines, each kind of warning is shown at most once: no
/// warning text repeats within a status period.
fn assert_one_warning_per_kind_and_period(demo: &Demo) {
    let out = demo.output();
    for period in out.split(" --- status: ") {
        let mut texts: Vec<&str> = period
            .lines()
            .filter(|l| is_warning_line(l))
            .map(|l| l[13..].split(" (x").next().unwrap_or_default())
            .collect();
        let shown = texts.len();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(
            texts.len(),
            shown,
            "a warning repeats in one period:\n{out}"
        );
    }
}

/// Without `RUST_LOG`, the demo writes nothing to stderr: no raw log lines.
fn assert_quiet_stderr(demo: &mut Demo) {
    let stderr = demo.stderr();
    assert!(
        stderr.is_empty(),
        "stderr is not empty:\n{stderr}\nstdout:\n{}",
        demo.output()
    );
}

fn assert_sound_summary(demo: &Demo) {
    let out = demo.output();
    assert!(out.contains("Summary after"), "no summary:\n{out}");
    assert_eq!(demo.summary_number("lost:"), 0, "{out}");
    assert_eq!(demo.summary_number("duplicates:"), 0, "{out}");
    assert!(
        out.contains("Nothing was lost and nothing was sent twice"),
        "{out}"
    );
    let accepted = demo.summary_number("accepted by the simulated Direktiv:");
    let pending = demo.summary_number("still pending:");
    let expected = demo.summary_number("events the simulated Metal API holds since the baseline:");
    assert_eq!(accepted + pending, expected, "{out}");
}

#[test]
fn demo_delivers_events_and_stops_by_itself() {
    let mut demo = Demo::start(&["--demo-events", "5"]);
    let status = demo.wait_exit(Duration::from_secs(30));
    let out = demo.output();
    assert!(status.success(), "exit {status:?}; stdout:\n{out}");

    // The header names both simulators.
    assert!(out.contains("Metal API  http://127.0.0.1:"), "{out}");
    assert!(
        out.contains("Direktiv   http://127.0.0.1:") && out.contains("/events/broadcast"),
        "{out}"
    );
    // At least five readable event lines: time, type, device, project, source.
    let events = demo.event_lines();
    assert!(events.len() >= 5, "{} event lines:\n{out}", events.len());
    let first = events[0];
    let time = first.split_whitespace().next().unwrap_or_default();
    assert!(
        time.len() == 8 && time.as_bytes()[2] == b':',
        "no time in `{first}`"
    );
    assert!(
        events.iter().any(|l| l.contains("Project 0")),
        "no project names:\n{out}"
    );
    assert!(
        events.iter().any(
            |l| l.contains('.') && l.split_whitespace().nth(1).is_some_and(|t| t.contains('.'))
        ),
        "no event types:\n{out}"
    );
    assert!(demo.summary_number("accepted by the simulated Direktiv:") >= 5);
    assert_sound_summary(&demo);
}

#[test]
fn ctrl_c_ends_the_demo_cleanly_with_a_summary() {
    let mut demo = Demo::start(&[]);
    demo.wait_for("delivered event", Duration::from_secs(20), is_event_line);
    demo.interrupt();
    let status = demo.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit {status:?} after SIGINT; stdout:\n{}",
        demo.output()
    );
    assert_sound_summary(&demo);
}

#[test]
fn an_outage_shows_pending_events_that_are_delivered_when_direktiv_is_back() {
    let mut demo = Demo::start(&["--demo-outage", "3", "--demo-rate", "4"]);
    demo.wait_for("outage banner", Duration::from_secs(20), |l| {
        l.contains("Direktiv is DOWN")
    });
    demo.wait_for("status with pending events", Duration::from_secs(10), |l| {
        l.contains("--- status") && !l.contains(" 0 pending")
    });
    demo.wait_for("Direktiv back", Duration::from_secs(10), |l| {
        l.contains("Direktiv is back")
    });
    demo.wait_for(
        "an event delivered after the outage",
        Duration::from_secs(10),
        is_event_line,
    );
    demo.interrupt();
    let status = demo.wait_exit(Duration::from_secs(10));
    let out = demo.output();
    assert!(status.success(), "exit {status:?}; stdout:\n{out}");
    assert_sound_summary(&demo);
    // Direktiv refused deliveries while it was down.
    assert!(
        out.lines()
            .any(|l| l.contains("refused while down or faulty") && !l.contains(" 0 refused")),
        "{out}"
    );
    // The receiver's warnings are lines of the display, not log lines.
    assert!(
        demo.warning_lines()
            .iter()
            .any(|l| l.contains("!!! Direktiv did not take")),
        "{out}"
    );
    assert_one_warning_per_kind_and_period(&demo);
    assert_quiet_stderr(&mut demo);
}

#[test]
fn a_busy_metal_api_slows_the_demo_down_but_loses_nothing() {
    let mut demo = Demo::start(&["--demo-api-faults", "--demo-rate", "5"]);
    // 5% of requests get 429: the first comes within a few sweeps.
    demo.wait_for(
        "a rate-limit warning on the display",
        Duration::from_secs(30),
        |l| is_warning_line(l) && l.contains("!!! the Metal API is rate limiting: pausing 1 s"),
    );
    let events = Cell::new(demo.event_lines().len());
    demo.wait_for("30 delivered events", Duration::from_secs(40), |l| {
        events.set(events.get() + usize::from(is_event_line(l)));
        events.get() >= 30
    });
    demo.interrupt();
    let status = demo.wait_exit(Duration::from_secs(10));
    let out = demo.output();
    assert!(status.success(), "exit {status:?}; stdout:\n{out}");
    assert!(demo.event_lines().len() >= 30, "{out}");
    assert_sound_summary(&demo);
    // The simulated API really answered some requests with 429 or 503.
    assert!(
        out.lines()
            .any(|l| l.contains("faults injected") && !l.contains(" 0 faults injected")),
        "{out}"
    );
    assert_one_warning_per_kind_and_period(&demo);
    assert_quiet_stderr(&mut demo);
}

#[test]
fn rust_log_still_gives_the_full_log_on_stderr() {
    let mut demo = Demo::start_with_log(&["--demo-outage", "2", "--demo-rate", "4"], Some("warn"));
    demo.wait_for("a warning on the display", Duration::from_secs(30), |l| {
        is_warning_line(l) && l.contains("!!! Direktiv did not take")
    });
    demo.interrupt();
    let status = demo.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit {status:?}; stdout:\n{}",
        demo.output()
    );
    let stderr = demo.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("some events were not delivered")),
        "no log lines on stderr:\n{stderr}"
    );
}
