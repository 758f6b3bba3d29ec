//! [`Observer`]: one way for a program to watch the engine work.

use crate::sweep::SweepReport;

/// Told what the engine does, as it does it: the demo's display, the
/// binary and any embedding program watch the engine through it. Every
/// method has a default that does nothing; implement the ones you need.
///
/// The methods are called on the engine's tasks: they must return quickly
/// (hand long work to a channel).
pub trait Observer: Send + Sync {
    /// A sweep begins (after the inventory was loaded, if it was due).
    fn sweep_started(&self) {}

    /// A sweep ended, with what it did (also one that ran out of time).
    fn sweep_ended(&self, report: &SweepReport) {
        let _ = report;
    }

    /// Direktiv acknowledged `event`; `already` when it answered that it
    /// already had it.
    fn event_delivered(&self, event: &cloudevents::Event, already: bool) {
        let _ = (event, already);
    }

    /// `event` was not delivered this sweep and stays new: it goes out in a
    /// later sweep.
    fn event_deferred(&self, event: &cloudevents::Event, reason: &str) {
        let _ = (event, reason);
    }

    /// Direktiv refused `event` for good: it was kept as a dead letter and is
    /// not sent again by itself.
    fn event_refused(&self, event: &cloudevents::Event, reason: &str) {
        let _ = (event, reason);
    }

    /// Reading the event list of `source` (a tracker source key such as
    /// `device:<id>`) failed this sweep.
    fn list_error(&self, source: &str, error: &metal_events::Error) {
        let _ = (source, error);
    }
}

/// An [`Observer`] that watches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}
