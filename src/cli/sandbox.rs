//! `judge sandbox run [limits] -- CMD ARGS...`: one command in a box, isolate-style meta output.

use std::path::PathBuf;
use std::process::ExitCode;

/// `judge sandbox` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run one command in a box and print its outcome.
    Run(RunArgs),
}

/// Arguments of `judge sandbox run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// CPU time limit, e.g. `1s`, `500ms`.
    #[arg(long, default_value = "1s")]
    pub time: String,
    /// Wall-clock limit, e.g. `3s`.
    #[arg(long, default_value = "3s")]
    pub wall: String,
    /// Memory limit, e.g. `256M`, `1G` (binary units).
    #[arg(long, default_value = "256M")]
    pub memory: String,
    /// Maximum processes plus threads.
    #[arg(long, default_value_t = 64)]
    pub pids: u32,
    /// Output (and file size) limit, e.g. `64M`.
    #[arg(long, default_value = "64M")]
    pub output: String,
    /// Standard input from this host file.
    #[arg(long)]
    pub stdin: Option<PathBuf>,
    /// Bind a host folder at the same path inside, read-only unless suffixed `:rw`. Repeatable.
    #[arg(long = "dir")]
    pub dirs: Vec<String>,
    /// Use this backend (`native` or `process`).
    #[arg(long, default_value = "native")]
    pub backend: String,
    /// Print one JSON object instead of isolate-style meta lines.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs `judge sandbox ...`.
pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge sandbox` is not built yet (issue 2)")
}
