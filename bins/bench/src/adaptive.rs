//! Scenario 6: adaptive polling on an idle F1 fleet, in both simulated
//! worlds (project lists that show their devices' events, and ones that do
//! not): API requests per minute once the lists have cooled, as a ratio to
//! reading every list every interval; then latency of Poisson arrivals on
//! random devices, and events lost.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::ensure;
use metal_sim::EventScope;
use serde::Serialize;

use crate::receiver::SweepLine;
use crate::report::percentile;
use crate::scenarios::{DEFAULT_INVENTORY_REFRESH, DIREKTIV_LATENCY, Fleet, Setup};

/// `equinix.pollInterval` and `equinix.maxPollInterval` of the goals.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Which simulated world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum World {
    /// A project's list also shows its devices' events (the real API).
    Covered,
    /// A project's list shows project-level events only.
    Uncovered,
}

impl World {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Covered => "project lists show device events",
            Self::Uncovered => "project lists do not show device events",
        }
    }
}

/// The durations of one adaptive run.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Timing {
    /// Idle time after the first sweep before counting (lists cool).
    #[serde(serialize_with = "as_s")]
    pub(crate) cool: Duration,
    /// The counted idle window.
    #[serde(serialize_with = "as_s")]
    pub(crate) window: Duration,
    /// Poisson arrivals on random devices for this long.
    #[serde(serialize_with = "as_s")]
    pub(crate) arrivals: Duration,
    /// Arrival rate, events per second across the fleet.
    pub(crate) rate: f64,
}

fn as_s<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One adaptive run in one world.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AdaptiveRun {
    pub(crate) world: World,
    /// Lists the first sweep read (every list).
    pub(crate) lists: u64,
    /// API requests in the idle window (simulator's count, inventory included).
    pub(crate) window_requests: u64,
    pub(crate) window_s: f64,
    pub(crate) requests_per_min: f64,
    /// Reading every list every `pollInterval`, plus the inventory refresh
    /// amortized: the requests per minute of the scheduler turned off.
    pub(crate) every_list_per_min: f64,
    /// `requests_per_min / every_list_per_min`.
    pub(crate) ratio: f64,
    /// Sweeps (passes over the due lists) in the idle window.
    pub(crate) window_sweeps: usize,
    /// Of the window's requests: device lists and project lists.
    pub(crate) window_device_list_requests: u64,
    pub(crate) window_project_list_requests: u64,
    /// Events that arrived.
    pub(crate) events: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// Mean wall time of the sweeps while events arrived.
    pub(crate) sweep_ms: f64,
    /// Covered: `pollInterval + sweep time + 200 ms` (for p99); uncovered:
    /// `maxPollInterval + pollInterval` (for every event).
    pub(crate) limit_ms: f64,
    pub(crate) lost: usize,
    pub(crate) duplicates: u64,
    pub(crate) warnings: Vec<String>,
}

/// Runs one world: first sweep, cooling, the counted idle window, then
/// arrivals and the wait for their delivery.
pub(crate) async fn run(
    binary: &Path,
    fleet: &Fleet,
    world: World,
    timing: Timing,
    seed: u64,
) -> anyhow::Result<AdaptiveRun> {
    let mut sim = fleet.sim_config(seed);
    sim.project_lists_include_devices = world == World::Covered;
    // Arrivals on random devices only.
    sim.project_event_share = 0.0;
    sim.org_event_share = 0.0;
    let setup = Setup::start_with(
        sim,
        POLL_INTERVAL,
        Some(MAX_POLL_INTERVAL),
        DIREKTIV_LATENCY,
    )
    .await?;
    let mut receiver = setup.spawn(binary, &[])?;
    let first_timeout = fleet.floor(fleet.lists() as f64) * 10 + Duration::from_secs(120);
    let first = receiver.next_sweep(first_timeout).await?;
    let inventory_requests = crate::scenarios::inventory_requests(&setup.metal().stats());

    tokio::time::sleep(timing.cool).await;
    receiver.drain_sweeps();
    let before = setup.metal().stats();
    let started = Instant::now();
    tokio::time::sleep(timing.window).await;
    let after = setup.metal().stats();
    let window_requests = after.requests_total - before.requests_total;
    let endpoint = |key: &str| {
        after.requests.get(key).copied().unwrap_or(0)
            - before.requests.get(key).copied().unwrap_or(0)
    };
    let window_device_list_requests = endpoint("GET /devices/{id}/events");
    let window_project_list_requests = endpoint("GET /projects/{id}/events");
    let window_s = started.elapsed().as_secs_f64();
    let window_sweeps = receiver.drain_sweeps().len();

    setup.metal().set_events_per_second(timing.rate);
    tokio::time::sleep(timing.arrivals).await;
    setup.metal().set_events_per_second(0.0);
    let arrival_sweeps: Vec<SweepLine> = receiver.drain_sweeps();
    let emitted = setup.metal().new_events();
    let expected: HashMap<String, SystemTime> = emitted
        .iter()
        .filter(|e| e.scope == EventScope::Device)
        .map(|e| (e.id.clone(), e.visible_at))
        .collect();
    // Every event is due within maxPollInterval + pollInterval; a margin.
    let deadline = Instant::now() + MAX_POLL_INTERVAL + POLL_INTERVAL + Duration::from_secs(30);
    loop {
        let delivered: HashSet<String> = setup.direktiv().accepted_ids().into_iter().collect();
        if expected.keys().all(|id| delivered.contains(id)) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warnings = receiver.warnings();
    let status = receiver.terminate().await?;
    ensure!(status.success(), "the receiver exited with {status}");
    let accepted = setup.direktiv().accepted();
    let stats = setup.direktiv().stats();
    setup.shutdown().await;

    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut latencies = Vec::with_capacity(expected.len());
    for event in &accepted {
        let count = seen.entry(event.id.as_str()).or_default();
        *count += 1;
        if *count == 1
            && let Some(visible) = expected.get(&event.id)
        {
            latencies.push(
                event
                    .accepted_at
                    .duration_since(*visible)
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0,
            );
        }
    }
    let lost = expected
        .keys()
        .filter(|id| !seen.contains_key(id.as_str()))
        .count();
    let duplicates = seen.values().map(|c| c - 1).sum::<u64>() + stats.duplicates_rejected;
    let sweep_ms = if arrival_sweeps.is_empty() {
        f64::NAN
    } else {
        arrival_sweeps
            .iter()
            .map(|l| l.duration.as_secs_f64() * 1000.0)
            .sum::<f64>()
            / arrival_sweeps.len() as f64
    };
    let limit_ms = match world {
        World::Covered => POLL_INTERVAL.as_secs_f64() * 1000.0 + sweep_ms + 200.0,
        World::Uncovered => (MAX_POLL_INTERVAL + POLL_INTERVAL).as_secs_f64() * 1000.0,
    };
    let requests_per_min = window_requests as f64 * 60.0 / window_s;
    let every_list_per_min = fleet.lists() as f64 * 60.0 / POLL_INTERVAL.as_secs_f64()
        + inventory_requests as f64 * 60.0 / DEFAULT_INVENTORY_REFRESH.as_secs_f64();
    Ok(AdaptiveRun {
        world,
        lists: first.lists,
        window_requests,
        window_s,
        requests_per_min,
        every_list_per_min,
        ratio: requests_per_min / every_list_per_min,
        window_sweeps,
        window_device_list_requests,
        window_project_list_requests,
        events: expected.len(),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: percentile(&latencies, 100.0),
        sweep_ms,
        limit_ms,
        lost,
        duplicates,
        warnings,
    })
}
