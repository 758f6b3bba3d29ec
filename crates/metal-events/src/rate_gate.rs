//! [`RateGate`]: one pause shared by every request of a [`Client`] (and of
//! the clients given the same gate), set by a 429 or by
//! `X-RateLimit-Remaining: 0`, so a rate limit slows the whole program down
//! instead of each task on its own; and, when given a rate
//! ([`RateGate::with_rate`]), one pace: requests go out at most that many a
//! second, all together.
//!
//! A wait taken from a header has a floor and a cap: a 429 pauses at least
//! [`MIN_PAUSE`], doubling while 429s keep coming (up to
//! [`MAX_GROWN_PAUSE`]) until an answer succeeds, and no answer pauses longer
//! than [`MAX_PAUSE`]. `Retry-After: 0`, a date in the past or a reset in
//! the past can therefore never turn into a request storm.
//!
//! [`Client`]: crate::Client

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest pause a single answer can impose (guards against a bogus
/// `Retry-After` or reset header).
pub const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);
/// The shortest pause after a 429, whatever wait it named.
pub const MIN_PAUSE: Duration = Duration::from_secs(1);
/// The floor of the pause doubles with each 429 in a row up to this.
pub const MAX_GROWN_PAUSE: Duration = Duration::from_secs(60);
/// The wait after a 429 that named none.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);
/// The longest spacing a pace sets between two requests.
const MAX_SPACING: Duration = Duration::from_secs(60 * 60);

/// A pause shared by all API requests.
///
/// A [`Client`](crate::Client) owns one (see
/// [`ClientBuilder::rate_gate`](crate::ClientBuilder::rate_gate) to share one
/// between clients, [`Client::rate_gate`](crate::Client::rate_gate) to see
/// it) and uses it for every request it sends: each request first
/// [waits](Self::wait) for the pause in force; a 429 pauses the gate
/// ([`rate_limited`](Self::rate_limited)), a successful answer ends a streak
/// of 429s ([`answered`](Self::answered)), and an answer with
/// `X-RateLimit-Remaining: 0` pauses it until the window resets
/// ([`pause_for`](Self::pause_for)). Everything here is cheap and never
/// blocks but [`wait`](Self::wait).
///
/// ```
/// use std::time::Duration;
/// use metal_events::{RateGate, MIN_PAUSE};
///
/// let gate = RateGate::default();
/// // A 429 that asked for no wait still pauses every request a second.
/// let pause = gate.rate_limited(Some(Duration::ZERO), "/projects/p1/events");
/// assert_eq!(pause.wait, MIN_PAUSE);
/// assert!(pause.started);
/// ```
#[derive(Debug, Default)]
pub struct RateGate {
    state: Mutex<State>,
    /// The requests per second at most, when paced.
    rate: Option<f64>,
}

#[derive(Debug, Default)]
struct State {
    /// The end of the pause in force, if any.
    until: Option<Instant>,
    /// Pauses started by 429s since the last successful answer.
    streak: u32,
    /// When paced: the earliest moment the next request may go out.
    next_slot: Option<Instant>,
}

/// What a 429 did to the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitPause {
    /// The pause applied from now.
    pub wait: Duration,
    /// Whether this 429 started the pause (no pause was in force): the one
    /// to log. A 429 to a request sent before the pause began only extends
    /// it.
    pub started: bool,
}

impl RateGate {
    /// A gate that also paces: requests go out at most `per_second` a
    /// second, evenly spaced, whatever task sends them. A rate that is not a
    /// positive finite number paces nothing.
    ///
    /// ```
    /// use metal_events::RateGate;
    ///
    /// let gate = RateGate::with_rate(5.0);
    /// assert_eq!(gate.rate(), Some(5.0));
    /// assert_eq!(RateGate::default().rate(), None);
    /// ```
    pub fn with_rate(per_second: f64) -> Self {
        Self {
            state: Mutex::default(),
            rate: (per_second.is_finite() && per_second > 0.0).then_some(per_second),
        }
    }

    /// The pace, in requests per second, when the gate has one.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no pause is in force.
    pub async fn wait(&self) {
        loop {
            let until = self.lock().until;
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Waits until no pause is in force and, when the gate paces, for this
    /// request's turn: the client calls it once before every request.
    /// ([`wait`](Self::wait) takes no turn: it is for work that only has to
    /// wait out a pause.)
    pub async fn admit(&self) {
        self.wait().await;
        let Some(rate) = self.rate else { return };
        // A rate below one request an hour is paced at one an hour: a
        // spacing that no `Duration` or `Instant` can hold must not panic.
        let spacing = Duration::try_from_secs_f64(1.0 / rate)
            .unwrap_or(MAX_SPACING)
            .min(MAX_SPACING);
        let slot = {
            let mut state = self.lock();
            let now = Instant::now();
            let slot = state.next_slot.map_or(now, |next| next.max(now));
            state.next_slot = Some(slot + spacing);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Pauses every request for `wait` from now (never shortens a pause in
    /// force). Returns the pause actually applied (at most [`MAX_PAUSE`]).
    pub fn pause_for(&self, wait: Duration) -> Duration {
        let wait = wait.min(MAX_PAUSE);
        let until = Instant::now() + wait;
        let mut state = self.lock();
        if state.until.is_none_or(|current| current < until) {
            state.until = Some(until);
        }
        wait
    }

    /// The API answered 429, asking to wait `asked` (`None` when it named
    /// no wait). Pauses every request for that long, but at least
    /// [`MIN_PAUSE`] doubled for each earlier 429 in a row (up to
    /// [`MAX_GROWN_PAUSE`]), and at most [`MAX_PAUSE`]; a 429 that named
    /// no wait pauses [`DEFAULT_RATE_LIMIT_WAIT`]. Emits one `tracing`
    /// warning per pause (not per 429), naming `source` (the client passes
    /// the request's path).
    pub fn rate_limited(&self, asked: Option<Duration>, source: &str) -> RateLimitPause {
        let now = Instant::now();
        let mut state = self.lock();
        let started = state.until.is_none_or(|until| until <= now);
        if started {
            state.streak = state.streak.saturating_add(1);
        }
        let doublings = state.streak.saturating_sub(1).min(16);
        let floor = MIN_PAUSE
            .saturating_mul(1 << doublings)
            .min(MAX_GROWN_PAUSE);
        let wait = asked
            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT)
            .max(floor)
            .min(MAX_PAUSE);
        let until = now + wait;
        if state.until.is_none_or(|current| current < until) {
            state.until = Some(until);
        }
        drop(state);
        if started {
            tracing::warn!(
                source,
                wait_s = wait.as_secs_f64(),
                asked_s = asked.map(|a| a.as_secs_f64()),
                "the Metal API is rate limiting; pausing every request"
            );
        }
        RateLimitPause { wait, started }
    }

    /// An answer succeeded: the next 429 pauses from [`MIN_PAUSE`] again.
    pub fn answered(&self) {
        self.lock().streak = 0;
    }

    /// How long the pause in force still lasts; `None` when requests go
    /// out at once.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = self.lock().until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
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
        assert_eq!(gate.paused_for(), Some(Duration::from_secs(30)));
        let (a, b) = tokio::join!(gate.wait(), gate.wait());
        let _ = (a, b);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert_eq!(gate.paused_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_too_small_for_a_duration_paces_at_one_an_hour_without_a_panic() {
        let gate = RateGate::with_rate(1e-300);
        let start = Instant::now();
        gate.admit().await;
        gate.admit().await;
        assert_eq!(start.elapsed(), MAX_SPACING);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_gate_spaces_requests_evenly_across_tasks() {
        let gate = std::sync::Arc::new(RateGate::with_rate(4.0));
        let start = Instant::now();
        // Eight requests from eight tasks at once: one every 250 ms.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let gate = std::sync::Arc::clone(&gate);
                tokio::spawn(async move {
                    gate.admit().await;
                    start.elapsed().as_millis()
                })
            })
            .collect();
        let mut admitted = Vec::new();
        for task in tasks {
            admitted.push(task.await.unwrap());
        }
        admitted.sort_unstable();
        assert_eq!(admitted, [0, 250, 500, 750, 1000, 1250, 1500, 1750]);
        let start = Instant::now();
        // `wait` takes no turn; an unpaced gate admits at once.
        gate.wait().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        let free = RateGate::default();
        for _ in 0..100 {
            free.admit().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(RateGate::with_rate(0.0).rate(), None);
        assert_eq!(RateGate::with_rate(f64::NAN).rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bogus_pause_is_capped() {
        let gate = RateGate::default();
        assert_eq!(gate.pause_for(Duration::from_secs(86_400)), MAX_PAUSE);
        let pause = gate.rate_limited(Some(Duration::from_secs(86_400)), "s");
        assert_eq!(pause.wait, MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_asking_for_no_wait_pauses_at_least_the_minimum() {
        let gate = RateGate::default();
        let start = Instant::now();
        let pause = gate.rate_limited(Some(Duration::ZERO), "device:d1");
        assert_eq!(
            pause,
            RateLimitPause {
                wait: MIN_PAUSE,
                started: true
            }
        );
        gate.wait().await;
        assert_eq!(start.elapsed(), MIN_PAUSE);
        // A wait longer than the floor is taken as asked; none asked: 30 s.
        gate.answered();
        assert_eq!(
            gate.rate_limited(Some(Duration::from_secs(7)), "s").wait,
            Duration::from_secs(7)
        );
        gate.wait().await;
        gate.answered();
        assert_eq!(gate.rate_limited(None, "s").wait, DEFAULT_RATE_LIMIT_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_429s_double_the_pause_up_to_a_cap_and_a_success_resets_it() {
        let gate = RateGate::default();
        let mut waits = Vec::new();
        for _ in 0..9 {
            waits.push(gate.rate_limited(Some(Duration::ZERO), "s").wait.as_secs());
            gate.wait().await;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        gate.answered();
        assert_eq!(gate.rate_limited(Some(Duration::ZERO), "s").wait, MIN_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_429s_during_a_pause_neither_log_nor_grow_it() {
        let gate = RateGate::default();
        let first = gate.rate_limited(Some(Duration::ZERO), "device:d1");
        // Seven more lists had their requests in flight: their 429s arrive
        // during the pause.
        let others: Vec<_> = (0..7)
            .map(|i| gate.rate_limited(Some(Duration::ZERO), &format!("device:d{i}")))
            .collect();
        assert!(first.started);
        assert!(others.iter().all(|p| !p.started && p.wait == MIN_PAUSE));
        let start = Instant::now();
        gate.wait().await;
        assert_eq!(start.elapsed(), MIN_PAUSE, "one pause, not eight");
        // The next 429 after it: a new pause, twice as long, logged once.
        let next = gate.rate_limited(Some(Duration::ZERO), "device:d1");
        assert_eq!(
            next,
            RateLimitPause {
                wait: 2 * MIN_PAUSE,
                started: true
            }
        );
    }
}
