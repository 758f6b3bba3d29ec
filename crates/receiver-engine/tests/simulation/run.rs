//! One seed: the world, the engine on a paused current-thread runtime, the
//! crashes and restarts, the checker after every sweep and at the end.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use event_dedupe::{Baseline, FileOptions, FileTracker, Tracker, TrackerOptions};
use metal_cloudevents::MapOptions;
use metal_events::{Client, SecretString};
use receiver_engine::{EngineOptions, EventTypes, Levels, Observer, Receiver, SweepReport, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::check::Checker;
use super::direktiv::{Arrivals, Direktiv};
use super::metal::{BASE_URL, HostClock, Metal, VirtualTime};
use super::world::{Ingredient, PATTERNS, World};

/// The API's clock at the receiver's first start. Fixed, so that a seed
/// replays alike; see the module doc of `simulation.rs` for what this means
/// for an engine that reads the host's wall clock itself.
/// `SIM_EPOCH` (RFC 3339) moves it.
pub(crate) fn epoch() -> DateTime<Utc> {
    match std::env::var("SIM_EPOCH") {
        Ok(at) => DateTime::parse_from_rfc3339(at.trim())
            .expect("SIM_EPOCH is an RFC 3339 time")
            .with_timezone(&Utc),
        Err(_) => Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
    }
}

/// What one seed did.
#[derive(Debug, Default)]
pub(crate) struct SeedRun {
    pub(crate) events: usize,
    pub(crate) expected: usize,
    pub(crate) sends: u64,
    pub(crate) requests: u64,
    pub(crate) sweeps: u64,
    pub(crate) violations: Vec<String>,
}

/// Tells the checker that a sweep ended.
struct SweepSignal(mpsc::UnboundedSender<()>);

impl Observer for SweepSignal {
    fn sweep_ended(&self, _report: &SweepReport) {
        let _ = self.0.send(());
    }
}

pub(crate) fn run_seed(
    seed: u64,
    only: Option<&BTreeSet<Ingredient>>,
    trace: bool,
) -> (Arc<World>, SeedRun) {
    let world = Arc::new(World::new(seed, only));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let run = runtime.block_on(simulate(Arc::clone(&world), trace));
    (world, run)
}

/// A state directory in memory when the machine has one (`fsync` there
/// costs nothing).
fn state_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("a temporary directory")
}

async fn open_tracker(world: &World, time: VirtualTime, path: &Path) -> Arc<dyn Tracker> {
    let knobs = &world.knobs;
    let options = TrackerOptions::new()
        .with_baseline(if knobs.start_all {
            Baseline::All
        } else {
            Baseline::Now
        })
        .with_overlap(knobs.overlap)
        .with_source_expiry(knobs.expiry)
        .with_clock(Arc::new(HostClock {
            time,
            skew: knobs.skew,
        }));
    // A killed engine's last write may still be finishing on the blocking
    // pool: wait for its lock.
    for _ in 0..100 {
        match FileTracker::open(path, FileOptions::new(options.clone())).await {
            Ok(tracker) => return Arc::new(tracker),
            Err(error) if error.is_locked() => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("seed {}: the state does not open: {error}", world.seed),
        }
    }
    panic!("seed {}: the state stays locked after a crash", world.seed)
}

fn engine_options(world: &World) -> EngineOptions {
    let knobs = &world.knobs;
    let mut levels = Levels::default();
    (levels.project, levels.device, levels.organization) = knobs.levels;
    let types = if knobs.filter {
        EventTypes::new(PATTERNS.iter().map(|p| (*p).to_owned()).collect())
    } else {
        EventTypes::default()
    };
    EngineOptions::default()
        .with_organization_id(world.org.clone())
        .with_poll_interval(knobs.poll)
        .with_max_poll_interval(knobs.max_poll)
        .with_covered_poll_interval(knobs.max_poll)
        .with_sweep_timeout(Duration::from_secs(60))
        .with_inventory_refresh(knobs.inventory_refresh)
        .with_shutdown_grace(Duration::from_secs(1))
        .with_levels(levels)
        .with_per_page(knobs.per_page)
        .with_max_pages(knobs.max_pages)
        .with_api_concurrency(2)
        .with_delivery_concurrency(2)
        .with_max_retries(2)
        .with_overlap(knobs.overlap)
        .with_event_types(types)
}

async fn simulate(world: Arc<World>, trace: bool) -> SeedRun {
    let dir = state_dir();
    let path = dir.path().join("state.json");
    let time = VirtualTime {
        start: tokio::time::Instant::now(),
        epoch: epoch(),
    };
    let metal = Arc::new(Metal::new(Arc::clone(&world), time, trace));
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let direktiv = Arc::new(Direktiv {
        world: Arc::clone(&world),
        time,
        arrivals: Arc::clone(&arrivals),
        trace,
    });
    let checker = Arc::new(tokio::sync::Mutex::new(Checker::new(
        Arc::clone(&world),
        time,
        Arc::clone(&arrivals),
    )));
    let tracker_slot: Arc<Mutex<Option<Arc<dyn Tracker>>>> = Arc::default();
    let (signal, mut sweeps) = mpsc::unbounded_channel::<()>();
    let sweep_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watching = {
        let (checker, slot, count) = (
            Arc::clone(&checker),
            Arc::clone(&tracker_slot),
            Arc::clone(&sweep_count),
        );
        tokio::spawn(async move {
            while sweeps.recv().await.is_some() {
                count.fetch_add(1, Ordering::Relaxed);
                let tracker = slot.lock().expect("not poisoned").clone();
                if let Some(tracker) = tracker {
                    checker.lock().await.after_sweep(&*tracker).await;
                }
            }
        })
    };

    let mut crashes = world.crashes.iter().copied();
    loop {
        let tracker = open_tracker(&world, time, &path).await;
        *tracker_slot.lock().expect("not poisoned") = Some(Arc::clone(&tracker));
        let client = Client::builder(SecretString::from("sim-token".to_owned()))
            .base_url(BASE_URL)
            .transport(Arc::clone(&metal) as Arc<dyn metal_events::Transport>)
            .build()
            .expect("a client");
        let receiver = Receiver::new(
            client,
            tracker,
            Target::Sink(Arc::clone(&direktiv) as Arc<dyn receiver_engine::EventSink>),
            MapOptions::default(),
            engine_options(&world),
        )
        .with_observer(Arc::new(SweepSignal(signal.clone())));
        let stop = CancellationToken::new();
        let engine = tokio::spawn({
            let stop = stop.clone();
            async move { receiver.run(stop).await }
        });
        match crashes.next() {
            Some(at) => {
                tokio::time::sleep_until(time.start + Duration::from_millis(at as u64)).await;
                if trace {
                    eprintln!(
                        "{:>8.3}s CRASH: the engine is killed and restarted",
                        at as f64 / 1000.0
                    );
                }
                engine.abort();
                let _ = engine.await;
                tracker_slot.lock().expect("not poisoned").take();
            }
            None => {
                let end = Duration::from_millis(world.knobs.end as u64);
                tokio::time::sleep_until(time.start + end).await;
                stop.cancel();
                let _ = engine.await;
                break;
            }
        }
    }
    drop(signal);
    let _ = watching.await;
    let tracker = tracker_slot.lock().expect("not poisoned").take();
    let mut checker = checker.lock().await;
    if let Some(tracker) = tracker {
        checker.after_sweep(&*tracker).await;
    }
    checker.at_end();
    let arrivals = arrivals.lock().expect("not poisoned");
    SeedRun {
        events: world.events.len(),
        expected: checker.expected.len(),
        sends: arrivals.sends,
        requests: metal.requests.load(Ordering::Relaxed),
        sweeps: sweep_count.load(Ordering::Relaxed),
        violations: std::mem::take(&mut checker.violations),
    }
}
