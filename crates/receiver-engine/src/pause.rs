//! [`PauseGuard`]: notices that this process was paused (SIGSTOP, a frozen
//! VM, a starved scheduler) and holds sends back for a while after, so that a
//! leader whose lease ran out while it was paused sends nothing before its
//! elector has noticed and stepped down.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often [`PauseGuard::run`] ticks.
pub const TICK: Duration = Duration::from_millis(100);
/// A gap between ticks longer than this counts as a pause.
pub const PAUSE: Duration = Duration::from_millis(500);

/// Holds sends back after the process was paused.
///
/// [`PauseGuard::run`] ticks every [`TICK`]; [`PauseGuard::allows`] says no
/// while the last tick is older than [`PAUSE`] (the process was paused and
/// has not run its timers yet) and for the hold time after a pause was seen.
/// Which task runs first after a pause is up to the scheduler; the hold
/// leaves the elector (whose deadline passed during the pause) the time to
/// step down before anything is sent again.
#[derive(Debug)]
pub struct PauseGuard {
    hold: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last_tick: Instant,
    hold_until: Option<Instant>,
}

impl PauseGuard {
    /// A guard that holds sends back for `hold` after a pause.
    pub fn new(hold: Duration) -> Self {
        Self {
            hold,
            state: Mutex::new(State {
                last_tick: Instant::now(),
                hold_until: None,
            }),
        }
    }

    /// Records a tick now, starting a hold when the last one is too old.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(state.last_tick) > PAUSE {
            state.hold_until = Some(now + self.hold);
        }
        state.last_tick = now;
    }

    /// Whether a send may go out now.
    pub fn allows(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(state.last_tick) > PAUSE {
            state.hold_until = Some(now + self.hold);
            return false;
        }
        state.hold_until.is_none_or(|until| now >= until)
    }

    /// Ticks every [`TICK`] until `stop` is cancelled.
    pub async fn run(&self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => self.tick(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn regular_ticks_keep_it_open() {
        let guard = PauseGuard::new(HOLD);
        for _ in 0..100 {
            tokio::time::advance(TICK).await;
            guard.tick();
            assert!(guard.allows());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_pause_it_holds_until_the_hold_is_over() {
        let guard = PauseGuard::new(HOLD);
        // Paused for 3 s: no tick ran.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!guard.allows(), "the first send after the pause is held");
        guard.tick();
        assert!(!guard.allows(), "still held once the ticks resume");
        for _ in 0..9 {
            tokio::time::advance(TICK).await;
            guard.tick();
            assert!(!guard.allows());
        }
        tokio::time::advance(TICK).await;
        guard.tick();
        assert!(guard.allows(), "open again after the hold");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_after_the_pause_starts_the_hold_too() {
        let guard = PauseGuard::new(HOLD);
        tokio::time::advance(Duration::from_secs(2)).await;
        guard.tick();
        assert!(!guard.allows());
    }
}
