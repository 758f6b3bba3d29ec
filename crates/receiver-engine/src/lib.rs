//! The Equinix Metal to Direktiv receiver as a library: the polling engine.
//!
//! It reads the Metal event lists of an organization (its projects, their
//! devices, the organization itself), maps each new event to a CloudEvent
//! ([`metal_cloudevents`]), delivers it to Direktiv ([`direktiv_broadcast`])
//! and records it in an [`event_dedupe::Tracker`] only once it was
//! acknowledged. The `equinix-receiver` binary is glue around it: config,
//! logging, the HTTP server and signals live there, never here.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use direktiv_broadcast::{Auth, Sink, SinkConfig};
//! use event_dedupe::{MemoryTracker, TrackerOptions};
//! use metal_cloudevents::MapOptions;
//! use metal_events::Client;
//! use receiver_engine::{EngineOptions, Receiver, Target};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(std::env::var("METAL_AUTH_TOKEN")?.into()).build()?;
//! let tracker = Arc::new(MemoryTracker::new(TrackerOptions::default()));
//! let endpoint = "https://direktiv.example/api/v2/namespaces/ops/events/broadcast";
//! let sink = SinkConfig::new(endpoint.parse()?).with_auth(Auth::new("token"));
//! let options = EngineOptions::default().with_organization_id("your-org-id".to_owned());
//! let target = Target::Direktiv(Sink::new(sink)?);
//! let receiver = Receiver::new(client, tracker, target, MapOptions::default(), options);
//!
//! // One sweep, and what it did:
//! let stop = CancellationToken::new();
//! if let Some(report) = receiver.run_once(&stop).await? {
//!     assert!(report.all_delivered());
//! }
//! // Or sweep every poll interval until `stop` is cancelled:
//! receiver.run(stop).await;
//! # Ok(())
//! # }
//! ```
//!
//! # The public API
//!
//! Everything public is at the crate root:
//!
//! - Build and run: [`Receiver`] (from a [`metal_events::Client`], an
//!   `Arc<dyn` [`event_dedupe::Tracker`]`>`, a [`Target`], the
//!   [`MapOptions`](metal_cloudevents::MapOptions) and [`EngineOptions`] with
//!   its [`Levels`] and [`EventTypes`]); [`Receiver::run`] until a token fires,
//!   [`Receiver::run_once`] for one sweep.
//! - Watch: the [`Observer`] trait ([`NoObserver`] watches nothing), the
//!   [`SweepReport`] with its problems as values ([`ListProblem`] with its
//!   [`SourceKey`], [`DeliveryProblem`] of a [`DeliveryProblemKind`]), the
//!   [`Health`] and the [`Metrics`] it records.
//! - Share with the program around it: the [`Scrubber`] of secrets (and
//!   [`ScrubbedStdout`], the dry run's output), the [`DeadLetters`] store of
//!   refused events ([`DeadLetter`], [`DirektivAnswer`],
//!   [`DeadLetterLocation`]) and [`Target::deliver`] with its [`Delivered`]
//!   answer. [`Target::Sink`] delivers through any [`EventSink`] (a stand-in
//!   of Direktiv, such as the deterministic simulation's in
//!   `tests/simulation.rs`) with the engine's own retries and reading of
//!   each [`Outcome`](direktiv_broadcast::Outcome); [`redeliver`] sends the kept dead letters again
//!   (`--redeliver-refused`), reporting a [`Redelivery`].
//! - High availability (cargo feature `postgres`): `lead` campaigns for the
//!   organization's lease in PostgreSQL and runs a [`Receiver`] for each term
//!   of leadership, on a tracker fenced by the term's generation, every send
//!   gated by the term ([`SendGate`]); a standby is ready while its database
//!   answers.
//! - [`Error`]: what can fail outside a sweep (the dead-letter store).
//!
//! # The order of a sweep
//!
//! 1. When due (at start, every inventory refresh, after a list answered 404)
//!    the inventory is listed: the organization, its projects, their devices.
//! 2. The lists that are due are read (every list for `run_once`), the most
//!    overdue first and as many as the request budget allows: device lists,
//!    then project and organization lists, with bounded concurrency; each
//!    list is read from page 1 (or where the page cap stopped its last read)
//!    down to its floor minus the overlap, or, when it was seen out of order,
//!    to a page wholly below that line. Every
//!    request waits at the client's rate gate. A list's next read follows its
//!    activity: hot lists every poll interval, quiet device lists backing off
//!    to [`EngineOptions::max_poll_interval`] (see [`Band`]).
//! 3. As soon as a list is read its new events are claimed (each id once, the
//!    device's context first) and delivered, per device oldest first in one
//!    lane. Events filtered out by type, or that cannot be mapped, are settled
//!    unsent; events Direktiv refuses for good are kept as dead letters.
//! 4. Each event is recorded after acknowledgement; then the floor of every
//!    fully read list moves and the state is persisted.
//! 5. The [`Observer`] and the log hear of the sweep; error events go out
//!    when due; the next sweep starts one poll interval after this one began.
//!    (Each list read also tells the scheduler when it is due next.)
//!
//! # Invariants
//!
//! - An event is recorded as delivered only after Direktiv acknowledged it.
//! - A list's floor moves only when the list was read to its settled part
//!   (in one read, or in several that the page cap cut), reckoned by the
//!   API's clock (its `Date` header), never this host's alone.
//! - A list is forgotten only when the inventory no longer has its project
//!   or device; one that fails, is cut by the page cap or waits is kept.
//! - An endpoint-wide refusal
//!   ([`Outcome::is_endpoint_refusal`](direktiv_broadcast::Outcome::is_endpoint_refusal))
//!   stops the sweep's deliveries.
//! - The engine never depends on a config format, an HTTP server or signals,
//!   never prints and never installs a logger.

mod cursor;
mod dead_letter;
mod deliver;
mod error;
mod error_events;
mod event_types;
mod exposition;
mod future;
mod health;
mod inventory;
#[cfg(feature = "postgres")]
mod lead;
mod metrics;
mod observer;
mod poison;
mod poll;
mod receiver;
mod redeliver;
mod schedule;
mod scrub;
mod source_key;
mod sweep;

pub use crate::dead_letter::{
    Answer as DirektivAnswer, DeadLetters, Entry as DeadLetter, Location as DeadLetterLocation,
};
pub use crate::deliver::{Delivered, EventSink, SendGate, Target};
pub use crate::error::{Error, Result};
pub use crate::event_types::EventTypes;
pub use crate::health::Health;
#[cfg(feature = "postgres")]
pub use crate::lead::lead;
pub use crate::metrics::Metrics;
pub use crate::observer::{NoObserver, Observer};
pub use crate::poll::Levels;
pub use crate::receiver::{EngineOptions, Receiver};
pub use crate::redeliver::{Redelivery, redeliver};
pub use crate::schedule::Band;
pub use crate::scrub::{ScrubbedStdout, Scrubber};
pub use crate::source_key::SourceKey;
pub use crate::sweep::{DeliveryProblem, DeliveryProblemKind, ListProblem, SweepReport};
