//! The error type of the crate: a file store's errors name the state file, a
//! database store's the operation (never the password).

use std::io;
use std::path::{Path, PathBuf};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong opening, reading or writing tracker state.
///
/// Start-up errors ([`Error::is_corrupt`], [`Error::is_locked`]) should end the
/// process with the message: it names the path and the way out. Errors from
/// [`Tracker::persist`](crate::Tracker::persist) leave the state in memory
/// intact; the caller logs them and tries again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process (or another tracker in this one) holds the lock on the state file.
    #[error(
        "state file {path} is in use by another receiver{}: only one process may own a state \
         file; stop the other one or give this one its own file (lock file {lock_path})",
        holder_pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked {
        /// The state file.
        path: PathBuf,
        /// The lock file that is held.
        lock_path: PathBuf,
        /// The process id the holder wrote into the lock file, if readable.
        holder_pid: Option<u32>,
    },

    /// The lock file could not be created or locked.
    #[error("cannot lock state file {path} (via {lock_path}): {source}")]
    Lock {
        /// The state file.
        path: PathBuf,
        /// The lock file.
        lock_path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The state file (or its directory) exists but could not be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The path exists but is not a regular file (for example a directory).
    #[error(
        "state file {path} is not a regular file; remove it or point the receiver at another path"
    )]
    NotAFile {
        /// The state file.
        path: PathBuf,
    },

    /// The state file's contents are not a state this crate wrote: not UTF-8,
    /// not JSON, or JSON of the wrong shape.
    #[error(
        "state file {path} is corrupt ({reason}); move it aside to start fresh, or open with \
         the reset-corrupt option, which renames it aside for you (a fresh state starts again \
         from the configured start point)"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The state file carries a format version this build does not know.
    #[error(
        "state file {path} has format version {found}, this build reads version {supported}; \
         run a matching receiver, or move the file aside (or use the reset-corrupt option) to \
         start fresh"
    )]
    UnsupportedVersion {
        /// The state file.
        path: PathBuf,
        /// The version found in the file (0 when the field is missing).
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },

    /// Writing the state failed; the previous file on disk is intact.
    #[error("cannot write state file {path} ({step}): {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// The step that failed, such as `creating the temporary file` or `renaming`.
        step: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A blocking file task panicked or was cancelled by runtime shutdown.
    #[error("file task for state file {path} did not finish: {reason}")]
    Task {
        /// The state file.
        path: PathBuf,
        /// Why it did not finish.
        reason: String,
    },

    /// The database could not be reached or refused a request (feature
    /// `postgres`). The message never contains the password.
    #[error("PostgreSQL: {operation} failed: {reason}")]
    Database {
        /// What was being done, such as `connecting` or `writing the state`.
        operation: String,
        /// The server's or the connection's message, the password scrubbed.
        reason: String,
    },

    /// A state write was refused because the lease row is not the writer's
    /// term: another generation, or the same generation held by another
    /// holder (a lease row that went backwards). Step down at once.
    #[error(
        "state write refused: this replica writes as lease generation {ours}, but the lease is \
         at generation {current} held by {} (another replica leads, or the lease row went \
         backwards)",
        holder.as_deref().unwrap_or("nobody")
    )]
    Fenced {
        /// The writer's generation.
        ours: i64,
        /// The generation in the database.
        current: i64,
        /// The holder in the database.
        holder: Option<String>,
    },

    /// The database schema could not be created or brought up to date.
    #[error("PostgreSQL schema migration {version} failed: {reason}")]
    Migration {
        /// The migration that failed (0: the table of migrations itself).
        version: i32,
        /// Why, the password scrubbed.
        reason: String,
    },

    /// The database role lacks a privilege the receiver needs (feature
    /// `postgres`): the message names the role, what it lacks and the SQL
    /// that grants it.
    #[error("PostgreSQL role {role} lacks {missing}; as the owner or a superuser, run: {grant}")]
    Privilege {
        /// The role the receiver connects as (`current_user`).
        role: String,
        /// The privileges it lacks, and on what.
        missing: String,
        /// The SQL that grants them.
        grant: String,
    },

    /// Connection options that cannot work (a malformed URL, a bad schema
    /// name). The message never contains the password.
    #[error("invalid PostgreSQL options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },

    /// Importing a state file was refused: the organization already holds a
    /// different state in the database.
    #[error(
        "not importing state file {path}: {reason}; the database already holds this \
         organization's state, so importing would move it backwards or mix two histories"
    )]
    ImportRefused {
        /// The state file.
        path: PathBuf,
        /// What the database holds.
        reason: String,
    },
}

impl Error {
    /// The state file this error is about (`None` for database errors).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Locked { path, .. }
            | Self::Lock { path, .. }
            | Self::Read { path, .. }
            | Self::NotAFile { path }
            | Self::Corrupt { path, .. }
            | Self::UnsupportedVersion { path, .. }
            | Self::Write { path, .. }
            | Self::Task { path, .. }
            | Self::ImportRefused { path, .. } => Some(path),
            Self::Database { .. }
            | Self::Fenced { .. }
            | Self::Migration { .. }
            | Self::Privilege { .. }
            | Self::InvalidOptions { .. } => None,
        }
    }

    /// Whether a newer leader fenced this write ([`Error::Fenced`]): step down.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    /// Whether trying the same thing again later may succeed: a failed write
    /// (the state in memory is intact) or an unreachable database. Never a
    /// fenced write, corrupt contents or invalid options.
    pub fn is_retryable(&self) -> bool {
        self.is_write() || matches!(self, Self::Database { .. })
    }

    /// Whether the file's contents are unusable (corrupt, wrong version, not a
    /// file). The way out is to move the file aside or to open with
    /// [`FileOptions::reset_corrupt`](crate::FileOptions::reset_corrupt)
    /// (which does not apply to [`Error::NotAFile`]).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Self::Corrupt { .. } | Self::UnsupportedVersion { .. } | Self::NotAFile { .. }
        )
    }

    /// Whether another process holds the state file.
    pub fn is_locked(&self) -> bool {
        matches!(self, Self::Locked { .. })
    }

    /// Whether this is a failure to write the state (worth retrying later: the
    /// state in memory is intact).
    pub fn is_write(&self) -> bool {
        matches!(self, Self::Write { .. } | Self::Task { .. })
    }
}
