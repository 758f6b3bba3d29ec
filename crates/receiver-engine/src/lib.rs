//! The Equinix Metal to Direktiv receiver as a library: the polling engine.
//!
//! It reads the Metal event lists of an organization (its projects, their
//! devices, the organization itself), maps each new event to a CloudEvent
//! ([`metal_cloudevents`]), delivers it to Direktiv ([`direktiv_broadcast`])
//! and records it in a [`event_dedupe::Tracker`] only once it was
//! acknowledged. The `equinix-receiver` binary is glue around it: config,
//! logging, the HTTP server and signals live there, never here.

pub mod dead_letter;
pub mod deliver;
pub mod error_events;
pub mod event_types;
pub mod future;
pub mod health;
pub mod inventory;
pub mod metrics;
pub mod observer;
pub mod poll;
pub mod receiver;
pub mod scrub;
pub mod sweep;

pub use crate::deliver::Target;
pub use crate::health::Health;
pub use crate::metrics::Metrics;
pub use crate::observer::{NoObserver, Observer};
pub use crate::poll::Levels;
pub use crate::receiver::{EngineOptions, Receiver};
pub use crate::sweep::SweepReport;
