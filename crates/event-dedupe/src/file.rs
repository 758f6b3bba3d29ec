//! [`FileTracker`]: the tracker persisted to a JSON file with crash-safe
//! writes and an advisory lock.

use std::ffi::OsString;
use std::fs::{self, File, TryLockError};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::options::{Baseline, TrackerOptions};
use crate::state::{Core, FORMAT_VERSION, State};
use crate::{EventKey, Stats, Tracker, Verdict};

/// Options of [`FileTracker::open`].
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// The options every store takes.
    pub tracker: TrackerOptions,
    /// At most this many recorded events may be not yet on disk: the record
    /// that reaches the bound writes the file before it returns. So a crash
    /// sends at most this many acknowledged events again (plus records made
    /// concurrently while that write runs). Default 256; 0 or 1 writes on
    /// every record.
    pub max_unpersisted: usize,
    /// When the file is corrupt or of an unknown version, rename it aside to
    /// `<name>.corrupt-<time>` and start a fresh state (new baseline) instead
    /// of failing. Off by default: a bad file stops start-up. Never applies to
    /// a path that is not a regular file, nor to read errors such as
    /// permission denied.
    pub reset_corrupt: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            tracker: TrackerOptions::default(),
            max_unpersisted: 256,
            reset_corrupt: false,
        }
    }
}

#[derive(Debug)]
struct Paths {
    path: PathBuf,
    tmp: PathBuf,
    lock: PathBuf,
    dir: PathBuf,
}

#[derive(Debug)]
struct Inner {
    core: Core,
    persisted_generation: u64,
    /// Records since the last write began.
    unpersisted: usize,
}

/// A tracker whose state lives in a JSON file: the receiver's default store.
///
/// - One owner: [`FileTracker::open`] takes an advisory lock on the sibling
///   `<path>.lock` (holding the owner's pid) for the tracker's lifetime; a
///   second opener gets [`Error::Locked`].
/// - Crash-safe writes: a temporary `<path>.tmp` in the same directory is
///   written, fsynced and renamed over the file, then the directory is
///   fsynced. A kill at any moment leaves the old or the new state; a
///   leftover temporary file is removed on open.
/// - Batched: records mark the state dirty; [`Tracker::persist`] writes when
///   dirty; [`FileOptions::max_unpersisted`] bounds what a crash can resend.
///   Dropping the tracker does not write (call `persist` at shutdown).
/// - Never silently reset: a corrupt file fails [`FileTracker::open`] unless
///   [`FileOptions::reset_corrupt`] is set.
#[derive(Debug)]
pub struct FileTracker {
    paths: Arc<Paths>,
    inner: Mutex<Inner>,
    write: tokio::sync::Mutex<()>,
    max_unpersisted: usize,
    /// Holds the advisory lock until dropped.
    _lock: File,
}

impl FileTracker {
    /// Opens (or creates) the state at `path`, creating missing parent
    /// directories.
    ///
    /// A new state takes its baseline from `options.tracker.baseline` and is
    /// written at once, so the baseline survives a crash before the first
    /// [`Tracker::persist`]. An existing state keeps its stored baseline; a
    /// configured [`Baseline::All`] or [`Baseline::At`] that differs from it
    /// is ignored with a warning (move the file aside to change it).
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] when another tracker holds the file;
    /// [`Error::Corrupt`], [`Error::UnsupportedVersion`], [`Error::NotAFile`]
    /// for unusable contents; [`Error::Read`], [`Error::Lock`],
    /// [`Error::Write`] for I/O failures. Every error names the path.
    pub async fn open(path: impl AsRef<Path>, options: FileOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let task_path = path.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(&task_path, options))
            .await
            .map_err(|e| Error::Task {
                path,
                reason: e.to_string(),
            })?
    }

    fn open_blocking(path: &Path, options: FileOptions) -> Result<Self> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::NotAFile { path });
        };
        let sibling = |suffix: &str| {
            let mut n = OsString::from(name);
            n.push(suffix);
            path.with_file_name(n)
        };
        let paths = Paths {
            tmp: sibling(".tmp"),
            lock: sibling(".lock"),
            dir: dir.to_path_buf(),
            path: path.clone(),
        };
        if !paths.dir.is_dir() {
            fs::create_dir_all(&paths.dir).map_err(|source| Error::Write {
                path: path.clone(),
                step: "creating the directory",
                source,
            })?;
        }
        let lock = acquire_lock(&paths)?;
        match fs::remove_file(&paths.tmp) {
            Ok(()) => tracing::warn!(
                tmp = %paths.tmp.display(),
                "removed a temporary state file left by an interrupted write; the state file itself is intact"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Write {
                    path,
                    step: "removing a leftover temporary file",
                    source,
                });
            }
        }

        let topts = &options.tracker;
        let now = topts.clock.now();
        let loaded = match load(&path) {
            Ok(loaded) => loaded,
            Err(e)
                if options.reset_corrupt
                    && matches!(e, Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) =>
            {
                let aside = move_aside(&path, now)?;
                tracing::warn!(
                    error = %e,
                    moved_to = %aside.display(),
                    "state file unusable; moved it aside and starting fresh as asked (reset_corrupt)"
                );
                None
            }
            Err(e) => return Err(e),
        };
        let fresh = loaded.is_none();
        let state = match loaded {
            Some(state) => {
                let stored = state.baseline();
                let configured = topts.baseline;
                if configured != Baseline::Now && configured != stored {
                    tracing::warn!(
                        path = %path.display(),
                        %stored,
                        %configured,
                        "the configured start point differs from the one stored in the state file; keeping the \
                         stored one (move the file aside to start over from the configured one)"
                    );
                }
                tracing::info!(
                    path = %path.display(),
                    baseline = %stored,
                    tracked = state.delivered.len() + state.undated.len(),
                    sources = state.sources.len(),
                    "loaded dedupe state"
                );
                state
            }
            None => {
                let state = State::new(topts.baseline, now);
                tracing::info!(path = %path.display(), baseline = %state.baseline(), "created new dedupe state");
                state
            }
        };
        let core = Core::new(state, topts);
        if fresh {
            let bytes = encode(&core.state, &path)?;
            write_atomic(&paths, &bytes)?;
        }
        Ok(Self {
            paths: Arc::new(paths),
            inner: Mutex::new(Inner {
                persisted_generation: core.generation,
                core,
                unpersisted: 0,
            }),
            write: tokio::sync::Mutex::new(()),
            max_unpersisted: options.max_unpersisted,
            _lock: lock,
        })
    }

    /// The state file (absolute).
    pub fn path(&self) -> &Path {
        &self.paths.path
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // The state is consistent after every statement that can panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FileTracker {
    fn drop(&mut self) {
        let inner = self.inner();
        if inner.core.generation != inner.persisted_generation {
            tracing::warn!(
                path = %self.paths.path.display(),
                unpersisted = inner.unpersisted,
                "dedupe state dropped without persist; those events may be sent again after a restart"
            );
        }
    }
}

#[async_trait]
impl Tracker for FileTracker {
    fn baseline(&self) -> Baseline {
        self.inner().core.state.baseline()
    }

    async fn check(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<Verdict> {
        Ok(self.inner().core.check(source, event_id, created_at))
    }

    async fn check_many(&self, source: &str, events: &[EventKey<'_>]) -> Result<Vec<Verdict>> {
        let inner = self.inner();
        Ok(events
            .iter()
            .map(|e| inner.core.check(source, e.id, e.created_at))
            .collect())
    }

    async fn record_delivered(
        &self,
        _source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let must_write = {
            let mut inner = self.inner();
            if inner.core.record(event_id, created_at) {
                inner.unpersisted += 1;
            }
            inner.unpersisted >= self.max_unpersisted.max(1)
        };
        if must_write {
            self.persist().await
        } else {
            Ok(())
        }
    }

    async fn floor(&self, source: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.inner().core.floor(source))
    }

    async fn advance_floor(&self, source: &str, floor: DateTime<Utc>) -> Result<()> {
        self.inner().core.advance_floor(source, floor);
        Ok(())
    }

    async fn forget_source(&self, source: &str) -> Result<()> {
        self.inner().core.forget_source(source);
        Ok(())
    }

    async fn persist(&self) -> Result<()> {
        let _writer = self.write.lock().await;
        let (bytes, generation, pending) = {
            let inner = self.inner();
            if inner.core.generation == inner.persisted_generation {
                return Ok(());
            }
            (
                encode(&inner.core.state, &self.paths.path)?,
                inner.core.generation,
                inner.unpersisted,
            )
        };
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || write_atomic(&paths, &bytes))
            .await
            .map_err(|e| Error::Task {
                path: self.paths.path.clone(),
                reason: e.to_string(),
            })??;
        let mut inner = self.inner();
        inner.persisted_generation = inner.persisted_generation.max(generation);
        inner.unpersisted = inner.unpersisted.saturating_sub(pending);
        Ok(())
    }

    fn stats(&self) -> Stats {
        let inner = self.inner();
        let mut stats = inner.core.stats();
        stats.dirty = inner.core.generation != inner.persisted_generation;
        stats.unpersisted = inner.unpersisted;
        stats
    }
}

fn acquire_lock(paths: &Paths) -> Result<File> {
    let lock_err = |source| Error::Lock {
        path: paths.path.clone(),
        lock_path: paths.lock.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&paths.lock)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder_pid = fs::read_to_string(&paths.lock)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            return Err(Error::Locked {
                path: paths.path.clone(),
                lock_path: paths.lock.clone(),
                holder_pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    file.set_len(0).map_err(lock_err)?;
    (&file)
        .write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(lock_err)?;
    Ok(file)
}

/// `Ok(None)` when there is no file yet.
fn load(path: &Path) -> Result<Option<State>> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.is_file() {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(format!("not UTF-8: {e}")))?;

    #[derive(Deserialize)]
    struct Probe {
        version: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_str(text).map_err(|e| corrupt(format!("not a JSON object: {e}")))?;
    match probe.version {
        None => return Err(corrupt("no \"version\" field".to_owned())),
        Some(v) => match v.as_u64() {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            None => return Err(corrupt(format!("\"version\" is {v}, not a number"))),
        },
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| corrupt(format!("unexpected contents: {e}")))
}

fn move_aside(path: &Path, now: DateTime<Utc>) -> Result<PathBuf> {
    let stamp = now.format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut aside = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = path.with_file_name(format!("{name}.corrupt-{stamp}-{n}"));
    }
    fs::rename(path, &aside).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        step: "moving the corrupt file aside",
        source,
    })?;
    Ok(aside)
}

fn encode(state: &State, path: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec(state).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        step: "encoding",
        source: io::Error::other(e),
    })
}

/// Temporary file, fsync, rename, fsync the directory.
fn write_atomic(paths: &Paths, bytes: &[u8]) -> Result<()> {
    let step = |step: &'static str| {
        move |source| Error::Write {
            path: paths.path.clone(),
            step,
            source,
        }
    };
    let result = (|| {
        let mut file = File::create(&paths.tmp).map_err(step("creating the temporary file"))?;
        file.write_all(bytes)
            .map_err(step("writing the temporary file"))?;
        file.sync_all()
            .map_err(step("syncing the temporary file"))?;
        drop(file);
        fs::rename(&paths.tmp, &paths.path)
            .map_err(step("renaming the temporary file over the state file"))?;
        sync_dir(&paths.dir).map_err(step("syncing the directory"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&paths.tmp);
    }
    result
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; the rename is durable enough there.
    Ok(())
}
