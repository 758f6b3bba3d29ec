//! The shared rate-limit gate: one pause for every API request of the
//! process, set by a 429 or by `X-RateLimit-Remaining: 0`, so a rate limit
//! slows the whole poller down instead of each task on its own.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest pause a single answer can impose (guards against a bogus
/// `Retry-After` or reset header).
const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);

/// A pause shared by all API requests.
#[derive(Debug, Default)]
pub(crate) struct RateGate {
    until: Mutex<Option<Instant>>,
}

impl RateGate {
    /// Waits until no pause is in force.
    pub(crate) async fn wait(&self) {
        loop {
            let until = *self.until.lock().expect("rate gate lock");
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Pauses every request for `wait` from now (never shortens a pause in
    /// force). Returns the pause actually applied.
    pub(crate) fn pause_for(&self, wait: Duration) -> Duration {
        let wait = wait.min(MAX_PAUSE);
        let until = Instant::now() + wait;
        let mut guard = self.until.lock().expect("rate gate lock");
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_waiter_until_it_ends() {
        let gate = RateGate::default();
        let start = Instant::now();
        gate.wait().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "no pause: no wait");

        gate.pause_for(Duration::from_secs(30));
        // A shorter pause does not shorten the one in force.
        gate.pause_for(Duration::from_secs(5));
        let (a, b) = tokio::join!(gate.wait(), gate.wait());
        let _ = (a, b);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bogus_pause_is_capped() {
        let gate = RateGate::default();
        assert_eq!(gate.pause_for(Duration::from_secs(86_400)), MAX_PAUSE);
    }
}
