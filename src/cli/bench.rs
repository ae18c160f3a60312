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
        /// Folder with prebuilt static `true` and `spin` binaries (for hosts without
        /// gcc; `scripts/device-check.sh` ships them). Default: build them with gcc -static.
        #[arg(long)]
        prebuilt: Option<std::path::PathBuf>,
    },
    /// Judging 100 tests of A+B in C++ (compile once) vs 100 bare runs of the same binary.
    Judge {
        /// Number of tests.
        #[arg(long, default_value_t = 100)]
        tests: u32,
        /// Rounds; the best (least disturbed) of each measurement is reported.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Sandbox backend for the judging side.
        #[arg(long, env = "JUDGE_SANDBOX", default_value = "native")]
        sandbox: String,
    },
    /// The engine in-process on a temporary data folder: A+B in C++ (10 tests) end to end with
    /// N concurrent submitters (submissions/s, p50/p99 submit-to-verdict, time in the
    /// sandbox), then the API alone with judging paused (POST p50/p99 at a paced rate).
    Api {
        /// Concurrent submitters (end to end).
        #[arg(long, default_value_t = 4)]
        submitters: usize,
        /// Submissions (end to end).
        #[arg(long, default_value_t = 40)]
        submissions: usize,
        /// POSTs per second with judging paused.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// How long to send them, e.g. `10s`.
        #[arg(long, default_value = "10s")]
        duration: String,
    },
    /// Replay a contest mix against a running server; print queue depth, replicas, p95, error rate over time.
    Load {
        /// Server URL (default: the local client credentials `judge serve` wrote).
        #[arg(long, env = "JUDGE_SERVER")]
        server: Option<String>,
        /// An admin token (the stats are admin-only); default: the local client credentials.
        #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Duration, e.g. `60s`.
        #[arg(long, default_value = "60s")]
        duration: String,
        /// Submissions sent at once at contest start.
        #[arg(long, default_value_t = 100)]
        burst: u32,
        /// Steady arrivals after the burst, submissions per second (Poisson).
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// Problem id (A+B: two integers in, their sum out).
        #[arg(long, default_value = "aplusb")]
        problem: String,
        /// Share of submissions sent with `low` priority.
        #[arg(long, default_value_t = 0.1)]
        low_share: f64,
        /// How often a line of figures is printed, e.g. `2s`.
        #[arg(long, default_value = "2s")]
        report_every: String,
        /// How long to wait for the queue to drain after the last submission.
        #[arg(long, default_value = "5m")]
        drain_timeout: String,
    },
}

#[path = "bench_load.rs"]
mod load;
#[path = "bench_sandbox.rs"]
mod sandbox_bench;

#[path = "bench_api.rs"]
mod api;

/// Runs `judge bench ...`.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Load {
            server,
            token,
            duration,
            burst,
            rate,
            problem,
            low_share,
            report_every,
            drain_timeout,
        } => {
            let dur = |flag: &str, v: &str| {
                humantime::parse_duration(v)
                    .map_err(|e| anyhow::anyhow!("--{flag} {v:?}: {e} (e.g. 60s, 5m)"))
            };
            anyhow::ensure!(
                rate >= 0.0 && rate.is_finite(),
                "--rate must be a number ≥ 0"
            );
            anyhow::ensure!(
                (0.0..=1.0).contains(&low_share),
                "--low-share must be within 0..1"
            );
            // Flags, JUDGE_SERVER / JUDGE_TOKEN, then the local client credentials.
            let creds = crate::cli::client::resolve_credentials(server, token)?;
            load::run(load::LoadOptions {
                server: creds.server,
                token: creds.token,
                duration: dur("duration", &duration)?,
                burst,
                rate,
                problem,
                low_share,
                report_every: dur("report-every", &report_every)?,
                drain_timeout: dur("drain-timeout", &drain_timeout)?,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Judge {
            tests,
            rounds,
            sandbox,
        } => crate::cli::bench_judge::run(tests, rounds, &sandbox),
        Command::Sandbox { runs, prebuilt } => sandbox_bench::run(runs, prebuilt.as_deref()),
        Command::Api {
            submitters,
            submissions,
            rate,
            duration,
        } => {
            let duration = humantime::parse_duration(&duration)
                .map_err(|e| anyhow::anyhow!("--duration {duration:?}: {e} (e.g. 10s)"))?;
            api::run(api::ApiBenchOptions {
                submitters,
                submissions,
                rate,
                duration,
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
