//! The PostgreSQL store and leader election (feature `postgres`): several
//! replicas share one organization's state in a database, and one of them at a
//! time, the holder of the organization's lease, polls and writes.
//!
//! - [`PostgresOptions`]: where and as whom (a libpq-style URL), the schema and
//!   the organization.
//! - [`Database`]: connects, runs the versioned migrations, hands out a
//!   [`PostgresTracker`] for a lease [`Generation`], imports a file state once.
//! - [`Elector`]: the lease (one row per organization, expiry by the
//!   database's clock) and the whole campaign, [`Elector::lead`].
//!
//! # Invariants
//!
//! - **Fencing.** Every write of a [`PostgresTracker`] runs in one transaction
//!   that first locks the organization's lease row and compares its generation
//!   with the tracker's: when a newer leader exists the write is refused with
//!   [`Error::Fenced`](crate::Error::Fenced) and nothing changes, so a paused
//!   or partitioned old leader never moves the state backwards. Floors and the
//!   horizon are written with `GREATEST`, so they only move forward in the
//!   database too.
//! - **The database's clock.** A lease's expiry is computed with the
//!   database's `now()`, never a replica's clock. The holder judges its own
//!   deadline on its monotonic clock, counted from the moment a renewal was
//!   *sent*, minus a safety margin: it stops before the database can consider
//!   the lease expired.

mod lease;
mod tracker;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::options::TrackerOptions;

pub use lease::{Elector, Generation, LeaderEvent, Lease, LossReason, Term, replica_identity};
pub use tracker::PostgresTracker;

/// The schema the receiver's tables live in unless configured otherwise.
pub const DEFAULT_SCHEMA: &str = "equinix_receiver";

/// Where and as whom: parsed from a libpq-style URL
/// (`postgres://user:pass@host:port/db?sslmode=require`).
///
/// `Debug` and every error show the URL without its password.
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    url: SecretString,
    schema: String,
    organization_id: String,
    connect_timeout: Duration,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &"[redacted]")
            .field("schema", &self.schema)
            .field("organization_id", &self.organization_id)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PostgresOptions {
    /// Options for `organization_id`'s state in the database at `url`, in the
    /// schema [`DEFAULT_SCHEMA`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] naming what is wrong with the URL (never
    /// showing its password).
    pub fn new(url: SecretString, organization_id: impl Into<String>) -> Result<Self> {
        Ok(Self {
            url,
            schema: DEFAULT_SCHEMA.to_owned(),
            organization_id: organization_id.into(),
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// The same options with the tables in `schema`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] when `schema` is not a plain identifier.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Result<Self> {
        self.schema = schema.into();
        Ok(self)
    }

    /// The same options giving up a connection attempt after `timeout`
    /// (default 10 s).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The organization whose state and lease these options address.
    pub fn organization_id(&self) -> &str {
        &self.organization_id
    }
}

/// What [`Database::import_state`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// `false` when the database already held exactly this state (a second
    /// run): nothing was written.
    pub imported: bool,
    /// Delivered event ids in the state.
    pub delivered_ids: usize,
    /// Sources with a floor in the state.
    pub sources: usize,
}

/// The database: connects, runs the versioned, idempotent migrations, and
/// hands out trackers and electors. Cheap to clone; each tracker and each
/// elector uses a connection of its own, so a long write never delays a
/// lease renewal.
#[derive(Clone, Debug)]
pub struct Database {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: PostgresOptions,
}

impl Database {
    /// Connects and brings the schema up to date.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the server cannot be reached or refuses us,
    /// [`Error::Migration`] when the schema cannot be brought up to date.
    pub async fn connect(options: &PostgresOptions) -> Result<Self> {
        Err(Error::Database {
            operation: "connecting".into(),
            reason: format!("not implemented yet ({}, {})", options.schema, options.url.expose_secret().len()),
        })
    }

    /// The options this database was opened with.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    /// The tracker of this organization's state, whose every write carries
    /// `generation` and is refused with [`Error::Fenced`] when a newer lease
    /// generation exists. Loads the whole state (creating it, with the
    /// options' baseline, when the organization has none).
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] when a newer generation already exists,
    /// [`Error::Database`] when the database cannot be reached.
    pub async fn tracker(
        &self,
        generation: Generation,
        options: TrackerOptions,
    ) -> Result<PostgresTracker> {
        let _ = (generation, options);
        Err(self.not_yet())
    }

    /// Copies a file state (the [`FileTracker`](crate::FileTracker)'s JSON)
    /// into the database once; refuses when the organization already has state
    /// (unless it is identical, then it does nothing), so a double run does
    /// nothing wrong.
    ///
    /// # Errors
    ///
    /// [`Error::ImportRefused`] when the organization already holds a different
    /// state; the file's own errors ([`Error::Corrupt`], [`Error::Read`], ...);
    /// [`Error::Database`].
    pub async fn import_state(&self, path: &Path) -> Result<ImportReport> {
        let _ = path;
        Err(self.not_yet())
    }

    /// Whether the database answers (a `SELECT 1` on a connection of its own).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        Err(self.not_yet())
    }

    fn not_yet(&self) -> Error {
        Error::Database {
            operation: "using the database".into(),
            reason: "not implemented yet".into(),
        }
    }
}
