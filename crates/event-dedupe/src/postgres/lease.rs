//! Leader election: one lease row per organization (holder, generation,
//! expiry by the database's clock), and [`Elector::lead`], the campaign.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::postgres::Database;

/// A lease generation: the fencing token. Each new holder of an
/// organization's lease gets a greater one; every state write carries its
/// writer's and is refused when a greater one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub i64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A lease held by this process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The fencing token of this holding.
    pub generation: Generation,
    /// When this process must consider the lease lost (local monotonic clock):
    /// the moment the last successful acquisition or renewal was sent, plus
    /// the lease duration, minus the safety margin.
    pub deadline: Instant,
    /// The holder identity (this elector's).
    pub holder: String,
}

/// One term of leadership, handed to the callback of [`Elector::lead`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Term {
    /// The generation every state write of this term must carry.
    pub generation: Generation,
    /// Fires at step-down (lost lease, failed renewals, a fenced write, or
    /// `stop`): stop polling and delivering at once, then return.
    pub lost: CancellationToken,
}

/// Why leadership ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// Renewals failed until the local deadline (database unreachable).
    RenewalFailed,
    /// The database answered that another replica holds a newer lease.
    Superseded,
    /// A state write was refused because a newer generation exists.
    Fenced,
    /// The process is stopping and released the lease.
    Stopped,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RenewalFailed => "renewal failed until the lease deadline",
            Self::Superseded => "another replica holds a newer lease",
            Self::Fenced => "a state write was fenced by a newer generation",
            Self::Stopped => "stopping",
        })
    }
}

/// What an [`Elector`] reports to its observer (see [`Elector::with_events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderEvent {
    /// This replica became the leader with this generation.
    Gained(Generation),
    /// This replica stopped being the leader.
    Lost {
        /// The generation of the term that ended.
        generation: Generation,
        /// Why.
        reason: LossReason,
    },
    /// Whether the last request to the database got an answer (reported on
    /// every change, and once at the first answer or failure).
    DatabaseReachable(bool),
}

type Observer = Arc<dyn Fn(LeaderEvent) + Send + Sync>;

/// Leader election for one organization: its lease row, with the holder's
/// identity, a generation and an expiry computed with the database's `now()`.
pub struct Elector {
    db: Database,
    identity: String,
    lease_duration: Duration,
    events: Option<Observer>,
}

impl fmt::Debug for Elector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elector")
            .field("organization_id", &self.db.options().organization_id())
            .field("identity", &self.identity)
            .field("lease_duration", &self.lease_duration)
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// An elector campaigning as `identity` (see [`replica_identity`]) for
    /// leases of `lease_duration`.
    pub fn new(db: Database, identity: String, lease_duration: Duration) -> Self {
        Self {
            db,
            identity,
            lease_duration,
            events: None,
        }
    }

    /// The same elector reporting gains, losses and database reachability to
    /// `observer` (called inline: keep it quick).
    #[must_use]
    pub fn with_events(mut self, observer: Arc<dyn Fn(LeaderEvent) + Send + Sync>) -> Self {
        self.events = Some(observer);
        self
    }

    /// This elector's holder identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Takes the lease when free or expired (generation + 1), or renews it
    /// when we hold it. `None`: another replica holds it.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database cannot be reached.
    pub async fn try_acquire(&self) -> Result<Option<Lease>> {
        Err(not_yet())
    }

    /// Renews a lease we hold. `None`: lost it (a newer generation exists, or
    /// it expired).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database cannot be reached.
    pub async fn renew(&self, lease: &Lease) -> Result<Option<Lease>> {
        let _ = lease;
        Err(not_yet())
    }

    /// Gives the lease up so a standby can take it at once.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database cannot be reached (the lease then
    /// expires on its own).
    pub async fn release(&self, lease: Lease) -> Result<()> {
        let _ = lease;
        Err(not_yet())
    }

    /// The whole campaign: waits for the lease (retrying with backoff while
    /// the database is unreachable), then calls `term(Term)` and keeps
    /// renewing every `lease_duration / 3`; cancels [`Term::lost`] before the
    /// lease can expire when renewal fails (judged on this process's monotonic
    /// clock from the moment the renewal was sent, with a safety margin), when
    /// renewal answers lost, or when a write was fenced. When `term` returns,
    /// campaigns again. Returns when `stop` fires (releasing a held lease).
    pub async fn lead<F, Fut>(&self, stop: CancellationToken, term: F)
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        let _ = term;
        stop.cancelled().await;
    }
}

/// A replica identity: the hostname (the pod name in Kubernetes), `-`, and a
/// suffix unique to this process (its pid and a random number), so two
/// processes on one host are two replicas.
pub fn replica_identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".to_owned());
    let random: u32 = rand::random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

fn not_yet() -> Error {
    Error::Database {
        operation: "using the lease".into(),
        reason: "not implemented yet".into(),
    }
}
