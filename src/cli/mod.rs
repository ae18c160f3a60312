//! The command line: one file per subcommand. The only layer that prints to the terminal.
//!
//! Exit codes (also in README.md): 0 success / AC; 1 the command failed; 2 usage error;
//! 10–17 the verdict of `judge test` / `judge submit` (see [`crate::judge::Verdict::exit_code`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod bench_judge;
pub mod client;
pub mod doctor;
pub mod problem;
pub mod sandbox;
pub mod serve;
pub mod status;
pub mod submit;
pub mod test;
pub mod token;
pub mod top;

/// A self-hosted, terminal-first online judge.
#[derive(Debug, Parser)]
#[command(name = "judge", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `judge=debug`.
    #[arg(long, global = true, env = "JUDGE_LOG", default_value = "warn")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge a solution locally against a problem package (no server).
    Test(test::Args),
    /// Problem package tools: verify its submissions, scaffold a new one.
    #[command(subcommand)]
    Problem(problem::Command),
    /// Run one command in a sandbox box and print its outcome (admin tool).
    #[command(subcommand)]
    Sandbox(sandbox::Command),
    /// Check this host for what the sandbox needs; each line says what to fix.
    Doctor(doctor::Args),
    /// Start the engine: API, queue, router, pools and judge in one process.
    Serve(serve::Args),
    /// Submit a solution to a server and follow its verdict test by test.
    Submit(submit::Args),
    /// Show one submission.
    Status(status::Args),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(token::Command),
    /// Live dashboard of a running server.
    Top(top::Args),
    /// Benchmarks: sandbox overhead, judging overhead, server load.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// Entry point used by `main`: parses arguments, runs, prints errors once with their chain.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let result = match cli.command {
        Command::Test(a) => test::run(a),
        Command::Problem(c) => problem::run(c),
        Command::Sandbox(c) => sandbox::run(c),
        Command::Doctor(a) => doctor::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Submit(a) => submit::run(a),
        Command::Status(a) => status::run(a),
        Command::Token(c) => token::run(c),
        Command::Top(a) => top::run(a),
        Command::Bench(c) => bench::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined with ": ", each said once: library errors that put
/// their source in their own message (`"{op} {path}: {source}"`) and also expose it as
/// `source()` would otherwise print the cause twice.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `s` safe to print on a terminal: control characters other than newline and tab
/// (ESC, BEL, CR, backspace, the C1 range, DEL) are shown as `\u{1b}`-style escapes.
/// Compiler and checker messages carry bytes a contestant controls (a `#error` line,
/// the answer a checker quotes), which must never move the cursor, clear the screen
/// or set the window title.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::{error_chain, printable};

    #[test]
    fn printable_escapes_terminal_controls() {
        assert_eq!(
            printable("a.cpp:1: error\n\tnote"),
            "a.cpp:1: error\n\tnote"
        );
        assert_eq!(
            printable("x\u{1b}[2Jy\u{7}\r\u{9b}z"),
            "x\\u{1b}[2Jy\\u{7}\\u{d}\\u{9b}z"
        );
    }

    #[test]
    fn error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(crate::sandbox::SandboxError::Io {
            op: "open",
            path: "/x".into(),
            source: io,
        })
        .context("loading the problem /x");
        assert_eq!(
            error_chain(&e),
            "loading the problem /x: open /x: No such file or directory"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }
}
