//! `judge token create`: API tokens.

use std::path::PathBuf;
use std::process::ExitCode;

/// `judge token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// User name.
        #[arg(long)]
        user: String,
        /// Role: contestant or admin.
        #[arg(long, default_value = "contestant")]
        role: String,
        /// Trust: standard or verified (the router uses it).
        #[arg(long, default_value = "standard")]
        trust: String,
        /// Data folder of the server (its SQLite database).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Configuration file, to find the data folder.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs `judge token ...`.
pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge token` is not built yet (issue 4)")
}
