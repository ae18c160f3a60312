//! `judge token create`: API tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

use crate::engine::config::{Overrides, ServeConfig};
use crate::engine::store::{Role, Trust};

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

/// Runs `judge token ...`: works on the server's data folder directly (a running server
/// sees the new token at once).
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create {
            user,
            role,
            trust,
            data_dir,
            config,
        } => {
            let role: Role = role.parse().map_err(|e: String| anyhow!(e))?;
            let trust: Trust = trust.parse().map_err(|e: String| anyhow!(e))?;
            if user.is_empty()
                || user.len() > 64
                || user.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                anyhow::bail!("user name {user:?} must be 1-64 characters without spaces");
            }
            let overrides = Overrides {
                data_dir,
                ..Default::default()
            };
            let cfg = ServeConfig::load(config.as_deref(), &overrides)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let token = rt.block_on(async {
                let store = crate::engine::serve::open_store(&cfg.data_dir)?;
                let token = crate::engine::serve::create_token(
                    &*store,
                    &user,
                    role,
                    trust,
                    "judge token create",
                )
                .await
                .with_context(|| format!("creating a token in {}", cfg.data_dir.display()))?;
                anyhow::Ok(token)
            })?;
            println!("{token}");
            eprintln!(
                "judge: token for {user:?} ({}, {}); it is shown only once",
                role.as_str(),
                trust.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
