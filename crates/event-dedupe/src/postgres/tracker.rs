//! [`PostgresTracker`]: the tracking rules in memory, every change written to
//! PostgreSQL as row inserts and upserts, fenced by the lease generation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::options::Baseline;
use crate::postgres::Generation;
use crate::{Stats, Tracker, Verdict};

/// A tracker whose state lives in PostgreSQL, keyed by organization; made by
/// [`Database::tracker`](crate::postgres::Database::tracker).
///
/// Decisions are taken in memory (the state is loaded once); records and
/// floor moves are written at [`Tracker::persist`] as row inserts and upserts
/// in one transaction, refused with [`Error::Fenced`] when a newer lease
/// generation than the tracker's exists.
#[derive(Debug)]
pub struct PostgresTracker {
    generation: Generation,
}

impl PostgresTracker {
    /// The lease generation every write of this tracker carries.
    pub fn generation(&self) -> Generation {
        self.generation
    }
}

#[async_trait]
impl Tracker for PostgresTracker {
    fn baseline(&self) -> Baseline {
        Baseline::All
    }

    async fn check(
        &self,
        _source: &str,
        _event_id: &str,
        _created_at: Option<DateTime<Utc>>,
    ) -> Result<Verdict> {
        Err(not_yet())
    }

    async fn record_delivered(
        &self,
        _source: &str,
        _event_id: &str,
        _created_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        Err(not_yet())
    }

    async fn floor(&self, _source: &str) -> Result<Option<DateTime<Utc>>> {
        Err(not_yet())
    }

    async fn advance_floor(&self, _source: &str, _floor: DateTime<Utc>) -> Result<()> {
        Err(not_yet())
    }

    async fn forget_source(&self, _source: &str) -> Result<()> {
        Err(not_yet())
    }

    async fn persist(&self) -> Result<()> {
        Err(not_yet())
    }

    fn stats(&self) -> Stats {
        Stats::default()
    }
}

fn not_yet() -> Error {
    Error::Database {
        operation: "using the database".into(),
        reason: "not implemented yet".into(),
    }
}
