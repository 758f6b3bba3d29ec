//! The engine in-process, through its public API, against the `metal-sim`
//! simulators on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use direktiv_broadcast::{Auth, Sink, SinkConfig};
use event_dedupe::{Baseline, MemoryTracker, Tracker, TrackerOptions};
use metal_cloudevents::MapOptions;
use metal_events::Client;
use metal_sim::{
    DirektivSim, DirektivSimConfig, DirektivSimHandle, MetalSim, MetalSimConfig, MetalSimHandle,
};
use receiver_engine::{EngineOptions, Metrics, Observer, Receiver, SweepReport, Target};
use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct World {
    metal: MetalSimHandle,
    direktiv: DirektivSimHandle,
    tracker: Arc<dyn Tracker>,
}

impl World {
    async fn start() -> Self {
        let metal = MetalSim::start(MetalSimConfig::default()).await.unwrap();
        let direktiv = DirektivSim::start(DirektivSimConfig::default())
            .await
            .unwrap();
        let mut options = TrackerOptions::default();
        options.baseline = Baseline::All;
        Self {
            metal,
            direktiv,
            tracker: Arc::new(MemoryTracker::new(options)),
        }
    }

    fn client(&self, metrics: Option<Arc<Metrics>>) -> Client {
        let mut builder = Client::builder(SecretString::from(self.metal.token().to_owned()))
            .base_url(self.metal.base_url());
        if let Some(metrics) = metrics {
            builder = builder.observer(move |record: &metal_events::RequestRecord| {
                metrics.observe_request(record);
            });
        }
        builder.build().unwrap()
    }

    fn receiver(&self, client: Client) -> Receiver {
        let mut sink = SinkConfig::new(self.direktiv.endpoint_url().parse().unwrap());
        if let Some(token) = self.direktiv.token() {
            sink = sink.with_auth(Auth::new(token));
        }
        let options = EngineOptions::default()
            .with_organization_id(self.metal.org_id())
            .with_poll_interval(Duration::from_secs(3600));
        Receiver::new(
            client,
            Arc::clone(&self.tracker),
            Target::Direktiv(Sink::new(sink).unwrap()),
            MapOptions::default(),
            options,
        )
    }
}

/// Counts what the engine tells it.
#[derive(Default)]
struct Counting {
    started: AtomicUsize,
    ended: AtomicUsize,
    delivered: AtomicUsize,
    swept: Notify,
}

impl Observer for Counting {
    fn sweep_started(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    fn sweep_ended(&self, _report: &SweepReport) {
        self.ended.fetch_add(1, Ordering::SeqCst);
        self.swept.notify_one();
    }

    fn event_delivered(&self, _event: &cloudevents::Event, already: bool) {
        if !already {
            self.delivered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn one_sweep_delivers_each_event_once_and_the_observer_sees_it() {
    let world = World::start().await;
    let observer = Arc::new(Counting::default());
    let receiver = world
        .receiver(world.client(None))
        .with_observer(Arc::clone(&observer) as Arc<dyn Observer>);

    let stop = CancellationToken::new();
    let report = receiver.run_once(&stop).await.unwrap().unwrap();
    assert!(report.delivered > 0, "{report:?}");
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.delivered, world.direktiv.accepted_count());
    assert_eq!(observer.delivered.load(Ordering::SeqCst), report.delivered);
    assert_eq!(observer.started.load(Ordering::SeqCst), 1);
    assert_eq!(observer.ended.load(Ordering::SeqCst), 1);

    // The tracker remembers: a second sweep sends nothing again.
    let again = receiver.run_once(&stop).await.unwrap().unwrap();
    assert_eq!(again.new, 0, "{again:?}");
    assert_eq!(world.direktiv.accepted_count(), report.delivered);
}

#[tokio::test]
async fn the_engine_counts_the_requests_the_client_reports() {
    let world = World::start().await;
    let metrics = Arc::new(Metrics::new(Duration::from_secs(300)));
    let receiver = world
        .receiver(world.client(Some(Arc::clone(&metrics))))
        .with_metrics(Arc::clone(&metrics));

    receiver
        .run_once(&CancellationToken::new())
        .await
        .unwrap()
        .unwrap();
    let text = receiver.metrics().encode();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("equinix_receiver_api_requests_total{")
                && l.contains("endpoint=\"device_events\"")
                && l.contains("code=\"200\"")
        })
        .unwrap_or_else(|| panic!("no device_events 200 series in:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{line}");
}

#[tokio::test]
async fn run_returns_once_the_stop_token_fires() {
    let world = World::start().await;
    let observer = Arc::new(Counting::default());
    let receiver = Arc::new(
        world
            .receiver(world.client(None))
            .with_observer(Arc::clone(&observer) as Arc<dyn Observer>),
    );
    assert!(!receiver.health().ready());

    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let receiver = Arc::clone(&receiver);
        let stop = stop.clone();
        async move { receiver.run(stop).await }
    });
    observer.swept.notified().await;
    assert!(receiver.health().ready(), "ready after the first sweep");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns once stopped")
        .unwrap();
    assert_eq!(observer.ended.load(Ordering::SeqCst), 1);
}
