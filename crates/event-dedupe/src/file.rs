//! [`FileTracker`]: the tracker persisted to a JSON file with crash-safe
//! writes and advisory locks by the file's identity; and the read-only load
//! of a state file.

use std::ffi::OsString;
use std::fs::{self, File, TryLockError};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::atomic::{FileMode, RENAME_STEP, TEMP_RANDOM};
use crate::error::{Error, Result};
use crate::options::{Baseline, TrackerOptions};
use crate::state::{Core, FORMAT_VERSION, State, hold_future};
use crate::{EventKey, Stats, Tracker, Verdict};

/// Options of [`FileTracker::open`]. Build with [`FileOptions::new`] and the
/// `with_*` methods, or set fields of a default value (the struct may gain
/// fields, so it cannot be written as a literal outside this crate).
///
/// ```
/// use event_dedupe::{FileOptions, TrackerOptions};
/// let options = FileOptions::new(TrackerOptions::new()).with_reset_corrupt(true);
/// assert!(options.reset_corrupt);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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

impl FileOptions {
    /// The default file options around `tracker`.
    pub fn new(tracker: TrackerOptions) -> Self {
        Self {
            tracker,
            ..Self::default()
        }
    }

    /// The same options writing the file once `max_unpersisted` records wait.
    #[must_use]
    pub fn with_max_unpersisted(mut self, max_unpersisted: usize) -> Self {
        self.max_unpersisted = max_unpersisted;
        self
    }

    /// The same options renaming a corrupt file aside when `reset_corrupt`.
    #[must_use]
    pub fn with_reset_corrupt(mut self, reset_corrupt: bool) -> Self {
        self.reset_corrupt = reset_corrupt;
        self
    }
}

#[derive(Debug)]
struct Paths {
    /// The state file as given, made absolute: what messages name.
    path: PathBuf,
    /// The state file with every symbolic link resolved: what is read, locked
    /// and replaced, so every alias of one file meets at the same lock.
    real: PathBuf,
    /// `<real>.lock`.
    lock: PathBuf,
    /// The directory of `real`, where temporary files are created.
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
///   `<path>.lock` (holding the owner's pid) and on the state file itself for
///   the tracker's lifetime; a second opener gets [`Error::Locked`]. See
///   *Locking* below.
/// - Crash-safe writes: a temporary file with an unpredictable name
///   (`<name>.XXXXXX.tmp`, created exclusively, so never through a planted
///   link) in the same directory is written, fsynced and renamed over the
///   file, then the directory is fsynced. A kill at any moment leaves the old
///   or the new state; leftover temporary files are removed on open (a link
///   among them is removed, never followed).
/// - Batched: records mark the state dirty; [`Tracker::persist`] writes when
///   dirty; [`FileOptions::max_unpersisted`] bounds what a crash can resend.
///   Dropping the tracker does not write (call `persist` at shutdown).
/// - Never silently reset: a corrupt file (including a time outside the years
///   0000 to 9999) fails [`FileTracker::open`] unless
///   [`FileOptions::reset_corrupt`] is set. Floors, horizon and baseline past
///   the clock plus [`FUTURE_TOLERANCE`](crate::FUTURE_TOLERANCE) are held
///   there with a warning, and the repaired state is written by the next
///   [`Tracker::persist`].
///
/// # Locking
///
/// Locks follow the file, not the name it was given. The path is resolved
/// (every symbolic link, in the directories and the file name) before
/// anything is locked, so a second receiver given a symlinked alias meets the
/// same `<real path>.lock`. A hard link is another name for the same file that
/// no resolution reveals, so the tracker also holds a lock on the state file
/// itself; as every write replaces that file with a new one (the rename), it
/// locks each new file before renaming it into place and keeps that lock, so
/// a receiver given any name of the current file is refused. (A name linked
/// to an older file is a copy by then, no longer the state in use.) The lock
/// file is opened without following a link, and one that is a link or has
/// other names is refused with [`Error::Lock`]: writing the pid into it would
/// change another file.
#[derive(Debug)]
pub struct FileTracker {
    paths: Arc<Paths>,
    inner: Mutex<Inner>,
    write: tokio::sync::Mutex<()>,
    max_unpersisted: usize,
    /// Holds the advisory lock on `<path>.lock` until dropped.
    _lock: File,
    /// The current state file, locked: replaced after each write.
    held: Arc<Mutex<Option<File>>>,
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
    /// [`Error::Locked`] when another tracker holds the file (under any of its
    /// names); [`Error::Corrupt`], [`Error::UnsupportedVersion`],
    /// [`Error::NotAFile`] for unusable contents; [`Error::Read`],
    /// [`Error::Lock`] (also for a lock file that is a symbolic link),
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
        let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
            return Err(Error::NotAFile { path });
        };
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|source| Error::Write {
                path: path.clone(),
                step: "creating the directory",
                source,
            })?;
        }
        let paths = resolve(&path)?;
        let lock = acquire_lock(&paths)?;
        remove_leftover_temp_files(&paths)?;

        let topts = &options.tracker;
        let now = topts.clock.now();
        let (loaded, mut held) = match load_locked(&paths) {
            Ok(Some((state, file))) => (Some(state), Some(file)),
            Ok(None) => (None, None),
            Err(e)
                if options.reset_corrupt
                    && matches!(e, Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) =>
            {
                let aside = move_aside(&paths, now)?;
                tracing::warn!(
                    error = %e,
                    moved_to = %aside.display(),
                    "state file unusable; moved it aside and starting fresh as asked (reset_corrupt)"
                );
                (None, None)
            }
            Err(e) => return Err(e),
        };
        let fresh = loaded.is_none();
        let mut repaired = false;
        let state = match loaded {
            Some(mut state) => {
                repaired = hold_future(&mut state, topts, &path);
                log_loaded(&state, topts.baseline, &path);
                state
            }
            None => {
                let state = State::new(topts.baseline, now);
                tracing::info!(path = %path.display(), baseline = %state.baseline(), "created new dedupe state");
                state
            }
        };
        let mut core = Core::new(state, topts);
        let persisted_generation = core.generation;
        if fresh {
            let bytes = encode(&core.state, &path)?;
            held = Some(write_atomic(&paths, &bytes)?);
        } else if repaired {
            core.mark_changed();
        }
        Ok(Self {
            paths: Arc::new(paths),
            inner: Mutex::new(Inner {
                persisted_generation,
                core,
                unpersisted: 0,
            }),
            write: tokio::sync::Mutex::new(()),
            max_unpersisted: options.max_unpersisted,
            _lock: lock,
            held: Arc::new(Mutex::new(held)),
        })
    }

    /// The state file (absolute, as given: a symbolic link is not resolved
    /// here).
    pub fn path(&self) -> &Path {
        &self.paths.path
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // The state is consistent after every statement that can panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Logs a loaded state, warning when the configured start point differs from
/// the stored one (which wins).
pub(crate) fn log_loaded(state: &State, configured: Baseline, path: &Path) {
    let stored = state.baseline();
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
            // Deliveries record in parallel: while one write runs, the others
            // that cross the bound wait for it. Once it is done, one whose
            // record it already covered has nothing left to write.
            let writer = self.write.lock().await;
            if self.inner().unpersisted < self.max_unpersisted.max(1) {
                return Ok(());
            }
            self.write_locked(writer).await
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

    async fn align_start(&self, api_now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.inner().core.align_start(api_now))
    }

    async fn persist(&self) -> Result<()> {
        let writer = self.write.lock().await;
        self.write_locked(writer).await
    }

    fn stats(&self) -> Stats {
        let inner = self.inner();
        let mut stats = inner.core.stats();
        stats.dirty = inner.core.generation != inner.persisted_generation;
        stats.unpersisted = inner.unpersisted;
        stats
    }
}

impl FileTracker {
    /// Writes the state unless it is already written; `_writer` is the
    /// write lock, held until the file is in place.
    async fn write_locked(&self, _writer: tokio::sync::MutexGuard<'_, ()>) -> Result<()> {
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
        let file = tokio::task::spawn_blocking(move || write_atomic(&paths, &bytes))
            .await
            .map_err(|e| Error::Task {
                path: self.paths.path.clone(),
                reason: e.to_string(),
            })??;
        // The new file is the state now: hold its lock, release the old one.
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
        let mut inner = self.inner();
        inner.persisted_generation = inner.persisted_generation.max(generation);
        inner.unpersisted = inner.unpersisted.saturating_sub(pending);
        Ok(())
    }
}

/// The state file's paths, with every symbolic link in `path` resolved.
fn resolve(path: &Path) -> Result<Paths> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
        });
    };
    let mut real = fs::canonicalize(dir).map_err(read_err)?.join(name);
    if fs::symlink_metadata(&real).is_ok_and(|m| m.file_type().is_symlink()) {
        real = fs::canonicalize(&real).map_err(|e| {
            read_err(io::Error::new(
                e.kind(),
                format!("it is a symbolic link that leads nowhere ({e}); point it at the state file or remove it"),
            ))
        })?;
    }
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
        });
    };
    let mut lock = OsString::from(name);
    lock.push(".lock");
    Ok(Paths {
        path: path.to_path_buf(),
        lock: real.with_file_name(lock),
        dir: dir.to_path_buf(),
        real,
    })
}

/// Opens `path` without following a symbolic link in its last component and
/// without blocking on a FIFO.
fn open_no_follow(options: &mut fs::OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Whether an open error says the path is a symbolic link (`O_NOFOLLOW`).
fn is_link_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// How many names the file has (1 where that cannot be told).
fn link_count(meta: &fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::nlink(meta)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

fn acquire_lock(paths: &Paths) -> Result<File> {
    let lock_err = |source| Error::Lock {
        path: paths.path.clone(),
        lock_path: paths.lock.clone(),
        source,
    };
    let refuse = |why: &str| {
        lock_err(io::Error::other(format!(
            "the lock file {why}; writing the pid into it would change another file, so it is \
             refused: remove it"
        )))
    };
    let is_link = |e: &io::Error| {
        is_link_error(e)
            || fs::symlink_metadata(&paths.lock).is_ok_and(|m| m.file_type().is_symlink())
    };
    let file = open_no_follow(
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        &paths.lock,
    )
    .map_err(|e| {
        if is_link(&e) {
            refuse("is a symbolic link, which is never followed")
        } else {
            lock_err(e)
        }
    })?;
    let meta = file.metadata().map_err(lock_err)?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file"));
    }
    if link_count(&meta) > 1 {
        return Err(refuse("has other names (hard links)"));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let holder_pid = (&file)
                .take(32)
                .read_to_string(&mut pid)
                .ok()
                .and_then(|_| pid.trim().parse().ok());
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

/// Whether `name` is a temporary file of the state file `state`: the current
/// `<state>.XXXXXX.tmp`, or the `<state>.tmp` of earlier versions.
fn is_temp_name(name: &std::ffi::OsStr, state: &std::ffi::OsStr) -> bool {
    let (Some(name), Some(state)) = (name.to_str(), state.to_str()) else {
        return false;
    };
    name.strip_prefix(state)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix("tmp"))
        .is_some_and(|middle| {
            middle.is_empty()
                || middle.strip_suffix('.').is_some_and(|r| {
                    r.len() == TEMP_RANDOM && r.bytes().all(|b| b.is_ascii_alphanumeric())
                })
        })
}

/// Removes temporary files an interrupted write left. Called with the lock
/// held; removing a link removes the link, never what it points to.
fn remove_leftover_temp_files(paths: &Paths) -> Result<()> {
    let Some(state) = paths.real.file_name() else {
        return Ok(());
    };
    let entries = fs::read_dir(&paths.dir).map_err(|source| Error::Read {
        path: paths.path.clone(),
        source,
    })?;
    for entry in entries.flatten() {
        if !is_temp_name(&entry.file_name(), state) {
            continue;
        }
        let tmp = entry.path();
        match fs::remove_file(&tmp) {
            Ok(()) => tracing::warn!(
                tmp = %tmp.display(),
                "removed a temporary state file left by an interrupted write; the state file itself is intact"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Write {
                    path: paths.path.clone(),
                    step: "removing a leftover temporary file",
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Reads and locks the state file. `Ok(None)` when there is none yet.
fn load_locked(paths: &Paths) -> Result<Option<(State, File)>> {
    let path = &paths.path;
    let read_err = |source| Error::Read {
        path: path.clone(),
        source,
    };
    let file = match open_no_follow(fs::OpenOptions::new().read(true), &paths.real) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Resolved a moment ago: a link now is a swap under our feet.
        Err(e) if is_link_error(&e) => return Err(Error::NotAFile { path: path.clone() }),
        Err(e) => return Err(read_err(e)),
    };
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(Error::NotAFile { path: path.clone() });
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                path: path.clone(),
                lock_path: paths.real.clone(),
                holder_pid: None,
            });
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::Lock {
                path: path.clone(),
                lock_path: paths.real.clone(),
                source: e,
            });
        }
    }
    let state = read_state(&file, path)?;
    Ok(Some((state, file)))
}

/// Reads a state file without creating, locking or writing anything: the
/// read-only load of [`MemoryTracker::from_state_file`](crate::MemoryTracker::from_state_file).
/// `Ok(None)` when there is no file.
pub(crate) fn load_read_only(path: &Path) -> Result<Option<State>> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    // Reading through a link cannot change anything: follow it, but never
    // block on a FIFO.
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
        });
    }
    read_state(&file, path).map(Some)
}

/// Reads and decodes an open state file.
fn read_state(mut file: &File, path: &Path) -> Result<State> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes, path)
}

/// A state from a file's bytes, or why they are not one.
fn decode(bytes: &[u8], path: &Path) -> Result<State> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt(format!("not UTF-8: {e}")))?;

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
    let state: State =
        serde_json::from_str(text).map_err(|e| corrupt(format!("unexpected contents: {e}")))?;
    match state.out_of_range() {
        Some(reason) => Err(corrupt(reason)),
        None => Ok(state),
    }
}

fn move_aside(paths: &Paths, now: DateTime<Utc>) -> Result<PathBuf> {
    let stamp = now.format("%Y%m%dT%H%M%SZ");
    let real = &paths.real;
    let name = real
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut aside = real.with_file_name(format!("{name}.corrupt-{stamp}"));
    let mut n = 1;
    while fs::symlink_metadata(&aside).is_ok() {
        n += 1;
        aside = real.with_file_name(format!("{name}.corrupt-{stamp}-{n}"));
    }
    fs::rename(real, &aside).map_err(|source| Error::Write {
        path: paths.path.clone(),
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

/// [`crate::write_atomic`] of the state file (what the umask allows), whose
/// new file is returned still locked; errors name the state file.
fn write_atomic(paths: &Paths, bytes: &[u8]) -> Result<File> {
    crate::atomic::write_atomic(&paths.real, bytes, FileMode::Umask).map_err(|e| Error::Write {
        path: paths.path.clone(),
        step: match e.step {
            RENAME_STEP => "renaming the temporary file over the state file",
            step => step,
        },
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn temporary_names_are_recognised_and_nothing_else() {
        let state = OsStr::new("state.json");
        for name in ["state.json.tmp", "state.json.aB3xY9.tmp"] {
            assert!(is_temp_name(OsStr::new(name), state), "{name}");
        }
        for name in [
            "state.json",
            "state.json.lock",
            "state.json.corrupt-20240501T120000Z",
            "state.json.old.json.aB3xY9.tmp",
            "state.json.aB3x.tmp",
            "other.json.tmp",
            "state.jsontmp",
        ] {
            assert!(!is_temp_name(OsStr::new(name), state), "{name}");
        }
    }
}
