//! A seed's world, drawn once before the engine starts: the organization,
//! its projects and devices over time, every event with when it is created
//! and when the API starts listing it, and the nemesis's schedule (list
//! failures, throttling, Direktiv outages, crashes, the host clock's skew).
//! Everything is a pure function of the seed and of virtual time.

use std::collections::BTreeSet;
use std::time::Duration;

use super::rng::{Rng, keyed, of_str};

/// Virtual milliseconds since the receiver's first start (negative: history
/// from before it).
pub(crate) type Ms = i64;

pub(crate) const SEC: Ms = 1000;

/// The nemesis's ingredients; `SIM_ONLY=a,b` turns on exactly those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ingredient {
    /// Bursts and histories deeper than `perPage × maxPages`.
    Burst,
    /// Events listed late, up to 1.5 × overlap.
    Late,
    /// Events placed up to two pages below where their time puts them.
    Order,
    /// 503 windows per list (none longer than the source expiry).
    Fail,
    /// 429 windows per list.
    Throttle,
    /// A list failing longer than the tracker's source expiry.
    Expiry,
    /// Devices added, moved between projects and deleted.
    Churn,
    /// Direktiv answering 503 for a while.
    Outage,
    /// Direktiv refusing some events for good (400).
    Refuse,
    /// Direktiv answering slowly.
    Slow,
    /// The host clock (the tracker's) skewed against the API's.
    Skew,
    /// The engine killed at random moments and restarted on its state file.
    Crash,
}

impl Ingredient {
    pub(crate) const ALL: [Self; 12] = [
        Self::Burst,
        Self::Late,
        Self::Order,
        Self::Fail,
        Self::Throttle,
        Self::Expiry,
        Self::Churn,
        Self::Outage,
        Self::Refuse,
        Self::Slow,
        Self::Skew,
        Self::Crash,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Burst => "burst",
            Self::Late => "late",
            Self::Order => "order",
            Self::Fail => "fail",
            Self::Throttle => "throttle",
            Self::Expiry => "expiry",
            Self::Churn => "churn",
            Self::Outage => "outage",
            Self::Refuse => "refuse",
            Self::Slow => "slow",
            Self::Skew => "skew",
            Self::Crash => "crash",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// Which event list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum List {
    Org,
    Project(usize),
    Device(usize),
}

/// Who an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Org,
    Project(usize),
    /// A device, in the project it was in when the event was created.
    Device(usize, usize),
}

#[derive(Debug, Clone)]
pub(crate) struct SimEvent {
    pub(crate) id: String,
    pub(crate) ty: &'static str,
    /// `created_at`, whole seconds.
    pub(crate) created: Ms,
    /// From `created` until the API lists it.
    pub(crate) late: Ms,
    pub(crate) owner: Owner,
    /// Direktiv refuses it for good.
    pub(crate) refused: bool,
    /// Placed this many positions below where its time puts it.
    pub(crate) misplaced: usize,
}

impl SimEvent {
    pub(crate) fn visible(&self) -> Ms {
        self.created + self.late
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SimDevice {
    pub(crate) id: String,
    pub(crate) hostname: String,
    /// From when, in which project (sorted; the first from `added`).
    pub(crate) projects: Vec<(Ms, usize)>,
    pub(crate) added: Ms,
    pub(crate) deleted: Option<Ms>,
}

impl SimDevice {
    pub(crate) fn alive(&self, t: Ms) -> bool {
        self.added <= t && self.deleted.is_none_or(|d| t < d)
    }

    pub(crate) fn project_at(&self, t: Ms) -> usize {
        self.projects
            .iter()
            .take_while(|(from, _)| *from <= t)
            .last()
            .unwrap_or(&self.projects[0])
            .1
    }
}

/// A window in which a list answers with an error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub(crate) list: List,
    pub(crate) from: Ms,
    pub(crate) until: Ms,
    /// 429 (with `Retry-After`) rather than 503.
    pub(crate) throttle: bool,
}

/// How the engine is configured for the seed.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub(crate) poll: Duration,
    pub(crate) max_poll: Duration,
    pub(crate) per_page: u32,
    pub(crate) max_pages: u32,
    pub(crate) levels: (bool, bool, bool),
    pub(crate) start_all: bool,
    pub(crate) filter: bool,
    pub(crate) overlap: Duration,
    pub(crate) expiry: Duration,
    pub(crate) inventory_refresh: Duration,
    /// Host clock minus API clock.
    pub(crate) skew: Ms,
    /// Faults, changes and new events happen before this.
    pub(crate) active: Ms,
    /// The run ends here, after a heal with no fault.
    pub(crate) end: Ms,
}

#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) ingredients: BTreeSet<Ingredient>,
    pub(crate) knobs: Knobs,
    pub(crate) org: String,
    pub(crate) projects: Vec<String>,
    pub(crate) devices: Vec<SimDevice>,
    pub(crate) events: Vec<SimEvent>,
    /// Project lists show the events of their devices.
    pub(crate) shows_devices: bool,
    pub(crate) faults: Vec<Fault>,
    pub(crate) outages: Vec<(Ms, Ms)>,
    pub(crate) crashes: Vec<Ms>,
    /// Each list's events (indexes), newest first by `created_at`.
    by_list: std::collections::BTreeMap<List, Vec<usize>>,
}

/// Types delivered when the seed filters, and the type filtered out.
pub(crate) const PATTERNS: [&str; 2] = ["provisioning.*", "instance.*"];
const KEPT_TYPES: [&str; 4] = [
    "provisioning.104",
    "provisioning.110",
    "instance.deleted",
    "instance.updated",
];
pub(crate) const FILTERED_TYPE: &str = "maintenance.notice";

impl World {
    /// The world of `seed`, with the ingredients `only` (when given) or a
    /// seeded half of them.
    pub(crate) fn new(seed: u64, only: Option<&BTreeSet<Ingredient>>) -> Self {
        let mut rng = Rng::new(seed);
        let ingredients: BTreeSet<Ingredient> = match only {
            Some(only) => only.clone(),
            None => Ingredient::ALL
                .into_iter()
                .filter(|_| rng.chance(0.5))
                .collect(),
        };
        let has = |i: Ingredient| ingredients.contains(&i);
        let poll = Duration::from_secs(rng.range(2, 5) as u64);
        let max_poll = if rng.chance(0.5) { poll } else { poll * 4 };
        let per_page = rng.range(3, 6) as u32;
        let max_pages = rng.range(2, 3) as u32;
        let levels = *rng.pick(&[
            (true, true, false),
            (true, true, false),
            (true, false, false),
            (false, true, false),
            (true, true, true),
            (false, false, true),
        ]);
        let overlap = Duration::from_secs(60);
        let expiry = Duration::from_secs(60);
        let skew = if has(Ingredient::Skew) {
            *rng.pick(&[-3600, -30, 30, 180, 3600]) * SEC
        } else {
            0
        };
        let active = rng.range(100, 160) * SEC;
        let knobs = Knobs {
            poll,
            max_poll,
            per_page,
            max_pages,
            levels,
            start_all: rng.chance(0.5),
            filter: rng.chance(0.5),
            overlap,
            expiry,
            inventory_refresh: Duration::from_secs(30),
            skew,
            active,
            end: active + 110 * SEC,
        };
        let cap = i64::from(per_page * max_pages);

        let org = format!("org-{seed:x}");
        let projects: Vec<String> = (0..rng.range(1, 3))
            .map(|p| format!("proj-{seed:x}-{p}"))
            .collect();
        let np = projects.len();
        let mut devices = Vec::new();
        for p in 0..np {
            for _ in 0..rng.range(0, 4) {
                let n = devices.len();
                let churn = has(Ingredient::Churn);
                let added = if churn && rng.chance(0.3) {
                    rng.range(10, active / SEC - 30) * SEC
                } else {
                    -3600 * SEC
                };
                let mut projects = vec![(added, p)];
                if churn && np > 1 && rng.chance(0.3) {
                    let at = rng.range(added.max(0) / SEC + 5, active / SEC - 10) * SEC;
                    projects.push((at, (p + 1) % np));
                }
                let deleted = (churn && rng.chance(0.3))
                    .then(|| rng.range(added.max(0) / SEC + 20, active / SEC) * SEC);
                devices.push(SimDevice {
                    id: format!("dev-{seed:x}-{n}"),
                    hostname: format!("host-{n}"),
                    projects,
                    added,
                    deleted,
                });
            }
        }

        // Events: a history before the start, a steady trickle, bursts.
        let mut owners: Vec<List> = (0..np).map(List::Project).collect();
        owners.extend((0..devices.len()).map(List::Device));
        owners.push(List::Org);
        let mut events = Vec::new();
        let mut add = |rng: &mut Rng, owner: List, created: Ms, devices: &[SimDevice]| {
            let owner = match owner {
                List::Org => Owner::Org,
                List::Project(p) => Owner::Project(p),
                List::Device(d) => {
                    if !devices[d].alive(created) {
                        return;
                    }
                    Owner::Device(d, devices[d].project_at(created))
                }
            };
            let n = events.len();
            let ty = if rng.chance(0.15) {
                FILTERED_TYPE
            } else {
                *rng.pick(&KEPT_TYPES)
            };
            let late = if has(Ingredient::Late) && rng.chance(0.3) {
                rng.range(1, 90) * SEC
            } else {
                0
            };
            events.push(SimEvent {
                id: format!(
                    "{:08x}-{:04x}-4000-8000-{:012x}",
                    seed as u32,
                    n,
                    keyed(&[seed, n as u64], 1 << 48)
                ),
                ty,
                created,
                late,
                owner,
                refused: has(Ingredient::Refuse) && rng.chance(0.05),
                misplaced: if has(Ingredient::Order) && rng.chance(0.15) {
                    rng.range(1, 2 * i64::from(per_page)) as usize
                } else {
                    0
                },
            });
        };
        for &owner in &owners {
            let history = if has(Ingredient::Burst) && rng.chance(0.4) {
                rng.range(cap + 1, 2 * cap)
            } else {
                rng.range(0, 3)
            };
            for _ in 0..history {
                let at = rng.range(-900, -1) * SEC;
                add(&mut rng, owner, at, &devices);
            }
            for _ in 0..rng.range(1, 5) {
                let at = rng.range(1, active / SEC - 1) * SEC;
                add(&mut rng, owner, at, &devices);
            }
            if has(Ingredient::Burst) && rng.chance(0.4) {
                let at = rng.range(5, active / SEC - 20);
                for _ in 0..rng.range(cap + 1, 2 * cap) {
                    let created = (at + rng.range(0, 3)) * SEC;
                    add(&mut rng, owner, created, &devices);
                }
            }
        }

        let mut faults = Vec::new();
        let mut lists = owners.clone();
        lists.sort();
        for &list in &lists {
            for (on, throttle) in [(Ingredient::Fail, false), (Ingredient::Throttle, true)] {
                if has(on) && rng.chance(0.5) {
                    let from = rng.range(0, active / SEC - 30) * SEC;
                    let long = if throttle { 30 } else { 50 };
                    faults.push(Fault {
                        list,
                        from,
                        until: (from + rng.range(5, long) * SEC).min(active),
                        throttle,
                    });
                }
            }
        }
        if has(Ingredient::Expiry) {
            let list = *rng.pick(&lists);
            let from = rng.range(0, 20) * SEC;
            let long = expiry.as_secs() as i64 + rng.range(10, 60);
            faults.push(Fault {
                list,
                from,
                until: (from + long * SEC).min(active),
                throttle: false,
            });
        }
        let outages = if has(Ingredient::Outage) {
            (0..rng.range(1, 2))
                .map(|_| {
                    let from = rng.range(0, active / SEC - 20) * SEC;
                    (from, (from + rng.range(10, 90) * SEC).min(active))
                })
                .collect()
        } else {
            Vec::new()
        };
        let crashes = if has(Ingredient::Crash) {
            let mut at: Vec<Ms> = (0..rng.range(1, 3))
                .map(|_| rng.range(1, active - 1))
                .collect();
            at.sort_unstable();
            at
        } else {
            Vec::new()
        };
        let shows_devices = rng.chance(0.5);
        let mut world = Self {
            seed,
            ingredients,
            knobs,
            org,
            projects,
            devices,
            events,
            shows_devices,
            faults,
            outages,
            crashes,
            by_list: Default::default(),
        };
        for list in lists {
            let mut shown: Vec<usize> = (0..world.events.len())
                .filter(|&n| world.shows(list, &world.events[n]))
                .collect();
            let events = &world.events;
            shown.sort_by(|&a, &b| {
                let (a, b) = (&events[a], &events[b]);
                b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id))
            });
            world.by_list.insert(list, shown);
        }
        world
    }

    /// Whether `list` shows `event` (when it is visible).
    pub(crate) fn shows(&self, list: List, event: &SimEvent) -> bool {
        match (list, event.owner) {
            (List::Org, _) => true,
            (List::Project(p), Owner::Project(q)) => p == q,
            (List::Project(p), Owner::Device(_, q)) => self.shows_devices && p == q,
            (List::Device(d), Owner::Device(e, _)) => d == e,
            _ => false,
        }
    }

    /// Whether `list` exists (answers) at `t`.
    pub(crate) fn exists(&self, list: List, t: Ms) -> bool {
        match list {
            List::Device(d) => self.devices[d].alive(t),
            _ => true,
        }
    }

    /// Whether the engine polls lists like `list`.
    pub(crate) fn polled(&self, list: List) -> bool {
        let (project, device, org) = self.knobs.levels;
        match list {
            List::Org => org,
            List::Project(_) => project,
            List::Device(_) => device,
        }
    }

    /// The lists the engine may read at `t`.
    pub(crate) fn lists_at(&self, t: Ms) -> Vec<List> {
        let mut lists: Vec<List> = (0..self.projects.len()).map(List::Project).collect();
        lists.extend((0..self.devices.len()).map(List::Device));
        lists.push(List::Org);
        lists
            .into_iter()
            .filter(|&l| self.polled(l) && self.exists(l, t))
            .collect()
    }

    /// The events `list` shows at `t` (indexes into `events`), in the
    /// API's order: newest first, except the misplaced ones.
    pub(crate) fn listing(&self, list: List, t: Ms) -> Vec<usize> {
        let events = &self.events;
        let mut shown: Vec<usize> = self
            .by_list
            .get(&list)
            .map(|all| {
                all.iter()
                    .copied()
                    .filter(|&n| events[n].visible() <= t)
                    .collect()
            })
            .unwrap_or_default();
        if !shown.iter().any(|&n| events[n].misplaced > 0) {
            return shown;
        }
        let mut misplaced: Vec<usize> = shown
            .iter()
            .copied()
            .filter(|&n| events[n].misplaced > 0)
            .collect();
        misplaced.sort_by(|&a, &b| events[a].id.cmp(&events[b].id));
        // A misplaced event stands `misplaced` places below where its time
        // puts it, but only within the list's first `perPage` entries:
        // the documented guarantee reaches a new event out of order there
        // (the first page is always read whole); one misplaced deeper than
        // any read reaches cannot be seen by any reader.
        let first_page = (self.knobs.per_page as usize).saturating_sub(1);
        for n in misplaced {
            let at = shown.iter().position(|&m| m == n).expect("shown");
            shown.remove(at);
            let to = if at >= first_page {
                at
            } else {
                (at + events[n].misplaced).min(first_page).min(shown.len())
            };
            shown.insert(to, n);
        }
        shown
    }

    /// The fault `list` answers with at `t`, if any.
    pub(crate) fn fault(&self, list: List, t: Ms) -> Option<&Fault> {
        self.faults
            .iter()
            .find(|f| f.list == list && f.from <= t && t < f.until)
    }

    /// Direktiv is down at `t`.
    pub(crate) fn outage(&self, t: Ms) -> bool {
        self.outages
            .iter()
            .any(|&(from, until)| from <= t && t < until)
    }

    /// How long Direktiv takes to answer `id` at `t`.
    pub(crate) fn slowness(&self, id: &str, t: Ms) -> Duration {
        if !self.ingredients.contains(&Ingredient::Slow) || t >= self.knobs.active {
            return Duration::ZERO;
        }
        let roll = keyed(&[self.seed, of_str(id), (t / (5 * SEC)) as u64], 100);
        Duration::from_millis(match roll {
            0..=59 => 0,
            60..=94 => 50 * roll,
            _ => 15_000,
        })
    }

    /// Direktiv refuses `id` for good.
    pub(crate) fn refused(&self, id: &str) -> bool {
        self.events.iter().any(|e| e.refused && e.id == id)
    }

    /// The event types the engine delivers (`None`: every type).
    pub(crate) fn delivers(&self, ty: &str) -> bool {
        !self.knobs.filter || ty != FILTERED_TYPE
    }
}
