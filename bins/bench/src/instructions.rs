//! CPU per list polled as instruction counts: the receiver under
//! `valgrind --tool=callgrind`, its counters zeroed after the first sweep and
//! dumped after the steady sweeps; and this machine's instructions per second,
//! measured on a fixed workload run natively and under `cachegrind`, to turn
//! counts into milliseconds. Counts are steadier than CPU time on a shared
//! machine, but cover user space only (no kernel time).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde::Serialize;

use crate::receiver::{Receiver, SweepLine};
use crate::scenarios::{Fleet, Setup};

/// The hidden flag that runs [`workload`] and prints its CPU time.
pub(crate) const CALIBRATE_FLAG: &str = "--calibrate-workload";

/// One instruction-count run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InstructionsRun {
    /// Lists polled over the measured sweeps (the receiver's count).
    pub(crate) lists: u64,
    /// Steady sweeps measured (after the first).
    pub(crate) sweeps: usize,
    /// Instructions (callgrind `Ir`) over the measured sweeps and the idle
    /// time between them, every thread.
    pub(crate) instructions: u64,
    pub(crate) instructions_per_sweep: f64,
    pub(crate) instructions_per_100_lists: f64,
    /// This machine's instructions per second of user CPU time on the
    /// calibration workload.
    pub(crate) instructions_per_s: f64,
    /// `instructions_per_100_lists / instructions_per_s`, in ms.
    pub(crate) ms_per_100_lists: f64,
    /// The calibration: the workload's instructions and its best native
    /// user + system CPU time.
    pub(crate) calibration_instructions: u64,
    pub(crate) calibration_cpu_ms: f64,
}

/// Runs the steady scenario's receiver under callgrind for `sweeps` sweeps
/// after the first. Under valgrind a sweep is CPU-bound (ten to thirty
/// seconds on F1), so sweeps run back to back with a 1 s interval: the
/// counters, zeroed when the first sweep's line arrives and dumped when the
/// last one's does, hold those sweeps (give or take the few milliseconds
/// between a line and the control command).
pub(crate) async fn measure(
    binary: &Path,
    fleet: &Fleet,
    sweeps: usize,
    seed: u64,
) -> anyhow::Result<InstructionsRun> {
    let (calibration_instructions, calibration_cpu) = calibrate()?;
    let instructions_per_s = calibration_instructions as f64 / calibration_cpu.as_secs_f64();

    let interval = Duration::from_secs(1);
    let setup = Setup::start(fleet, seed, interval, Duration::ZERO).await?;
    let out = setup.dir_path().join("callgrind.out");
    let wrapper = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let mut receiver = Receiver::spawn_wrapped(&wrapper, binary, setup.config_path(), &[])
        .context("starting the receiver under valgrind (apt-get install -y valgrind)")?;
    let slow = Duration::from_secs(600);
    receiver.next_sweep(slow).await?;
    callgrind_control("-z", receiver.pid())?;
    let mut lines: Vec<SweepLine> = Vec::new();
    for _ in 0..sweeps {
        lines.push(receiver.next_sweep(slow).await?);
    }
    callgrind_control("-d", receiver.pid())?;
    let dump = newest_dump(&out)?;
    let instructions = read_total(&dump)?;
    let status = receiver.terminate().await;
    setup.shutdown().await;
    status?;
    ensure!(
        lines.iter().all(|l| l.list_errors == 0 && l.delivered == 0),
        "a steady sweep under valgrind had list errors or deliveries: {lines:?}"
    );
    let lists: u64 = lines.iter().map(|l| l.lists).sum();
    let per_100 = instructions as f64 * 100.0 / lists.max(1) as f64;
    Ok(InstructionsRun {
        lists,
        sweeps,
        instructions,
        instructions_per_sweep: instructions as f64 / sweeps.max(1) as f64,
        instructions_per_100_lists: per_100,
        instructions_per_s,
        ms_per_100_lists: per_100 / instructions_per_s * 1000.0,
        calibration_instructions,
        calibration_cpu_ms: calibration_cpu.as_secs_f64() * 1000.0,
    })
}

fn callgrind_control(option: &str, pid: u32) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control")
        .arg(option)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {option} {pid} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The last dump callgrind wrote next to `out` (`out.1`, `out.2`, ...).
fn newest_dump(out: &Path) -> anyhow::Result<PathBuf> {
    let dir = out.parent().context("the dump's directory")?;
    let prefix = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("the dump's name")?;
    let mut dumps: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let n = name.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    dumps.sort();
    dumps
        .pop()
        .map(|(_, path)| path)
        .context("callgrind wrote no dump")
}

/// The `summary:` (or `totals:`) line of a callgrind dump: instructions.
fn read_total(dump: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(dump).with_context(|| format!("reading {}", dump.display()))?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no summary line in {}", dump.display()))
}

/// The calibration: [`workload`]'s instructions under cachegrind and its
/// best CPU time of three native runs, each in a child process.
fn calibrate() -> anyhow::Result<(u64, Duration)> {
    let exe = std::env::current_exe().context("the bench's own path")?;
    let mut best: Option<Duration> = None;
    for _ in 0..3 {
        let output = Command::new(&exe)
            .arg(CALIBRATE_FLAG)
            .output()
            .context("running the calibration workload")?;
        ensure!(output.status.success(), "the calibration workload failed");
        let ms: f64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .context("reading the workload's CPU time")?;
        let cpu = Duration::from_secs_f64(ms / 1000.0);
        best = Some(best.map_or(cpu, |b| b.min(cpu)));
    }
    let output = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(&exe)
        .arg(CALIBRATE_FLAG)
        .output()
        .context("running the calibration workload under cachegrind")?;
    ensure!(
        output.status.success(),
        "cachegrind failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `==123== I   refs:      1,234,567`
    let instructions = String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|line| {
            line.split_once("I   refs:")
                .map(|(_, n)| n.trim().replace(',', ""))
        })
        .and_then(|n| n.parse().ok())
        .context("no `I refs` line in cachegrind's output")?;
    Ok((instructions, best.context("no native run")?))
}

/// A fixed CPU-bound workload of the receiver's kind (JSON pages decoded to
/// values, searched and serialized again) that prints its own user + system
/// CPU time in ms. About a second natively.
pub(crate) fn workload() -> anyhow::Result<()> {
    let page = sample_page(100);
    let mut checksum = 0usize;
    for _ in 0..1500 {
        let value: serde_json::Value = serde_json::from_str(&page)?;
        let events = value
            .get("events")
            .and_then(serde_json::Value::as_array)
            .context("no events")?;
        checksum += events
            .iter()
            .filter_map(|e| e.get("id").and_then(serde_json::Value::as_str))
            .map(str::len)
            .sum::<usize>();
        checksum += serde_json::to_vec(&value)?.len();
    }
    ensure!(checksum > 0, "the workload did nothing");
    println!("{:.3}", own_cpu_time()?.as_secs_f64() * 1000.0);
    Ok(())
}

/// A Metal-like event page of `n` events.
fn sample_page(n: usize) -> String {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("0b1b9a0c-5f3e-4d2a-9c1e-{i:012}"),
                "state": "success",
                "type": "instance.provisioning.completed",
                "body": "Provisioning of device completed without incident, ready for use",
                "created_at": format!("2026-11-22T01:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "interpolated": "Provisioning completed",
                "relationships": [{"href": format!("/metal/v1/devices/dev-{i}")}],
                "ip": "203.0.113.7",
                "modified_by": {"id": "user-1", "full_name": "Bench User"},
                "href": format!("/metal/v1/events/{i}")
            })
        })
        .collect();
    serde_json::json!({
        "events": events,
        "meta": {"current_page": 1, "last_page": 3, "total": 3 * n}
    })
    .to_string()
}

/// User + system CPU time of this process (`/proc/self/stat`, clock ticks).
fn own_cpu_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("parsing /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/self/stat")?.parse()?)
    };
    let ticks = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / crate::receiver::clock_ticks(),
    ))
}
