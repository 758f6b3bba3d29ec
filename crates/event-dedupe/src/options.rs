//! What a tracker is configured with: the baseline, the overlap window, source
//! expiry and the clock; and how far ahead of that clock the tracker lets its
//! own lines go.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::clock::{Clock, SystemClock};

/// How far past the tracker's clock a floor, the horizon or the baseline may
/// lie: 60 seconds, for the skew between this host's clock and the API's.
///
/// A time from an API is data, not a clock: an event dated an hour (or eight
/// thousand years) ahead would otherwise become its source's floor, and every
/// later event of that source would be settled before it happens. So
/// [`Tracker::advance_floor`](crate::Tracker::advance_floor) holds a floor at
/// the clock plus this (the overlap window below a floor keeps events of now
/// new), and a stored state whose floors, horizon or baseline lie beyond it is
/// repaired when it is loaded, with a warning. A baseline, which has no overlap
/// window, is held at the clock itself: a configured start point in the future
/// starts now. Events themselves are never clamped: one dated in the future is
/// new until recorded, and remembered.
pub const FUTURE_TOLERANCE: Duration = Duration::from_secs(60);

/// Where delivery starts: events created before the baseline are never sent.
///
/// The baseline is fixed when a state is first created and kept across
/// restarts; see [`Tracker::baseline`](crate::Tracker::baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Baseline {
    /// The moment the state is first created (read from the tracker's clock).
    /// The default, and the old receiver's behaviour.
    #[default]
    Now,
    /// Everything the API still lists.
    All,
    /// A given instant.
    At(DateTime<Utc>),
}

impl Baseline {
    /// The instant before which events are skipped, resolving [`Baseline::Now`]
    /// with `now`. `None` means nothing is skipped.
    pub fn resolve(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Now => Some(now),
            Self::All => None,
            Self::At(at) => Some(at),
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Now => f.write_str("now"),
            Self::All => f.write_str("all"),
            Self::At(at) => f.write_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }
}

/// The error of parsing a [`Baseline`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid start point {0:?}: expected \"now\", \"all\" or an RFC 3339 time such as 2024-05-01T12:00:00Z"
)]
pub struct ParseBaselineError(String);

impl FromStr for Baseline {
    type Err = ParseBaselineError;

    /// Parses `now`, `all` (case-insensitive) or an RFC 3339 time.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("now") {
            Ok(Self::Now)
        } else if t.eq_ignore_ascii_case("all") {
            Ok(Self::All)
        } else {
            DateTime::parse_from_rfc3339(t)
                .map(|at| Self::At(at.with_timezone(&Utc)))
                .map_err(|_| ParseBaselineError(s.to_owned()))
        }
    }
}

/// Options every store takes.
///
/// Build with [`TrackerOptions::new`] and the `with_*` methods, or set fields
/// of a default value: the struct may gain fields, so it cannot be written as
/// a literal outside this crate.
///
/// ```
/// use std::time::Duration;
/// use event_dedupe::{Baseline, TrackerOptions};
/// let options = TrackerOptions::new()
///     .with_baseline(Baseline::All)
///     .with_overlap(Duration::from_secs(300));
/// assert_eq!(options.overlap, Duration::from_secs(300));
/// ```
///
/// ```compile_fail
/// let options = event_dedupe::TrackerOptions { overlap: std::time::Duration::ZERO, ..Default::default() };
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrackerOptions {
    /// Where delivery starts for a new state (ignored when a stored state is
    /// loaded: its baseline wins, with a warning if they differ).
    pub baseline: Baseline,
    /// How far below a source's floor events are still looked up by id before
    /// they are answered [`Verdict::BelowFloor`](crate::Verdict::BelowFloor)
    /// and their ids forgotten. Absorbs clock skew and events that show up in a
    /// list late. Default 10 minutes.
    pub overlap: Duration,
    /// A source whose floor was not advanced for this long, while other sources
    /// were, is forgotten so it no longer holds back pruning (a deleted device).
    /// Measured against the latest advance of any source, so a receiver that
    /// was down does not expire its sources on restart. Default 6 hours.
    pub source_expiry: Duration,
    /// How long a delivered event without `created_at` is remembered (it cannot
    /// be placed below a floor, so it is aged by the time it was recorded).
    /// Default 7 days.
    pub undated_retention: Duration,
    /// The clock (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            baseline: Baseline::Now,
            overlap: Duration::from_secs(10 * 60),
            source_expiry: Duration::from_secs(6 * 60 * 60),
            undated_retention: Duration::from_secs(7 * 24 * 60 * 60),
            clock: Arc::new(SystemClock),
        }
    }
}

impl TrackerOptions {
    /// The default options: see each field.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same options starting delivery at `baseline`.
    #[must_use]
    pub fn with_baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = baseline;
        self
    }

    /// The same options with an overlap window of `overlap`.
    #[must_use]
    pub fn with_overlap(mut self, overlap: Duration) -> Self {
        self.overlap = overlap;
        self
    }

    /// The same options expiring idle sources after `source_expiry`.
    #[must_use]
    pub fn with_source_expiry(mut self, source_expiry: Duration) -> Self {
        self.source_expiry = source_expiry;
        self
    }

    /// The same options remembering undated events for `undated_retention`.
    #[must_use]
    pub fn with_undated_retention(mut self, undated_retention: Duration) -> Self {
        self.undated_retention = undated_retention;
        self
    }

    /// The same options reading time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn baseline_parses_and_prints() {
        assert_eq!("now".parse::<Baseline>(), Ok(Baseline::Now));
        assert_eq!(" ALL ".parse::<Baseline>(), Ok(Baseline::All));
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        assert_eq!(
            "2024-05-01T14:00:00+02:00".parse::<Baseline>(),
            Ok(Baseline::At(at))
        );
        assert_eq!(Baseline::At(at).to_string(), "2024-05-01T12:00:00Z");
        let err = "yesterday".parse::<Baseline>().unwrap_err();
        assert!(err.to_string().contains("\"yesterday\""), "{err}");
    }
}
