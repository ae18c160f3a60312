//! `judge test SOLUTION --problem DIR`: judge locally, print a table or one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `judge test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The solution: a source file, or a folder holding one program.
    pub solution: PathBuf,
    /// The problem package folder (Kattis problem package format).
    #[arg(long, short)]
    pub problem: PathBuf,
    /// Language id (c, cpp, cpp20, python3, java, rust, go, javascript, ruby, php); guessed from the extension when absent.
    #[arg(long)]
    pub lang: Option<String>,
    /// Run only the sample tests.
    #[arg(long)]
    pub samples: bool,
    /// Run every test even after a rejection.
    #[arg(long)]
    pub all: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `judge test`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`judge test` is not built yet (issue 3)")
}
