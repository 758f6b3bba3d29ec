//! `docs/benchmarks.md`: the figures of a run as Markdown tables, with the
//! criterion section, the issue-22 section and the findings carried over
//! from the existing file.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::Stat;
use crate::{Results, Summary};

const CRITERION_START: &str = "<!-- criterion:start -->";
const CRITERION_END: &str = "<!-- criterion:end -->";

/// A figure from a criterion bench, for `results.json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CriterionFigure {
    pub(crate) crate_name: &'static str,
    pub(crate) figure: &'static str,
    pub(crate) value: &'static str,
    pub(crate) command: &'static str,
}

const MAP: &str = "cargo bench -p metal-cloudevents --bench map";
const TRACKER: &str = "cargo bench -p event-dedupe --bench tracker";
const CLIENT: &str = "cargo bench -p metal-events --bench client";

/// The criterion figures (measured by the lead, not by this harness).
pub(crate) fn criterion_figures() -> Vec<CriterionFigure> {
    let f = |crate_name, figure, value, command| CriterionFigure {
        crate_name,
        figure,
        value,
        command,
    };
    vec![
        f(
            "metal-cloudevents",
            "mapping an event to a CloudEvent",
            "1.39 µs/event ≈ 718,000 events/s per core",
            MAP,
        ),
        f(
            "metal-cloudevents",
            "mapping + JSON serialization",
            "6.46 µs/event ≈ 155,000 events/s per core",
            MAP,
        ),
        f(
            "event-dedupe",
            "lookup of a delivered id (100,000 tracked)",
            "233 ns",
            TRACKER,
        ),
        f(
            "event-dedupe",
            "lookup of an unknown id (100,000 tracked)",
            "60 ns",
            TRACKER,
        ),
        f(
            "event-dedupe",
            "record an id (100,000 tracked)",
            "196 ns",
            TRACKER,
        ),
        f(
            "event-dedupe",
            "persist 100,000 ids (6.6 MB file, fsync included)",
            "49 ms",
            TRACKER,
        ),
        f(
            "event-dedupe",
            "memory per tracked id (estimate)",
            "~91 bytes (≈ 8.7 MiB for 100,000)",
            TRACKER,
        ),
        f(
            "event-dedupe",
            "disk per tracked id",
            "66 bytes (6.6 MB for 100,000)",
            TRACKER,
        ),
        f(
            "metal-events",
            "decoding a 100-event page",
            "≈ 290 µs",
            CLIENT,
        ),
        f(
            "metal-events",
            "one next_page round trip on loopback",
            "≈ 625 µs",
            CLIENT,
        ),
    ]
}

fn default_criterion_section() -> String {
    let mut out = String::new();
    out.push_str(
        "Measured with criterion on the same shared 2-core machine (noisy: other\n\
         engineers' builds ran at the same time); criterion's point estimates.\n\
         These are not re-measured by the harness: run the commands to refresh them.\n\n\
         | Crate | Figure | Value | Command |\n|---|---|---|---|\n",
    );
    for f in criterion_figures() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | `{}` |",
            f.crate_name, f.figure, f.value, f.command
        );
    }
    out
}

/// The text between the criterion markers of `existing`, or the default.
fn criterion_section(existing: &str) -> String {
    existing
        .split_once(CRITERION_START)
        .and_then(|(_, rest)| rest.split_once(CRITERION_END))
        .map(|(inside, _)| inside.trim().to_owned() + "\n")
        .unwrap_or_else(default_criterion_section)
}

fn row(out: &mut String, label: &str, stat: Stat, decimals: usize, unit: &str) {
    let _ = writeln!(out, "| {label} | {} {unit} |", stat.show(decimals));
}

fn steady_table<T: Serialize>(out: &mut String, s: &Summary<T>) {
    out.push_str("| Figure | Median [min–max] |\n|---|---|\n");
    row(out, "lists polled per sweep", s.stat("lists"), 0, "");
    row(
        out,
        "API requests per steady sweep (simulator's count)",
        s.stat("requests_per_sweep"),
        1,
        "",
    );
    row(
        out,
        "pages per steady sweep (receiver's count)",
        s.stat("pages_per_sweep"),
        1,
        "",
    );
    row(
        out,
        "requests of one inventory load",
        s.stat("inventory_requests"),
        0,
        "",
    );
    row(
        out,
        "inventory amortized per sweep (10 s interval, 5 min refresh)",
        s.stat("amortized_inventory_per_sweep"),
        2,
        "",
    );
    row(
        out,
        "**API requests per sweep, total**",
        s.stat("total_requests_per_sweep"),
        1,
        "",
    );
    row(
        out,
        "first sweep wall time",
        s.stat("first_sweep_ms"),
        0,
        "ms",
    );
    row(out, "steady sweep wall time", s.stat("sweep_ms"), 0, "ms");
    row(
        out,
        "floor: requests × latency / 8",
        s.stat("floor_ms"),
        0,
        "ms",
    );
    row(
        out,
        "**wall time / floor**",
        s.stat("wall_over_floor"),
        2,
        "",
    );
    row(
        out,
        "CPU time per sweep (user + system)",
        s.stat("cpu_ms_per_sweep"),
        1,
        "ms",
    );
    row(
        out,
        "**CPU per 100 lists**",
        s.stat("cpu_ms_per_100_lists"),
        2,
        "ms",
    );
    row(
        out,
        "**peak RSS (VmHWM, whole life, first sweep included)**",
        s.stat("peak_rss_mib"),
        1,
        "MiB",
    );
    row(
        out,
        "RSS after the measured sweeps (VmRSS)",
        s.stat("rss_after_mib"),
        1,
        "MiB",
    );
    row(out, "state file", s.stat("state_file_bytes"), 0, "bytes");
}

/// The whole document.
pub(crate) fn render(r: &Results, existing: &str) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let p = &r.plan;
    let _ = write!(
        out,
        "# Benchmarks\n\n\
         What the receiver costs and how fast it delivers, measured by driving the\n\
         release build against the simulators of `metal-sim` over loopback HTTP\n\
         (issue 9). Every figure is the median of {runs} runs with [min–max], unless\n\
         a table says otherwise; a goal missed is reported as missed.\n\n\
         - **Command**: `{cmd}` (it runs `cargo build --release -p equinix-receiver`\n  \
           first; {elapsed:.0} s for this run). `--quick` does one run of each\n  \
           scenario on smaller fleets in about 1.5 minutes and writes\n  \
           `target/bench/benchmarks.md` instead of this file. Machine-readable\n  \
           figures: `target/bench/results.json`.\n\
         - **Date**: {date}.\n\
         - **Machine**: {cpus} cores (`nproc`), {model}, {mem:.1} GiB memory, Linux {kernel}.\n  \
           The machine is **shared**: other engineers' builds ran during the\n  \
           measurements, so CPU-bound figures are noisy; the simulators run in the\n  \
           harness's process on the same two cores as the receiver.\n\
         - **Receiver config**: `perPage: 100`, `concurrency: 8`, `levels: [project, device]`,\n  \
           `direktiv.concurrency: 8`, state file in a temp dir, server disabled,\n  \
           JSON logs at info (the harness counts `sweep done` lines). Scenarios 1 to 5\n  \
           set `maxPollInterval` to `pollInterval` (adaptive polling off: every list\n  \
           every sweep, as their goals assume); scenario 6 measures adaptive polling.\n\n",
        runs = r.runs,
        cmd = r.command,
        elapsed = r.elapsed_s,
        date = r.date,
        cpus = m.cpus,
        model = m.cpu_model,
        mem = m.memory_gib,
        kernel = m.kernel,
    );

    out.push_str("## Goals\n\n| Scenario | Goal | Measured: median [min–max] | Ratio to goal | Met |\n|---|---|---|---|---|\n");
    for g in &r.goals {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            g.scenario,
            g.statement(),
            g.measured.show(2),
            g.show_ratio(),
            if g.met { "yes" } else { "**MISSED**" }
        );
    }
    if r.missed.is_empty() {
        out.push_str("\nEvery goal is met.\n\n");
    } else {
        out.push_str("\n**Missed goals** (causes under Findings, at the end):\n\n");
        for miss in &r.missed {
            let _ = writeln!(out, "- {miss}");
        }
        out.push('\n');
    }

    let _ = write!(
        out,
        "## 1. Steady state on F1\n\n\
         F1: {}. No new events; the figures cover the sweeps after the first\n\
         ({} sweeps per run, poll interval long enough that sweeps do not overlap,\n\
         so the simulator's request counters read between two sweeps belong to\n\
         one). CPU time comes from `/proc/<pid>/stat` (utime + stime, 10 ms ticks)\n\
         over those sweeps and the idle time between them; RSS is `VmHWM`.\n\n",
        p.f1.describe(),
        p.steady_sweeps
    );
    if let Some(s) = &r.steady {
        steady_table(&mut out, s);
        out.push('\n');
    }
    if let Some(i) = &r.instructions {
        out.push_str(
            "### 1b. Instructions per list (callgrind)\n\n\
             CPU time in 10 ms ticks on a shared machine swings by a millisecond\n\
             per 100 lists from run to run; instruction counts do not. The receiver\n\
             runs under `valgrind --tool=callgrind` on the same fleet and config\n\
             (poll interval 1 s: under valgrind a sweep is CPU-bound, so sweeps\n\
             run back to back); `callgrind_control -z` zeroes the counters when\n\
             the first sweep's line arrives and `callgrind_control -d` dumps them\n\
             when the last steady sweep's does: every thread's user-space\n\
             instructions over those sweeps, kernel time not. To turn counts into time, a fixed workload\n\
             of the receiver's kind (JSON pages decoded, searched and serialized;\n\
             `bench --calibrate-workload`) is counted under `cachegrind` and timed\n\
             natively (best of 3, user + system): this machine's instructions per\n\
             second. One run (counts vary by well under 1 %).\n\n",
        );
        out.push_str("| Figure | Value |\n|---|---|\n");
        row(
            &mut out,
            "lists polled in the measured sweeps",
            i.stat("lists"),
            0,
            "",
        );
        row(
            &mut out,
            "instructions per steady sweep",
            i.stat("instructions_per_sweep").scaled(1e-6),
            1,
            "M",
        );
        row(
            &mut out,
            "**instructions per 100 lists**",
            i.stat("instructions_per_100_lists").scaled(1e-6),
            2,
            "M",
        );
        row(
            &mut out,
            "calibration: workload instructions",
            i.stat("calibration_instructions").scaled(1e-6),
            0,
            "M",
        );
        row(
            &mut out,
            "calibration: native CPU time (best of 3)",
            i.stat("calibration_cpu_ms"),
            0,
            "ms",
        );
        row(
            &mut out,
            "this machine's instructions per second",
            i.stat("instructions_per_s").scaled(1e-9),
            2,
            "G",
        );
        row(
            &mut out,
            "**CPU per 100 lists (instructions ÷ rate)**",
            i.stat("ms_per_100_lists"),
            2,
            "ms",
        );
        out.push('\n');
    }

    let _ = write!(
        out,
        "## 2. The old receiver on F1\n\n\
         Its algorithm (design notes §5): sequential; `GET /projects` (which also\n\
         lists other organizations' projects), then per project its events, its\n\
         devices and each device's events, every page of every list at the default\n\
         page size of 10, every sweep. *Computed* counts the pages from the\n\
         simulator's fleet and event log, with wall time = requests × latency;\n\
         *replayed* sends exactly that request sequence to the simulator over HTTP,\n\
         one request after another. The replay is latency-bound and deterministic\n\
         ({} run).\n\n",
        p.old_runs
    );
    if let Some(o) = &r.old {
        out.push_str("| Per sweep | Old, computed | Old, replayed | Ours (steady, §1) | Ours / old (replayed) |\n|---|---|---|---|---|\n");
        let ours_req = r
            .steady
            .as_ref()
            .map(|s| s.stat("total_requests_per_sweep"));
        let ours_wall = r.steady.as_ref().map(|s| s.stat("sweep_ms"));
        let show = |s: Option<Stat>, d: usize| s.map_or_else(|| "–".to_owned(), |s| s.show(d));
        let ratio = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.4}"));
        let vo = r.versus_old.as_ref();
        let _ = writeln!(
            out,
            "| API requests | {} | {} | {} | {} |",
            o.stat("computed_requests").show(0),
            o.stat("replayed_requests").show(0),
            show(ours_req, 1),
            ratio(vo.map(|v| v.requests_ratio)),
        );
        let secs = |s: Stat| Stat {
            median: s.median / 1000.0,
            min: s.min / 1000.0,
            max: s.max / 1000.0,
            runs: s.runs,
        };
        let _ = writeln!(
            out,
            "| sweep wall time (s) | {} | {} | {} | {} |",
            secs(o.stat("computed_wall_ms")).show(1),
            secs(o.stat("replayed_wall_ms")).show(1),
            show(ours_wall.map(secs), 2),
            ratio(vo.map(|v| v.wall_ratio_replayed)),
        );
        if let Some(v) = vo {
            let _ = writeln!(
                out,
                "\nOurs over old: {:.2} % of the requests and {:.2} % of the sweep time \
                 ({:.1}× fewer requests, {:.1}× faster sweeps; {:.2} % of the computed wall time).",
                v.requests_ratio * 100.0,
                v.wall_ratio_replayed * 100.0,
                1.0 / v.requests_ratio,
                1.0 / v.wall_ratio_replayed,
                v.wall_ratio_computed * 100.0,
            );
        }
        out.push('\n');
    }

    let _ = write!(
        out,
        "## 3. Catch-up after downtime\n\n\
         F1 as above. A first `--once` run creates the state; while the receiver\n\
         is stopped, {} events appear across the fleet (`emit_events`, device and\n\
         project events); then the receiver starts and the harness waits until\n\
         Direktiv (simulated, 2 ms per request) has accepted every one. The\n\
         **floor** is measured in the same run: once the receiver has stopped, a\n\
         minimal client in the harness (`bins/bench/src/floor.rs`: one reqwest\n\
         client, 8 workers, bodies serialized in advance) POSTs the same\n\
         CloudEvents with the same concurrency (`direktiv.concurrency` = 8) to\n\
         the same simulated Direktiv, under a namespace of its own. The\n\
         theoretical `direktiv.concurrency / 2 ms` = 4,000 events/s is not\n\
         reachable on two shared cores (tokio's 1 ms timer rounds the sink's\n\
         2 ms up; the sink, the client and the simulators share the cores); the\n\
         table gives the floor's share of it. *From start* runs from spawning the process (inventory,\n\
         polling and delivery) to the last acceptance; the *delivery phase* runs\n\
         from the first acceptance to the last. Lost and duplicated events are\n\
         counted at the sink against the simulator's event log (a duplicate is an\n\
         id accepted twice or a resend Direktiv refused).\n\n",
        p.catchup_events
    );
    if let Some(c) = &r.catchup {
        out.push_str("| Figure | Median [min–max] |\n|---|---|\n");
        row(&mut out, "events", c.stat("events"), 0, "");
        row(
            &mut out,
            "time from start to all delivered",
            c.stat("end_to_end_s"),
            2,
            "s",
        );
        row(
            &mut out,
            "events/s from start",
            c.stat("events_per_s"),
            0,
            "",
        );
        row(
            &mut out,
            "floor: minimal client's events/s, same sink, same concurrency",
            c.stat("floor_events_per_s"),
            0,
            "",
        );
        row(
            &mut out,
            "floor's share of the theoretical 4,000/s",
            c.stat("floor_share_of_theoretical"),
            2,
            "",
        );
        row(
            &mut out,
            "**share of the floor, from start**",
            c.stat("share_of_floor"),
            2,
            "",
        );
        row(
            &mut out,
            "delivery phase (first to last acceptance)",
            c.stat("delivery_phase_s"),
            2,
            "s",
        );
        row(
            &mut out,
            "events/s in the delivery phase",
            c.stat("delivery_phase_events_per_s"),
            0,
            "",
        );
        row(
            &mut out,
            "share of the floor, delivery phase",
            c.stat("delivery_phase_share_of_floor"),
            2,
            "",
        );
        row(&mut out, "sweeps that delivered", c.stat("sweeps"), 0, "");
        row(
            &mut out,
            "API requests until done (incl. one idle sweep)",
            c.stat("api_requests"),
            0,
            "",
        );
        row(
            &mut out,
            "receiver CPU time (user + system), start to one idle sweep after",
            c.stat("receiver_cpu_s"),
            2,
            "s",
        );
        row(&mut out, "**lost**", c.stat("lost"), 0, "");
        row(&mut out, "**duplicated**", c.stat("duplicates"), 0, "");
        out.push('\n');
    }

    let _ = write!(
        out,
        "## 4. Latency\n\n\
         F1 as above, poll interval 1 s, Direktiv at 2 ms. After the first sweep,\n\
         events appear at random moments (Poisson arrivals) at {} per second for\n\
         {} s. Latency runs from the moment an event became visible in the\n\
         simulated API (`EventRecord.visible_at`) to its acceptance by the\n\
         simulated Direktiv (`accepted_at`). The goal's sweep time is the mean\n\
         wall time of the sweeps during the window.\n\n",
        p.latency_rate, p.latency_secs
    );
    if let Some(l) = &r.latency {
        out.push_str("| Figure | Median [min–max] |\n|---|---|\n");
        row(&mut out, "events", l.stat("events"), 0, "");
        row(&mut out, "p50", l.stat("p50_ms"), 0, "ms");
        row(&mut out, "**p99**", l.stat("p99_ms"), 0, "ms");
        row(&mut out, "max", l.stat("max_ms"), 0, "ms");
        row(&mut out, "sweep wall time", l.stat("sweep_ms"), 0, "ms");
        row(
            &mut out,
            "goal: 1 s + sweep time + 200 ms",
            l.stat("limit_ms"),
            0,
            "ms",
        );
        row(&mut out, "lost", l.stat("lost"), 0, "");
        row(&mut out, "duplicated", l.stat("duplicates"), 0, "");
        out.push('\n');
    }

    let _ = write!(
        out,
        "## 5. Scale\n\n\
         {}. The API latency is {} ms here (not 20) so that three runs fit the\n\
         time budget; the floor uses the same latency. Measured as §1, but with\n\
         a 1 s poll interval so sweeps run back to back ({} steady sweep per run\n\
         after the first; the counters read at a sweep's end may hold a few of\n\
         the next sweep's requests). The tracker holding 100,000 delivered ids\n\
         is measured by the criterion bench (below): about 9 MB in memory (~91\n\
         bytes/id, estimate), a 6.6 MB file (66 bytes/id), persisted in 49 ms\n\
         (fsync included).\n\n",
        p.scale.describe(),
        p.scale.latency.as_millis(),
        p.scale_sweeps,
    );
    if let Some(s) = &r.scale {
        steady_table(&mut out, s);
        out.push('\n');
    }

    let t = &p.adaptive;
    let _ = write!(
        out,
        "## 6. Adaptive polling on an idle fleet\n\n\
         F1 ({}), `pollInterval` {} s, `maxPollInterval` {} s, the other keys\n\
         at their defaults (`coveredPollInterval` 10 min, no `requestRate`), in\n\
         both simulated worlds: project lists that show their devices' events\n\
         (*covered*, as the real API does) and ones that do not (*uncovered*).\n\
         Both worlds run at the same time, each with its own simulators and\n\
         receiver, in the background while scenarios 1 to 5 run (an idle\n\
         receiver costs little; its bursts of list reads add some load to\n\
         theirs); one run each. After the first sweep (every list) the fleet\n\
         stays idle for {} s while the lists cool, then the simulator's requests\n\
         are counted for {} s (inventory refreshes included). The ratio's\n\
         denominator is the scheduler turned off: every list every\n\
         `pollInterval`, plus the inventory refresh amortized. Then events arrive\n\
         on random devices (Poisson, {} per second across the fleet, for {} s);\n\
         latency runs from an event's appearance in the simulated API to its\n\
         acceptance by the simulated Direktiv (2 ms). The goal's sweep time is\n\
         the mean wall time of the sweeps (passes over the due lists) while\n\
         events arrived.\n\n",
        p.f1.describe(),
        crate::adaptive::POLL_INTERVAL.as_secs(),
        crate::adaptive::MAX_POLL_INTERVAL.as_secs(),
        t.cool.as_secs(),
        t.window.as_secs(),
        t.rate,
        t.arrivals.as_secs(),
    );
    if let (Some(c), Some(u)) = (&r.adaptive_covered, &r.adaptive_uncovered) {
        out.push_str("| Figure | Covered | Uncovered |\n|---|---|---|\n");
        let both = |out: &mut String, label: &str, field: &str, decimals: usize, unit: &str| {
            let _ = writeln!(
                out,
                "| {label} | {} {unit} | {} {unit} |",
                c.stat(field).show(decimals),
                u.stat(field).show(decimals)
            );
        };
        both(&mut out, "lists (first sweep)", "lists", 0, "");
        both(
            &mut out,
            "API requests in the counted window",
            "window_requests",
            0,
            "",
        );
        both(&mut out, "counted window", "window_s", 0, "s");
        both(
            &mut out,
            "of which device lists",
            "window_device_list_requests",
            0,
            "",
        );
        both(
            &mut out,
            "of which project lists",
            "window_project_list_requests",
            0,
            "",
        );
        both(
            &mut out,
            "API requests per minute",
            "requests_per_min",
            1,
            "",
        );
        both(
            &mut out,
            "every list every interval, per minute",
            "every_list_per_min",
            0,
            "",
        );
        both(&mut out, "**ratio**", "ratio", 3, "");
        both(
            &mut out,
            "sweeps in the counted window",
            "window_sweeps",
            0,
            "",
        );
        both(&mut out, "events arrived", "events", 0, "");
        both(&mut out, "p50 latency", "p50_ms", 0, "ms");
        both(&mut out, "**p99 latency**", "p99_ms", 0, "ms");
        both(&mut out, "**slowest event**", "max_ms", 0, "ms");
        both(
            &mut out,
            "sweep wall time while events arrived",
            "sweep_ms",
            0,
            "ms",
        );
        both(
            &mut out,
            "limit (covered: p99; uncovered: every event)",
            "limit_ms",
            0,
            "ms",
        );
        both(&mut out, "**lost**", "lost", 0, "");
        both(&mut out, "duplicated", "duplicates", 0, "");
        out.push('\n');
    }

    out.push_str(
        "## 7. Mapping throughput\n\n\
         From the criterion bench `cargo bench -p metal-cloudevents --bench map`\n\
         (below): mapping one Metal event to a CloudEvent takes 1.39 µs, about\n\
         718,000 events/s per core; with the JSON serialization sent to Direktiv,\n\
         6.46 µs, about 155,000 events/s per core, far above what Direktiv accepts\n\
         (§3's floor).\n\n",
    );

    out.push_str(&issue22_section(existing));
    out.push_str("## Component benchmarks (criterion)\n\n");
    out.push_str(CRITERION_START);
    out.push('\n');
    out.push_str(&criterion_section(existing));
    out.push_str(CRITERION_END);
    out.push_str("\n\n");

    out.push_str(&findings_section(existing));
    out
}

const ISSUE22_START: &str = "<!-- issue22:start -->";
const ISSUE22_END: &str = "<!-- issue22:end -->";

/// The figures of issue 22 (`--scenario busy`, `--scenario cadence`, not
/// part of a full run), written by hand and carried over; nothing when absent.
fn issue22_section(existing: &str) -> String {
    existing
        .split_once(ISSUE22_START)
        .and_then(|(_, rest)| rest.split_once(ISSUE22_END))
        .map(|(inside, _)| format!("{ISSUE22_START}\n{}\n{ISSUE22_END}\n\n", inside.trim()))
        .unwrap_or_default()
}

const FINDINGS_START: &str = "<!-- findings:start -->";
const FINDINGS_END: &str = "<!-- findings:end -->";

/// The hand-written analysis of missed goals, carried over between runs.
fn findings_section(existing: &str) -> String {
    let inside = existing
        .split_once(FINDINGS_START)
        .and_then(|(_, rest)| rest.split_once(FINDINGS_END))
        .map_or_else(
            || {
                "(Analysis of the missed goals: written by hand after a run, kept by later runs.)\n"
                    .to_owned()
            },
            |(inside, _)| inside.trim().to_owned() + "\n",
        );
    format!("## Findings\n\n{FINDINGS_START}\n{inside}{FINDINGS_END}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_criterion_section_of_the_existing_file() {
        let existing = format!("# old\n{CRITERION_START}\nmy figures\n{CRITERION_END}\n");
        assert_eq!(criterion_section(&existing), "my figures\n");
        assert!(criterion_section("no markers").contains("1.39 µs/event"));
    }

    #[test]
    fn keeps_the_issue22_section() {
        let existing = format!("x\n{ISSUE22_START}\n## Issue 22\n{ISSUE22_END}\ny");
        let kept = issue22_section(&existing);
        assert!(kept.starts_with(ISSUE22_START) && kept.contains("\n## Issue 22\n"));
        assert_eq!(issue22_section("no markers"), "");
    }

    #[test]
    fn keeps_the_findings() {
        let existing = format!("{FINDINGS_START}\nwhy\n{FINDINGS_END}");
        assert!(findings_section(&existing).contains("\nwhy\n"));
    }
}
