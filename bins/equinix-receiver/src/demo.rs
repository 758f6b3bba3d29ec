//! The built-in local demo (`--demo`). A stub until the demo is built.

/// Runs the demo: a simulated Metal API and Direktiv on loopback.
pub(crate) async fn run() -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("demo mode is not built yet")
}
