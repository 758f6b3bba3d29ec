//! Decides which polled events are new, so a poller sends each event once,
//! survives restarts without losing or flooding, and stays small.
//!
//! The Metal API has no cursor and no date filter: every sweep lists events
//! already delivered. A [`Tracker`] answers, for each listed event, whether it
//! is [`Verdict::New`]; the caller records it with
//! [`Tracker::record_delivered`] **only after the sink acknowledged it**, and
//! after a source's list was fully processed tells the tracker how far that
//! source is settled ([`Tracker::advance_floor`]), which lets it forget old ids.
//!
//! # Guarantees
//!
//! - **At-least-once.** An event stays new until recorded, so a crash between
//!   delivery and record sends it again; nothing is lost. With [`FileTracker`],
//!   at most [`FileOptions::max_unpersisted`] acknowledged events are sent
//!   again after a crash; a clean shutdown that calls [`Tracker::persist`]
//!   resends nothing.
//! - **Keyed by event id.** An event recorded via one source (a device) is
//!   never new via another (its project), also after its id was pruned.
//! - **Baseline.** Events created before the baseline are never sent. It is
//!   fixed when the state is first created ([`Baseline::Now`] by default) and
//!   kept across restarts, so events that happened while the receiver was down
//!   are sent when it returns. [`Baseline::Now`] is this host's clock when the
//!   state is created; [`Tracker::align_start`] moves it onto the API's clock
//!   once that is known, so a host clock that runs fast skips nothing.
//! - **Bounded memory.** The state grows with the events of the overlap window
//!   (default 10 minutes) behind the slowest live source, not with history.
//!
//! # The pruning rule
//!
//! Each source has a *floor*: every event of it created at or before the floor
//! is delivered or deliberately skipped. The *horizon* is the minimum over all
//! live sources of `floor - overlap`; it only moves forward. Ids of events
//! created before the horizon are forgotten, and any event created before
//! `max(horizon, own floor - overlap)` of the asking source is answered
//! [`Verdict::BelowFloor`]. Because an id is only forgotten below the horizon,
//! and everything below the horizon is settled for every source (including one
//! seen for the first time), a forgotten event is never new again.
//!
//! A source that stops advancing (a deleted device) would hold the horizon
//! back forever; it is forgotten when its floor was not advanced for
//! [`TrackerOptions::source_expiry`] while other sources were, or at once with
//! [`Tracker::forget_source`]. If such a source comes back, it counts as new:
//! events it lists from before the horizon are settled, not sent.
//!
//! An event without `created_at` cannot be placed in time: it is never before
//! the baseline or below a floor, it is new until recorded, and its record is
//! kept for [`TrackerOptions::undated_retention`] after it was recorded.
//!
//! # Choosing a floor
//!
//! After reading a source's whole list, [`settled_floor`] says how far it is
//! settled: the newest creation time at or before which every event read is
//! settled; at least `now - overlap` once everything read is settled; one
//! second below the oldest pending event when nothing settled precedes it (so
//! a source seen for the first time holds the horizon back); and never the
//! date of an event past the clock plus [`FUTURE_TOLERANCE`].
//! [`Tracker::advance_floors`] then moves the floors of one sweep lowest
//! first: the horizon only moves forward, so a new source with a low floor
//! must be known before the others move the horizon past it.
//!
//! # Times are data, not a clock
//!
//! A `created_at` comes from an API and may be wrong: an hour ahead (clock
//! skew, a bad record) or 9999-12-31. Such an event is new until recorded and
//! remembered like any other, but its date never moves a line past the
//! tracker's [`Clock`]: [`Tracker::advance_floor`] holds a floor at the clock
//! plus [`FUTURE_TOLERANCE`] (60 s; the overlap window below the floor keeps
//! the events of now new), so the horizon stays behind the clock too, and a
//! start point in the future is held at the clock itself. Otherwise one such
//! event would settle every later event of its source before it happens.
//!
//! Every time a state holds lies within the years 0000 to 9999 (what RFC 3339
//! writes in UTC): a time outside is stored at the nearer end, so what a
//! tracker writes it always reads back; a file holding one was not written by
//! a tracker and is [`Error::Corrupt`], naming the field.
//!
//! # Loading a state file
//!
//! [`FileTracker::open`] owns the file: it locks it by its identity (see
//! [`FileTracker`]'s *Locking*: symlinked and hard-linked aliases of an open
//! file are refused as [`Error::Locked`]), never opens or creates a file of its
//! own through a symbolic link, and repairs floors, horizon and baseline past
//! the clock plus [`FUTURE_TOLERANCE`] with a warning naming the file (the
//! repaired state is written at the next [`Tracker::persist`]).
//! [`MemoryTracker::from_state_file`] reads the same file the same way into
//! memory and never creates, locks or writes anything: with [`ReadOnly`] (a
//! tracker whose `persist` does nothing) it previews what the owner would
//! decide, beside the owner.
//!
//! # Writing a file crash-safely
//!
//! [`write_atomic`] is the one crash-safe write, used by [`FileTracker`] and
//! open to any file kept beside the state: an exclusively created temporary
//! file in the same directory, fsync, rename, directory fsync.
//! # PostgreSQL (feature `postgres`)
//!
//! The module `postgres` keeps one organization's state in PostgreSQL for
//! several replicas, of which one at a time leads: `postgres::Database`
//! connects and migrates, `postgres::Elector` holds the organization's lease
//! (expiry by the database's clock, a generation per term), and
//! `postgres::PostgresTracker` writes only what changed, each write fenced by
//! its generation. It passes the same conformance suite as the other stores.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn run() -> event_dedupe::Result<()> {
//! use std::time::Duration;
//! use event_dedupe::TrackerOptions;
//! use event_dedupe::postgres::{Database, Elector, PostgresOptions, replica_identity};
//! use tokio_util::sync::CancellationToken;
//!
//! let url = "postgres://receiver:secret@db:5432/direktiv?sslmode=require";
//! let options = PostgresOptions::new(url.to_owned().into(), "org-1")?;
//! let db = Database::connect(&options).await?;
//! let elector = Elector::new(db.clone(), replica_identity(), Duration::from_secs(15));
//! elector
//!     .lead(CancellationToken::new(), |term| {
//!         let db = db.clone();
//!         async move {
//!             let Ok(tracker) = db.tracker(term.generation, TrackerOptions::new()).await else {
//!                 return;
//!             };
//!             // Poll and deliver with `tracker` until `term.lost` fires.
//!             term.lost.cancelled().await;
//!             drop(tracker);
//!         }
//!     })
//!     .await;
//! # Ok(())
//! # }
//! ```
//!
//! # Example
//!
//! ```
//! use chrono::{TimeDelta, TimeZone, Utc};
//! use event_dedupe::{ManualClock, MemoryTracker, Tracker, TrackerOptions, Verdict};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let start = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
//! let clock = ManualClock::new(start);
//! let tracker: Arc<dyn Tracker> =
//!     Arc::new(MemoryTracker::new(TrackerOptions::new().with_clock(Arc::new(clock.clone()))));
//!
//! // Listed by the device: new, until recorded after the sink acknowledged it.
//! let created = start + TimeDelta::seconds(30);
//! assert_eq!(tracker.check("device-1", "ev-1", Some(created)).await?, Verdict::New);
//! tracker.record_delivered("device-1", "ev-1", Some(created)).await?;
//!
//! // Listed again by its project: the same event.
//! assert_eq!(tracker.check("project-1", "ev-1", Some(created)).await?, Verdict::Delivered);
//!
//! // Older than the first start: never sent.
//! let old = start - TimeDelta::hours(1);
//! assert_eq!(tracker.check("project-1", "ev-0", Some(old)).await?, Verdict::BeforeBaseline);
//!
//! // Both lists processed: settle them, then write (a no-op in memory).
//! tracker.advance_floor("device-1", created).await?;
//! tracker.advance_floor("project-1", created).await?;
//! tracker.persist().await?;
//! assert_eq!(tracker.stats().tracked_ids, 1);
//! # Ok::<_, event_dedupe::Error>(())
//! # }).unwrap();
//! ```

/// The README's example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod atomic;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod file;
mod floor;
mod memory;
mod options;
#[cfg(feature = "postgres")]
pub mod postgres;
mod read_only;
mod state;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use atomic::{FileMode, WriteError, write_atomic};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use file::{FileOptions, FileTracker};
pub use floor::{is_future_dated, settled_floor};
pub use memory::MemoryTracker;
pub use options::{Baseline, FUTURE_TOLERANCE, ParseBaselineError, TrackerOptions};
pub use read_only::ReadOnly;

/// The tracker's answer for one listed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Not delivered yet: deliver it, then [`Tracker::record_delivered`].
    New,
    /// Recorded as delivered (via any source).
    Delivered,
    /// Created before the baseline: never sent.
    BeforeBaseline,
    /// Created before the settled line of the asking source (its floor minus
    /// the overlap window, or the global horizon): settled, not sent.
    BelowFloor,
}

impl Verdict {
    /// Whether the event should be delivered.
    pub fn is_new(self) -> bool {
        self == Self::New
    }
}

/// One listed event, for [`Tracker::check_many`]. Not `#[non_exhaustive]`:
/// callers write it as a literal, and a field added here (a new thing the
/// tracker must know of each event) would have to be supplied by every
/// caller anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKey<'a> {
    /// The event id (the delivery key).
    pub id: &'a str,
    /// When the event was created, if the API said.
    pub created_at: Option<DateTime<Utc>>,
}

/// A snapshot of a tracker's size and persistence, for metrics and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Delivered event ids remembered (export as `tracked_events`).
    pub tracked_ids: usize,
    /// Sources with a floor.
    pub sources: usize,
    /// Records not yet on disk (always 0 for a store without persistence).
    pub unpersisted: usize,
    /// Whether the state changed since the last write.
    pub dirty: bool,
    /// Events created before this are settled for every source.
    pub horizon: Option<DateTime<Utc>>,
    /// An estimate of the heap the state occupies, in bytes.
    pub approx_memory_bytes: usize,
}

/// Decides which polled events are new; see the [crate docs](crate) for the
/// guarantees and the pruning rule. Object-safe: hold it as `Arc<dyn Tracker>`.
///
/// Keys are plain strings: `source` is whatever the caller lists by (a project,
/// device or organization id; use distinct ids or prefixes per kind),
/// `event_id` the event's id. All methods are cheap in-memory operations for
/// the stores in this crate, except [`Tracker::persist`].
#[async_trait]
pub trait Tracker: Send + Sync + std::fmt::Debug {
    /// The effective baseline: [`Baseline::All`] or [`Baseline::At`] (never
    /// [`Baseline::Now`], which is resolved when the state is created).
    fn baseline(&self) -> Baseline;

    /// Whether a listed event is new. Checks in this order: before the
    /// baseline, delivered, below the source's settled line, else new.
    /// Does not change the state.
    async fn check(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<Verdict>;

    /// [`Tracker::check`] for a page of events, in order.
    async fn check_many(&self, source: &str, events: &[EventKey<'_>]) -> Result<Vec<Verdict>> {
        let mut verdicts = Vec::with_capacity(events.len());
        for e in events {
            verdicts.push(self.check(source, e.id, e.created_at).await?);
        }
        Ok(verdicts)
    }

    /// Records an event as delivered. Call only after the sink acknowledged
    /// it. Idempotent. `source` is informational: delivery is keyed by id.
    ///
    /// # Errors
    ///
    /// A store with a bound on unpersisted records may write here; if that
    /// write fails the event is still recorded in memory and the error says
    /// the state is not on disk.
    async fn record_delivered(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<()>;

    /// The source's floor, if it has one.
    async fn floor(&self, source: &str) -> Result<Option<DateTime<Utc>>>;

    /// Declares that every event of `source` created at or before `floor` is
    /// delivered or deliberately skipped. Floors only move forward (a lower
    /// value only marks the source as alive). Prunes what became settled.
    ///
    /// Call it for every live source on every sweep. Prefer the time the
    /// listing was taken as the floor (everything created before it was in
    /// the list; the overlap window absorbs skew and late listing): a quiet
    /// source whose floor is its newest event would hold the horizon back.
    async fn advance_floor(&self, source: &str, floor: DateTime<Utc>) -> Result<()>;

    /// [`Tracker::advance_floor`] for the sources of one sweep, lowest floor
    /// first, so that a source seen for the first time holds the horizon back
    /// before the others move it (moving a high floor first could prune ids
    /// the low source still lists). Every source is tried; returns those that
    /// failed with their error, in the order tried.
    async fn advance_floors(&self, floors: &[(&str, DateTime<Utc>)]) -> Vec<(String, Error)> {
        let mut floors = floors.to_vec();
        floors.sort_by_key(|(_, floor)| *floor);
        let mut failed = Vec::new();
        for (source, floor) in floors {
            if let Err(error) = self.advance_floor(source, floor).await {
                failed.push((source.to_owned(), error));
            }
        }
        failed
    }

    /// Forgets a source (a deleted device) so it no longer holds back pruning.
    async fn forget_source(&self, source: &str) -> Result<()>;

    /// Moves a start point that [`Baseline::Now`] resolved from this
    /// tracker's [`Clock`] onto the API's clock, once `api_now` (the API's
    /// time, from its `Date` header) is known: by the difference between the
    /// two clocks, so that a host clock running fast does not skip the
    /// events of the first minutes (or hours), nor a slow one send events
    /// from before the start.
    ///
    /// Only a fresh state moves (no source, nothing delivered, the
    /// baseline still the creation time), and only for a difference of a
    /// second or more; afterwards the baseline no longer equals the creation
    /// time, so a restart does not move it again. Returns the new baseline
    /// when it moved. The default does nothing.
    async fn align_start(&self, api_now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let _ = api_now;
        Ok(None)
    }

    /// Makes the state durable, if the store has durability and anything
    /// changed. Call after each delivery batch and at shutdown.
    async fn persist(&self) -> Result<()>;

    /// Counts for metrics.
    fn stats(&self) -> Stats;
}
