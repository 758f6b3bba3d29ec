//! The built-in local demo (`--demo`): a simulated Equinix Metal API and a
//! simulated Direktiv on loopback, the real pipeline between them over HTTP,
//! and a display a person can follow.
//!
//! Nothing here changes how the receiver works: the demo writes the
//! simulators' config in code (no file, no credentials), loads it into
//! [`Settings`] like any config, runs [`app::run_with`] with an engine
//! [`Observer`] that prints one line per delivered CloudEvent and a status
//! line every few seconds, and at the end checks the simulators against each
//! other ([`metal_sim::Audit`]): every event the Metal side generated after
//! the baseline must have reached Direktiv exactly once, or be provably still
//! pending.
//!
//! The display goes to stdout, the receiver's warnings included as short
//! lines ([`warnings`]); nothing goes to stderr unless `RUST_LOG` asks for the
//! log there.
//!
//! Compiled with the cargo feature `demo` only (on by default): the production
//! build (`--no-default-features`, the image) has neither this module nor
//! `metal-sim`, and answers `--demo` with a usage error ([`crate::cli`]).

mod warnings;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use chrono::{DateTime, Local, SubsecRound as _, Utc};
use cloudevents::AttributesReader as _;
use metal_sim::{
    Audit, DirektivFaults, DirektivSim, DirektivSimConfig, DirektivSimHandle, MetalFaults,
    MetalSim, MetalSimConfig, MetalSimHandle, expected_events,
};
use receiver_engine::{Metrics, Observer, SweepReport};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Extras, RunOptions};
use crate::cli::{DemoOptions, EXIT_FAILURE};
use crate::config;
use crate::settings::{LogFormat, LogSettings, Settings};

/// The simulated fleet.
const PROJECTS: usize = 3;
const DEVICES_PER_PROJECT: usize = 4;
/// How far back the simulated history reaches, and how far back the receiver
/// starts: the events of the last few minutes go out at once.
const HISTORY_SPAN: Duration = Duration::from_secs(3600);
const START_BACK: Duration = Duration::from_secs(10 * 60);
/// How often the receiver polls.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// A status line at least this often (and after every troubled sweep).
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How long after the first deliveries the outage starts.
const OUTAGE_DELAY: Duration = Duration::from_secs(1);
/// A sweep's start is taken this much earlier than measured, so that an event
/// that appeared while the sweep was starting is never counted as one it
/// must have seen.
const SWEEP_START_MARGIN: Duration = Duration::from_millis(250);

/// Runs the demo until Ctrl-C (or `--demo-events`), then prints the summary.
pub(crate) async fn run(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let display = Arc::new(Display::new());
    let rust_log = std::env::var("RUST_LOG").ok();
    crate::logging::init_with(
        // No log on stderr unless `RUST_LOG` asks: the display shows warnings.
        &LogSettings {
            format: LogFormat::Text,
            level: "off".to_owned(),
        },
        rust_log.as_deref(),
        // The simulators' tokens are no secrets.
        Arc::default(),
        Some(warnings::layer(Arc::clone(&display))),
    )?;
    let result = run_with_display(options, Arc::clone(&display)).await;
    // Whatever ended the demo, no warning waits for a status line any more.
    display.end_warnings();
    result
}

/// The demo itself, showing what happens on `display`.
async fn run_with_display(options: DemoOptions, display: Arc<Display>) -> anyhow::Result<ExitCode> {
    let state_dir = tempfile::Builder::new()
        .prefix("equinix-receiver-demo-")
        .tempdir()
        .context("creating a temporary directory for the demo's state")?;
    let metal = Arc::new(
        MetalSim::start(MetalSimConfig {
            projects: PROJECTS,
            devices_per_project: DEVICES_PER_PROJECT,
            history_span: HISTORY_SPAN,
            events_per_second: options.rate,
            faults: metal_faults(options.api_faults),
            ..MetalSimConfig::default()
        })
        .await
        .context("starting the simulated Metal API on 127.0.0.1")?,
    );
    let direktiv = Arc::new(
        DirektivSim::start(DirektivSimConfig {
            faults: DirektivFaults {
                latency: Duration::from_millis(5),
                jitter: Duration::from_millis(10),
                ..DirektivFaults::default()
            },
            ..DirektivSimConfig::default()
        })
        .await
        .context("starting the simulated Direktiv on 127.0.0.1")?,
    );

    let baseline = (Utc::now() - START_BACK).trunc_subsecs(0);
    let settings = settings(&metal, &direktiv, baseline, state_dir.path())?;
    display.header(&metal, &direktiv, &options, baseline, state_dir.path());

    let stop = CancellationToken::new();
    let first_deliveries = Arc::new(Notify::new());
    let metrics = Arc::new(Metrics::new(settings.equinix.sweep_timeout));
    let observer = Arc::new(DemoObserver {
        display: Arc::clone(&display),
        limit: options.events,
        stop: stop.clone(),
        metal: Arc::clone(&metal),
        metrics: Arc::clone(&metrics),
        first_deliveries: Arc::clone(&first_deliveries),
    });
    let outage = options.outage.map(|length| {
        tokio::spawn(outage(
            Arc::clone(&direktiv),
            Arc::clone(&display),
            length,
            Arc::clone(&first_deliveries),
            stop.clone(),
        ))
    });

    let extras = Extras {
        observer: Some(observer),
        metrics: Some(metrics),
        stop: Some(stop.clone()),
        // A temporary directory: throwaway on purpose.
        scratch_state: true,
    };
    let result = app::run_with(settings, RunOptions::default(), extras).await;
    display.end_warnings();

    // Stop the world before counting it.
    stop.cancel();
    if let Some(outage) = outage {
        let _ = outage.await;
    }
    metal.set_events_per_second(0.0);
    let summary = Audit::compute(&metal, &direktiv, baseline, display.last_clean_sweep());
    metal.shutdown().await;
    direktiv.shutdown().await;
    let code = result?;

    display.summary(&summary, &metal, &direktiv);
    if summary.is_sound() {
        Ok(code)
    } else {
        Ok(ExitCode::from(EXIT_FAILURE))
    }
}

/// `--demo-api-faults`: a busy API. Always a little latency.
fn metal_faults(api_faults: bool) -> MetalFaults {
    let mut faults = MetalFaults {
        latency: Duration::from_millis(15),
        jitter: Duration::from_millis(25),
        ..MetalFaults::default()
    };
    if api_faults {
        faults.rate_limited = 0.05;
        faults.retry_after = Duration::from_secs(1);
        faults.server_error = 0.05;
        faults.server_error_status = 503;
    }
    faults
}

/// The receiver's settings for the two simulators: a config file the loader
/// checks like any other (so every other key has its documented default),
/// with a short poll interval and a state file in a temporary directory.
fn settings(
    metal: &MetalSimHandle,
    direktiv: &DirektivSimHandle,
    baseline: DateTime<Utc>,
    state_dir: &Path,
) -> anyhow::Result<Settings> {
    let direktiv_token = direktiv
        .token()
        .map_or_else(String::new, |token| format!("token: \"{token}\""));
    // Few retries within a sweep, so an outage shows as pending events sweep
    // after sweep rather than as one long sweep.
    let yaml = format!(
        "equinix:
  organizationId: \"{org}\"
  packetAuthToken: \"{metal_token}\"
  apiUrl: \"{api_url}\"
  pollInterval: {poll}s
  # The defaults' proportions (10 s, 60 s, 10 min) at the demo's pace.
  maxPollInterval: {max_poll}s
  coveredPollInterval: {covered_poll}s
  levels: [project, device, organization]
  startFrom: \"{start}\"
  inventoryRefresh: 1m
  timeout: 5s
  sweepTimeout: 1m
direktiv:
  endpoint: \"{endpoint}\"
  {direktiv_token}
  authHeader: Direktiv-Token
  timeout: 5s
  maxRetries: 2
state:
  path: \"{state}\"
server:
  enabled: false
log:
  level: warn
shutdownGrace: 5s
",
        org = metal.org_id(),
        metal_token = metal.token(),
        api_url = metal.base_url(),
        poll = POLL_INTERVAL.as_secs(),
        max_poll = POLL_INTERVAL.as_secs() * 6,
        covered_poll = POLL_INTERVAL.as_secs() * 60,
        start = baseline.to_rfc3339(),
        endpoint = direktiv.endpoint_url(),
        state = state_dir.join("state.json").display(),
    );
    // No environment: a `METAL_AUTH_TOKEN` of the shell must not apply here.
    match config::load_bytes(yaml.as_bytes(), &|_| None, config::Overrides::default()) {
        Ok(loaded) => Ok(loaded.settings),
        Err(problems) => Err(anyhow::anyhow!(
            "the demo's settings: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// Takes Direktiv down for `length`, a moment after the first deliveries.
async fn outage(
    direktiv: Arc<DirektivSimHandle>,
    display: Arc<Display>,
    length: Duration,
    first_deliveries: Arc<Notify>,
    stop: CancellationToken,
) {
    tokio::select! {
        () = first_deliveries.notified() => {}
        () = stop.cancelled() => return,
    }
    tokio::select! {
        () = tokio::time::sleep(OUTAGE_DELAY) => {}
        () = stop.cancelled() => return,
    }
    direktiv.set_down(true);
    display.banner(&format!(
        "Direktiv is DOWN for {} s: every delivery gets 503. The events wait in the Metal \
         API; the receiver retries and does not move past them.",
        length.as_secs()
    ));
    tokio::select! {
        () = tokio::time::sleep(length) => {}
        () = stop.cancelled() => {}
    }
    direktiv.set_down(false);
    if !stop.is_cancelled() {
        display.banner(
            "Direktiv is back: the pending events go out on the next sweep, oldest first \
             per device.",
        );
    }
}

/// Prints each delivered CloudEvent and a line per sweep; stops the run
/// after `--demo-events`.
struct DemoObserver {
    display: Arc<Display>,
    limit: Option<u64>,
    stop: CancellationToken,
    metal: Arc<MetalSimHandle>,
    metrics: Arc<Metrics>,
    first_deliveries: Arc<Notify>,
}

impl Observer for DemoObserver {
    fn sweep_ended(&self, report: &SweepReport) {
        self.display.sweep(
            report,
            &self.metrics,
            &self.metal,
            &self.stop,
            &self.first_deliveries,
        );
    }

    fn event_delivered(&self, event: &cloudevents::Event, already: bool) {
        let count = self.display.event(event, already);
        if self.limit.is_some_and(|limit| count >= limit) && !self.stop.is_cancelled() {
            self.stop.cancel();
        }
    }
}

/// What the display remembers between sweeps.
#[derive(Default)]
struct DisplayState {
    sweeps: u64,
    last_status: Option<Instant>,
    last_troubled: bool,
    /// When the newest sweep that read every list and delivered everything it
    /// found started: every event visible before then must be in Direktiv.
    last_clean_sweep: Option<SystemTime>,
    told_first_deliveries: bool,
}

/// The demo's output on stdout, one line at a time.
struct Display {
    started: Instant,
    delivered: AtomicU64,
    state: Mutex<DisplayState>,
    /// The receiver's warnings since the last status line.
    warnings: warnings::Warnings,
}

/// Column widths of the event lines.
const TYPE_WIDTH: usize = 20;
const DEVICE_WIDTH: usize = 17;
const PROJECT_WIDTH: usize = 18;

impl Display {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            delivered: AtomicU64::new(0),
            state: Mutex::new(DisplayState::default()),
            warnings: warnings::Warnings::default(),
        }
    }

    /// Writes lines to stdout; a closed stdout is not the demo's problem.
    fn print(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DisplayState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn last_clean_sweep(&self) -> Option<SystemTime> {
        self.state().last_clean_sweep
    }

    fn header(
        &self,
        metal: &MetalSimHandle,
        direktiv: &DirektivSimHandle,
        options: &DemoOptions,
        baseline: DateTime<Utc>,
        state_dir: &Path,
    ) {
        let recent = expected_events(metal, baseline).len();
        let mut lines = vec![
            "equinix-receiver demo: the real receiver between a simulated Equinix Metal API and \
             a simulated Direktiv,"
                .to_owned(),
            "both on this machine. No account, no credentials, no config file.".to_owned(),
            String::new(),
            format!("  Metal API  {}", metal.base_url()),
            format!(
                "             organization \"{}\": {PROJECTS} projects x {DEVICES_PER_PROJECT} \
                 devices, {} new events/s, 15-40 ms latency{}",
                metal.org_name(),
                options.rate,
                if options.api_faults {
                    ", 5% 429 (Retry-After: 1) and 5% 503"
                } else {
                    ""
                }
            ),
            format!("  Direktiv   {}", direktiv.endpoint_url()),
            format!(
                "  receiver   polls every {} s (device, project and organization event lists); \
                 starts from {} ({} min ago),",
                POLL_INTERVAL.as_secs(),
                baseline.with_timezone(&Local).format("%H:%M:%S"),
                START_BACK.as_secs() / 60
            ),
            format!(
                "             so the {recent} events since then go out first; state in {}",
                state_dir.display()
            ),
        ];
        if let Some(outage) = options.outage {
            lines.push(format!(
                "  outage     Direktiv goes down for {} s shortly after the first deliveries",
                outage.as_secs()
            ));
        }
        lines.extend([
            String::new(),
            format!(
                "Each line is one CloudEvent the simulated Direktiv accepted; a status line \
                 follows every {} s or so. {}",
                STATUS_EVERY.as_secs(),
                match options.events {
                    Some(n) => format!("The demo stops after {n} events (or Ctrl-C)."),
                    None => "Ctrl-C stops the demo.".to_owned(),
                }
            ),
            "Lines with !!! are the receiver's warnings, one per kind between status lines; \
             RUST_LOG=warn puts its full log on stderr."
                .to_owned(),
            String::new(),
            format!(
                "{:<8}  {:<TYPE_WIDTH$}  {:<DEVICE_WIDTH$}  {:<PROJECT_WIDTH$}  SOURCE",
                "TIME", "TYPE", "DEVICE", "PROJECT"
            ),
        ]);
        self.print(&lines.join("\n"));
    }

    /// One line per delivered event; returns how many were delivered so far.
    fn event(&self, event: &cloudevents::Event, already: bool) -> u64 {
        let count = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        let time = event.time().map_or_else(
            || "--:--:--".to_owned(),
            |t| t.with_timezone(&Local).format("%H:%M:%S").to_string(),
        );
        let extension = |name: &str| event.extension(name).map(ToString::to_string);
        let device = extension("hostname").unwrap_or_else(|| "-".to_owned());
        let project = extension("projname").unwrap_or_else(|| "(organization)".to_owned());
        let note = if already {
            "  (Direktiv already had it)"
        } else {
            ""
        };
        self.print(&format!(
            "{time:<8}  {:<TYPE_WIDTH$}  {device:<DEVICE_WIDTH$}  {project:<PROJECT_WIDTH$}  {}{note}",
            event.ty(),
            event.source(),
        ));
        count
    }

    fn banner(&self, text: &str) {
        self.print(&format!("{} >>> {text}", Local::now().format("%H:%M:%S")));
    }

    /// After each sweep: remember whether it was clean, and print a status
    /// line every few seconds, and after every sweep while something is wrong.
    fn sweep(
        &self,
        report: &SweepReport,
        metrics: &Metrics,
        metal: &MetalSimHandle,
        stop: &CancellationToken,
        first_deliveries: &Notify,
    ) {
        let sweep_started = SystemTime::now()
            .checked_sub(report.duration + SWEEP_START_MARGIN)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let troubled = report.deferred > 0 || report.list_errors > 0 || report.rejected > 0;
        let line = {
            let mut state = self.state();
            state.sweeps += 1;
            // A sweep cut short by the stop may have skipped lists quietly.
            if !stop.is_cancelled() && report.lists > 0 && report.all_delivered() {
                state.last_clean_sweep = Some(sweep_started);
            }
            if report.delivered > 0 && !state.told_first_deliveries {
                state.told_first_deliveries = true;
                first_deliveries.notify_one();
            }
            let due = state
                .last_status
                .is_none_or(|at| at.elapsed() >= STATUS_EVERY);
            let print = troubled || state.last_troubled || due;
            state.last_troubled = troubled;
            if print {
                state.last_status = Some(Instant::now());
                Some(self.status_line(state.sweeps, report, metrics, metal))
            } else {
                None
            }
        };
        if let Some(line) = line {
            let mut lines = self.warnings.take();
            lines.push(line);
            self.print(&lines.join("\n"));
        }
    }

    /// Prints the warnings still waiting for a status line; later ones are
    /// printed at once.
    fn end_warnings(&self) {
        let lines = self.warnings.close();
        if !lines.is_empty() {
            self.print(&lines.join("\n"));
        }
    }

    fn status_line(
        &self,
        sweeps: u64,
        report: &SweepReport,
        metrics: &Metrics,
        metal: &MetalSimHandle,
    ) -> String {
        let mut line = format!(
            "{} --- status: sweep {sweeps}, {} lists polled ({} devices), {} API requests, \
             {} delivered, {} pending, lag {:.1} s",
            Local::now().format("%H:%M:%S"),
            report.lists,
            metrics.inventory_devices.get(),
            metal.stats().requests_total,
            metrics.events_delivered.get() + metrics.events_already_delivered.get(),
            metrics.pending_events.get(),
            metrics.delivery_lag.get(),
        );
        if report.list_errors > 0 {
            line.push_str(&format!(
                "; {} lists failed ({})",
                report.list_errors,
                short(
                    report
                        .first_list_error
                        .as_ref()
                        .map_or("?", |problem| problem.message.as_str())
                )
            ));
        }
        if let Some(problem) = &report.first_delivery_problem {
            line.push_str(&format!("; waiting: {}", short(&problem.message)));
        }
        line
    }

    fn summary(&self, summary: &Audit, metal: &MetalSimHandle, direktiv: &DirektivSimHandle) {
        let mut lines = vec![
            String::new(),
            format!(
                "Summary after {:.0} s:",
                self.started.elapsed().as_secs_f64()
            ),
        ];
        lines.extend(summary.lines(metal, direktiv));
        if summary.is_sound() {
            lines.push(
                "Nothing was lost and nothing was sent twice. Try --demo-outage 10 or \
                 --demo-api-faults for bad weather."
                    .to_owned(),
            );
        } else {
            lines.push(
                "PROBLEM: the receiver lost or duplicated events (see above); please report it."
                    .to_owned(),
            );
        }
        self.print(&lines.join("\n"));
    }
}

/// Cuts a problem description to a readable length.
fn short(text: &str) -> String {
    const MAX: usize = 90;
    let text = text.lines().next().unwrap_or("");
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cuts_long_problems_to_one_line() {
        assert_eq!(short("503 Service Unavailable"), "503 Service Unavailable");
        assert_eq!(short("first\nsecond"), "first");
        let long = "x".repeat(200);
        assert_eq!(short(&long).chars().count(), 93);
    }
}
