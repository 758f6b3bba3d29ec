//! The poison bound (`direktiv.poisonAfter`): how long one event may fail
//! with retryable answers while later events of its device wait behind it.
//!
//! Each device's events go out oldest first, and a deferred event holds the
//! later ones back. An event that always fails (a proxy that chokes on its
//! body and answers 502) would hold them back forever. [`PoisonClock`]
//! remembers, per event id, when it first failed with a retryable answer.
//! Once that is `poisonAfter` ago and later events of its device are
//! waiting, the sweep steps over it and tries the next one: if Direktiv
//! acknowledges that one, the endpoint works and the failing event is
//! poison, so it is kept as a dead letter and the others go on; if the next
//! one fails too, Direktiv is down and both wait. The clock lives in memory:
//! a restart starts it again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// An id not seen failing for this long is forgotten: it was delivered or
/// settled some other way, or is no longer listed.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// When each event that keeps failing first failed.
#[derive(Debug)]
pub(crate) struct PoisonClock {
    /// `None`: never (`poisonAfter: 0`).
    after: Option<Duration>,
    failing: Mutex<HashMap<String, Failing>>,
}

/// One event's run of failures.
#[derive(Debug, Clone, Copy)]
struct Failing {
    since: Instant,
    last: Instant,
}

/// What to do with an event whose delivery was deferred after retryable
/// answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoisonVerdict {
    /// Keep it first in line: later events of its device wait.
    Hold,
    /// It has failed for this long while later events waited: keep it as a
    /// dead letter and deliver the rest.
    Poisoned {
        /// How long it has been failing.
        failing_for: Duration,
    },
}

impl PoisonVerdict {
    /// The event is to be kept as a dead letter.
    pub(crate) fn is_poisoned(self) -> bool {
        matches!(self, Self::Poisoned { .. })
    }
}

impl PoisonClock {
    /// A clock that poisons after `after` (`None`: never).
    pub(crate) fn new(after: Option<Duration>) -> Self {
        Self {
            after: after.filter(|after| !after.is_zero()),
            failing: Mutex::default(),
        }
    }

    /// `id` failed with retryable answers from `since` (when its delivery
    /// started) to `now` (when its retries ran out); `later_waiting` says
    /// whether later events of its device wait behind it. Its clock starts
    /// at the first such delivery.
    pub(crate) fn failed(
        &self,
        id: &str,
        later_waiting: bool,
        since: Instant,
        now: Instant,
    ) -> PoisonVerdict {
        let Some(after) = self.after else {
            return PoisonVerdict::Hold;
        };
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        failing.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
        let entry = failing
            .entry(id.to_owned())
            .or_insert(Failing { since, last: now });
        entry.last = now;
        let failing_for = now.saturating_duration_since(entry.since);
        if later_waiting && failing_for >= after {
            PoisonVerdict::Poisoned { failing_for }
        } else {
            PoisonVerdict::Hold
        }
    }

    /// `id` was delivered, refused or kept: its clock stops.
    pub(crate) fn settled(&self, id: &str) {
        if self.after.is_some() {
            self.failing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(20);

    #[test]
    fn an_event_is_poisoned_only_after_the_bound_and_only_with_later_events_waiting() {
        let clock = PoisonClock::new(Some(AFTER));
        let t0 = Instant::now();
        assert_eq!(clock.failed("e1", true, t0, t0), PoisonVerdict::Hold);
        assert_eq!(
            clock.failed(
                "e1",
                true,
                t0 + Duration::from_secs(19),
                t0 + Duration::from_secs(19)
            ),
            PoisonVerdict::Hold
        );
        // Nothing waits behind it: held however long it fails.
        assert_eq!(
            clock.failed(
                "e1",
                false,
                t0 + Duration::from_secs(25),
                t0 + Duration::from_secs(25)
            ),
            PoisonVerdict::Hold
        );
        assert_eq!(
            clock.failed(
                "e1",
                true,
                t0 + Duration::from_secs(26),
                t0 + Duration::from_secs(26)
            ),
            PoisonVerdict::Poisoned {
                failing_for: Duration::from_secs(26)
            }
        );
        // Until it is settled, it stays past the bound.
        assert!(
            clock
                .failed(
                    "e1",
                    true,
                    t0 + Duration::from_secs(30),
                    t0 + Duration::from_secs(30)
                )
                .is_poisoned()
        );
    }

    #[test]
    fn the_clock_starts_when_the_first_failing_delivery_started() {
        let clock = PoisonClock::new(Some(AFTER));
        let t0 = Instant::now();
        // Its first delivery retried from t0 to t0 + 15 s.
        let first = t0 + Duration::from_secs(15);
        assert_eq!(clock.failed("e1", true, t0, first), PoisonVerdict::Hold);
        let second = t0 + Duration::from_secs(20);
        assert!(clock.failed("e1", true, first, second).is_poisoned());
    }

    #[test]
    fn a_delivery_in_between_restarts_the_clock() {
        let clock = PoisonClock::new(Some(AFTER));
        let t0 = Instant::now();
        assert_eq!(clock.failed("e1", true, t0, t0), PoisonVerdict::Hold);
        clock.settled("e1");
        assert_eq!(
            clock.failed(
                "e1",
                true,
                t0 + Duration::from_secs(21),
                t0 + Duration::from_secs(21)
            ),
            PoisonVerdict::Hold
        );
    }

    #[test]
    fn zero_or_none_never_poisons() {
        for clock in [
            PoisonClock::new(None),
            PoisonClock::new(Some(Duration::ZERO)),
        ] {
            let t0 = Instant::now();
            assert_eq!(clock.failed("e1", true, t0, t0), PoisonVerdict::Hold);
            assert_eq!(
                clock.failed(
                    "e1",
                    true,
                    t0 + Duration::from_secs(86_400),
                    t0 + Duration::from_secs(86_400)
                ),
                PoisonVerdict::Hold
            );
        }
    }

    #[test]
    fn ids_not_seen_failing_for_an_hour_are_forgotten() {
        let clock = PoisonClock::new(Some(AFTER));
        let t0 = Instant::now();
        clock.failed("gone", true, t0, t0);
        clock.failed("e2", true, t0 + FORGET_AFTER, t0 + FORGET_AFTER);
        let failing = clock.failing.lock().unwrap();
        assert!(!failing.contains_key("gone"));
        assert!(failing.contains_key("e2"));
    }
}
