//! The logger: `tracing-subscriber` writing to stderr, as text or JSON.
//!
//! Logs always go to stderr, because `--dry-run` prints CloudEvents on stdout.
//! `RUST_LOG`, when set, overrides `log.level`.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global logger. `rust_log` is the value of `RUST_LOG`, if any.
pub(crate) fn init(settings: &LogSettings, rust_log: Option<&str>) -> anyhow::Result<()> {
    let filter = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(directives) => EnvFilter::try_new(directives)
            .with_context(|| format!("RUST_LOG=`{directives}` is not a valid log filter"))?,
        None => EnvFilter::try_new(&settings.level)
            .with_context(|| format!("log.level `{}` is not a valid log filter", settings.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let installed = match settings.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed
        .map_err(|err| anyhow::anyhow!(err))
        .context("installing the logger")
}
