//! Issue 22's figures: what reading every event costs. `busy`: one device
//! list taking one new event a second, read at two page sizes: API requests
//! and pages per read of that list. `cadence`: 200 quiet lists at a 2 s
//! `pollInterval` with adaptive polling off: reads per list per interval.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use metal_sim::MetalStats;
use serde::Serialize;

use crate::receiver::SweepLine;
use crate::scenarios::{DIREKTIV_LATENCY, Fleet, Setup};

/// `equinix.pollInterval` of the busy runs (the default; adaptive polling
/// off, though a busy list stays hot anyway).
pub(crate) const BUSY_INTERVAL: Duration = Duration::from_secs(10);
/// `equinix.perPage` of the busy runs: the default and a small one.
pub(crate) const BUSY_PER_PAGE: [u32; 2] = [100, 10];
/// Reads of the busy list counted, after the warm-up.
pub(crate) const BUSY_READS: usize = 9;
/// The busy device's recent past: one event a second for the 15 minutes
/// before the start (`emit_device_event_at`), so the list already holds a
/// full `state.overlap` (10 min) of events at that rate. (The simulator's
/// own history is a day older: its spacing is not one a second.)
const BUSY_BACKFILL: Duration = Duration::from_secs(900);
/// `startFrom` this far before the start, past `state.overlap`: a settled
/// read then reaches down to its floor minus the overlap, not to the start
/// point. The first reads deliver these 11 minutes of events (the warm-up).
const BUSY_START_BACK: Duration = Duration::from_secs(660);

/// `equinix.pollInterval` = `maxPollInterval` of the cadence runs.
pub(crate) const CADENCE_INTERVAL: Duration = Duration::from_secs(2);
/// Passes counted.
pub(crate) const CADENCE_PASSES: usize = 30;

/// One project with one device (two lists): the project's list does not
/// show the device's events, so only the device list is busy.
pub(crate) fn busy_fleet() -> Fleet {
    Fleet {
        projects: 1,
        devices_per_project: 1,
        history_per_device: 12,
        latency: Duration::from_millis(20),
    }
}

/// 4 projects × 49 devices: 200 lists.
pub(crate) fn cadence_fleet() -> Fleet {
    Fleet {
        projects: 4,
        devices_per_project: 49,
        history_per_device: 30,
        latency: Duration::from_millis(20),
    }
}

/// Requests for one list between two snapshots of the simulator's counters.
fn list_delta(before: &MetalStats, after: &MetalStats, list: &str) -> u64 {
    after.list_requests.get(list).copied().unwrap_or(0)
        - before.list_requests.get(list).copied().unwrap_or(0)
}

/// One busy run at one page size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BusyRun {
    pub(crate) per_page: u32,
    /// Sweeps before the counted ones (the first reads deliver the events
    /// since `startFrom`, page-capped at a small `perPage`).
    pub(crate) warmup_sweeps: usize,
    /// Reads of the busy list counted (one a sweep).
    pub(crate) reads: usize,
    pub(crate) window_s: f64,
    /// Requests for the busy list at the simulator over the counted reads.
    pub(crate) list_requests: u64,
    pub(crate) requests_per_read: f64,
    /// Pages per read of the busy list by the receiver's count (the sweeps'
    /// pages less the project list's requests).
    pub(crate) pages_per_read: f64,
    /// Events served per sweep (both lists; the project list holds two).
    pub(crate) events_served_per_read: f64,
    /// Events delivered per sweep: the new events of one interval.
    pub(crate) delivered_per_read: f64,
    /// Mean sweep wall time (two lists, 20 ms per request).
    pub(crate) sweep_ms: f64,
    pub(crate) warnings: Vec<String>,
}

/// Scenario `busy`: one new event a second on one device list.
pub(crate) async fn busy(binary: &Path, per_page: u32, seed: u64) -> anyhow::Result<BusyRun> {
    let fleet = busy_fleet();
    let mut sim = fleet.sim_config(seed);
    sim.history_end = Some(chrono::Utc::now() - chrono::Duration::days(1));
    sim.project_lists_include_devices = false;
    sim.project_event_share = 0.0;
    let start_from = (chrono::Utc::now() - chrono::Duration::from_std(BUSY_START_BACK)?)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let setup = Setup::start_tuned(
        sim,
        BUSY_INTERVAL,
        Some(BUSY_INTERVAL),
        DIREKTIV_LATENCY,
        |config| {
            config.per_page = per_page;
            config.start_from = start_from;
        },
    )
    .await?;
    let project = setup
        .metal()
        .projects()
        .into_iter()
        .next()
        .context("the busy project")?;
    let device = project
        .devices
        .first()
        .context("the busy device")?
        .id
        .clone();
    let now = setup.metal().now();
    for back in 1..=BUSY_BACKFILL.as_secs() {
        let at = now - chrono::Duration::seconds(i64::try_from(back)?);
        setup
            .metal()
            .emit_device_event_at(&device, at)
            .context("the busy device")?;
    }
    let device_list = format!("/devices/{device}/events");
    let project_list = format!("/projects/{}/events", project.id);
    let mut receiver = setup.spawn(binary, &[])?;

    // One event a second throughout; the sweep lines are taken each second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut warmup_sweeps, mut steady) = (0, 0);
    // Steady once two sweeps in a row delivered at most two intervals' events.
    while steady < 2 {
        ensure!(
            Instant::now() < deadline,
            "no steady sweep after {warmup_sweeps} sweeps; the receiver's last lines:\n{}",
            receiver.tail()
        );
        tick.tick().await;
        setup
            .metal()
            .emit_device_event(&device)
            .context("the busy device")?;
        for line in receiver.drain_sweeps() {
            warmup_sweeps += 1;
            steady = if line.delivered <= 2 * BUSY_INTERVAL.as_secs() {
                steady + 1
            } else {
                0
            };
        }
    }
    // Just after a sweep (within the second): the next one is an interval away.
    let before = setup.metal().stats();
    let started = Instant::now();
    let mut lines: Vec<SweepLine> = Vec::new();
    while lines.len() < BUSY_READS {
        ensure!(
            Instant::now() < deadline,
            "only {} counted sweeps; the receiver's last lines:\n{}",
            lines.len(),
            receiver.tail()
        );
        tick.tick().await;
        setup
            .metal()
            .emit_device_event(&device)
            .context("the busy device")?;
        lines.extend(receiver.drain_sweeps());
    }
    let after = setup.metal().stats();
    let window_s = started.elapsed().as_secs_f64();
    let warnings = receiver.warnings();
    let status = receiver.terminate().await?;
    setup.shutdown().await;
    ensure!(status.success(), "the receiver exited with {status}");
    ensure!(
        lines.iter().all(|l| l.lists == 2 && l.list_errors == 0),
        "a counted sweep did not read both lists cleanly: {lines:?}"
    );

    let reads = lines.len();
    let n = reads as f64;
    let list_requests = list_delta(&before, &after, &device_list);
    let project_requests = list_delta(&before, &after, &project_list);
    let pages: u64 = lines.iter().map(|l| l.pages).sum();
    Ok(BusyRun {
        per_page,
        warmup_sweeps,
        reads,
        window_s,
        list_requests,
        requests_per_read: list_requests as f64 / n,
        pages_per_read: pages.saturating_sub(project_requests) as f64 / n,
        events_served_per_read: (after.events_served - before.events_served) as f64 / n,
        delivered_per_read: lines.iter().map(|l| l.delivered as f64).sum::<f64>() / n,
        sweep_ms: lines
            .iter()
            .map(|l| l.duration.as_secs_f64() * 1000.0)
            .sum::<f64>()
            / n,
        warnings,
    })
}

/// One cadence run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CadenceRun {
    pub(crate) lists: usize,
    /// Passes counted, from the end of one pass to the end of another.
    pub(crate) passes: usize,
    pub(crate) window_s: f64,
    /// `window_s / pollInterval`.
    pub(crate) intervals: f64,
    /// Mean time from one pass's end to the next.
    pub(crate) pass_period_ms: f64,
    /// Mean pass wall time.
    pub(crate) sweep_ms: f64,
    /// Each list's reads (simulator's requests for it) divided by `intervals`.
    pub(crate) reads_per_interval_mean: f64,
    pub(crate) reads_per_interval_min: f64,
    pub(crate) reads_per_interval_max: f64,
    /// API requests per list read (list requests over the passes' lists).
    pub(crate) requests_per_read: f64,
    pub(crate) warnings: Vec<String>,
}

/// Scenario `cadence`: 200 quiet lists, `pollInterval` 2 s, adaptive
/// polling off; counted from the end of a pass to the end of another.
pub(crate) async fn cadence(binary: &Path, seed: u64) -> anyhow::Result<CadenceRun> {
    let fleet = cadence_fleet();
    // `maxPollInterval` = `pollInterval`; the API's budget is never neared.
    let setup = Setup::start(&fleet, seed, CADENCE_INTERVAL, Duration::ZERO).await?;
    let mut receiver = setup.spawn(binary, &[])?;
    let timeout = Duration::from_secs(120);
    receiver.next_sweep(timeout).await?;
    // One settled pass before counting.
    receiver.next_sweep(timeout).await?;
    let before = setup.metal().stats();
    let started = Instant::now();
    let mut lines: Vec<SweepLine> = Vec::new();
    for _ in 0..CADENCE_PASSES {
        lines.push(receiver.next_sweep(timeout).await?);
    }
    let after = setup.metal().stats();
    let window_s = started.elapsed().as_secs_f64();
    let warnings = receiver.warnings();
    let status = receiver.terminate().await?;
    setup.shutdown().await;
    ensure!(status.success(), "the receiver exited with {status}");
    ensure!(
        lines.iter().all(|l| l.list_errors == 0),
        "a pass had list errors: {lines:?}"
    );

    let intervals = window_s / CADENCE_INTERVAL.as_secs_f64();
    let reads: Vec<f64> = after
        .list_requests
        .keys()
        .map(|list| list_delta(&before, &after, list) as f64 / intervals)
        .collect();
    ensure!(
        reads.len() == fleet.lists(),
        "the simulator saw {} lists, the fleet has {}",
        reads.len(),
        fleet.lists()
    );
    let n = lines.len() as f64;
    let list_reads: u64 = lines.iter().map(|l| l.lists).sum();
    let requests: u64 = after
        .list_requests
        .keys()
        .map(|list| list_delta(&before, &after, list))
        .sum();
    Ok(CadenceRun {
        lists: reads.len(),
        passes: lines.len(),
        window_s,
        intervals,
        pass_period_ms: window_s * 1000.0 / n,
        sweep_ms: lines
            .iter()
            .map(|l| l.duration.as_secs_f64() * 1000.0)
            .sum::<f64>()
            / n,
        reads_per_interval_mean: reads.iter().sum::<f64>() / reads.len() as f64,
        reads_per_interval_min: reads.iter().copied().fold(f64::INFINITY, f64::min),
        reads_per_interval_max: reads.iter().copied().fold(0.0, f64::max),
        requests_per_read: requests as f64 / list_reads.max(1) as f64,
        warnings,
    })
}
