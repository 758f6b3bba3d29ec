//! [`ReadOnly`]: a tracker that never persists.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::options::Baseline;
use crate::{EventKey, Stats, Tracker, Verdict};

/// Wraps a tracker so that [`Tracker::persist`] does nothing and always
/// succeeds; every other call goes to the wrapped tracker. For previews (the
/// receiver's `--dry-run`): records and floors change the state in memory, so
/// the rest of a run sees them, but never reach a store.
///
/// ```
/// use event_dedupe::{MemoryTracker, ReadOnly, Tracker, TrackerOptions};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let preview = ReadOnly::new(
///     MemoryTracker::from_state_file("/var/lib/receiver/state.json", TrackerOptions::default()).await?,
/// );
/// preview.persist().await?; // never writes
/// # Ok::<_, event_dedupe::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct ReadOnly<T>(T);

impl<T> ReadOnly<T> {
    /// Wraps `tracker`.
    pub fn new(tracker: T) -> Self {
        Self(tracker)
    }

    /// The wrapped tracker.
    pub fn get_ref(&self) -> &T {
        &self.0
    }
}

#[async_trait]
impl<T: Tracker> Tracker for ReadOnly<T> {
    fn baseline(&self) -> Baseline {
        self.0.baseline()
    }

    async fn check(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<Verdict> {
        self.0.check(source, event_id, created_at).await
    }

    async fn check_many(&self, source: &str, events: &[EventKey<'_>]) -> Result<Vec<Verdict>> {
        self.0.check_many(source, events).await
    }

    async fn record_delivered(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.0.record_delivered(source, event_id, created_at).await
    }

    async fn floor(&self, source: &str) -> Result<Option<DateTime<Utc>>> {
        self.0.floor(source).await
    }

    async fn advance_floor(&self, source: &str, floor: DateTime<Utc>) -> Result<()> {
        self.0.advance_floor(source, floor).await
    }

    async fn forget_source(&self, source: &str) -> Result<()> {
        self.0.forget_source(source).await
    }

    async fn align_start(&self, api_now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        self.0.align_start(api_now).await
    }

    async fn persist(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Stats {
        self.0.stats()
    }
}
