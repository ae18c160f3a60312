//! `judge problem verify DIR` and `judge problem new NAME`.

use std::path::PathBuf;
use std::process::ExitCode;

/// `judge problem` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Judge every program under DIR/submissions/<expected verdict>/ and list each whose verdict differs.
    Verify {
        /// The problem package folder.
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Scaffold a new problem package from templates/.
    New {
        /// Folder to create (its last component becomes the short name).
        name: PathBuf,
    },
}

/// Runs `judge problem ...`.
pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge problem` is not built yet (issue 3)")
}
