//! The scenarios: each run starts fresh simulators in this process, a fresh
//! state directory and the release receiver as a child process, and returns
//! the figures of that one run.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use metal_sim::{
    DirektivFaults, DirektivSim, DirektivSimConfig, DirektivSimHandle, EventScope, MetalFaults,
    MetalSim, MetalSimConfig, MetalSimHandle, MetalStats, RateLimit,
};
use serde::Serialize;

use crate::receiver::{Receiver, ReceiverConfig, SweepLine};
use crate::report::percentile;

/// API requests in flight at most (`equinix.concurrency`).
pub(crate) const API_CONCURRENCY: u32 = 8;
/// Deliveries in flight at most (`direktiv.concurrency`).
pub(crate) const DIREKTIV_CONCURRENCY: u32 = 8;
/// Events per page (`equinix.perPage`, the default).
pub(crate) const PER_PAGE: u32 = 100;
/// The receiver's default poll interval and inventory refresh, used to
/// amortize the inventory's cost over the sweeps of a real deployment.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_INVENTORY_REFRESH: Duration = Duration::from_secs(300);
/// How fast the simulated Direktiv answers in the catch-up and latency runs.
pub(crate) const DIREKTIV_LATENCY: Duration = Duration::from_millis(2);

/// The shape of a simulated fleet.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Fleet {
    pub(crate) projects: usize,
    pub(crate) devices_per_project: usize,
    pub(crate) history_per_device: usize,
    #[serde(serialize_with = "as_ms")]
    pub(crate) latency: Duration,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl Fleet {
    pub(crate) fn devices(&self) -> usize {
        self.projects * self.devices_per_project
    }

    /// Event lists the receiver polls (levels project+device).
    pub(crate) fn lists(&self) -> usize {
        self.projects + self.devices()
    }

    /// `requests × latency / concurrency` for `requests`.
    pub(crate) fn floor(&self, requests: f64) -> Duration {
        self.latency.mul_f64(requests / f64::from(API_CONCURRENCY))
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} projects × {} devices ({} devices), {} history events per device, {} ms API latency",
            self.projects,
            self.devices_per_project,
            self.devices(),
            self.history_per_device,
            self.latency.as_millis()
        )
    }

    pub(crate) fn sim_config(&self, seed: u64) -> MetalSimConfig {
        MetalSimConfig {
            seed,
            projects: self.projects,
            devices_per_project: self.devices_per_project,
            history_per_device: self.history_per_device,
            // Levels are project+device: organization events would never be
            // polled, so none are generated.
            org_event_share: 0.0,
            faults: MetalFaults {
                latency: self.latency,
                ..MetalFaults::default()
            },
            // The default budget (1,000,000 an hour) is about 280 requests
            // a second: a 1 s interval over 1,020 lists, or back-to-back
            // sweeps of 10,200, would spend it, and the receiver paces itself
            // by the `X-RateLimit-*` headers. The harness measures the
            // receiver unpaced: a budget it never comes near.
            rate_limit: RateLimit {
                limit: 1_000_000_000,
                ..RateLimit::default()
            },
            ..MetalSimConfig::default()
        }
    }
}

/// A metal and a Direktiv simulator, a state directory and a config.
pub(crate) struct Setup {
    metal: MetalSimHandle,
    direktiv: DirektivSimHandle,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    state_path: PathBuf,
}

impl Setup {
    pub(crate) async fn start(
        fleet: &Fleet,
        seed: u64,
        poll_interval: Duration,
        direktiv_latency: Duration,
    ) -> anyhow::Result<Self> {
        // `maxPollInterval` = `pollInterval`: adaptive polling off, every
        // list every sweep, as the goals of scenarios 1 to 5 assume.
        Self::start_with(
            fleet.sim_config(seed),
            poll_interval,
            Some(poll_interval),
            direktiv_latency,
        )
        .await
    }

    /// As [`Setup::start`], with the simulator's config given and
    /// `equinix.maxPollInterval` set when `max_poll_interval` is.
    pub(crate) async fn start_with(
        sim_config: MetalSimConfig,
        poll_interval: Duration,
        max_poll_interval: Option<Duration>,
        direktiv_latency: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_tuned(
            sim_config,
            poll_interval,
            max_poll_interval,
            direktiv_latency,
            |_| {},
        )
        .await
    }

    /// As [`Setup::start_with`], with `tune` changing the receiver's config
    /// (`perPage`, `startFrom`) before it is written.
    pub(crate) async fn start_tuned(
        sim_config: MetalSimConfig,
        poll_interval: Duration,
        max_poll_interval: Option<Duration>,
        direktiv_latency: Duration,
        tune: impl FnOnce(&mut ReceiverConfig),
    ) -> anyhow::Result<Self> {
        let metal = MetalSim::start(sim_config)
            .await
            .context("starting metal-sim")?;
        let direktiv = DirektivSim::start(DirektivSimConfig {
            faults: DirektivFaults {
                latency: direktiv_latency,
                ..DirektivFaults::default()
            },
            ..DirektivSimConfig::default()
        })
        .await
        .context("starting the Direktiv simulator")?;
        let dir = tempfile::Builder::new()
            .prefix("equinix-bench-")
            .tempdir()
            .context("creating a temp dir")?;
        let state_path = dir.path().join("state.json");
        let mut config = ReceiverConfig {
            api_url: metal.base_url(),
            org_id: metal.org_id(),
            metal_token: metal.token().to_owned(),
            direktiv_url: direktiv.endpoint_url(),
            direktiv_token: direktiv.token().unwrap_or_default().to_owned(),
            poll_interval,
            per_page: PER_PAGE,
            concurrency: API_CONCURRENCY,
            direktiv_concurrency: DIREKTIV_CONCURRENCY,
            state_path: state_path.clone(),
            max_poll_interval,
            start_from: "now".to_owned(),
        };
        tune(&mut config);
        let config_path = config.write(dir.path())?;
        Ok(Self {
            metal,
            direktiv,
            dir,
            config_path,
            state_path,
        })
    }

    pub(crate) fn spawn(&self, binary: &Path, args: &[&str]) -> anyhow::Result<Receiver> {
        Receiver::spawn(binary, &self.config_path, args)
    }

    /// The simulated Metal API.
    pub(crate) fn metal(&self) -> &MetalSimHandle {
        &self.metal
    }

    /// The simulated Direktiv.
    pub(crate) fn direktiv(&self) -> &DirektivSimHandle {
        &self.direktiv
    }

    /// The receiver's config file.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The run's temp directory (state file, config).
    pub(crate) fn dir_path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) async fn shutdown(self) {
        self.metal.shutdown().await;
        self.direktiv.shutdown().await;
        drop(self.dir);
    }
}

/// The inventory's requests (organization, projects, devices) among `stats`.
pub(crate) fn inventory_requests(stats: &MetalStats) -> u64 {
    [
        "GET /organizations/{id}",
        "GET /organizations/{id}/projects",
        "GET /projects/{id}/devices",
    ]
    .iter()
    .filter_map(|e| stats.requests.get(*e))
    .sum()
}

/// How a steady run spaces its sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Spacing {
    /// A poll interval long enough that sweeps do not run back to back, so
    /// counters read between two sweeps belong to exactly one sweep.
    Gap,
    /// A 1 s interval: sweeps run back to back (saves time on big fleets;
    /// counters read at a sweep's end may hold a few requests of the next).
    BackToBack,
}

/// The poll interval of a steady run.
pub(crate) fn steady_interval(fleet: &Fleet, spacing: Spacing) -> Duration {
    match spacing {
        Spacing::Gap => {
            let floor = fleet.floor(fleet.lists() as f64);
            Duration::from_secs((floor.as_secs_f64() * 1.25 + 1.0).ceil() as u64)
        }
        Spacing::BackToBack => Duration::from_secs(1),
    }
}

/// One steady-state run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SteadyRun {
    /// Lists the receiver reported per sweep.
    pub(crate) lists: u64,
    /// Sweeps measured after the first.
    pub(crate) sweeps: usize,
    /// API requests per steady sweep (simulator counters).
    pub(crate) requests_per_sweep: f64,
    /// `requests_per_sweep / lists`: API requests per list read (issue 22).
    pub(crate) requests_per_list_read: f64,
    /// Pages the receiver reported per steady sweep.
    pub(crate) pages_per_sweep: f64,
    /// Requests of one inventory load (organization, projects, devices).
    pub(crate) inventory_requests: u64,
    /// The inventory amortized over the sweeps between two refreshes with
    /// the default interval and refresh.
    pub(crate) amortized_inventory_per_sweep: f64,
    /// `requests_per_sweep + amortized_inventory_per_sweep`.
    pub(crate) total_requests_per_sweep: f64,
    pub(crate) first_sweep_ms: f64,
    pub(crate) sweep_ms: f64,
    pub(crate) floor_ms: f64,
    /// `sweep_ms / floor_ms`.
    pub(crate) wall_over_floor: f64,
    pub(crate) cpu_ms_per_sweep: f64,
    pub(crate) cpu_ms_per_100_lists: f64,
    pub(crate) peak_rss_bytes: u64,
    pub(crate) peak_rss_mib: f64,
    /// Resident set size after the last measured sweep (`VmRSS`).
    pub(crate) rss_after_mib: f64,
    pub(crate) state_file_bytes: u64,
    /// A sweep took longer than the poll interval, so the next one started
    /// at once and the per-sweep counters may include a few of its requests.
    pub(crate) back_to_back: bool,
    pub(crate) spacing: Spacing,
    /// The receiver's warning and error log lines.
    pub(crate) warnings: Vec<String>,
}

/// Scenarios 1 and 5: sweeps with no new events, after the first.
pub(crate) async fn steady(
    binary: &Path,
    fleet: &Fleet,
    sweeps: usize,
    spacing: Spacing,
    seed: u64,
) -> anyhow::Result<SteadyRun> {
    let interval = steady_interval(fleet, spacing);
    let setup = Setup::start(fleet, seed, interval, Duration::ZERO).await?;
    let mut receiver = setup.spawn(binary, &[])?;
    let first_timeout = fleet.floor(fleet.lists() as f64) * 10 + Duration::from_secs(120);
    let first = receiver.next_sweep(first_timeout).await?;
    let stats0 = setup.metal.stats();
    let cpu0 = receiver.cpu_time()?;
    let inventory_requests = inventory_requests(&stats0);

    let mut lines: Vec<SweepLine> = Vec::new();
    for _ in 0..sweeps {
        let timeout = (interval + fleet.floor(fleet.lists() as f64)) * 10;
        lines.push(receiver.next_sweep(timeout).await?);
    }
    let stats1 = setup.metal.stats();
    let cpu1 = receiver.cpu_time()?;
    let peak_rss_bytes = receiver.peak_rss()?;
    let rss_bytes = receiver.rss()?;
    let warnings = receiver.warnings();
    let status = receiver.terminate().await?;
    ensure!(status.success(), "the receiver exited with {status}");
    let state_file_bytes = std::fs::metadata(&setup.state_path)
        .map(|m| m.len())
        .unwrap_or(0);
    setup.shutdown().await;

    ensure!(
        lines.iter().all(|l| l.list_errors == 0 && l.deferred == 0),
        "a steady sweep had list errors or deferred events: {lines:?}"
    );
    let n = sweeps as f64;
    let requests_per_sweep = (stats1.requests_total - stats0.requests_total) as f64 / n;
    let pages_per_sweep = lines.iter().map(|l| l.pages as f64).sum::<f64>() / n;
    let sweep_ms = lines
        .iter()
        .map(|l| l.duration.as_secs_f64() * 1000.0)
        .sum::<f64>()
        / n;
    let lists = lines.last().map_or(first.lists, |l| l.lists);
    let period = DEFAULT_POLL_INTERVAL.as_secs_f64().max(sweep_ms / 1000.0);
    let amortized = inventory_requests as f64 * period / DEFAULT_INVENTORY_REFRESH.as_secs_f64();
    let floor_ms = fleet.floor(requests_per_sweep).as_secs_f64() * 1000.0;
    let cpu_ms_per_sweep = (cpu1 - cpu0).as_secs_f64() * 1000.0 / n;
    Ok(SteadyRun {
        lists,
        sweeps,
        requests_per_sweep,
        requests_per_list_read: requests_per_sweep / lists.max(1) as f64,
        pages_per_sweep,
        inventory_requests,
        amortized_inventory_per_sweep: amortized,
        total_requests_per_sweep: requests_per_sweep + amortized,
        first_sweep_ms: first.duration.as_secs_f64() * 1000.0,
        sweep_ms,
        floor_ms,
        wall_over_floor: sweep_ms / floor_ms,
        cpu_ms_per_sweep,
        cpu_ms_per_100_lists: cpu_ms_per_sweep * 100.0 / lists.max(1) as f64,
        peak_rss_bytes,
        peak_rss_mib: peak_rss_bytes as f64 / 1024.0 / 1024.0,
        rss_after_mib: rss_bytes as f64 / 1024.0 / 1024.0,
        state_file_bytes,
        back_to_back: lines
            .iter()
            .any(|l| l.duration + Duration::from_millis(50) >= interval),
        spacing,
        warnings,
    })
}

/// One old-receiver run: computed and replayed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OldRun {
    pub(crate) computed_requests: u64,
    pub(crate) computed_wall_ms: f64,
    pub(crate) replayed_requests: u64,
    pub(crate) replayed_wall_ms: f64,
    /// Requests the simulator counted during the replay.
    pub(crate) sim_counted_requests: u64,
}

/// Scenario 2: the old receiver's sweep on the same fleet.
pub(crate) async fn old(fleet: &Fleet, seed: u64) -> anyhow::Result<OldRun> {
    let config = fleet.sim_config(seed);
    let include = config.project_lists_include_devices;
    let metal = MetalSim::start(config)
        .await
        .context("starting metal-sim")?;
    let computed = crate::old::computed_requests(&metal, include);
    let before = metal.stats().requests_total;
    let replay = crate::old::replay(&metal).await;
    let counted = metal.stats().requests_total - before;
    metal.shutdown().await;
    let replay = replay?;
    Ok(OldRun {
        computed_requests: computed,
        computed_wall_ms: fleet.latency.as_secs_f64() * 1000.0 * computed as f64,
        replayed_requests: replay.requests,
        replayed_wall_ms: replay.wall.as_secs_f64() * 1000.0,
        sim_counted_requests: counted,
    })
}

/// One catch-up run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CatchupRun {
    pub(crate) events: usize,
    /// From starting the receiver to the last acceptance.
    pub(crate) end_to_end_s: f64,
    /// From the first acceptance to the last.
    pub(crate) delivery_phase_s: f64,
    pub(crate) events_per_s: f64,
    pub(crate) delivery_phase_events_per_s: f64,
    /// What a minimal client reached in the same run: the same CloudEvents
    /// POSTed with the same concurrency to the same simulated Direktiv, no
    /// receiver (`floor.rs`).
    pub(crate) floor_events_per_s: f64,
    /// The minimal client's time for all the events.
    pub(crate) floor_s: f64,
    /// `direktiv.concurrency / Direktiv's latency`: what the sink would take
    /// with no cost besides its latency (not reachable on two shared cores).
    pub(crate) theoretical_events_per_s: f64,
    /// `events_per_s / floor_events_per_s`.
    pub(crate) share_of_floor: f64,
    pub(crate) delivery_phase_share_of_floor: f64,
    /// `floor_events_per_s / theoretical_events_per_s`.
    pub(crate) floor_share_of_theoretical: f64,
    /// Sweeps until everything was delivered.
    pub(crate) sweeps: usize,
    pub(crate) api_requests: u64,
    /// The receiver's CPU time (user + system) from start to one idle sweep
    /// after the last delivery.
    pub(crate) receiver_cpu_s: f64,
    pub(crate) lost: usize,
    /// Ids accepted more than once plus resends Direktiv refused as duplicates.
    pub(crate) duplicates: u64,
    /// The receiver's warning and error log lines.
    pub(crate) warnings: Vec<String>,
}

/// Scenario 3: the receiver was down while `events` events appeared.
pub(crate) async fn catchup(
    binary: &Path,
    fleet: &Fleet,
    events: usize,
    seed: u64,
) -> anyhow::Result<CatchupRun> {
    let setup = Setup::start(fleet, seed, Duration::from_secs(1), DIREKTIV_LATENCY).await?;
    // A first run creates the state (baseline: now), then stops.
    let once = setup.spawn(binary, &["--once"])?;
    let status = once.wait(Duration::from_secs(300)).await?;
    ensure!(
        status.success(),
        "the first --once run exited with {status}"
    );
    ensure!(
        setup.state_path.exists(),
        "the first run left no state file"
    );

    // Events appear while it is down.
    let emitted = setup.metal.emit_events(events);
    let expected: HashSet<String> = emitted
        .iter()
        .filter(|e| e.scope != EventScope::Organization)
        .map(|e| e.id.clone())
        .collect();
    let requests_before = setup.metal.stats().requests_total;

    let started = SystemTime::now();
    let mut receiver = setup.spawn(binary, &[])?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut lines: Vec<SweepLine> = Vec::new();
    loop {
        lines.extend(receiver.drain_sweeps());
        if setup.direktiv.accepted_count() >= expected.len() {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "only {} of {} events delivered after 300 s; the receiver's last lines:\n{}",
                setup.direktiv.accepted_count(),
                expected.len(),
                receiver.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The sweep that delivered the last event ends, then one more runs:
    // a resend would show.
    for _ in 0..2 {
        lines.push(receiver.next_sweep(Duration::from_secs(120)).await?);
    }
    let sweeps = lines.iter().filter(|l| l.delivered > 0).count();
    let api_requests = setup.metal.stats().requests_total - requests_before;
    let receiver_cpu_s = receiver.cpu_time()?.as_secs_f64();
    let warnings = receiver.warnings();
    let status = receiver.terminate().await?;
    ensure!(status.success(), "the receiver exited with {status}");

    let accepted = setup.direktiv.accepted();
    let stats = setup.direktiv.stats();
    // The floor: the same events from a minimal client, same sink, same
    // concurrency, after the receiver has stopped.
    let floor_events: Vec<_> = accepted
        .iter()
        .filter(|e| expected.contains(&e.id))
        .cloned()
        .collect();
    let floor = crate::floor::measure(
        &setup.direktiv,
        &floor_events,
        DIREKTIV_CONCURRENCY as usize,
    )
    .await?;
    setup.shutdown().await;

    let mut counts: HashMap<&str, u64> = HashMap::new();
    for event in &accepted {
        *counts.entry(event.id.as_str()).or_default() += 1;
    }
    let lost = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .count();
    let duplicates = counts.values().map(|c| c - 1).sum::<u64>() + stats.duplicates_rejected;
    let times: Vec<SystemTime> = accepted
        .iter()
        .filter(|e| expected.contains(&e.id))
        .map(|e| e.accepted_at)
        .collect();
    let first = times.iter().min().copied().unwrap_or(started);
    let last = times.iter().max().copied().unwrap_or(started);
    let secs = |from: SystemTime, to: SystemTime| {
        to.duration_since(from).unwrap_or_default().as_secs_f64()
    };
    let end_to_end_s = secs(started, last);
    let delivery_phase_s = secs(first, last);
    let n = expected.len() as f64;
    let theoretical = f64::from(DIREKTIV_CONCURRENCY) / DIREKTIV_LATENCY.as_secs_f64();
    let floor_per_s = floor.events_per_s();
    Ok(CatchupRun {
        events: expected.len(),
        end_to_end_s,
        delivery_phase_s,
        events_per_s: n / end_to_end_s,
        delivery_phase_events_per_s: n / delivery_phase_s,
        floor_events_per_s: floor_per_s,
        floor_s: floor.elapsed.as_secs_f64(),
        theoretical_events_per_s: theoretical,
        share_of_floor: n / end_to_end_s / floor_per_s,
        delivery_phase_share_of_floor: n / delivery_phase_s / floor_per_s,
        floor_share_of_theoretical: floor_per_s / theoretical,
        sweeps,
        api_requests,
        receiver_cpu_s,
        lost,
        duplicates,
        warnings,
    })
}

/// One latency run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencyRun {
    pub(crate) events: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// Mean sweep wall time while events arrived.
    pub(crate) sweep_ms: f64,
    /// `poll interval + sweep time + 200 ms`.
    pub(crate) limit_ms: f64,
    pub(crate) lost: usize,
    /// The simulator's records of the lost events, for diagnosis.
    pub(crate) lost_events: Vec<String>,
    pub(crate) duplicates: u64,
    /// The receiver's warning and error log lines.
    pub(crate) warnings: Vec<String>,
}

/// The poll interval of the latency runs.
pub(crate) const LATENCY_INTERVAL: Duration = Duration::from_secs(1);

/// Scenario 4: events at `rate` per second for `duration`.
pub(crate) async fn latency(
    binary: &Path,
    fleet: &Fleet,
    rate: f64,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<LatencyRun> {
    let setup = Setup::start(fleet, seed, LATENCY_INTERVAL, DIREKTIV_LATENCY).await?;
    let mut receiver = setup.spawn(binary, &[])?;
    let first_timeout = fleet.floor(fleet.lists() as f64) * 10 + Duration::from_secs(120);
    receiver.next_sweep(first_timeout).await?;
    receiver.drain_sweeps();

    setup.metal.set_events_per_second(rate);
    tokio::time::sleep(duration).await;
    setup.metal.set_events_per_second(0.0);
    let window_sweeps = receiver.drain_sweeps();
    let emitted = setup.metal.new_events();
    let expected: HashMap<String, SystemTime> = emitted
        .iter()
        .filter(|e| e.scope != EventScope::Organization)
        .map(|e| (e.id.clone(), e.visible_at))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let delivered: HashSet<String> = setup.direktiv.accepted_ids().into_iter().collect();
        if expected.keys().all(|id| delivered.contains(id)) {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warnings = receiver.warnings();
    let status = receiver.terminate().await?;
    ensure!(status.success(), "the receiver exited with {status}");
    let accepted = setup.direktiv.accepted();
    let stats = setup.direktiv.stats();
    setup.shutdown().await;

    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut latencies = Vec::with_capacity(expected.len());
    for event in &accepted {
        let count = seen.entry(event.id.as_str()).or_default();
        *count += 1;
        if *count == 1
            && let Some(visible) = expected.get(&event.id)
        {
            let ms = event
                .accepted_at
                .duration_since(*visible)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0;
            latencies.push(ms);
        }
    }
    let lost_ids: Vec<String> = expected
        .keys()
        .filter(|id| !seen.contains_key(id.as_str()))
        .cloned()
        .collect();
    let lost = lost_ids.len();
    let lost_events: Vec<String> = emitted
        .iter()
        .filter(|e| lost_ids.contains(&e.id))
        .map(|e| format!("{e:?}"))
        .collect();
    let duplicates = seen.values().map(|c| c - 1).sum::<u64>() + stats.duplicates_rejected;
    if lost > 0
        && let Some(dir) = std::env::var_os("BENCH_RECEIVER_LOG_DIR")
    {
        // For diagnosis: every emitted event and every acceptance.
        let path = Path::new(&dir).join(format!("latency-seed{seed}-events.jsonl"));
        let mut text = String::new();
        for event in &emitted {
            text.push_str(&serde_json::to_string(event)?);
            text.push('\n');
        }
        for event in &accepted {
            let at = event
                .accepted_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            text.push_str(&serde_json::json!({ "accepted": event.id, "at": at }).to_string());
            text.push('\n');
        }
        std::fs::write(&path, text).context("writing the diagnosis file")?;
        eprintln!(
            "lost events: {lost}; emitted and accepted events in {}",
            path.display()
        );
    }
    let sweep_ms = if window_sweeps.is_empty() {
        f64::NAN
    } else {
        window_sweeps
            .iter()
            .map(|l| l.duration.as_secs_f64() * 1000.0)
            .sum::<f64>()
            / window_sweeps.len() as f64
    };
    Ok(LatencyRun {
        events: expected.len(),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: percentile(&latencies, 100.0),
        sweep_ms,
        limit_ms: LATENCY_INTERVAL.as_secs_f64() * 1000.0 + sweep_ms + 200.0,
        lost,
        lost_events,
        duplicates,
        warnings,
    })
}
