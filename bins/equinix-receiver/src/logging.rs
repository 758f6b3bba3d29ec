//! The logger: `tracing-subscriber` writing to stderr, as text or JSON.
//!
//! Logs always go to stderr, because `--dry-run` prints CloudEvents on stdout.
//! `RUST_LOG`, when set, overrides `log.level`.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::{LogFormat, LogSettings};

/// A layer that receives events beside the log (the demo's display), with
/// its own filter: `log.level` and `RUST_LOG` do not apply to it.
pub(crate) type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global logger. `rust_log` is the value of `RUST_LOG`, if any.
pub(crate) fn init(settings: &LogSettings, rust_log: Option<&str>) -> anyhow::Result<()> {
    init_with(settings, rust_log, None)
}

/// [`init`], with an `extra` layer beside the log.
pub(crate) fn init_with(
    settings: &LogSettings,
    rust_log: Option<&str>,
    extra: Option<ExtraLayer>,
) -> anyhow::Result<()> {
    let filter = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(directives) => EnvFilter::try_new(directives)
            .with_context(|| format!("RUST_LOG=`{directives}` is not a valid log filter"))?,
        None => EnvFilter::try_new(&settings.level)
            .with_context(|| format!("log.level `{}` is not a valid log filter", settings.level))?,
    };
    let builder = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let log = match settings.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let layers: Vec<ExtraLayer> = std::iter::once(log.with_filter(filter).boxed())
        .chain(extra)
        .collect();
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|err| anyhow::anyhow!(err))
        .context("installing the logger")
}
