//! The benchmark harness of equinix-receiver: drives the release build of the
//! receiver against the in-process simulators (`metal-sim`) over loopback
//! HTTP and measures the cost of a sweep, the old receiver's cost, catch-up
//! speed, delivery latency and footprint at scale, against the goals of
//! issue 9. Writes `target/bench/results.json` and, after a full run of every
//! scenario, `docs/benchmarks.md`.
//!
//! ```text
//! cargo run --release -p bench              # full run, ~11 minutes on 2 cores
//! cargo run --release -p bench -- --quick   # one run each, smaller fleets, ~1.5 minutes
//! cargo run --release -p bench -- --scenario steady --runs 5
//! cargo run --release -p bench -- --scenario busy --scenario cadence --runs 1  # issue 22, ~5 minutes
//! ```
//!
//! `busy` and `cadence` (issue 22) run only when named; their figures are
//! kept in `docs/benchmarks.md` by hand.

// A command-line tool whose output is its report.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod adaptive;
mod doc;
mod floor;
mod instructions;
mod old;
mod reading;
mod receiver;
mod report;
mod scenarios;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::report::{Direction, Goal, Machine, Stat};
use crate::scenarios::{Fleet, Spacing};

/// Benchmarks the release receiver against the simulators.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    /// One run of each scenario on smaller fleets (about 1.5 minutes).
    #[arg(long)]
    quick: bool,
    /// Runs per scenario (figures are the median, min and max). Default 3,
    /// or 1 with --quick.
    #[arg(long)]
    runs: Option<usize>,
    /// Only this scenario (repeatable). Default: all.
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Do not run `cargo build --release -p equinix-receiver` first.
    #[arg(long)]
    no_build: bool,
    /// The receiver binary. Default: target/release/equinix-receiver.
    #[arg(long)]
    receiver: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scenario {
    /// 1. Steady state on F1.
    Steady,
    /// 2. The old receiver on F1, computed and replayed.
    Old,
    /// 3. Catch-up after downtime.
    Catchup,
    /// 4. Latency from appearance to acceptance.
    Latency,
    /// 5. Scale: 10,000 devices.
    Scale,
    /// 1b. Instructions per list polled on F1 (callgrind).
    Instructions,
    /// 6. Adaptive polling on an idle F1, both simulated worlds.
    Adaptive,
    /// Issue 22: one device list taking an event a second, at perPage 100
    /// and 10 (only on request: not part of a full run).
    Busy,
    /// Issue 22: reads per list per interval, 200 lists at 2 s, adaptive
    /// polling off (only on request: not part of a full run).
    Cadence,
}

const ALL: [Scenario; 7] = [
    Scenario::Steady,
    Scenario::Instructions,
    Scenario::Old,
    Scenario::Catchup,
    Scenario::Latency,
    Scenario::Scale,
    Scenario::Adaptive,
];

/// Sizes and durations of a run.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    f1: Fleet,
    steady_sweeps: usize,
    old_runs: usize,
    catchup_events: usize,
    latency_rate: f64,
    latency_secs: u64,
    scale: Fleet,
    scale_sweeps: usize,
    adaptive: adaptive::Timing,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let latency = Duration::from_millis(20);
        if quick {
            Self {
                f1: Fleet {
                    projects: 5,
                    devices_per_project: 50,
                    history_per_device: 30,
                    latency,
                },
                steady_sweeps: 2,
                old_runs: 1,
                catchup_events: 2_500,
                latency_rate: 50.0,
                latency_secs: 30,
                scale: Fleet {
                    projects: 40,
                    devices_per_project: 50,
                    history_per_device: 30,
                    latency: Duration::from_millis(10),
                },
                scale_sweeps: 2,
                adaptive: adaptive::Timing {
                    cool: Duration::from_secs(80),
                    window: Duration::from_secs(60),
                    arrivals: Duration::from_secs(30),
                    rate: 1.0,
                },
            }
        } else {
            Self {
                f1: Fleet {
                    projects: 20,
                    devices_per_project: 50,
                    history_per_device: 30,
                    latency,
                },
                steady_sweeps: 3,
                // The replay is sequential and latency-bound (about two
                // minutes on F1), hence deterministic: one run.
                old_runs: 1,
                catchup_events: 10_000,
                latency_rate: 50.0,
                latency_secs: 60,
                // Ten history events per device (not F1's thirty) keep the
                // simulated world (about 900 bytes an event) and its build
                // small enough for the full run to stay under ten minutes;
                // a steady sweep reads one probe page per list either way.
                scale: Fleet {
                    projects: 200,
                    devices_per_project: 50,
                    history_per_device: 10,
                    latency: Duration::from_millis(10),
                },
                scale_sweeps: 1,
                // Covered device lists reach `coveredPollInterval` (10 min)
                // after about 10.5 minutes of quiet and are then read in one
                // burst every 10 minutes: the window holds one such period.
                adaptive: adaptive::Timing {
                    cool: Duration::from_secs(640),
                    window: Duration::from_secs(600),
                    arrivals: Duration::from_secs(60),
                    rate: 1.0,
                },
            }
        }
    }
}

/// Runs of one scenario with the median, min and max of each numeric field.
#[derive(Debug, Clone, Serialize)]
struct Summary<T> {
    stats: BTreeMap<String, Stat>,
    runs: Vec<T>,
}

impl<T: Serialize> Summary<T> {
    fn of(runs: Vec<T>) -> Self {
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for run in &runs {
            if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(run) {
                for (key, value) in fields {
                    if let Some(v) = value.as_f64() {
                        values.entry(key).or_default().push(v);
                    }
                }
            }
        }
        let stats = values.into_iter().map(|(k, v)| (k, Stat::of(&v))).collect();
        Self { stats, runs }
    }

    fn stat(&self, field: &str) -> Stat {
        self.stats
            .get(field)
            .copied()
            .unwrap_or_else(|| Stat::of(&[]))
    }
}

/// Everything a run measured; `target/bench/results.json`.
#[derive(Debug, Serialize)]
struct Results {
    date: String,
    command: String,
    quick: bool,
    runs: usize,
    elapsed_s: f64,
    machine: Machine,
    plan: Plan,
    steady: Option<Summary<scenarios::SteadyRun>>,
    instructions: Option<Summary<instructions::InstructionsRun>>,
    old: Option<Summary<scenarios::OldRun>>,
    catchup: Option<Summary<scenarios::CatchupRun>>,
    latency: Option<Summary<scenarios::LatencyRun>>,
    scale: Option<Summary<scenarios::SteadyRun>>,
    adaptive_covered: Option<Summary<adaptive::AdaptiveRun>>,
    adaptive_uncovered: Option<Summary<adaptive::AdaptiveRun>>,
    /// One summary per page size.
    busy: Vec<Summary<reading::BusyRun>>,
    cadence: Option<Summary<reading::CadenceRun>>,
    /// Ratios of ours to the old receiver's (steady F1 vs old F1 medians).
    versus_old: Option<VersusOld>,
    /// Figures from the criterion benches (not measured by this harness).
    criterion: Vec<doc::CriterionFigure>,
    goals: Vec<Goal>,
    missed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct VersusOld {
    requests_ratio: f64,
    wall_ratio_replayed: f64,
    wall_ratio_computed: f64,
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(instructions::CALIBRATE_FLAG) {
        return instructions::workload();
    }
    let cli = Cli::parse();
    let root = workspace_root();
    let binary = cli
        .receiver
        .clone()
        .unwrap_or_else(|| root.join("target/release/equinix-receiver"));
    if !cli.no_build && cli.receiver.is_none() {
        build_receiver(&root)?;
    }
    if !binary.is_file() {
        bail!(
            "{} is missing: run `cargo build --release -p equinix-receiver` first",
            binary.display()
        );
    }
    let selected: Vec<Scenario> = if cli.scenario.is_empty() {
        ALL.to_vec()
    } else {
        cli.scenario.clone()
    };
    let runs = cli.runs.unwrap_or(if cli.quick { 1 } else { 3 }).max(1);
    let plan = Plan::new(cli.quick);
    let command = command_line(&cli);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the runtime")?;
    let started = Instant::now();
    let mut results = runtime.block_on(run_all(&binary, &plan, &selected, runs))?;
    results.elapsed_s = started.elapsed().as_secs_f64();
    results.quick = cli.quick;
    results.command = command;

    print_goals(&results);

    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).context("creating target/bench")?;
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(out_dir.join("results.json"), json).context("writing results.json")?;
    println!("\nwrote {}", out_dir.join("results.json").display());

    let doc_path = root.join("docs/benchmarks.md");
    let existing = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let markdown = doc::render(&results, &existing);
    let full = !cli.quick && selected.len() == ALL.len() && runs >= 3;
    let target = if full {
        doc_path
    } else {
        out_dir.join("benchmarks.md")
    };
    std::fs::write(&target, markdown).with_context(|| format!("writing {}", target.display()))?;
    println!(
        "wrote {}{}",
        target.display(),
        if full {
            ""
        } else {
            " (docs/benchmarks.md is rewritten only by a full run of every scenario)"
        }
    );
    Ok(())
}

/// The workspace root: this package lives in `bins/bench`.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    root.canonicalize().unwrap_or(root)
}

fn build_receiver(root: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("building the release receiver: cargo build --release -p equinix-receiver");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "equinix-receiver"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p equinix-receiver failed ({status})");
    }
    Ok(())
}

fn command_line(cli: &Cli) -> String {
    let mut command = "cargo run --release -p bench".to_owned();
    let mut args = Vec::new();
    if cli.quick {
        args.push("--quick".to_owned());
    }
    if let Some(runs) = cli.runs {
        args.push(format!("--runs {runs}"));
    }
    for s in &cli.scenario {
        if let Some(v) = s.to_possible_value() {
            args.push(format!("--scenario {}", v.get_name()));
        }
    }
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    command
}

async fn run_all(
    binary: &Path,
    plan: &Plan,
    selected: &[Scenario],
    runs: usize,
) -> anyhow::Result<Results> {
    let mut results = Results {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: String::new(),
        quick: false,
        runs,
        elapsed_s: 0.0,
        machine: Machine::detect(),
        plan: plan.clone(),
        steady: None,
        instructions: None,
        old: None,
        catchup: None,
        latency: None,
        scale: None,
        adaptive_covered: None,
        adaptive_uncovered: None,
        busy: Vec::new(),
        cadence: None,
        versus_old: None,
        criterion: doc::criterion_figures(),
        goals: Vec::new(),
        missed: Vec::new(),
    };
    let seed = |run: usize| 42 + run as u64;
    let f1 = &plan.f1;

    // Scenario 6 is long and mostly idle: it runs alongside the others.
    let adaptive_task = selected.contains(&Scenario::Adaptive).then(|| {
        let t = plan.adaptive;
        println!(
            "\n== 6. adaptive polling, idle (in the background): {}; pollInterval {} s, maxPollInterval {} s; both worlds at once, {} s to cool, {} s counted, then {} events/s for {} s ==",
            f1.describe(),
            adaptive::POLL_INTERVAL.as_secs(),
            adaptive::MAX_POLL_INTERVAL.as_secs(),
            t.cool.as_secs(),
            t.window.as_secs(),
            t.rate,
            t.arrivals.as_secs()
        );
        let (binary, fleet, seed) = (binary.to_path_buf(), *f1, seed(0));
        tokio::spawn(async move {
            tokio::try_join!(
                adaptive::run(&binary, &fleet, adaptive::World::Covered, t, seed),
                adaptive::run(&binary, &fleet, adaptive::World::Uncovered, t, seed + 1),
            )
        })
    });

    if selected.contains(&Scenario::Steady) {
        println!("\n== 1. steady state: {} ==", f1.describe());
        let mut all = Vec::new();
        for run in 0..runs {
            let r =
                scenarios::steady(binary, f1, plan.steady_sweeps, Spacing::Gap, seed(run)).await?;
            println!(
                "run {}: {:.1} requests/sweep (+{:.2} inventory amortized), sweep {:.0} ms vs floor {:.0} ms, CPU {:.1} ms/sweep, peak RSS {:.1} MiB (now {:.1}){}",
                run + 1,
                r.requests_per_sweep,
                r.amortized_inventory_per_sweep,
                r.sweep_ms,
                r.floor_ms,
                r.cpu_ms_per_sweep,
                r.peak_rss_mib,
                r.rss_after_mib,
                if r.back_to_back {
                    " (sweeps ran back to back)"
                } else {
                    ""
                }
            );
            all.push(r);
        }
        results.steady = Some(Summary::of(all));
    }
    if selected.contains(&Scenario::Instructions) {
        println!(
            "\n== 1b. instructions per list (callgrind): {} ==",
            f1.describe()
        );
        let mut all = Vec::new();
        // Instruction counts barely vary: one run.
        let r = instructions::measure(binary, f1, plan.steady_sweeps, seed(0)).await?;
        println!(
            "{} lists in {} sweeps: {:.1} M instructions per 100 lists; at {:.2} G instructions/s (calibrated) {:.2} ms per 100 lists",
            r.lists,
            r.sweeps,
            r.instructions_per_100_lists / 1e6,
            r.instructions_per_s / 1e9,
            r.ms_per_100_lists
        );
        all.push(r);
        results.instructions = Some(Summary::of(all));
    }
    if selected.contains(&Scenario::Old) {
        println!("\n== 2. the old receiver: {} ==", f1.describe());
        let mut all = Vec::new();
        for run in 0..plan.old_runs.min(runs) {
            let r = scenarios::old(f1, seed(run)).await?;
            println!(
                "run {}: computed {} requests, {:.1} s; replayed {} requests in {:.1} s",
                run + 1,
                r.computed_requests,
                r.computed_wall_ms / 1000.0,
                r.replayed_requests,
                r.replayed_wall_ms / 1000.0
            );
            all.push(r);
        }
        results.old = Some(Summary::of(all));
    }
    if selected.contains(&Scenario::Catchup) {
        println!(
            "\n== 3. catch-up: {} events while down; {} ==",
            plan.catchup_events,
            f1.describe()
        );
        let mut all = Vec::new();
        for run in 0..runs {
            let r = scenarios::catchup(binary, f1, plan.catchup_events, seed(run)).await?;
            println!(
                "run {}: {} events in {:.2} s from start ({:.0}/s, {:.0} % of the {:.0}/s floor measured by a minimal client in {:.2} s); delivery phase {:.2} s ({:.0} %); lost {}, duplicates {}",
                run + 1,
                r.events,
                r.end_to_end_s,
                r.events_per_s,
                r.share_of_floor * 100.0,
                r.floor_events_per_s,
                r.floor_s,
                r.delivery_phase_s,
                r.delivery_phase_share_of_floor * 100.0,
                r.lost,
                r.duplicates
            );
            all.push(r);
        }
        results.catchup = Some(Summary::of(all));
    }
    if selected.contains(&Scenario::Latency) {
        println!(
            "\n== 4. latency: {} events/s for {} s, poll interval 1 s; {} ==",
            plan.latency_rate,
            plan.latency_secs,
            f1.describe()
        );
        let mut all = Vec::new();
        for run in 0..runs {
            let r = scenarios::latency(
                binary,
                f1,
                plan.latency_rate,
                Duration::from_secs(plan.latency_secs),
                seed(run),
            )
            .await?;
            println!(
                "run {}: {} events, p50 {:.0} ms, p99 {:.0} ms (limit {:.0} ms), max {:.0} ms, sweep {:.0} ms; lost {}, duplicates {}",
                run + 1,
                r.events,
                r.p50_ms,
                r.p99_ms,
                r.limit_ms,
                r.max_ms,
                r.sweep_ms,
                r.lost,
                r.duplicates
            );
            all.push(r);
        }
        results.latency = Some(Summary::of(all));
    }
    if selected.contains(&Scenario::Scale) {
        let scale = &plan.scale;
        println!("\n== 5. scale: {} ==", scale.describe());
        let mut all = Vec::new();
        for run in 0..runs {
            let r = scenarios::steady(
                binary,
                scale,
                plan.scale_sweeps,
                Spacing::BackToBack,
                seed(run),
            )
            .await?;
            println!(
                "run {}: {:.1} requests/sweep, sweep {:.0} ms vs floor {:.0} ms, CPU {:.1} ms/sweep, peak RSS {:.1} MiB (now {:.1}), state file {} bytes",
                run + 1,
                r.requests_per_sweep,
                r.sweep_ms,
                r.floor_ms,
                r.cpu_ms_per_sweep,
                r.peak_rss_mib,
                r.rss_after_mib,
                r.state_file_bytes,
            );
            all.push(r);
        }
        results.scale = Some(Summary::of(all));
    }

    if selected.contains(&Scenario::Busy) {
        let fleet = reading::busy_fleet();
        println!(
            "\n== issue 22, busy: one device list taking 1 event/s (and 900 s of them before the start), pollInterval {} s, perPage {:?} (at once), {} reads counted; {} ==",
            reading::BUSY_INTERVAL.as_secs(),
            reading::BUSY_PER_PAGE,
            reading::BUSY_READS,
            fleet.describe()
        );
        let mut all: Vec<Vec<reading::BusyRun>> = vec![Vec::new(); reading::BUSY_PER_PAGE.len()];
        for run in 0..runs {
            let [large, small] = reading::BUSY_PER_PAGE;
            let both = tokio::try_join!(
                reading::busy(binary, large, seed(run)),
                reading::busy(binary, small, seed(run) + 100),
            )?;
            for (i, r) in [both.0, both.1].into_iter().enumerate() {
                println!(
                    "run {}, perPage {}: {:.2} requests/read ({} in {} reads, {:.0} s), {:.2} pages/read (receiver), {:.0} events served/read, {:.1} delivered/read, sweep {:.0} ms, after {} warm-up sweeps",
                    run + 1,
                    r.per_page,
                    r.requests_per_read,
                    r.list_requests,
                    r.reads,
                    r.window_s,
                    r.pages_per_read,
                    r.events_served_per_read,
                    r.delivered_per_read,
                    r.sweep_ms,
                    r.warmup_sweeps
                );
                all[i].push(r);
            }
        }
        results.busy = all.into_iter().map(Summary::of).collect();
    }
    if selected.contains(&Scenario::Cadence) {
        println!(
            "\n== issue 22, cadence: pollInterval = maxPollInterval = {} s, {} passes counted; {} ==",
            reading::CADENCE_INTERVAL.as_secs(),
            reading::CADENCE_PASSES,
            reading::cadence_fleet().describe()
        );
        let mut all = Vec::new();
        for run in 0..runs {
            let r = reading::cadence(binary, seed(run)).await?;
            println!(
                "run {}: {} lists, {} passes in {:.2} s ({:.2} intervals, a pass every {:.0} ms, sweep {:.0} ms): reads per list per interval mean {:.4}, min {:.4}, max {:.4}; {:.3} requests per read",
                run + 1,
                r.lists,
                r.passes,
                r.window_s,
                r.intervals,
                r.pass_period_ms,
                r.sweep_ms,
                r.reads_per_interval_mean,
                r.reads_per_interval_min,
                r.reads_per_interval_max,
                r.requests_per_read
            );
            all.push(r);
        }
        results.cadence = Some(Summary::of(all));
    }

    if let Some(task) = adaptive_task {
        println!("\n== 6. adaptive polling: waiting for the background runs ==");
        let (covered, uncovered) = task.await.context("the adaptive runs panicked")??;
        for r in [&covered, &uncovered] {
            println!(
                "{}: {:.1} requests/min ({} in {:.0} s) vs {:.0} reading every list: ratio {:.3}; {} events, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (limit {:.0} ms), sweep {:.0} ms; lost {}, duplicates {}",
                r.world.describe(),
                r.requests_per_min,
                r.window_requests,
                r.window_s,
                r.every_list_per_min,
                r.ratio,
                r.events,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.limit_ms,
                r.sweep_ms,
                r.lost,
                r.duplicates
            );
        }
        results.adaptive_covered = Some(Summary::of(vec![covered]));
        results.adaptive_uncovered = Some(Summary::of(vec![uncovered]));
    }

    if let (Some(steady), Some(old)) = (&results.steady, &results.old) {
        let ours = steady.stat("total_requests_per_sweep").median;
        let ours_wall = steady.stat("sweep_ms").median;
        results.versus_old = Some(VersusOld {
            requests_ratio: ours / old.stat("replayed_requests").median,
            wall_ratio_replayed: ours_wall / old.stat("replayed_wall_ms").median,
            wall_ratio_computed: ours_wall / old.stat("computed_wall_ms").median,
        });
    }
    results.goals = goals(&results);
    results.missed = results
        .goals
        .iter()
        .filter(|g| !g.met)
        .map(|g| format!("{}: {}", g.scenario, g.statement()))
        .collect();
    Ok(results)
}

fn goals(results: &Results) -> Vec<Goal> {
    let plan = &results.plan;
    let mut goals = Vec::new();
    let lists_bound = |fleet: &Fleet| 1.05 * (fleet.projects + fleet.devices() + 1) as f64;
    if let Some(s) = &results.steady {
        let name = "1. steady state (F1)";
        goals.push(Goal::new(
            name,
            "API requests per sweep",
            s.stat("total_requests_per_sweep"),
            lists_bound(&plan.f1),
            "",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "API requests per list read (issue 22)",
            s.stat("requests_per_list_read"),
            1.1,
            "",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "sweep wall time / floor",
            s.stat("wall_over_floor"),
            1.5,
            "",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "CPU time per 100 lists (user + system, clock ticks)",
            s.stat("cpu_ms_per_100_lists"),
            5.0,
            "ms",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "peak RSS",
            s.stat("peak_rss_mib"),
            30.0,
            "MiB",
            Direction::AtMost,
        ));
    }
    if let Some(i) = &results.instructions {
        goals.push(Goal::new(
            "1. steady state (F1)",
            "CPU per 100 lists (callgrind instructions at the calibrated rate)",
            i.stat("ms_per_100_lists"),
            5.0,
            "ms",
            Direction::AtMost,
        ));
    }
    if let Some(c) = &results.catchup {
        let name = "3. catch-up";
        goals.push(Goal::new(
            name,
            "events/s as a share of the sink-bound floor measured in the run (start to last delivery)",
            c.stat("share_of_floor"),
            0.8,
            "",
            Direction::AtLeast,
        ));
        goals.push(Goal::new(
            name,
            "events lost",
            c.stat("lost"),
            0.0,
            "",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "events duplicated at the sink",
            c.stat("duplicates"),
            0.0,
            "",
            Direction::AtMost,
        ));
    }
    if let Some(l) = &results.latency {
        goals.push(Goal::new(
            "4. latency",
            "p99 (appearance to acceptance)",
            l.stat("p99_ms"),
            l.stat("limit_ms").median,
            "ms",
            Direction::AtMost,
        ));
    }
    if let Some(a) = &results.adaptive_covered {
        let name = "6. adaptive, idle (lists show device events)";
        goals.push(Goal::new(
            name,
            "API requests per minute / reading every list every interval",
            a.stat("ratio"),
            0.05,
            "",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "p99 latency (pollInterval + sweep time + 200 ms)",
            a.stat("p99_ms"),
            a.stat("limit_ms").median,
            "ms",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "events lost",
            a.stat("lost"),
            0.0,
            "",
            Direction::AtMost,
        ));
    }
    if let Some(a) = &results.adaptive_uncovered {
        let name = "6. adaptive, idle (lists do not show device events)";
        goals.push(Goal::new(
            name,
            "API requests per minute / reading every list every interval",
            a.stat("ratio"),
            0.2,
            "",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "slowest event (maxPollInterval + pollInterval)",
            a.stat("max_ms"),
            a.stat("limit_ms").median,
            "ms",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "events lost",
            a.stat("lost"),
            0.0,
            "",
            Direction::AtMost,
        ));
    }
    if let Some(c) = &results.cadence {
        let name = "issue 22, cadence";
        goals.push(Goal::new(
            name,
            "reads per list per interval, fewest of any list",
            c.stat("reads_per_interval_min"),
            0.95,
            "",
            Direction::AtLeast,
        ));
        goals.push(Goal::new(
            name,
            "reads per list per interval, most of any list",
            c.stat("reads_per_interval_max"),
            1.05,
            "",
            Direction::AtMost,
        ));
    }
    if let Some(s) = &results.scale {
        let name = "5. scale (10,000 devices)";
        goals.push(Goal::new(
            name,
            "API requests per sweep",
            s.stat("total_requests_per_sweep"),
            lists_bound(&plan.scale),
            "",
            Direction::AtMost,
        ));
        goals.push(Goal::new(
            name,
            "sweep wall time / floor",
            s.stat("wall_over_floor"),
            1.5,
            "",
            Direction::AtMost,
        ));
    }
    goals
}

fn print_goals(results: &Results) {
    println!("\n== goals (medians over {} runs) ==", results.runs);
    for goal in &results.goals {
        println!(
            "{:<4} {:<26} {:<70} measured {:>22}  ratio {:>5}",
            if goal.met { "ok" } else { "MISS" },
            goal.scenario,
            goal.statement(),
            goal.measured.show(2),
            goal.show_ratio()
        );
    }
    if let Some(v) = &results.versus_old {
        println!(
            "\nours / old receiver: requests {:.4}, sweep wall time {:.4} (replayed), {:.4} (computed)",
            v.requests_ratio, v.wall_ratio_replayed, v.wall_ratio_computed
        );
    }
    if results.missed.is_empty() {
        println!("\nevery goal is met");
    } else {
        println!("\ngoals MISSED ({}):", results.missed.len());
        for miss in &results.missed {
            println!("  - {miss}");
        }
    }
}
