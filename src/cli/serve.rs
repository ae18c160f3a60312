//! `judge serve`: the whole engine in one process.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::config::{Overrides, ServeConfig};
use crate::engine::credentials;

/// Arguments of `judge serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (judge.toml); defaults to the config folder's judge.toml if present.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. `127.0.0.1:8080` (port 0: any free port; the line printed at
    /// start names the one bound).
    #[arg(long)]
    pub listen: Option<String>,
    /// Data folder (SQLite database, blobs, problem packages).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder of problem packages loaded at the first start (default: ./problems when it exists).
    #[arg(long)]
    pub problems: Option<PathBuf>,
}

/// Runs `judge serve` until Ctrl-C or SIGTERM, then drains.
///
/// Prints one line on stdout once the API accepts requests:
/// `judge: listening on http://ADDR` (tests and scripts read the bound address from it).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        problems: args.problems,
    };
    let mut config = ServeConfig::load(args.config.as_deref(), &overrides)?;
    if config.problems_dir.is_none() {
        let shipped = PathBuf::from("problems");
        if shipped.is_dir() {
            config.problems_dir = Some(std::fs::canonicalize(&shipped).unwrap_or(shipped));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let data_dir = config.data_dir.clone();
        let creds = credentials::path_in(&config.config_dir);
        crate::engine::serve_with(listener, config, shutdown_signal(), |engine| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "judge: listening on {}", engine.url);
            let _ = writeln!(
                out,
                "judge: data folder {}; client credentials {}",
                data_dir.display(),
                creds.display()
            );
            let _ = out.flush();
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    eprintln!("judge: shutting down (finishing or handing back running jobs)");
}
