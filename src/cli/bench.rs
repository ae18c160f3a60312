//! `judge bench ...`: benchmarks whose figures go into notes as ratios measured in one run.

use std::process::ExitCode;

/// `judge bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// N runs of a trivial static binary in the native sandbox vs N bare fork+execs; CPU-time accuracy.
    Sandbox {
        /// Number of runs of each kind.
        #[arg(long, default_value_t = 500)]
        runs: u32,
    },
    /// Judging 100 tests of A+B in C++ (compile once) vs 100 bare runs of the same binary.
    Judge {
        /// Number of tests.
        #[arg(long, default_value_t = 100)]
        tests: u32,
    },
    /// Replay a contest mix against a running server; print queue depth, replicas, p95, error rate over time.
    Load {
        /// Server URL.
        #[arg(long, env = "JUDGE_SERVER")]
        server: Option<String>,
        /// Token.
        #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Duration, e.g. `60s`.
        #[arg(long, default_value = "60s")]
        duration: String,
    },
}

/// Runs `judge bench ...`.
pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this benchmark is not built yet")
}
