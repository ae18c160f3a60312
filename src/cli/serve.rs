//! `judge serve`: the whole engine in one process.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `judge serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (judge.toml); defaults to the config folder's judge.toml if present.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. `127.0.0.1:8080`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Data folder (SQLite database, blobs).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder of problem packages loaded at start.
    #[arg(long)]
    pub problems: Option<PathBuf>,
}

/// Runs `judge serve`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge serve` is not built yet (issue 4)")
}
