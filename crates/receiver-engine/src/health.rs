//! Liveness and readiness: the main loop's heartbeat and the ready flag that
//! `/healthz` and `/readyz` answer from. Neither looks at Equinix or Direktiv:
//! a liveness probe must not restart a healthy receiver because a dependency
//! is down. A standby replica (high availability) is ready while it can reach
//! its database, so that it is counted as available to take over.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The main loop's pulse and the readiness flags.
#[derive(Debug)]
pub struct Health {
    /// When the main loop last showed it was alive.
    beat: Mutex<Instant>,
    /// How old the heartbeat may get before the loop counts as stalled.
    budget: Duration,
    /// Config and state are loaded and the first sweep completed.
    ready: AtomicBool,
    /// A shutdown has begun.
    stopping: AtomicBool,
    /// A standby replica: it does not poll, and is ready while its database
    /// answers.
    standby: AtomicBool,
    /// The standby's database answered its last request.
    database_reachable: AtomicBool,
}

impl Health {
    /// How old the heartbeat may get: three poll intervals plus the sweep
    /// timeout (a sweep may take the whole timeout without a beat).
    pub fn budget(poll_interval: Duration, sweep_timeout: Duration) -> Duration {
        poll_interval
            .saturating_mul(3)
            .saturating_add(sweep_timeout)
    }

    /// A fresh heartbeat, not ready yet. `budget` is [`Health::budget`]'s result.
    pub fn new(budget: Duration) -> Self {
        Self {
            beat: Mutex::new(Instant::now()),
            budget,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            standby: AtomicBool::new(false),
            database_reachable: AtomicBool::new(false),
        }
    }

    /// The main loop is alive now.
    pub fn beat(&self) {
        *self
            .beat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// How long ago the main loop last beat.
    pub fn age(&self) -> Duration {
        self.beat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// The heartbeat is younger than the budget.
    pub fn alive(&self) -> bool {
        self.age() < self.budget
    }

    /// The first sweep completed.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// A shutdown began: readiness goes away for good.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// This replica waits for the lease (`true`) or holds it (`false`, as
    /// without high availability). A standby beats on its own loop's pulse
    /// (the caller's [`Health::beat`]) and is ready while its database
    /// answers; a leader is ready after its first sweep.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    /// Whether the standby's database answered its last request.
    pub fn set_database_reachable(&self, reachable: bool) {
        self.database_reachable.store(reachable, Ordering::Relaxed);
    }

    /// Ready and not shutting down: after the first sweep, or, for a
    /// standby, while its database answers.
    pub fn ready(&self) -> bool {
        let ready = if self.standby.load(Ordering::Relaxed) {
            self.database_reachable.load(Ordering::Relaxed)
        } else {
            self.ready.load(Ordering::Relaxed)
        };
        ready && !self.stopping.load(Ordering::Relaxed)
    }

    /// A standby (see [`Health::set_standby`]).
    pub fn standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    /// Shutting down.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Liveness (`/healthz`): whether the main loop is alive, and a line
    /// saying when it last beat.
    pub fn liveness(&self) -> (bool, String) {
        let age = self.age().as_millis();
        if self.alive() {
            (true, format!("ok: main loop beat {age}ms ago\n"))
        } else {
            (false, format!("stalled: main loop last beat {age}ms ago\n"))
        }
    }

    /// Readiness (`/readyz`): whether ready, and a line saying why not.
    pub fn readiness(&self) -> (bool, &'static str) {
        if self.ready() {
            (true, "ready\n")
        } else if self.stopping() {
            (false, "shutting down\n")
        } else if self.standby() {
            (false, "standing by: the database does not answer\n")
        } else {
            (false, "starting: the first sweep has not completed\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);
    const SWEEP_TIMEOUT: Duration = Duration::from_secs(300);

    #[tokio::test(start_paused = true)]
    async fn alive_until_the_heartbeat_is_older_than_the_budget() {
        let budget = Health::budget(INTERVAL, SWEEP_TIMEOUT);
        assert_eq!(budget, Duration::from_secs(330));
        let health = Health::new(budget);
        assert!(health.alive(), "a fresh heartbeat is alive");
        tokio::time::advance(Duration::from_secs(329)).await;
        assert!(health.alive(), "just under the budget");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!health.alive(), "at the budget the loop counts as stalled");
        health.beat();
        assert!(health.alive(), "a beat revives it");
        assert_eq!(health.age(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn regular_beats_keep_it_alive_for_ever() {
        let health = Health::new(Health::budget(INTERVAL, SWEEP_TIMEOUT));
        for _ in 0..1000 {
            tokio::time::advance(INTERVAL).await;
            health.beat();
            assert!(health.alive());
        }
    }

    #[test]
    fn ready_after_the_first_sweep_and_never_again_once_stopping() {
        let health = Health::new(Duration::from_secs(1));
        assert!(!health.ready(), "not ready before the first sweep");
        health.set_ready();
        assert!(health.ready());
        health.set_stopping();
        assert!(!health.ready(), "not ready while shutting down");
        assert!(health.stopping());
        health.set_ready();
        assert!(!health.ready(), "a late sweep does not make it ready again");
    }

    #[test]
    fn a_standby_is_ready_while_its_database_answers() {
        let health = Health::new(Duration::from_secs(1));
        health.set_standby(true);
        assert!(!health.ready(), "not before the database answered");
        health.set_database_reachable(true);
        assert!(health.ready());
        health.set_database_reachable(false);
        assert!(!health.ready(), "not while the database is unreachable");
        health.set_database_reachable(true);
        // Leading: ready only after its first sweep.
        health.set_standby(false);
        assert!(!health.ready());
        health.set_ready();
        assert!(health.ready());
        health.set_standby(true);
        health.set_stopping();
        assert!(!health.ready(), "not while shutting down");
    }

    #[test]
    fn a_huge_interval_does_not_overflow_the_budget() {
        assert_eq!(Health::budget(Duration::MAX, Duration::MAX), Duration::MAX);
    }
}
