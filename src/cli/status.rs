//! `judge status ID`: show one submission.

use std::process::ExitCode;

/// Arguments of `judge status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Submission id.
    pub id: String,
    /// Server URL (else JUDGE_SERVER, else the client config).
    #[arg(long, env = "JUDGE_SERVER")]
    pub server: Option<String>,
    /// API token (else JUDGE_TOKEN, else the client config).
    #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `judge status`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge status` is not built yet (issue 4)")
}
