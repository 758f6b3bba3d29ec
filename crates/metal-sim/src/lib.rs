//! A local, deterministic simulator of the Equinix Metal events API and of
//! Direktiv's broadcast endpoint, for tests, benchmarks, chaos runs and demos.
//!
//! [`MetalSim`] serves a fleet (organizations, projects, devices) and its
//! events on loopback, paginated and authenticated as the archived spec
//! describes, with rate-limit headers and injectable faults. [`DirektivSim`]
//! accepts CloudEvents as either Direktiv generation does, rejects duplicates
//! the same way, and records every accepted event. Both count what they see
//! (`GET /_sim/stats`) and are driven at runtime through their handles or
//! their `/_sim/...` admin endpoints. Every random choice comes from a seed.
//!
//! ```no_run
//! use metal_sim::{DirektivSim, DirektivSimConfig, MetalSim, MetalSimConfig};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let metal = MetalSim::start(MetalSimConfig { projects: 2, ..Default::default() }).await?;
//! let direktiv = DirektivSim::start(DirektivSimConfig::default()).await?;
//! println!("Metal at {} (org {}, token {})", metal.base_url(), metal.org_id(), metal.token());
//! println!("Direktiv at {}", direktiv.endpoint_url());
//!
//! let new = metal.emit_events(5);
//! // ... run a receiver, then check exactly-once delivery:
//! let delivered = direktiv.accepted_ids();
//! assert!(new.iter().all(|e| delivered.iter().filter(|id| **id == e.id).count() == 1));
//! // or the whole run since a baseline at once (`Audit::is_sound`).
//!
//! metal.shutdown().await;
//! direktiv.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod audit;
mod direktiv;
mod metal;
mod server;
mod util;
mod world;

pub use audit::{Audit, expected_events};
pub use direktiv::{
    AcceptedEvent, DirektivFaults, DirektivSim, DirektivSimConfig, DirektivSimHandle,
    DirektivStats, Generation, Mode,
};
pub use metal::{
    MetalFaults, MetalSim, MetalSimConfig, MetalSimHandle, MetalStats, RateLimit, SimDevice,
    SimProject,
};
pub use world::{EventRecord, EventScope};
