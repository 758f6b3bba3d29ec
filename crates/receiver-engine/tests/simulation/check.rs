//! The invariant checker: which events must arrive (see the module doc of
//! `simulation.rs` for the rule), whether each did, whether a filtered one
//! did, and after every sweep whether a list's settled line passed an
//! undelivered event that must arrive.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use event_dedupe::Tracker;

use super::direktiv::Arrivals;
use super::metal::VirtualTime;
use super::world::{List, Ms, SEC, SimEvent, World};

/// The API's clock has whole seconds in its `Date` header: a start point
/// taken from it may lie up to this after the instant it names.
pub(crate) const START_TOLERANCE: Ms = 2 * SEC;

/// Whether `event` must reach Direktiv (the guarantee; see `simulation.rs`).
pub(crate) fn expected(world: &World, event: &SimEvent) -> bool {
    let knobs = &world.knobs;
    world.delivers(event.ty)
        && (knobs.start_all || event.created >= START_TOLERANCE)
        && event.late <= knobs.overlap.as_millis() as Ms
        && event.visible() <= knobs.end
        && [List::Org]
            .into_iter()
            .chain((0..world.projects.len()).map(List::Project))
            .chain((0..world.devices.len()).map(List::Device))
            .any(|list| {
                world.polled(list) && world.exists(list, knobs.end) && world.shows(list, event)
            })
}

/// The tracker's key of `list`, as the engine writes it.
pub(crate) fn key(world: &World, list: List) -> String {
    match list {
        List::Org => format!("organization:{}", world.org),
        List::Project(p) => format!("project:{}", world.projects[p]),
        List::Device(d) => format!("device:{}", world.devices[d].id),
    }
}

/// The checker's view of one run.
#[derive(Debug)]
pub(crate) struct Checker {
    pub(crate) world: Arc<World>,
    pub(crate) time: VirtualTime,
    pub(crate) arrivals: Arc<Mutex<Arrivals>>,
    /// Indexes of the expected events.
    pub(crate) expected: Vec<usize>,
    pub(crate) violations: Vec<String>,
    /// Events already reported below a line (each once).
    reported: HashSet<usize>,
}

fn secs(t: Ms) -> String {
    format!("{:.1}s", t as f64 / 1000.0)
}

impl Checker {
    pub(crate) fn new(
        world: Arc<World>,
        time: VirtualTime,
        arrivals: Arc<Mutex<Arrivals>>,
    ) -> Self {
        let expected = (0..world.events.len())
            .filter(|&n| expected(&world, &world.events[n]))
            .collect();
        Self {
            world,
            time,
            arrivals,
            expected,
            violations: Vec::new(),
            reported: HashSet::new(),
        }
    }

    fn at(&self, t: DateTime<Utc>) -> String {
        secs((t - self.time.epoch).num_milliseconds())
    }

    fn describe(&self, event: &SimEvent) -> String {
        format!(
            "event {} ({}, created {}, listed from {}{})",
            event.id,
            event.ty,
            secs(event.created),
            secs(event.visible()),
            if event.misplaced > 0 {
                format!(", {} places down", event.misplaced)
            } else {
                String::new()
            }
        )
    }

    /// After a sweep: no list's settled line passed an expected event that
    /// is listed and has not arrived.
    pub(crate) async fn after_sweep(&mut self, tracker: &dyn Tracker) {
        let t = self.time.now();
        let world = Arc::clone(&self.world);
        let pending: Vec<usize> = {
            let arrivals = self.arrivals.lock().expect("not poisoned");
            self.expected
                .iter()
                .copied()
                .filter(|&n| {
                    let event = &world.events[n];
                    event.visible() <= t
                        && !arrivals.settled.contains_key(&event.id)
                        && !self.reported.contains(&n)
                })
                .collect()
        };
        if pending.is_empty() {
            return;
        }
        let overlap = TimeDelta::from_std(world.knobs.overlap).expect("short");
        let horizon = tracker.stats().horizon;
        for list in world.lists_at(t) {
            let key = key(&world, list);
            let floor = tracker.floor(&key).await.ok().flatten();
            let line = floor.map(|f| f - overlap).max(horizon);
            let Some(line) = line else { continue };
            for &n in &pending {
                let event = &world.events[n];
                if self.reported.contains(&n) || !world.shows(list, event) {
                    continue;
                }
                if self.time.api(event.created) < line {
                    self.reported.insert(n);
                    self.violations.push(format!(
                        "at {}: {} in {key} lies below its settled line {} (floor {}, horizon {}) and has not arrived",
                        secs(t),
                        self.describe(event),
                        self.at(line),
                        floor.map_or("none".to_owned(), |f| self.at(f)),
                        horizon.map_or("none".to_owned(), |h| self.at(h)),
                    ));
                }
            }
        }
    }

    /// At the end: every expected event arrived, no filtered one did.
    pub(crate) fn at_end(&mut self) {
        let arrivals = self.arrivals.lock().expect("not poisoned");
        for &n in &self.expected {
            let event = &self.world.events[n];
            if !arrivals.settled.contains_key(&event.id) {
                let lists: Vec<String> = self
                    .world
                    .lists_at(self.world.knobs.end)
                    .into_iter()
                    .filter(|&l| self.world.shows(l, event))
                    .map(|l| key(&self.world, l))
                    .collect();
                self.violations.push(format!(
                    "at the end: {} never arrived (listed by {})",
                    self.describe(event),
                    lists.join(", ")
                ));
            }
        }
        for (id, ty, t) in &arrivals.filtered {
            self.violations.push(format!(
                "at {}: event {id} of type {ty}, filtered out by eventTypes, arrived",
                secs(*t)
            ));
        }
    }
}
