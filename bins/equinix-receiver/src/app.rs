//! The running receiver: builds the components from [`Settings`] and runs the
//! polling pipeline. (Being written by the lead; the CLI calls [`run`].)

use std::process::ExitCode;

use crate::settings::Settings;

/// How the pipeline runs, from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    /// `--once`: one sweep, then exit.
    pub(crate) once: bool,
    /// `--dry-run`: print CloudEvents on stdout instead of sending them.
    pub(crate) dry_run: bool,
}

/// Runs the receiver until it is told to stop (or after one sweep with `--once`).
pub(crate) async fn run(settings: Settings, options: RunOptions) -> anyhow::Result<ExitCode> {
    let _ = (settings, options);
    anyhow::bail!("the polling pipeline is not built yet")
}
