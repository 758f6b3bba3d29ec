//! [`MemoryTracker`]: the tracker without persistence, fresh or loaded from a
//! state file that it never writes.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::file::{load_read_only, log_loaded};
use crate::options::{Baseline, TrackerOptions};
use crate::state::{Core, State, hold_future};
use crate::{EventKey, Stats, Tracker, Verdict};

/// A tracker that keeps its state in memory only: for tests and for running
/// without persistence. A restart starts from a new baseline.
///
/// [`Tracker::persist`] does nothing and always succeeds.
#[derive(Debug)]
pub struct MemoryTracker {
    core: Mutex<Core>,
}

impl MemoryTracker {
    /// A fresh tracker; its baseline is resolved now from `options.clock`.
    pub fn new(options: TrackerOptions) -> Self {
        let state = State::new(options.baseline, options.clock.now());
        Self {
            core: Mutex::new(Core::new(state, &options)),
        }
    }

    /// A tracker holding the state stored at `path`, in memory only: a
    /// preview of what a [`FileTracker`](crate::FileTracker) on that file would
    /// decide, which never creates, locks or writes anything there (nor
    /// anywhere else), so it can run beside the receiver that owns the file.
    ///
    /// The file is read as [`FileTracker::open`](crate::FileTracker::open)
    /// reads it: the same checks, the same repair of times past the clock (in
    /// memory). Without a file, the state is fresh, as `open` would create it.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`], [`Error::UnsupportedVersion`], [`Error::NotAFile`]
    /// for unusable contents, [`Error::Read`] when it cannot be read; never a
    /// lock error (nothing is locked).
    pub async fn from_state_file(path: impl AsRef<Path>, options: TrackerOptions) -> Result<Self> {
        let path =
            std::path::absolute(path.as_ref()).unwrap_or_else(|_| path.as_ref().to_path_buf());
        let task_path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || load_read_only(&task_path))
            .await
            .map_err(|e| Error::Task {
                path: path.clone(),
                reason: e.to_string(),
            })??;
        let state = match loaded {
            Some(mut state) => {
                hold_future(&mut state, &options, &path);
                log_loaded(&state, options.baseline, &path);
                state
            }
            None => State::new(options.baseline, options.clock.now()),
        };
        Ok(Self {
            core: Mutex::new(Core::new(state, &options)),
        })
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        // The core is consistent after every statement that can panic.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Tracker for MemoryTracker {
    fn baseline(&self) -> Baseline {
        self.core().state.baseline()
    }

    async fn check(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<Verdict> {
        Ok(self.core().check(source, event_id, created_at))
    }

    async fn check_many(&self, source: &str, events: &[EventKey<'_>]) -> Result<Vec<Verdict>> {
        let core = self.core();
        Ok(events
            .iter()
            .map(|e| core.check(source, e.id, e.created_at))
            .collect())
    }

    async fn record_delivered(
        &self,
        _source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.core().record(event_id, created_at);
        Ok(())
    }

    async fn floor(&self, source: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.core().floor(source))
    }

    async fn advance_floor(&self, source: &str, floor: DateTime<Utc>) -> Result<()> {
        self.core().advance_floor(source, floor);
        Ok(())
    }

    async fn forget_source(&self, source: &str) -> Result<()> {
        self.core().forget_source(source);
        Ok(())
    }

    async fn align_start(&self, api_now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.core().align_start(api_now))
    }

    async fn persist(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Stats {
        self.core().stats()
    }
}
