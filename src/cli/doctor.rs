//! `judge doctor`: check the host like isolate-check-environment.

use std::process::ExitCode;

/// Arguments of `judge doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `judge doctor`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge doctor` is not built yet (issue 2)")
}
