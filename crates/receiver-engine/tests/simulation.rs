//! A deterministic simulation of the engine, in the spirit of FoundationDB's
//! simulator and TigerBeetle's VOPR: per seed, the unchanged engine runs
//! in-process on a paused current-thread tokio runtime (virtual time, no
//! socket) against a simulated Metal API (a `metal_events::Transport`: the
//! real client, pager and decoder read it) and a simulated Direktiv (a
//! `receiver_engine::EventSink` behind `Target::Sink`: the engine's own
//! retries and outcome handling), while a nemesis mixes, per seed:
//!
//! | ingredient | what it does |
//! |---|---|
//! | `burst` | histories and bursts deeper than `perPage × maxPages` |
//! | `late` | 30 % of events listed 1 to 90 s after their `created_at` (overlap 60 s) |
//! | `order` | 15 % of events placed 1 to 2 pages below where their time puts them, held among the list's first `perPage` entries (the guarantee: the first page is always read whole) |
//! | `fail` | 503 windows per list (5 to 50 s), and 1 in 25 pages answering 502 |
//! | `throttle` | 429 windows per list (with `Retry-After`) |
//! | `expiry` | one list failing longer than the tracker's source expiry (60 s) |
//! | `churn` | devices added, moved between projects, deleted (their list answers 404) |
//! | `outage` | Direktiv answering 503 for 10 to 90 s |
//! | `refuse` | Direktiv refusing 5 % of events for good (400: dead-lettered) |
//! | `slow` | Direktiv answering in up to 5 s, sometimes 15 s |
//! | `skew` | the host clock (the tracker's) off the API's by −1 h, ±30 s, +3 min or +1 h |
//! | `crash` | the engine task aborted 1 to 3 times and restarted on its state file |
//!
//! Each seed also draws the engine's settings: `pollInterval` 2 to 5 s,
//! adaptive polling on or off, `perPage` 3 to 6, `maxPages` 2 or 3, the
//! levels, `startFrom` `all` or `now`, an `eventTypes` filter or none; the
//! organization (1 to 3 projects, 0 to 4 devices each) and whether project
//! lists show their devices' events (the organization's list shows all).
//!
//! # Time
//!
//! The API's clock is a fixed epoch (2030-01-01T00:00:00Z) plus tokio's
//! virtual time since the receiver's first start; every answer carries it
//! as `Date`. The host clock the tracker reads (`TrackerOptions::with_clock`)
//! is the API's plus the seed's skew. A seed is active for 100 to 160
//! virtual seconds (faults, changes, new events; every fault ends by then),
//! then heals for 110 s (nothing fails, nothing new happens) and stops.
//!
//! The engine takes its floors and start point from the API's `Date`
//! (`Client::api_now`), so the epoch does not matter to it. Before the
//! fixes of #22 it read this host's wall clock (`Utc::now()`), which no
//! in-process test can move; `SIM_EPOCH=<RFC 3339>` moves the epoch (one
//! before the wall clock put that engine's clock years ahead of the API's).
//!
//! # The guarantee (which events must arrive)
//!
//! An event is *expected* when all of these hold:
//!
//! 1. its type is one `eventTypes` delivers;
//! 2. it was created at or after the start point: with `startFrom: all`
//!    always; with `startFrom: now` at least 2 s after the API's clock at
//!    the receiver's first start (the `Date` header has whole seconds);
//! 3. the API listed it at most `state.overlap` after its `created_at`;
//! 4. at the end of the run it is listed by a list of a polled level that
//!    still exists (an event only a deleted device's list ever showed may
//!    be read before the deletion, or not: nothing can promise it).
//!
//! The checker then asserts:
//!
//! - (a) after the heal, every expected event reached Direktiv at least once
//!   (accepted, or refused for good with a 400 and dead-lettered);
//!   duplicates are allowed (a crash may resend, never lose);
//! - (b) no event of a type `eventTypes` filters out ever reached Direktiv;
//! - (c) after every sweep, for every list the engine may read, no expected
//!   event that the list shows, that is listed and that has not arrived,
//!   lies below the list's settled line: `max(floor - overlap, horizon)` of
//!   the tracker (the horizon alone for a list without a floor).
//!
//! # Running
//!
//! ```sh
//! cargo test -p receiver-engine --test simulation               # 1,000 seeds
//! SIM_SEEDS=100000 cargo test -p receiver-engine --test simulation --release
//! SIM_SEED=42 cargo test -p receiver-engine --test simulation -- --nocapture  # replay, traced
//! SIM_ONLY=late,order cargo test -p receiver-engine --test simulation   # only those ingredients
//! SIM_ONLY=none ...                                              # no nemesis at all
//! SIM_SEED=42 SIM_LOG=receiver_engine=debug ...                  # replay with the engine's log
//! ```
//!
//! A failing seed prints the line that replays it.

#![allow(
    clippy::print_stderr,
    reason = "the simulation's summary and traces are its output"
)]

mod simulation {
    pub(crate) mod check;
    pub(crate) mod direktiv;
    pub(crate) mod metal;
    pub(crate) mod rng;
    pub(crate) mod run;
    pub(crate) mod world;
}

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use simulation::run::run_seed;
use simulation::world::Ingredient;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}")),
    )
}

/// `SIM_ONLY`: the ingredients to use (`none` for none), or `None` for a
/// seeded mix.
fn only() -> Option<BTreeSet<Ingredient>> {
    let value = std::env::var("SIM_ONLY").ok()?;
    if value.trim() == "none" {
        return Some(BTreeSet::new());
    }
    Some(
        value
            .split(',')
            .map(|name| {
                Ingredient::parse(name.trim()).unwrap_or_else(|| {
                    let known: Vec<&str> = Ingredient::ALL.iter().map(|i| i.name()).collect();
                    panic!(
                        "SIM_ONLY: unknown ingredient {name:?}; known: {}",
                        known.join(",")
                    )
                })
            })
            .collect(),
    )
}

fn replay_line(seed: u64) -> String {
    let only = std::env::var("SIM_ONLY")
        .map(|only| format!("SIM_ONLY={only} "))
        .unwrap_or_default();
    format!("{only}SIM_SEED={seed} cargo test -p receiver-engine --test simulation -- --nocapture")
}

fn names(ingredients: &BTreeSet<Ingredient>) -> String {
    let names: Vec<&str> = ingredients.iter().map(|i| i.name()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}

#[test]
fn the_engine_delivers_every_expected_event_under_the_nemesis() {
    let only = only();
    if let Some(seed) = env_u64("SIM_SEED") {
        if let Ok(filter) = std::env::var("SIM_LOG") {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .without_time()
                .init();
        }
        let (world, run) = run_seed(seed, only.as_ref(), true);
        eprintln!(
            "seed {seed}: ingredients {}, settings {:?}, {} projects, {} devices, shows devices: {}",
            names(&world.ingredients),
            world.knobs,
            world.projects.len(),
            world.devices.len(),
            world.shows_devices,
        );
        eprintln!(
            "seed {seed}: {} events, {} expected, {} sends, {} requests, {} sweeps, {} violations",
            run.events,
            run.expected,
            run.sends,
            run.requests,
            run.sweeps,
            run.violations.len()
        );
        for violation in &run.violations {
            eprintln!("seed {seed}: {violation}");
        }
        assert!(run.violations.is_empty(), "seed {seed} broke the guarantee");
        return;
    }

    let seeds = env_u64("SIM_SEEDS").unwrap_or(1000);
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(1);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(2));
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let totals = Mutex::new((0u64, 0u64, 0u64, 0u64));
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + seeds {
                        break;
                    }
                    let (world, run) = run_seed(seed, only.as_ref(), false);
                    {
                        let mut totals = totals.lock().unwrap();
                        totals.0 += run.events as u64;
                        totals.1 += run.expected as u64;
                        totals.2 += run.sends;
                        totals.3 += run.violations.len() as u64;
                    }
                    if let Some(first) = run.violations.first() {
                        failures.lock().unwrap().push((
                            seed,
                            names(&world.ingredients),
                            run.violations.len(),
                            first.clone(),
                        ));
                    }
                }
            });
        }
    });
    let (events, expected, sends, violations) = *totals.lock().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    eprintln!(
        "simulation: {seeds} seeds, {events} events ({expected} expected), {sends} deliveries, \
         {violations} violations in {} seeds, {:.1}s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    for (seed, ingredients, count, first) in failures.iter().take(30) {
        eprintln!("seed {seed} [{ingredients}]: {count} violations; first: {first}");
    }
    if let Some((seed, ..)) = failures.first() {
        eprintln!("replay: {}", replay_line(*seed));
        panic!(
            "{} of {seeds} seeds broke the guarantee; replay: {}",
            failures.len(),
            replay_line(*seed)
        );
    }
}
