//! The PostgreSQL store and leader election (feature `postgres`): several
//! replicas share one organization's state in a database, and one of them at a
//! time, the holder of the organization's lease, polls and writes.
//!
//! - [`PostgresOptions`]: where and as whom (a libpq-style URL), the schema and
//!   the organization.
//! - [`Database`]: connects, runs the versioned migrations, hands out a
//!   [`PostgresTracker`] for a lease [`Generation`], imports a file state once.
//! - [`Elector`]: the lease (one row per organization and deployment, expiry by the
//!   database's clock) and the whole campaign, [`Elector::lead`].
//!
//! # Invariants
//!
//! - **Fencing.** Every write of a [`PostgresTracker`] is one statement (the
//!   schema's function `write_state`) that first locks the organization's
//!   lease row and compares its generation *and* holder with the tracker's
//!   [`Fence`]: on any mismatch the write is refused with [`Error::Fenced`]
//!   and nothing changes, so a paused or partitioned old leader never moves
//!   the state backwards, nor does a second holder of a generation issued
//!   again by a lease row that went backwards. A refused write also tells
//!   this process's [`Elector::lead`], which ends the term at once.
//! - **A leader that cannot write steps down.** When the writes of a term
//!   keep failing for longer than the lease ([`LossReason::StateUnwritable`]),
//!   [`Elector::lead`] ends the term, so the deliveries a failover resends
//!   stay within about a lease.
//! - **No lock waits on this client.** A write is one server round trip:
//!   no row lock is ever held while the server waits for this process (a
//!   paused or cut-off replica cannot strand the others). Every connection
//!   sets `lock_timeout`, `statement_timeout`,
//!   `idle_in_transaction_session_timeout` and TCP keepalives derived from
//!   the lease duration ([`PostgresOptions::lock_timeout`]).
//! - **The database's clock.** A lease's expiry is computed with the
//!   database's `now()`, never a replica's clock. The holder judges its own
//!   deadline on its monotonic and boot clocks, counted from the moment a renewal was
//!   *sent*, minus a safety margin: it stops before the database can consider
//!   the lease expired.

mod conn;
mod lease;
mod migrations;
mod options;
mod tls;
mod tracker;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::options::TrackerOptions;

use conn::Conn;
pub use lease::{
    Elector, Fence, Generation, LeaderEvent, Lease, LossReason, Term, replica_identity,
};
pub use options::{DEFAULT_DEPLOYMENT, DEFAULT_SCHEMA, PostgresOptions};
pub use tracker::PostgresTracker;

/// What [`Database::import_state`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// `false` when the database already held exactly this state (a second
    /// run): nothing was written.
    pub imported: bool,
    /// Delivered event ids in the state (dated and undated).
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
    ping: Arc<Conn>,
}

/// What every connection of one [`Database`] shares.
pub(crate) struct Inner {
    pub(crate) options: PostgresOptions,
    /// The TLS connector (`None` with `sslmode=disable`).
    pub(crate) tls: Option<tls::RustlsConnect>,
    /// The greatest generation whose write was fenced in this process: a
    /// term of that generation (or older) must end.
    pub(crate) fenced: watch::Sender<Generation>,
    /// Since when the state writes of a generation have failed (`None`
    /// after a write succeeded): the elector of that term steps down a
    /// lease later.
    pub(crate) write_failing: watch::Sender<Option<(Generation, tokio::time::Instant)>>,
    /// The connections open now (all of this database's handles).
    pub(crate) connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Inner {
    /// The schema, quoted for SQL (validated: a plain identifier).
    pub(crate) fn schema(&self) -> String {
        format!("\"{}\"", self.options.schema())
    }

    /// `Error::Database` for `operation`, the password scrubbed.
    pub(crate) fn db_error(&self, operation: &str, error: &tokio_postgres::Error) -> Error {
        Error::Database {
            operation: operation.to_owned(),
            reason: self.options.scrub(&describe(error)),
        }
    }

    /// Reports whether a state write of `generation` succeeded: the first
    /// failure starts the clock of [`LossReason::StateUnwritable`], a success
    /// stops it.
    pub(crate) fn report_write(&self, generation: Generation, ok: bool) {
        self.write_failing
            .send_if_modified(|failing| match (*failing, ok) {
                (Some((g, _)), true) if g == generation => {
                    *failing = None;
                    true
                }
                (Some((g, _)), false) if g == generation => false,
                (_, false) => {
                    *failing = Some((generation, tokio::time::Instant::now()));
                    true
                }
                (_, true) => false,
            });
    }

    /// Reports that a write of `generation` was fenced (for any mismatch: a
    /// newer generation, an older one, another holder).
    pub(crate) fn report_fenced(&self, generation: Generation) {
        self.fenced.send_if_modified(|fenced| {
            *fenced = generation;
            true
        });
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A tokio-postgres error with what the server said (its severity, message,
/// detail and hint) or the chain of causes.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = std::error::Error::source(cause);
    }
    text
}

impl Database {
    /// Connects and brings the schema up to date (under an advisory lock, so
    /// replicas starting together migrate once).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the server cannot be reached or refuses us,
    /// [`Error::Migration`] when the schema cannot be brought up to date (or
    /// was migrated by a newer receiver), [`Error::InvalidOptions`] when the
    /// TLS settings cannot be used.
    pub async fn connect(options: &PostgresOptions) -> Result<Self> {
        let (fenced, _) = watch::channel(Generation(i64::MIN));
        let tls = match options.encrypt {
            options::Encrypt::Never => None,
            options::Encrypt::IfOffered | options::Encrypt::Always => Some(
                tls::RustlsConnect::new(options.verify, options.root_cert.as_deref())
                    .map_err(|reason| Error::InvalidOptions { reason })?,
            ),
        };
        let inner = Arc::new(Inner {
            options: options.clone(),
            tls,
            fenced,
            write_failing: watch::channel(None).0,
            connections: Arc::default(),
        });
        let ping = Arc::new(Conn::new(inner.clone()));
        {
            let mut conn = ping.get("connecting").await?;
            migrations::run(&inner, conn.client())
                .await
                .inspect_err(|_| conn.discard())?;
            migrations::claim_undeployed(&inner, conn.client())
                .await
                .inspect_err(|_| conn.discard())?;
        }
        Ok(Self { inner, ping })
    }

    /// How many connections to the server this database (its trackers,
    /// electors and pings together) holds open now.
    pub fn open_connections(&self) -> usize {
        self.inner
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The options this database was opened with.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The tracker of this organization's state, whose every write must
    /// find `fence` (a [`Term`]'s or a [`Lease`]'s generation and holder) in
    /// the lease row and is refused with [`Error::Fenced`] otherwise. Loads
    /// the whole state (creating it, with the options' baseline, when the
    /// organization has none).
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] when the lease row is not `fence`'s,
    /// [`Error::Database`] when the database cannot be reached.
    pub async fn tracker(
        &self,
        fence: impl Into<Fence>,
        options: TrackerOptions,
    ) -> Result<PostgresTracker> {
        PostgresTracker::load(self.inner.clone(), fence.into(), options).await
    }

    /// Copies a file state (the [`FileTracker`](crate::FileTracker)'s JSON)
    /// into the database once; refuses when the organization already has state
    /// (unless it is identical, then it does nothing), so a double run does
    /// nothing wrong. Writes as the current lease generation, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`Error::ImportRefused`] when the organization already holds a different
    /// state; the file's own errors ([`Error::Corrupt`], [`Error::Read`], ...);
    /// [`Error::Database`].
    pub async fn import_state(&self, path: &Path) -> Result<ImportReport> {
        tracker::import(self.inner.clone(), path).await
    }

    /// Whether the database answers (a `SELECT 1` on a connection of its own).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.ping.get("pinging").await?;
        let timeout = self.inner.options.request_timeout();
        match tokio::time::timeout(timeout, conn.client().simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                conn.check_closed();
                Err(self.inner.db_error("pinging", &error))
            }
            Err(_) => {
                conn.discard();
                Err(timed_out("pinging", timeout))
            }
        }
    }
}

/// `Error::Database` for a request that got no answer in time.
pub(crate) fn timed_out(operation: &str, after: std::time::Duration) -> Error {
    Error::Database {
        operation: operation.to_owned(),
        reason: format!("no answer within {after:?}"),
    }
}
