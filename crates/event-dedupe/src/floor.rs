//! [`settled_floor`]: the floor a fully read list may move to; [`is_future_dated`]:
//! whether an event's date lies past the clock's tolerance.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::state::future_limit;

/// Whether `created_at` lies past `now` plus [`FUTURE_TOLERANCE`]: a date
/// no floor may take (a skewed or broken API clock). Never panics at
/// chrono's edges.
///
/// [`FUTURE_TOLERANCE`]: crate::FUTURE_TOLERANCE
pub fn is_future_dated(created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    created_at > future_limit(now)
}

/// The floor a fully read list may move to ([`Tracker::advance_floor`]),
/// from what the list held: `read` gives, for each event read, its creation
/// time (if the API said) and whether it is *settled* (delivered, refused for
/// good, or otherwise deliberately done with). `now` is the clock when the
/// list was read, `overlap` the window during which events may still turn up
/// late ([`TrackerOptions::overlap`]).
///
/// The rules, in the words of the [crate docs](crate#choosing-a-floor):
///
/// - The floor is the newest creation time such that every event read at or
///   before it is settled.
/// - With every event read settled, the floor is at least `now - overlap`:
///   events that old can no longer turn up late, and a quiet list must not
///   hold the horizon back.
/// - With a pending event and nothing settled before it, the floor is one
///   second below that event: a list that never had a floor still holds the
///   horizon back, so the other lists cannot move it past the pending event
///   (which would then count as settled and be lost).
/// - A settled event dated past `now` plus [`FUTURE_TOLERANCE`] never becomes
///   the floor: its date is not a clock, and events that happen before it
///   have not been listed yet.
/// - Events without a creation time cannot be placed and are ignored.
///
/// `None` when no floor follows (a pending event at the earliest instant).
/// Pure: no IO, no clock of its own, never panics at chrono's edges.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use std::time::Duration;
///
/// let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
/// let overlap = Duration::from_secs(600);
/// // Settled, pending, settled: the floor stops below the pending event.
/// let read = [(Some(at(50)), true), (Some(at(40)), false), (Some(at(30)), true)];
/// assert_eq!(event_dedupe::settled_floor(read, at(100), overlap), Some(at(30)));
/// // Everything settled, long ago: the list is quiet up to now - overlap.
/// assert_eq!(event_dedupe::settled_floor([(Some(at(50)), true)], at(10_000), overlap), Some(at(9_400)));
/// ```
///
/// [`Tracker::advance_floor`]: crate::Tracker::advance_floor
/// [`TrackerOptions::overlap`]: crate::TrackerOptions::overlap
/// [`FUTURE_TOLERANCE`]: crate::FUTURE_TOLERANCE
pub fn settled_floor(
    read: impl IntoIterator<Item = (Option<DateTime<Utc>>, bool)>,
    now: DateTime<Utc>,
    overlap: Duration,
) -> Option<DateTime<Utc>> {
    let future = future_limit(now);
    let mut oldest_unsettled: Option<DateTime<Utc>> = None;
    let mut settled_times = Vec::new();
    for (created_at, settled) in read {
        let Some(at) = created_at else { continue };
        if settled {
            if at <= future {
                settled_times.push(at);
            }
        } else {
            oldest_unsettled = Some(oldest_unsettled.map_or(at, |o| o.min(at)));
        }
    }
    match oldest_unsettled {
        Some(unsettled) => settled_times
            .into_iter()
            .filter(|at| *at < unsettled)
            .max()
            .or_else(|| unsettled.checked_sub_signed(TimeDelta::seconds(1))),
        None => {
            let quiet = TimeDelta::from_std(overlap)
                .ok()
                .and_then(|overlap| now.checked_sub_signed(overlap))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            Some(
                settled_times
                    .into_iter()
                    .max()
                    .map_or(quiet, |newest| newest.max(quiet)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const OVERLAP: Duration = Duration::from_secs(600);

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn future_dated_means_past_the_tolerance_and_never_overflows() {
        assert!(!is_future_dated(t(60), t(0)), "within the tolerance: skew");
        assert!(is_future_dated(t(61), t(0)));
        assert!(!is_future_dated(t(-3600), t(0)));
        assert!(!is_future_dated(t(1), DateTime::<Utc>::MAX_UTC));
        assert!(is_future_dated(
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::MIN_UTC
        ));
    }

    #[test]
    fn floor_stops_below_the_oldest_unsettled_event() {
        let read = [
            (Some(t(50)), true),
            (Some(t(40)), false),
            (Some(t(30)), true),
            (Some(t(20)), true),
        ];
        assert_eq!(settled_floor(read, t(100), OVERLAP), Some(t(30)));
    }

    #[test]
    fn floor_stops_just_below_the_oldest_pending_event() {
        let read = [(Some(t(50)), false), (Some(t(40)), true)];
        assert_eq!(settled_floor(read, t(100), OVERLAP), Some(t(40)));
        assert_eq!(
            settled_floor([(Some(t(50)), false)], t(100), OVERLAP),
            Some(t(49)),
            "just below a pending event that nothing settled precedes"
        );
    }

    #[test]
    fn a_future_dated_event_never_becomes_the_floor() {
        let end = DateTime::<Utc>::MAX_UTC;
        let read = [(Some(end), true), (Some(t(50)), true)];
        assert_eq!(settled_floor(read, t(100), OVERLAP), Some(t(50)));
        let read = [(Some(t(100 + 3600)), true)];
        assert_eq!(
            settled_floor(read, t(10_000), OVERLAP),
            Some(t(10_000 - 600))
        );
        // Within the tolerance (clock skew), the newest event still counts.
        let read = [(Some(t(130)), true)];
        assert_eq!(settled_floor(read, t(100), OVERLAP), Some(t(130)));
        let read = [(Some(t(160)), true), (Some(t(161)), true)];
        assert_eq!(
            settled_floor(read, t(100), OVERLAP),
            Some(t(160)),
            "60 s is the tolerance"
        );
        // Arithmetic at chrono's edges does not panic.
        let min = DateTime::<Utc>::MIN_UTC;
        assert_eq!(settled_floor([], min, OVERLAP), Some(min));
        assert_eq!(settled_floor([], t(0), Duration::MAX), Some(min));
        assert_eq!(settled_floor([(Some(min), false)], t(0), OVERLAP), None);
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(
            settled_floor([(Some(t(0)), true)], max, OVERLAP),
            Some(max - TimeDelta::seconds(600))
        );
    }

    #[test]
    fn floor_of_a_settled_list_reaches_now_minus_overlap() {
        let read = [(Some(t(50)), true), (None, false)];
        assert_eq!(
            settled_floor(read, t(10_000), OVERLAP),
            Some(t(10_000 - 600))
        );
        assert_eq!(settled_floor(read, t(100), OVERLAP), Some(t(50)));
        assert_eq!(settled_floor([], t(10_000), OVERLAP), Some(t(10_000 - 600)));
    }
}
