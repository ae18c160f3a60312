//! `judge top`: the live dashboard.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::client::resolve_credentials;

use crate::tui::run::{self, TopConfig};

/// Arguments of `judge top`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server URL (else JUDGE_SERVER, else the client config).
    #[arg(long, env = "JUDGE_SERVER")]
    pub server: Option<String>,
    /// Admin token (else JUDGE_TOKEN, else the client config).
    #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Refresh interval, e.g. `1s` or `500ms` (at least 100ms). After a failed poll the
    /// wait doubles up to 10s.
    #[arg(long, default_value = "1s")]
    pub interval: String,
}

/// Runs `judge top`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let interval = parse_interval(&args.interval)?;
    let (server, token) = resolve_target(args.server, args.token)?;
    run::run(TopConfig {
        server,
        token,
        interval,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Parses `--interval` (humantime syntax); refuses under 100 ms.
fn parse_interval(text: &str) -> anyhow::Result<Duration> {
    let d = humantime::parse_duration(text)
        .with_context(|| format!("--interval {text:?}: expected a duration such as 1s or 500ms"))?;
    if d < Duration::from_millis(100) {
        bail!("--interval {text:?}: at least 100ms");
    }
    Ok(d)
}

/// Server URL and admin token: the flags (clap fills them from `JUDGE_SERVER` /
/// `JUDGE_TOKEN`), else the client credentials `judge serve` writes at its first start
/// (see [`crate::cli::client::resolve_credentials`]).
fn resolve_target(
    server: Option<String>,
    token: Option<String>,
) -> anyhow::Result<(String, String)> {
    let creds = resolve_credentials(server, token)?;
    if !(creds.server.starts_with("http://") || creds.server.starts_with("https://")) {
        bail!(
            "server URL {:?} must start with http:// or https://",
            creds.server
        );
    }
    Ok((creds.server, creds.token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_parsing() {
        assert_eq!(parse_interval("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_interval("10ms")
            .unwrap_err()
            .to_string()
            .contains("at least 100ms"));
        assert!(parse_interval("soon")
            .unwrap_err()
            .to_string()
            .contains("--interval"));
    }

    #[test]
    fn flags_win_and_urls_are_checked() {
        let (s, t) = resolve_target(Some("http://h:1".into()), Some("tok".into())).unwrap();
        assert_eq!((s.as_str(), t.as_str()), ("http://h:1", "tok"));
        let e = resolve_target(Some("h:1".into()), Some("tok".into())).unwrap_err();
        assert!(e.to_string().contains("must start with http://"), "{e}");
    }
}
