//! The adaptive scheduler end to end: the engine against the `metal-sim`
//! simulators in both worlds (project lists that show their devices' events,
//! and project lists that do not). No event is lost, and an idle fleet costs
//! far fewer requests than reading every list every sweep. Counts are
//! compared, never wall-clock times.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use direktiv_broadcast::{Auth, Sink, SinkConfig};
use event_dedupe::{Baseline, MemoryTracker, TrackerOptions};
use metal_cloudevents::MapOptions;
use metal_events::Client;
use metal_sim::{
    DirektivSim, DirektivSimConfig, DirektivSimHandle, MetalSim, MetalSimConfig, MetalSimHandle,
};
use receiver_engine::{EngineOptions, Levels, Metrics, Receiver, Target};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// A fast schedule: sweeps every 200 ms, quiet device lists at least every
/// 2 s (10 sweeps), covered ones every 8 s.
const POLL: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(2);
const COVERED: Duration = Duration::from_secs(8);
/// The tracker's overlap, as in production.
const OVERLAP: Duration = Duration::from_secs(600);

/// Which world the simulated API is.
#[derive(Debug, Clone, Copy)]
enum World {
    /// Project lists show their devices' events (the real API, in practice).
    ProjectListsShowDevices,
    /// They show project-level events only.
    ProjectListsOwnOnly,
}

struct Running {
    metal: MetalSimHandle,
    direktiv: DirektivSimHandle,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(
        world: World,
        (projects, devices): (usize, usize),
        max: Duration,
        (baseline, overlap): (Baseline, Duration),
    ) -> Self {
        let metal = MetalSim::start(MetalSimConfig {
            projects,
            devices_per_project: devices,
            project_lists_include_devices: matches!(world, World::ProjectListsShowDevices),
            ..MetalSimConfig::default()
        })
        .await
        .unwrap();
        let direktiv = DirektivSim::start(DirektivSimConfig::default())
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new(Duration::from_secs(60)));
        let observed = Arc::clone(&metrics);
        let client = Client::builder(SecretString::from(metal.token().to_owned()))
            .base_url(metal.base_url())
            .observer(move |record: &metal_events::RequestRecord| {
                observed.observe_request(record);
            })
            .build()
            .unwrap();
        let mut tracker = TrackerOptions::default();
        tracker.baseline = baseline;
        tracker.overlap = overlap;
        let options = EngineOptions::default()
            .with_organization_id(metal.org_id())
            .with_poll_interval(POLL)
            .with_max_poll_interval(max)
            .with_covered_poll_interval(COVERED.max(max))
            .with_overlap(overlap)
            .with_levels(Levels {
                project: true,
                device: true,
                organization: true,
            });
        let mut sink = SinkConfig::new(direktiv.endpoint_url().parse().unwrap());
        if let Some(token) = direktiv.token() {
            sink = sink.with_auth(Auth::new(token));
        }
        let receiver = Receiver::new(
            client,
            Arc::new(MemoryTracker::new(tracker)),
            Target::Direktiv(Sink::new(sink).unwrap()),
            MapOptions::default(),
            options,
        )
        .with_metrics(Arc::clone(&metrics));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { receiver.run(stop).await }
        });
        Self {
            metal,
            direktiv,
            metrics,
            stop,
            task,
        }
    }

    /// Requests to event lists so far.
    fn list_requests(&self) -> u64 {
        self.metal
            .stats()
            .requests
            .iter()
            .filter(|(endpoint, _)| endpoint.ends_with("/events"))
            .map(|(_, n)| n)
            .sum()
    }

    /// A metric's value, as `/metrics` shows it.
    fn metric(&self, series: &str) -> f64 {
        let text = self.metrics.encode();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    /// Waits (up to a minute) until Direktiv holds every id of `ids`.
    async fn wait_delivered(&self, ids: &HashSet<String>) {
        for _ in 0..600 {
            let accepted: HashSet<String> = self.direktiv.accepted_ids().into_iter().collect();
            if ids.is_subset(&accepted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let accepted: HashSet<String> = self.direktiv.accepted_ids().into_iter().collect();
        let lost: Vec<_> = ids.difference(&accepted).collect();
        panic!(
            "{} of {} never delivered, such as {:?}",
            lost.len(),
            ids.len(),
            &lost[..lost.len().min(3)]
        );
    }

    /// Waits (up to a minute) until `series` reaches `at_least`.
    async fn wait_metric(&self, series: &str, at_least: f64) {
        for _ in 0..600 {
            if self.metric(series) >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{series} stayed below {at_least}:\n{}",
            self.metrics.encode()
        );
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
        self.metal.shutdown().await;
        self.direktiv.shutdown().await;
    }
}

/// The ids of every event the organization's lists hold.
fn all_ids(metal: &MetalSimHandle) -> HashSet<String> {
    let org = metal.org_id();
    metal
        .events()
        .into_iter()
        .filter(|e| e.organization_id == org)
        .map(|e| e.id)
        .collect()
}

/// On an idle fleet, reads per sweep fall well below one per list, in both
/// worlds, and further where the project lists show device events.
async fn idle_requests(world: World) -> (f64, u64) {
    let (projects, devices) = (2, 20);
    let lists = (projects + projects * devices + 1) as f64;
    // From now, as a first start does: the history is never sent, the
    // fleet is idle.
    let running = Running::start(world, (projects, devices), MAX, (Baseline::Now, OVERLAP)).await;
    running
        .wait_metric("equinix_receiver_sweeps_total", 5.0)
        .await;
    let (sweeps, requests) = (
        running.metric("equinix_receiver_sweeps_total"),
        running.list_requests(),
    );
    // Long enough for device lists to cool past the maximum when covered.
    running
        .wait_metric("equinix_receiver_sweeps_total", sweeps + 40.0)
        .await;
    let swept = running.metric("equinix_receiver_sweeps_total") - sweeps;
    let read = running.list_requests() - requests;
    let covered = running.metric("equinix_receiver_lists{band=\"covered\"}") as u64;
    running.stop().await;
    (read as f64 / (swept * lists), covered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_fleet_costs_a_fraction_of_the_requests_in_both_worlds() {
    let (own_only, covered_own) = idle_requests(World::ProjectListsOwnOnly).await;
    let (shows, covered_shows) = idle_requests(World::ProjectListsShowDevices).await;
    // Every sweep reads 3 of 43 lists (the projects and the organization);
    // a quiet device list once per 10 sweeps where project lists show only
    // their own events: (3 + 40 / 10) / 43 = 0.16 (sweeps that take longer
    // than 200 ms make that more: allow twice as long).
    assert!(
        own_only <= 0.3,
        "own-only world: {own_only:.3} of the lists per sweep"
    );
    assert_eq!(
        covered_own, 0,
        "no coverage where project lists hide device events"
    );
    // Where they show device events, quiet device lists go past the maximum.
    assert_eq!(covered_shows, 40, "every device list covered");
    assert!(
        shows < own_only,
        "covered world {shows:.3} should read less than {own_only:.3}"
    );
}

/// Events arrive on random devices, projects and the organization while the
/// receiver runs: every one is delivered, in both worlds.
async fn no_event_lost(world: World) {
    let running = Running::start(world, (3, 6), MAX, (Baseline::All, OVERLAP)).await;
    running.wait_delivered(&all_ids(&running.metal)).await;
    let mut emitted = HashSet::new();
    for _ in 0..20 {
        emitted.extend(running.metal.emit_events(3).into_iter().map(|e| e.id));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    running.wait_delivered(&emitted).await;
    running.wait_delivered(&all_ids(&running.metal)).await;
    assert_eq!(
        running.direktiv.accepted_count(),
        all_ids(&running.metal).len(),
        "each event once"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_where_project_lists_show_device_events() {
    no_event_lost(World::ProjectListsShowDevices).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_where_project_lists_do_not_show_device_events() {
    no_event_lost(World::ProjectListsOwnOnly).await;
}

/// The case the floors must cover: a device list read rarely (cooled down to
/// the maximum) gets an event between two reads, and only that list shows
/// it. Its next read finds it, however far the other lists moved on: with an
/// overlap of one second, the other lists' floors, and the horizon but for
/// this list's own floor, pass the event's time many times before the list
/// is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_a_cooled_device_list_between_its_reads_is_delivered() {
    let running = Running::start(
        World::ProjectListsOwnOnly,
        (2, 3),
        Duration::from_secs(4),
        (Baseline::All, Duration::from_secs(1)),
    )
    .await;
    running.wait_delivered(&all_ids(&running.metal)).await;
    // Every device list has cooled down to the maximum.
    running
        .wait_metric("equinix_receiver_lists{band=\"max\"}", 6.0)
        .await;
    let device = running.metal.projects()[1].devices[2].id.clone();
    let event = running.metal.emit_device_event(&device).unwrap();
    running
        .wait_delivered(&HashSet::from([event.id.clone()]))
        .await;
    assert_eq!(
        running
            .direktiv
            .accepted_ids()
            .iter()
            .filter(|id| **id == event.id)
            .count(),
        1
    );
    running.stop().await;
}
