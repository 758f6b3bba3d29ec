//! The logger: `tracing-subscriber` writing to stderr, as text or JSON.
//!
//! Logs always go to stderr, because `--dry-run` prints CloudEvents on stdout.
//! `RUST_LOG`, when set, overrides `log.level`. Every formatted line, from
//! any crate, passes through the [`Scrubber`] before it is written, so a
//! secret echoed by an upstream shows as `[REDACTED]`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::{LogFormat, LogSettings};
use receiver_engine::Scrubber;

/// A layer that receives events beside the log (the demo's display), with
/// its own filter: `log.level` and `RUST_LOG` do not apply to it.
pub(crate) type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global logger. `rust_log` is the value of `RUST_LOG`, if any.
pub(crate) fn init(
    settings: &LogSettings,
    rust_log: Option<&str>,
    scrubber: Arc<Scrubber>,
) -> anyhow::Result<()> {
    init_with(settings, rust_log, scrubber, None)
}

/// [`init`], with an `extra` layer beside the log.
pub(crate) fn init_with(
    settings: &LogSettings,
    rust_log: Option<&str>,
    scrubber: Arc<Scrubber>,
    extra: Option<ExtraLayer>,
) -> anyhow::Result<()> {
    let filter = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(directives) => EnvFilter::try_new(directives)
            .with_context(|| format!("RUST_LOG=`{directives}` is not a valid log filter"))?,
        None => EnvFilter::try_new(&settings.level)
            .with_context(|| format!("log.level `{}` is not a valid log filter", settings.level))?,
    };
    let builder = tracing_subscriber::fmt::layer()
        .with_writer(ScrubbedStderr(scrubber))
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

/// Stderr behind the scrubber: each log line is gathered whole, scrubbed,
/// then written in one call.
struct ScrubbedStderr(Arc<Scrubber>);

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            scrubber: &self.0,
            line: Vec::new(),
        }
    }
}

/// One log line on its way to stderr; written when dropped.
struct LineWriter<'a> {
    scrubber: &'a Scrubber,
    line: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = self.scrubber.scrub_bytes(&self.line);
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn a_line_written_in_pieces_is_scrubbed_whole() {
        let secret = SecretString::from("tok-12345678");
        let scrubber = Scrubber::new([&secret]);
        let mut writer = LineWriter {
            scrubber: &scrubber,
            line: Vec::new(),
        };
        // The secret split across two writes is still found.
        writer.write_all(b"error body: tok-1234").unwrap();
        writer.write_all(b"5678 end\n").unwrap();
        let line = scrubber.scrub_bytes(&writer.line).into_owned();
        writer.line.clear();
        assert_eq!(line, b"error body: [REDACTED] end\n");
    }
}
