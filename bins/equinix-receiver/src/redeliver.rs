//! `--redeliver-refused`: the engine's [`redeliver()`] on the dead-letter store
//! of the configured state, while holding the state's lock so that no
//! receiver changes the store meanwhile. Makes no Metal API request.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use event_dedupe::{FileOptions, FileTracker};
use receiver_engine::{
    DeadLetterLocation as Location, DeadLetters, Metrics, Redelivery, Scrubber, Target, redeliver,
};

use crate::app::{EXIT_UNDELIVERED, sink, state_error, state_path};
use crate::settings::Settings;

/// Runs `--redeliver-refused`: prints the summary line and returns the exit
/// code: 0 when the store is empty now, else 3 (as `--once`: not everything
/// was delivered).
///
/// # Errors
///
/// A receiver holds the state, the state or the dead-letter file cannot be
/// read, the sink cannot be built, or the store cannot be written.
pub(crate) async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let (state, _) = state_path(&settings.state);
    let path = settings.state.dead_letter_file(&state);
    let none_kept = matches!(std::fs::symlink_metadata(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let summary = if none_kept {
        tracing::info!(file = %path.display(), "no refused events are kept");
        Redelivery::default()
    } else {
        // Held until the end: a receiver on this state would write the
        // dead-letter file at the same time.
        let _lock = lock_state(&state, settings).await?;
        let metrics = Arc::new(Metrics::new(settings.equinix.sweep_timeout));
        let max = usize::try_from(settings.state.dead_letter_max).unwrap_or(usize::MAX);
        let location = Location::File {
            path,
            read_only: false,
        };
        let scrubber = Arc::new(Scrubber::new(settings.secrets()));
        let store = DeadLetters::open(location, max, Arc::clone(&metrics), scrubber)?;
        let target = Target::Direktiv(sink(settings)?);
        redeliver(&store, &target, settings.direktiv.max_retries, &metrics).await?
    };
    print_summary(&summary);
    Ok(if summary.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNDELIVERED)
    })
}

#[expect(clippy::print_stdout, reason = "the CLI's own output")]
fn print_summary(summary: &Redelivery) {
    println!("{summary}");
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
