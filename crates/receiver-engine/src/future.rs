//! Events dated in the future: delivered like any other (they are real), but
//! counted, and reported once per list, because their date is not to be
//! trusted as a clock.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::metrics::Metrics;

/// Whether `created_at` lies past `now` plus the tolerance the dedupe state
/// grants for clock skew ([`event_dedupe::is_future_dated`]).
pub(crate) fn is_future(created_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    created_at.is_some_and(|at| event_dedupe::is_future_dated(at, now))
}

/// The lists that have shown a future-dated event, so each is reported once
/// per process, not on every sweep.
#[derive(Debug, Default)]
pub(crate) struct FutureDated {
    reported: Mutex<HashSet<String>>,
}

impl FutureDated {
    /// Counts a new event of `list` if it is dated in the future, and warns
    /// the first time a list shows one. Returns whether it was.
    pub(crate) fn note(
        &self,
        list: &str,
        id: &str,
        created_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> bool {
        if !is_future(created_at, now) {
            return false;
        }
        metrics.events_future_dated.inc();
        let first = self
            .reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(list.to_owned());
        if first {
            tracing::warn!(
                list,
                id,
                created_at = ?created_at,
                "an event is dated in the future (a skewed or broken API clock); it is delivered, \
                 but its date is not used to settle the list (reported once per list; all are \
                 counted in equinix_receiver_events_future_dated_total)"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn future_means_past_the_tolerance() {
        let at = |s| Some(now() + TimeDelta::seconds(s));
        assert!(!is_future(at(0), now()));
        assert!(!is_future(at(60), now()), "within the tolerance: skew");
        assert!(is_future(at(61), now()));
        assert!(is_future(Some(DateTime::<Utc>::MAX_UTC), now()));
        assert!(!is_future(None, now()));
        assert!(!is_future(at(1), DateTime::<Utc>::MAX_UTC), "no overflow");
    }

    #[test]
    fn each_future_event_is_counted_and_each_list_reported_once() {
        let metrics = Metrics::new(std::time::Duration::from_secs(300));
        let future = FutureDated::default();
        let ahead = Some(now() + TimeDelta::hours(1));
        assert!(future.note("device:a", "e1", ahead, now(), &metrics));
        assert!(future.note("device:a", "e2", ahead, now(), &metrics));
        assert!(future.note("project:p", "e1", ahead, now(), &metrics));
        assert!(!future.note("device:a", "e3", Some(now()), now(), &metrics));
        let reported = future.reported.lock().unwrap();
        assert_eq!(reported.len(), 2, "one report per list: {reported:?}");
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_events_future_dated_total 3"),
            "{}",
            metrics.encode()
        );
    }
}
