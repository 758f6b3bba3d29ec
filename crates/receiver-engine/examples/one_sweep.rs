//! One sweep of a receiver built in code, against the simulated Metal API
//! and the simulated Direktiv of `metal-sim` on loopback: no config file, no
//! credentials, no network.
//!
//! ```text
//! cargo run -p receiver-engine --example one_sweep
//! ```

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use direktiv_broadcast::{Auth, Sink, SinkConfig};
use event_dedupe::{Baseline, MemoryTracker, TrackerOptions};
use metal_cloudevents::MapOptions;
use metal_events::Client;
use metal_sim::{DirektivSim, DirektivSimConfig, MetalSim, MetalSimConfig};
use receiver_engine::{EngineOptions, Receiver, Target};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metal = MetalSim::start(MetalSimConfig::default()).await?;
    let direktiv = DirektivSim::start(DirektivSimConfig::default()).await?;

    let client = Client::builder(SecretString::from(metal.token().to_owned()))
        .base_url(metal.base_url())
        .build()?;
    // Everything the API still lists is new to this fresh, in-memory state.
    let mut tracker_options = TrackerOptions::default();
    tracker_options.baseline = Baseline::All;
    let tracker = Arc::new(MemoryTracker::new(tracker_options));
    let mut sink = SinkConfig::new(direktiv.endpoint_url().parse()?);
    if let Some(token) = direktiv.token() {
        sink = sink.with_auth(Auth::new(token));
    }
    let target = Target::Direktiv(Sink::new(sink)?);

    let options = EngineOptions::default().with_organization_id(metal.org_id());
    let receiver = Receiver::new(client, tracker, target, MapOptions::default(), options);
    let report = receiver.run_once(&CancellationToken::new()).await?;

    if let Some(report) = report {
        println!(
            "{} lists, {} pages, {} new events, {} delivered, {} deferred, {} refused",
            report.lists,
            report.pages,
            report.new,
            report.delivered,
            report.deferred,
            report.rejected
        );
    }
    println!("Direktiv holds {} events", direktiv.accepted_count());
    Ok(())
}
