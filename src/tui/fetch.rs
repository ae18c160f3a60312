//! Polling the server off the draw loop.
//!
//! [`ApiClient`] does one round of requests (`GET /api/v1/stats`, `/api/v1/alerts`,
//! `/api/v1/scaling-events`, admin Bearer token). [`Fetcher`] runs it on its own thread every
//! interval, with exponential backoff on failure, and publishes only the newest
//! [`FetchResult`] through a `tokio::sync::watch` channel: a slow terminal never queues up
//! stale figures, and a slow server never blocks a redraw or a key.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::app::{Backoff, FetchError, FetchResult, Snapshot, MAX_BACKOFF};

/// Longest time one request may take before it counts as a failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking client for the admin read endpoints of `judge serve`.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl ApiClient {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`; a trailing `/` is
    /// ignored) with the admin `token`. Each request times out after [`REQUEST_TIMEOUT`].
    ///
    /// Errors: [`FetchError::Unreachable`] when the HTTP client cannot be built (no TLS roots).
    pub fn new(base: &str, token: &str) -> Result<Self, FetchError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT.min(Duration::from_secs(2)))
            .user_agent(concat!("judge-top/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Unreachable(root_cause(&e)))?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// One round: stats (required), then alerts and scaling events (each may fail alone, for
    /// a server that does not offer them).
    ///
    /// Errors: the stats request's [`FetchError`].
    pub fn fetch(&self) -> Result<Snapshot, FetchError> {
        let stats = self.get_json("/api/v1/stats")?;
        let alerts = self.get_json("/api/v1/alerts");
        let scaling_events = self.get_json("/api/v1/scaling-events");
        Ok(Snapshot {
            stats,
            alerts,
            scaling_events,
        })
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, FetchError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| FetchError::Unreachable(root_cause(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .map_err(|e| FetchError::Unreachable(root_cause(&e)))?;
        if !status.is_success() {
            return Err(FetchError::Http {
                path: path.to_string(),
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })
    }
}

/// The innermost cause of an error chain ("Connection refused (os error 111)"), which is
/// what an admin needs, rather than reqwest's outer "error sending request for url".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    if text.is_empty() {
        e.to_string()
    } else {
        text
    }
}

/// The message of an error body: its JSON `error` or `message` field when there is one,
/// else the start of its text (at most 200 characters).
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(s) = v.get(key).and_then(|m| m.as_str()) {
                return s.to_string();
            }
        }
    }
    String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(200)
        .collect()
}

enum Command {
    /// Poll now instead of waiting.
    Now,
}

/// The polling thread. Dropping it ends the thread at its next wake-up; a request already
/// in flight finishes or times out ([`REQUEST_TIMEOUT`]) first, without holding up the caller.
pub struct Fetcher {
    commands: mpsc::Sender<Command>,
}

impl Fetcher {
    /// Starts polling with `client` every `interval` (at least 100 ms), first at once.
    /// After a failure the next attempt waits `interval`, then twice that, and so on up to
    /// [`MAX_BACKOFF`]. Returns the thread and the receiving end of the newest result
    /// (`None` until the first attempt ends).
    ///
    /// Errors: the OS refused to start a thread.
    pub fn spawn(
        client: ApiClient,
        interval: Duration,
    ) -> std::io::Result<(Fetcher, watch::Receiver<Option<FetchResult>>)> {
        let interval = interval.max(Duration::from_millis(100));
        let (tx, rx) = watch::channel(None);
        let (commands, cmd_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("judge-top-fetch".into())
            .spawn(move || poll_loop(&client, interval, &tx, &cmd_rx))?;
        Ok((Fetcher { commands }, rx))
    }

    /// Asks for a poll now (the `r` key); harmless if the thread has ended.
    pub fn refresh_now(&self) {
        let _ = self.commands.send(Command::Now);
    }
}

fn poll_loop(
    client: &ApiClient,
    interval: Duration,
    tx: &watch::Sender<Option<FetchResult>>,
    commands: &mpsc::Receiver<Command>,
) {
    let mut backoff = Backoff::new(interval, MAX_BACKOFF);
    loop {
        let started = Instant::now();
        let (result, wait) = match client.fetch() {
            Ok(snapshot) => {
                backoff.success();
                let at = Instant::now();
                let wait = interval.saturating_sub(at - started);
                (
                    FetchResult::Ok {
                        snapshot: Box::new(snapshot),
                        at,
                    },
                    wait,
                )
            }
            Err(error) => {
                let wait = backoff.failure();
                let at = Instant::now();
                let failures = backoff.failures();
                (
                    FetchResult::Err {
                        error,
                        failures,
                        retry_at: at + wait,
                        at,
                    },
                    wait,
                )
            }
        };
        if tx.send(Some(result)).is_err() {
            return; // the dashboard is gone
        }
        match commands.recv_timeout(wait) {
            Ok(Command::Now) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn error_message_prefers_the_json_error_field() {
        assert_eq!(
            error_message(br#"{"error":"admin token required"}"#),
            "admin token required"
        );
        assert_eq!(error_message(br#"{"message":"nope"}"#), "nope");
        assert_eq!(error_message(b"  plain text\n"), "plain text");
        assert_eq!(error_message(&[b'x'; 500]).len(), 200);
    }

    /// A one-shot HTTP server answering every request on `listener` with `status` and `body`,
    /// recording the requests it saw.
    fn serve(
        listener: TcpListener,
        status: &'static str,
        body: &'static str,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            listener.set_nonblocking(false).unwrap();
            for _ in 0..3 {
                let Ok((mut s, _)) = listener.accept() else {
                    break;
                };
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                seen.push(String::from_utf8_lossy(&req).into_owned());
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).unwrap();
            }
            seen
        })
    }

    #[test]
    fn fetch_sends_the_bearer_token_and_decodes_stats() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Stats decode; alerts and scaling events get the same object and fail to decode as
        // arrays, which must not fail the round.
        let server = serve(
            listener,
            "200 OK",
            r#"{"now":"2026-01-01T00:00:00Z","uptime_s":5,"pools":[],"submissions_total":7,
               "shed_total":0,"rate_limited_total":0,"shedding":"none","recent":[]}"#,
        );
        let client = ApiClient::new(&format!("http://{addr}/"), "s3cret").unwrap();
        let snap = client.fetch().unwrap();
        assert_eq!(snap.stats.submissions_total, 7);
        assert!(
            matches!(snap.alerts, Err(FetchError::Decode { ref path, .. }) if path == "/api/v1/alerts")
        );
        assert!(matches!(
            snap.scaling_events,
            Err(FetchError::Decode { .. })
        ));
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(
            seen[0].starts_with("GET /api/v1/stats HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[1].starts_with("GET /api/v1/alerts "));
        assert!(seen[2].starts_with("GET /api/v1/scaling-events "));
        for req in &seen {
            assert!(
                req.to_ascii_lowercase()
                    .contains("authorization: bearer s3cret\r\n"),
                "{req}"
            );
        }
    }

    #[test]
    fn fetch_reports_http_errors_with_the_server_message() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = serve(listener, "401 Unauthorized", r#"{"error":"bad token"}"#);
        let client = ApiClient::new(&format!("http://{addr}"), "wrong").unwrap();
        let e = client.fetch().unwrap_err();
        assert_eq!(
            e,
            FetchError::Http {
                path: "/api/v1/stats".into(),
                status: 401,
                message: "bad token".into()
            }
        );
        drop(client);
        // Only the stats request was made; unblock the server thread's next accepts.
        for _ in 0..2 {
            let _ = std::net::TcpStream::connect(addr);
        }
        let _ = server.join();
    }

    #[test]
    fn fetch_reports_a_refused_connection_as_unreachable() {
        // Bind then drop: nothing listens on that port any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = ApiClient::new(&format!("http://{addr}"), "t").unwrap();
        match client.fetch() {
            Err(FetchError::Unreachable(msg)) => {
                assert!(msg.to_lowercase().contains("refused"), "{msg}")
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }

    #[test]
    fn fetcher_publishes_failures_with_growing_backoff() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = ApiClient::new(&format!("http://{addr}"), "t").unwrap();
        let (fetcher, mut rx) = Fetcher::spawn(client, Duration::from_millis(100)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // The watch channel keeps only the newest result, so a slow reader may skip one;
        // every result seen must still carry the backoff of its failure count.
        let mut seen = Vec::new();
        rt.block_on(async {
            while seen.last().is_none_or(|(n, _)| *n < 3) {
                tokio::time::timeout(Duration::from_secs(10), rx.changed())
                    .await
                    .expect("a result within 10 s")
                    .expect("fetcher alive");
                match rx.borrow_and_update().clone() {
                    Some(FetchResult::Err {
                        failures,
                        retry_at,
                        at,
                        ..
                    }) => seen.push((failures, retry_at - at)),
                    other => panic!("expected a failure, got {other:?}"),
                }
            }
        });
        drop(fetcher);
        for (n, wait) in &seen {
            assert_eq!(
                *wait,
                Duration::from_millis(100) * 2u32.pow(n - 1),
                "after {n} failures"
            );
        }
        let counts: Vec<u32> = seen.iter().map(|s| s.0).collect();
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    }
}
