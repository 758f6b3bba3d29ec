//! The built-in local demo (`--demo`): a simulated Equinix Metal API and a
//! simulated Direktiv on loopback, the real pipeline between them over HTTP,
//! and a display a person can follow.
//!
//! Nothing here changes how the receiver works: the demo builds
//! [`Settings`] in code (no YAML, no credentials), runs [`app::run_with`] with
//! an engine [`Observer`] that prints one line per delivered CloudEvent and a
//! status line every few seconds, and at the end checks
//! the simulators against each other: every event the Metal side generated
//! after the baseline must have reached Direktiv exactly once, or be provably
//! still pending.
//!
//! The display goes to stdout, the receiver's warnings included as short
//! lines ([`warnings`]); nothing goes to stderr unless `RUST_LOG` asks for the
//! log there.
//!
//! Compiled with the cargo feature `demo` only (on by default): the production
//! build (`--no-default-features`, the image) has neither this module nor
//! `metal-sim`, and answers `--demo` with a usage error ([`crate::cli`]).

mod warnings;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use chrono::{DateTime, Local, SubsecRound as _, Utc};
use cloudevents::AttributesReader as _;
use direktiv_broadcast::AuthHeader;
use event_dedupe::Baseline;
use metal_sim::{
    DirektivFaults, DirektivSim, DirektivSimConfig, DirektivSimHandle, EventScope, MetalFaults,
    MetalSim, MetalSimConfig, MetalSimHandle,
};
use receiver_engine::Observer;
use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::app::{self, Extras, RunOptions};
use crate::cli::{DemoOptions, EXIT_FAILURE};
use crate::metrics::Metrics;
use crate::settings::{
    DirektivSettings, EquinixSettings, Levels, LogFormat, LogSettings, ServerSettings, Settings,
    StateSettings,
};
use crate::sweep::SweepReport;

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
        ..Extras::default()
    };
    let result = app::run_with(settings, RunOptions::default(), extras).await;
    display.end_warnings();

    // Stop the world before counting it.
    stop.cancel();
    if let Some(outage) = outage {
        let _ = outage.await;
    }
    metal.set_events_per_second(0.0);
    let summary = Summary::compute(&metal, &direktiv, baseline, display.last_clean_sweep());
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

/// The receiver's settings for the two simulators: what a config file would
/// say, with a short poll interval and a state file in a temporary directory.
fn settings(
    metal: &MetalSimHandle,
    direktiv: &DirektivSimHandle,
    baseline: DateTime<Utc>,
    state_dir: &Path,
) -> anyhow::Result<Settings> {
    let api_url = Url::parse(&metal.base_url()).context("the simulated Metal API's URL")?;
    let endpoint = Url::parse(&direktiv.endpoint_url()).context("the simulated Direktiv's URL")?;
    Ok(Settings {
        equinix: EquinixSettings {
            organization_id: metal.org_id(),
            token: SecretString::from(metal.token().to_owned()),
            api_url,
            poll_interval: POLL_INTERVAL,
            // The defaults' proportions (10 s, 60 s, 10 min) at the demo's pace.
            max_poll_interval: POLL_INTERVAL * 6,
            covered_poll_interval: POLL_INTERVAL * 60,
            request_rate: None,
            per_page: 100,
            max_pages: 10,
            concurrency: 8,
            levels: Levels {
                project: true,
                device: true,
                organization: true,
            },
            start_from: Baseline::At(baseline),
            inventory_refresh: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            sweep_timeout: Duration::from_secs(60),
            max_response_size: metal_events::DEFAULT_MAX_RESPONSE_SIZE,
            event_types: crate::event_types::EventTypes::default(),
        },
        direktiv: DirektivSettings {
            endpoint,
            token: direktiv
                .token()
                .map(|token| SecretString::from(token.to_owned())),
            auth_headers: vec![AuthHeader::DirektivToken],
            insecure_skip_verify: false,
            ca_file: None,
            timeout: Duration::from_secs(5),
            concurrency: 8,
            // Few retries within a sweep, so an outage shows as pending
            // events sweep after sweep rather than as one long sweep.
            max_retries: 2,
            event_on_error: false,
            error_event_interval: Duration::from_secs(300),
            map_options: metal_cloudevents::MapOptions::default(),
        },
        state: StateSettings {
            path: Some(state_dir.join("state.json")),
            overlap: Duration::from_secs(600),
            dead_letter_path: None,
            dead_letter_max: crate::dead_letter::DEFAULT_MAX,
            reset_corrupt: false,
        },
        log: LogSettings {
            format: LogFormat::Text,
            level: "warn".to_owned(),
        },
        server: ServerSettings {
            enabled: false,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        },
        shutdown_grace: Duration::from_secs(5),
    })
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

    fn summary(&self, summary: &Summary, metal: &MetalSimHandle, direktiv: &DirektivSimHandle) {
        let metal_stats = metal.stats();
        let direktiv_stats = direktiv.stats();
        let faults: u64 = metal_stats.faults.values().sum();
        let outage_answers: u64 = direktiv_stats.faults.values().sum();
        let mut lines = vec![
            String::new(),
            format!(
                "Summary after {:.0} s:",
                self.started.elapsed().as_secs_f64()
            ),
            format!(
                "  events the simulated Metal API holds since the baseline: {} ({} from the \
                 recent history, {} generated while the demo ran)",
                summary.expected, summary.recent, summary.generated
            ),
            format!(
                "  {:<56}{}",
                "accepted by the simulated Direktiv:", summary.accepted
            ),
        ];
        if summary.pending > 0 {
            lines.push(format!(
                "  {:<56}{} (they appeared after the start of the last sweep that delivered \
                 everything it found; the Metal API still lists them, so the next successful \
                 sweep sends them)",
                "still pending:", summary.pending
            ));
        } else {
            lines.push(format!("  {:<56}0", "still pending:"));
        }
        lines.push(format!(
            "  duplicates: {} (each id reached Direktiv once; {} resends were recognised as \
             already delivered)",
            summary.duplicates, direktiv_stats.duplicates_rejected
        ));
        if summary.unexpected > 0 {
            lines.push(format!(
                "  UNEXPECTED: {} accepted events were not expected (before the baseline or \
                 of another organization)",
                summary.unexpected
            ));
        }
        lines.push(format!("  lost: {}", summary.lost.len()));
        for id in summary.lost.iter().take(10) {
            lines.push(format!("    LOST {id}"));
        }
        lines.push(format!(
            "  Metal API: {} requests, {} faults injected; Direktiv: {} requests, {} refused \
             while down or faulty",
            metal_stats.requests_total, faults, direktiv_stats.requests_total, outage_answers
        ));
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

/// The events the receiver must deliver: those of the configured
/// organization created at or after the baseline (the demo polls every level).
fn expected_events(metal: &MetalSimHandle, baseline: DateTime<Utc>) -> Vec<metal_sim::EventRecord> {
    let org = metal.org_id();
    metal
        .events()
        .into_iter()
        .filter(|e| e.organization_id == org && e.created_at >= baseline)
        .filter(|e| {
            matches!(
                e.scope,
                EventScope::Device | EventScope::Project | EventScope::Organization
            )
        })
        .collect()
}

/// The closing check, from the simulators alone.
#[derive(Debug, Default)]
struct Summary {
    /// Events the receiver had to deliver.
    expected: usize,
    /// ... of which from the history.
    recent: usize,
    /// ... of which generated while the demo ran.
    generated: usize,
    /// Expected events Direktiv accepted.
    accepted: usize,
    /// Ids Direktiv accepted more than once.
    duplicates: usize,
    /// Accepted events that were not expected.
    unexpected: usize,
    /// Expected events not accepted, that appeared after the last clean sweep began.
    pending: usize,
    /// Expected events not accepted although a clean sweep began after they appeared.
    lost: Vec<String>,
}

impl Summary {
    fn compute(
        metal: &MetalSimHandle,
        direktiv: &DirektivSimHandle,
        baseline: DateTime<Utc>,
        last_clean_sweep: Option<SystemTime>,
    ) -> Self {
        let expected = expected_events(metal, baseline);
        let generated: HashSet<String> = metal.new_events().into_iter().map(|e| e.id).collect();
        let mut accepted: HashMap<String, usize> = HashMap::new();
        for id in direktiv.accepted_ids() {
            *accepted.entry(id).or_default() += 1;
        }
        let mut summary = Self {
            expected: expected.len(),
            generated: expected
                .iter()
                .filter(|e| generated.contains(&e.id))
                .count(),
            duplicates: accepted.values().filter(|n| **n > 1).count(),
            ..Self::default()
        };
        summary.recent = summary.expected - summary.generated;
        let expected_ids: HashSet<&str> = expected.iter().map(|e| e.id.as_str()).collect();
        summary.unexpected = accepted
            .keys()
            .filter(|id| !expected_ids.contains(id.as_str()))
            .count();
        for event in &expected {
            if accepted.contains_key(&event.id) {
                summary.accepted += 1;
            } else if last_clean_sweep.is_some_and(|clean| event.visible_at < clean) {
                summary.lost.push(event.id.clone());
            } else {
                summary.pending += 1;
            }
        }
        summary
    }

    /// Nothing lost, nothing twice, nothing unexpected.
    fn is_sound(&self) -> bool {
        self.lost.is_empty() && self.duplicates == 0 && self.unexpected == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_summary_calls_an_event_lost_only_when_a_clean_sweep_should_have_sent_it() {
        let metal = MetalSim::start(MetalSimConfig::default()).await.unwrap();
        let direktiv = DirektivSim::start(DirektivSimConfig::default())
            .await
            .unwrap();
        let baseline = (Utc::now() - START_BACK).trunc_subsecs(0);
        let recent = expected_events(&metal, baseline).len();
        metal.emit_events(3);
        let old_only = Summary::compute(&metal, &direktiv, Utc::now() + START_BACK, None);
        assert_eq!(
            (old_only.expected, old_only.pending),
            (0, 0),
            "{old_only:?}"
        );

        // No clean sweep yet: nothing Direktiv lacks can be called lost.
        let early = Summary::compute(&metal, &direktiv, baseline, None);
        assert_eq!(
            (early.expected, early.generated, early.recent),
            (recent + 3, 3, recent)
        );
        assert_eq!((early.accepted, early.pending), (0, recent + 3));
        assert!(early.lost.is_empty() && early.is_sound(), "{early:?}");

        // A clean sweep began after every event appeared: each one is lost.
        let clean = SystemTime::now() + Duration::from_secs(1);
        let late = Summary::compute(&metal, &direktiv, baseline, Some(clean));
        assert_eq!((late.pending, late.lost.len()), (0, recent + 3));
        assert!(!late.is_sound());
        metal.shutdown().await;
        direktiv.shutdown().await;
    }

    #[test]
    fn short_cuts_long_problems_to_one_line() {
        assert_eq!(short("503 Service Unavailable"), "503 Service Unavailable");
        assert_eq!(short("first\nsecond"), "first");
        let long = "x".repeat(200);
        assert_eq!(short(&long).chars().count(), 93);
    }
}
