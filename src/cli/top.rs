//! `judge top`: the live dashboard.

use std::process::ExitCode;

/// Arguments of `judge top`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server URL (else JUDGE_SERVER, else the client config).
    #[arg(long, env = "JUDGE_SERVER")]
    pub server: Option<String>,
    /// Admin token (else JUDGE_TOKEN, else the client config).
    #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Refresh interval, e.g. `1s`.
    #[arg(long, default_value = "1s")]
    pub interval: String,
}

/// Runs `judge top`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge top` is not built yet (issue 6)")
}
