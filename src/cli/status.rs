//! `judge status ID`: show one submission.

use std::process::ExitCode;

use super::client::Client;
use crate::engine::api::wire::{SubmissionState, SubmissionView};

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

/// Runs `judge status`. Exit code: the verdict's once done (as `judge submit`), 0 while
/// queued or judging, 1 when the command failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::resolve(args.server, args.token)?;
    let v: SubmissionView = client.get_json(&format!("/api/v1/submissions/{}", args.id))?;
    if args.json {
        crate::cli::client::out(format_args!("{}", serde_json::to_string(&v)?));
    } else {
        crate::cli::client::out(format_args!(
            "{}  {}  {} / {}  by {}  pool {}  submitted {}",
            v.id,
            v.state.as_str(),
            v.problem,
            v.language,
            v.user,
            v.pool,
            v.submitted_at
        ));
        match v.result() {
            Some(r) => super::submit::print_result(&r),
            None => {
                let total = v
                    .total_tests
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".into());
                crate::cli::client::out(format_args!(
                    "{} of {total} tests finished",
                    v.tests.len()
                ));
            }
        }
    }
    Ok(match (v.state, v.result()) {
        (SubmissionState::Done, Some(r)) => {
            ExitCode::from(super::test::exit_code_for(&r, v.max_score))
        }
        _ => ExitCode::SUCCESS,
    })
}
