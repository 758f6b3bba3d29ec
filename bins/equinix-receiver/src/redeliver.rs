//! `--redeliver-refused`: sends the events Direktiv refused for good (the
//! dead-letter store) again, through the same sink, retries and outcome
//! handling as a sweep, while holding the state's lock so that no receiver
//! changes the store meanwhile. Makes no Metal API request.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use event_dedupe::{FileOptions, FileTracker};
use receiver_engine::{
    DeadLetter as Entry, DeadLetterLocation as Location, DeadLetters, Delivered, Metrics, Scrubber,
    Target,
};
use tokio_util::sync::CancellationToken;

use crate::app::{EXIT_UNDELIVERED, sink, state_error, state_path};
use crate::settings::Settings;

/// What one redelivery did: the numbers of its summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Accepted by Direktiv (or already there): removed from the store.
    pub(crate) redelivered: usize,
    /// Refused again: kept, with the new answer.
    pub(crate) still_refused: usize,
    /// Not tried: the run stopped early (an endpoint-wide refusal, or
    /// Direktiv unreachable after the retries). Kept as they were.
    pub(crate) left: usize,
}

impl Summary {
    /// The line printed on stdout.
    pub(crate) fn line(&self) -> String {
        format!(
            "redelivered {}, still refused {}, left {}",
            self.redelivered, self.still_refused, self.left
        )
    }

    /// 0 when the store is empty now, else 3 (as `--once`: not everything
    /// was delivered).
    pub(crate) fn exit_code(&self) -> ExitCode {
        if self.still_refused == 0 && self.left == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_UNDELIVERED)
        }
    }
}

/// Runs `--redeliver-refused`: prints the summary line and returns the exit
/// code.
///
/// # Errors
///
/// A receiver holds the state, the state or the dead-letter file cannot be
/// read, the sink cannot be built, or the store cannot be written.
pub(crate) async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let (state, _) = state_path(&settings.state);
    let path = settings
        .state
        .dead_letter_path
        .clone()
        .unwrap_or_else(|| DeadLetters::default_path(&state));
    let none_kept = matches!(std::fs::symlink_metadata(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let summary = if none_kept {
        tracing::info!(file = %path.display(), "no refused events are kept");
        Summary::default()
    } else {
        // Held until the end: a receiver on this state would write the
        // dead-letter file at the same time.
        let _lock = lock_state(&state, settings).await?;
        let metrics = Arc::new(Metrics::new(settings.equinix.sweep_timeout));
        let max = usize::try_from(settings.state.dead_letter_max).unwrap_or(usize::MAX);
        let store = DeadLetters::open(
            Location::File {
                path,
                read_only: false,
            },
            max,
            Arc::clone(&metrics),
            Arc::new(Scrubber::new(settings.secrets())),
        )?;
        let target = Target::Direktiv(sink(settings)?);
        redeliver(&store, &target, settings.direktiv.max_retries, &metrics).await?
    };
    print_summary(&summary);
    Ok(summary.exit_code())
}

#[expect(clippy::print_stdout, reason = "the CLI's own output")]
fn print_summary(summary: &Summary) {
    println!("{}", summary.line());
}

/// Takes the lock a receiver takes on its state, by opening the state.
async fn lock_state(path: &Path, settings: &Settings) -> anyhow::Result<FileTracker> {
    let mut options = FileOptions::default();
    options.tracker.baseline = settings.equinix.start_from;
    options.tracker.overlap = settings.state.overlap;
    options.reset_corrupt = false;
    FileTracker::open(path, options).await.map_err(|error| {
        if error.is_locked() {
            anyhow::Error::new(error).context(
                "a receiver is running on this state: stop it first, then run \
                 --redeliver-refused (both would change the dead-letter file at once)",
            )
        } else {
            state_error(path, error)
        }
    })
}

/// Sends every entry again, oldest first; removes each one Direktiv accepts
/// or already has, keeps each one refused again with its new answer, and
/// stops at the first event not taken for a reason that is not the event's
/// own. Writes the store once, at the end.
async fn redeliver(
    store: &DeadLetters,
    target: &Target,
    max_retries: u32,
    metrics: &Metrics,
) -> anyhow::Result<Summary> {
    let entries = store.entries().await;
    tracing::info!(count = entries.len(), file = %store.location(), "sending refused events again");
    let stop = CancellationToken::new();
    let mut summary = Summary::default();
    let mut resent = HashSet::new();
    let mut refused = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let event = entry
            .cloud_event()
            .with_context(|| format!("reading the refused event {}", entry.id))?;
        match target.deliver(&event, max_retries, metrics, &stop).await {
            Delivered::Acknowledged { already } => {
                tracing::info!(id = %entry.id, already, "redelivered");
                resent.insert(entry.id.clone());
                summary.redelivered += 1;
            }
            Delivered::Rejected { reason, answer } => {
                tracing::warn!(id = %entry.id, %reason, "Direktiv refused the event again; kept");
                refused.push(Entry {
                    refused_at: Utc::now(),
                    answer,
                    ..entry.clone()
                });
                summary.still_refused += 1;
            }
            Delivered::Deferred { reason, .. } => {
                summary.left = entries.len() - index;
                tracing::error!(%reason, left = summary.left,
                    "Direktiv did not take the event for a reason that concerns every event; \
                     stopping, the rest stays kept");
                break;
            }
            // Nothing cancels `stop` here; were it cancelled, the rest stays kept.
            Delivered::Cancelled => {
                summary.left = entries.len() - index;
                break;
            }
        }
    }
    store.settle(&resent, refused).await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_happened_and_exits_3_while_some_are_kept() {
        let done = Summary {
            redelivered: 2,
            ..Summary::default()
        };
        assert_eq!(done.line(), "redelivered 2, still refused 0, left 0");
        assert_eq!(done.exit_code(), ExitCode::SUCCESS);
        for kept in [
            Summary {
                still_refused: 1,
                ..done
            },
            Summary { left: 3, ..done },
        ] {
            assert_eq!(
                kept.exit_code(),
                ExitCode::from(EXIT_UNDELIVERED),
                "{kept:?}"
            );
        }
        assert_eq!(
            Summary {
                redelivered: 1,
                still_refused: 2,
                left: 3
            }
            .line(),
            "redelivered 1, still refused 2, left 3"
        );
    }
}
