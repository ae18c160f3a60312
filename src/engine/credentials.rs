//! The local client's credentials file (`client.toml` in the config folder): written by
//! `judge serve` at the first start so `judge submit` works at once on the same machine,
//! read by every client command.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the credentials inside the config folder.
pub const CLIENT_FILE: &str = "client.toml";

/// Server URL and API token of the local client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentials {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// Bearer token.
    pub token: String,
}

/// The credentials file in `config_dir`.
pub fn path_in(config_dir: &Path) -> PathBuf {
    config_dir.join(CLIENT_FILE)
}

impl ClientCredentials {
    /// Reads `path`; `Ok(None)` when it does not exist.
    ///
    /// Errors: unreadable or not the expected TOML (the message names the file).
    pub fn read(path: &Path) -> Result<Option<ClientCredentials>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {}", path.display(), e.message())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes `path` atomically with mode 0600 (it holds a secret), creating its folder.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("toml.tmp");
        let text = format!(
            "# Written by `judge serve`: the local client's server and API token.\n{}",
            toml::to_string(self).map_err(std::io::Error::other)?
        );
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_with_private_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = path_in(&d.path().join("sub"));
        assert_eq!(ClientCredentials::read(&p).unwrap(), None);
        let c = ClientCredentials {
            server: "http://127.0.0.1:1".into(),
            token: "jdg_x".into(),
        };
        c.write(&p).unwrap();
        assert_eq!(ClientCredentials::read(&p).unwrap(), Some(c));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
