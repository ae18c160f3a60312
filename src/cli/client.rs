//! The HTTP client of `judge submit`, `judge status` (and `judge top`): where the server is
//! and which token to send, then JSON calls and a server-sent-events reader.
//!
//! Server URL and token come from, in order: the flags (`--server`, `--token`), the
//! environment (`JUDGE_SERVER`, `JUDGE_TOKEN`; clap fills the flags from them), then the
//! client credentials `judge serve` wrote at its first start (`client.toml` in the config
//! folder, `$JUDGE_CONFIG_DIR` overriding it).

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::api::wire::ErrorBody;
use crate::engine::config::client_config_dir;
use crate::engine::credentials::{self, ClientCredentials};

/// A configured API client.
#[derive(Debug, Clone)]
pub struct Client {
    /// Base URL without a trailing slash.
    pub base: String,
    token: String,
    http: reqwest::blocking::Client,
}

/// A non-2xx answer: the status and the server's message.
#[derive(Debug, thiserror::Error)]
#[error("server answered {status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: reqwest::StatusCode,
    /// The `error` field of the body, or the body itself.
    pub message: String,
}

/// The server URL and token to use: the flags (clap fills them from `JUDGE_SERVER` /
/// `JUDGE_TOKEN`), then the client credentials file `judge serve` wrote. `judge top` uses
/// this too, with its own HTTP client (short timeouts, typed errors).
///
/// Errors: the credentials file is unreadable, or no server or no token anywhere (the
/// message says where to put them).
pub fn resolve_credentials(
    server: Option<String>,
    token: Option<String>,
) -> anyhow::Result<ClientCredentials> {
    let path = credentials::path_in(&client_config_dir());
    let file = if server.is_none() || token.is_none() {
        ClientCredentials::read(&path).map_err(|e| anyhow!(e))?
    } else {
        None
    };
    let server = server.or_else(|| file.as_ref().map(|f| f.server.clone())).ok_or_else(|| {
        anyhow!("no server: pass --server URL, set JUDGE_SERVER, or start `judge serve` once on this machine (it writes {})", path.display())
    })?;
    let token = token.or_else(|| file.map(|f| f.token)).ok_or_else(|| {
        anyhow!("no API token: pass --token, set JUDGE_TOKEN, or ask an admin for one (`judge token create`)")
    })?;
    Ok(ClientCredentials { server, token })
}

impl Client {
    /// Resolves the server URL and token from flags/env, then the client credentials file.
    ///
    /// Errors: no server or no token anywhere (the message says where to put them).
    pub fn resolve(server: Option<String>, token: Option<String>) -> anyhow::Result<Client> {
        let creds = resolve_credentials(server, token)?;
        Client::new(&creds.server, &creds.token)
    }

    /// A client of `server` sending `token`.
    pub fn new(server: &str, token: &str) -> anyhow::Result<Client> {
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("server URL {server:?} must start with http:// or https://");
        }
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // No overall timeout: event streams last as long as judging does.
            .timeout(None)
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path` → JSON.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .send()
            .with_context(|| format!("GET {}", self.url(path)))?;
        json_or_error(resp)
    }

    /// `POST path` with a JSON body and optional `Idempotency-Key` → JSON.
    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<T> {
        let mut req = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .timeout(Duration::from_secs(30));
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req
            .send()
            .with_context(|| format!("POST {}", self.url(path)))?;
        json_or_error(resp)
    }

    /// Opens `GET path` as a server-sent-events stream.
    pub fn events(&self, path: &str) -> anyhow::Result<SseReader<reqwest::blocking::Response>> {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .header("Accept", "text/event-stream")
            .send()
            .with_context(|| format!("GET {}", self.url(path)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(api_error(status, resp).into());
        }
        Ok(SseReader::new(resp))
    }
}

fn api_error(status: reqwest::StatusCode, resp: reqwest::blocking::Response) -> ApiError {
    let text = resp.text().unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.error)
        .unwrap_or(text);
    ApiError { status, message }
}

fn json_or_error<T: DeserializeOwned>(resp: reqwest::blocking::Response) -> anyhow::Result<T> {
    let status = resp.status();
    if !status.is_success() {
        return Err(api_error(status, resp).into());
    }
    let url = resp.url().clone();
    resp.json()
        .with_context(|| format!("reading the answer of {url}"))
}

/// Prints one line on stdout; a closed stdout (piped into `head`) is not an error.
pub fn out(line: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// Reads server-sent events (the WHATWG `text/event-stream` format) from a byte stream.
pub struct SseReader<R: Read> {
    lines: BufReader<R>,
}

impl<R: Read> SseReader<R> {
    /// Wraps a stream.
    pub fn new(r: R) -> Self {
        SseReader {
            lines: BufReader::new(r),
        }
    }

    /// The next event; `Ok(None)` at the end of the stream.
    ///
    /// Errors: the connection failed mid-stream.
    pub fn next_event(&mut self) -> std::io::Result<Option<SseEvent>> {
        let mut ev = SseEvent::default();
        let mut has_data = false;
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if has_data || !ev.event.is_empty() {
                    if ev.event.is_empty() {
                        ev.event = "message".into();
                    }
                    return Ok(Some(ev));
                }
                continue;
            }
            if l.starts_with(':') {
                continue; // comment / keep-alive
            }
            let (field, value) = match l.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (l, ""),
            };
            match field {
                "event" => ev.event = value.to_string(),
                "data" => {
                    if has_data {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_comments_and_multiline_data() {
        let text = ": keep-alive\n\nevent: queued\ndata: {\"id\":\"1\"}\n\nevent: test\ndata: a\ndata: b\r\n\r\ndata: plain\n\n";
        let mut r = SseReader::new(text.as_bytes());
        let e = r.next_event().unwrap().unwrap();
        assert_eq!(
            (e.event.as_str(), e.data.as_str()),
            ("queued", "{\"id\":\"1\"}")
        );
        let e = r.next_event().unwrap().unwrap();
        assert_eq!((e.event.as_str(), e.data.as_str()), ("test", "a\nb"));
        let e = r.next_event().unwrap().unwrap();
        assert_eq!((e.event.as_str(), e.data.as_str()), ("message", "plain"));
        assert_eq!(r.next_event().unwrap(), None);
    }

    #[test]
    fn refuses_a_server_without_scheme() {
        assert!(Client::new("localhost:8080", "t").is_err());
        assert_eq!(Client::new("http://h:1/", "t").unwrap().base, "http://h:1");
    }
}
