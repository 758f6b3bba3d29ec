//! `metal-sim`: runs the simulated Equinix Metal API and Direktiv broadcast
//! endpoint on loopback ports until Ctrl-C, and prints what a receiver needs
//! to reach them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use metal_sim::{
    DirektivFaults, DirektivSim, DirektivSimConfig, Generation, MetalFaults, MetalSim,
    MetalSimConfig, RateLimit,
};
use tracing_subscriber::EnvFilter;

/// Runs a simulated Equinix Metal API and a simulated Direktiv broadcast
/// endpoint, for trying the receiver without accounts. Admin endpoints on
/// both: GET /_sim/stats, GET|PUT /_sim/faults; Metal also POST
/// /_sim/emit?count=N, GET /_sim/events, POST /_sim/rate?events_per_second=R;
/// Direktiv also PUT /_sim/down, GET /_sim/accepted.
#[derive(Debug, Parser)]
#[command(name = "metal-sim", version)]
struct Cli {
    /// Address both simulators listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of the Metal API (0 picks a free port).
    #[arg(long, default_value_t = 8480)]
    metal_port: u16,
    /// Port of the Direktiv endpoint (0 picks a free port).
    #[arg(long, default_value_t = 8481)]
    direktiv_port: u16,
    /// Seed of every random choice: the same seed gives the same fleet.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The Metal token (`X-Auth-Token`) the simulator accepts.
    #[arg(long, default_value = "metal-sim-token")]
    token: String,
    /// The organization id; drawn from the seed when not given.
    #[arg(long)]
    org_id: Option<String>,
    /// The organization name.
    #[arg(long, default_value = "Direktiv")]
    org_name: String,
    /// The Metal API's base path.
    #[arg(long, default_value = "/metal/v1")]
    base_path: String,
    /// Projects in the organization.
    #[arg(long, default_value_t = 3)]
    projects: usize,
    /// Devices per project.
    #[arg(long, default_value_t = 4)]
    devices_per_project: usize,
    /// Historical events per device at start.
    #[arg(long, default_value_t = 12)]
    history: usize,
    /// New events per second across the fleet (0: none).
    #[arg(long, default_value_t = 1.0)]
    events_per_second: f64,
    /// Project event lists leave their devices' events out.
    #[arg(long)]
    project_lists_without_devices: bool,
    /// Requests allowed per rate-limit window.
    #[arg(long, default_value_t = 1_000_000)]
    rate_limit: u64,
    /// Length of the rate-limit window, in seconds.
    #[arg(long, default_value_t = 3600)]
    rate_limit_window_secs: u64,
    /// Metal response latency, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra random Metal latency up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Share (0 to 1) of Metal requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    rate_limited_share: f64,
    /// Share of Metal requests answered with a 5xx (503).
    #[arg(long, default_value_t = 0.0)]
    server_error_share: f64,
    /// Share of Metal requests answered after --slow-delay-ms.
    #[arg(long, default_value_t = 0.0)]
    slow_share: f64,
    /// How long a slow Metal response takes, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    slow_delay_ms: u64,
    /// Share of Metal list pages cut short (truncated JSON).
    #[arg(long, default_value_t = 0.0)]
    truncated_share: f64,
    /// Share of Metal list pages made invalid JSON.
    #[arg(long, default_value_t = 0.0)]
    invalid_json_share: f64,
    /// Share of Metal list pages whose meta.next repeats the page.
    #[arg(long, default_value_t = 0.0)]
    repeat_next_share: f64,
    /// Which Direktiv generation to simulate.
    #[arg(long, value_enum, default_value_t = Gen::V2)]
    direktiv_generation: Gen,
    /// The Direktiv namespace in the printed endpoint URL.
    #[arg(long, default_value = "metal")]
    namespace: String,
    /// The header carrying the Direktiv token.
    #[arg(long, default_value = "Direktiv-Token")]
    direktiv_auth_header: String,
    /// The Direktiv token accepted; empty accepts every request.
    #[arg(long, default_value = "direktiv-sim-token")]
    direktiv_token: String,
    /// Append every accepted CloudEvent to this JSON-lines file.
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Direktiv response latency, in milliseconds.
    #[arg(long, default_value_t = 0)]
    direktiv_latency_ms: u64,
    /// Share of Direktiv requests answered 503.
    #[arg(long, default_value_t = 0.0)]
    direktiv_unavailable_share: f64,
    /// Share of Direktiv requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    direktiv_error_share: f64,
}

/// A Direktiv generation on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Gen {
    /// `/api/namespaces/{ns}/broadcast`: 409 on a repeated id.
    V1,
    /// `/api/v2/namespaces/{ns}/events/broadcast`: 400 on a repeated source+id.
    V2,
}

fn shares(values: &[(&str, f64)]) -> anyhow::Result<()> {
    for (name, value) in values {
        anyhow::ensure!(
            (0.0..=1.0).contains(value),
            "--{name} must be between 0 and 1, got {value}"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    shares(&[
        ("rate-limited-share", cli.rate_limited_share),
        ("server-error-share", cli.server_error_share),
        ("slow-share", cli.slow_share),
        ("truncated-share", cli.truncated_share),
        ("invalid-json-share", cli.invalid_json_share),
        ("repeat-next-share", cli.repeat_next_share),
        ("direktiv-unavailable-share", cli.direktiv_unavailable_share),
        ("direktiv-error-share", cli.direktiv_error_share),
    ])?;
    anyhow::ensure!(
        cli.events_per_second.is_finite() && cli.events_per_second >= 0.0,
        "--events-per-second must be a number >= 0"
    );
    let metal = MetalSim::start(MetalSimConfig {
        addr: SocketAddr::new(cli.host, cli.metal_port),
        base_path: cli.base_path,
        token: cli.token,
        seed: cli.seed,
        org_id: cli.org_id,
        org_name: cli.org_name,
        projects: cli.projects,
        devices_per_project: cli.devices_per_project,
        history_per_device: cli.history,
        events_per_second: cli.events_per_second,
        project_lists_include_devices: !cli.project_lists_without_devices,
        rate_limit: RateLimit {
            limit: cli.rate_limit,
            window: Duration::from_secs(cli.rate_limit_window_secs.max(1)),
        },
        faults: MetalFaults {
            latency: Duration::from_millis(cli.latency_ms),
            jitter: Duration::from_millis(cli.jitter_ms),
            rate_limited: cli.rate_limited_share,
            server_error: cli.server_error_share,
            slow: cli.slow_share,
            slow_delay: Duration::from_millis(cli.slow_delay_ms),
            truncated: cli.truncated_share,
            invalid_json: cli.invalid_json_share,
            repeat_next: cli.repeat_next_share,
            ..MetalFaults::default()
        },
        ..MetalSimConfig::default()
    })
    .await
    .with_context(|| {
        format!(
            "starting the Metal simulator on {}:{}",
            cli.host, cli.metal_port
        )
    })?;
    let direktiv = DirektivSim::start(DirektivSimConfig {
        addr: SocketAddr::new(cli.host, cli.direktiv_port),
        generation: match cli.direktiv_generation {
            Gen::V1 => Generation::V1,
            Gen::V2 => Generation::V2,
        },
        namespace: cli.namespace,
        auth_header: cli.direktiv_auth_header,
        token: Some(cli.direktiv_token).filter(|t| !t.is_empty()),
        jsonl_path: cli.jsonl,
        seed: cli.seed,
        faults: DirektivFaults {
            latency: Duration::from_millis(cli.direktiv_latency_ms),
            unavailable: cli.direktiv_unavailable_share,
            internal_error: cli.direktiv_error_share,
            ..DirektivFaults::default()
        },
    })
    .await
    .with_context(|| {
        format!(
            "starting the Direktiv simulator on {}:{}",
            cli.host, cli.direktiv_port
        )
    })?;

    print_summary(&metal, &direktiv);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("stopping");
    metal.shutdown().await;
    direktiv.shutdown().await;
    Ok(())
}

/// The one place the binary writes to stdout: what to put in a receiver's config.
#[allow(clippy::print_stdout)]
fn print_summary(metal: &metal_sim::MetalSimHandle, direktiv: &metal_sim::DirektivSimHandle) {
    let stats = metal.stats();
    println!("Metal API:          {}", metal.base_url());
    println!("  organization id:  {}", metal.org_id());
    println!("  token:            {}", metal.token());
    println!(
        "  fleet:            {} projects, {} events",
        metal.projects().len(),
        stats.events_total
    );
    println!("  admin:            {}/stats", metal.admin_url());
    println!("Direktiv endpoint:  {}", direktiv.endpoint_url());
    println!("  auth header:      {}", direktiv.auth_header());
    println!(
        "  token:            {}",
        direktiv.token().unwrap_or("(none checked)")
    );
    println!("  admin:            {}/stats", direktiv.admin_url());
    println!("Ctrl-C stops both.");
}
