//! [`Error`]: what can go wrong in the engine outside a sweep (a sweep's
//! problems are values in its [`SweepReport`](crate::SweepReport)).

use std::path::PathBuf;

/// An error of the engine: today, of its dead-letter store. Each message
/// names the file and the way out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dead-letter file could not be read.
    #[error("reading the dead-letter file {}", path.display())]
    DeadLetterRead {
        /// The dead-letter file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The dead-letter path is a symbolic link, which is never followed.
    #[error(
        "the dead-letter file {} is a symbolic link, which is never followed: replace it \
         with a regular file (or remove it), or point state.deadLetterPath at a file",
        path.display()
    )]
    DeadLetterSymlink {
        /// The dead-letter file.
        path: PathBuf,
    },

    /// The dead-letter path is not a regular file.
    #[error(
        "the dead-letter file {} is not a regular file: remove it, or point \
         state.deadLetterPath at a file",
        path.display()
    )]
    DeadLetterNotAFile {
        /// The dead-letter file.
        path: PathBuf,
    },

    /// A line of the dead-letter file is not a dead letter; the file is left
    /// as it is.
    #[error(
        "the dead-letter file {} is corrupt at line {line} ({why}): fix or delete that \
         line, or move the file aside (its events can then only be resent by hand); the \
         receiver never empties it by itself",
        path.display()
    )]
    DeadLetterCorrupt {
        /// The dead-letter file.
        path: PathBuf,
        /// The first bad line, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },

    /// Writing the dead-letter file failed; the file on disk and the entries
    /// in memory are as they were.
    #[error("writing the dead-letter file {}", path.display())]
    DeadLetterWrite {
        /// The dead-letter file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The blocking task writing the dead-letter file did not finish.
    #[error("the dead-letter writer stopped")]
    DeadLetterTask(#[source] tokio::task::JoinError),

    /// A dead letter could not be encoded as JSON.
    #[error("encoding a dead letter")]
    Encode(#[source] serde_json::Error),

    /// A kept dead letter is not a CloudEvent (`--redeliver-refused`).
    #[error("reading the refused event {id}")]
    DeadLetterEvent {
        /// The dead letter's event id.
        id: String,
        /// Why its event could not be read.
        #[source]
        source: serde_json::Error,
    },
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error` and its sources, joined by `: ` (as `anyhow` shows a chain with
/// `{:#}`), for log lines.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
