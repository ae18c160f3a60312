//! `judge submit FILE --problem ID`: upload, then follow the verdict test by test.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `judge submit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source file.
    pub file: PathBuf,
    /// Problem id on the server.
    #[arg(long, short)]
    pub problem: String,
    /// Language id; guessed from the extension when absent.
    #[arg(long)]
    pub lang: Option<String>,
    /// Server URL (else JUDGE_SERVER, else the client config).
    #[arg(long, env = "JUDGE_SERVER")]
    pub server: Option<String>,
    /// API token (else JUDGE_TOKEN, else the client config).
    #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Priority: high, normal or low.
    #[arg(long)]
    pub priority: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print only the submission id and return.
    #[arg(long)]
    pub no_wait: bool,
}

/// Runs `judge submit`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge submit` is not built yet (issue 4)")
}
