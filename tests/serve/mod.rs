//! `judge serve` end to end: the real binary on 127.0.0.1:0 with a temporary data folder,
//! driven over HTTP (and through `judge submit` / `judge token`).
//!
//! These tests need what judging needs (root for the native sandbox, g++ and
//! /usr/bin/python3); CI runs them as root after install.sh.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use judge::cli::client::SseReader;
use judge::engine::api::wire::SubmissionView;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_judge");

/// A test problem: A+B with `n` secret tests, 1 s time limit, 256 MiB.
fn write_aplusb(root: &Path, id: &str, n: usize, memory_mib: u64) {
    let dir = root.join(id);
    std::fs::create_dir_all(dir.join("data/sample")).unwrap();
    std::fs::create_dir_all(dir.join("data/secret")).unwrap();
    std::fs::write(
        dir.join("problem.yaml"),
        format!("name: A plus B\nlimits:\n  time_limit: 1\n  memory: {memory_mib}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("data/sample/1.in"), "1 2\n").unwrap();
    std::fs::write(dir.join("data/sample/1.ans"), "3\n").unwrap();
    for i in 0..n {
        let (a, b) = (i as i64 * 7919 - 1000, i as i64 * 104729);
        std::fs::write(
            dir.join(format!("data/secret/{i:02}.in")),
            format!("{a} {b}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("data/secret/{i:02}.ans")),
            format!("{}\n", a + b),
        )
        .unwrap();
    }
}

pub(crate) const CPP_AC: &str = "#include <cstdio>\nint main(){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 1;printf(\"%lld\\n\",a+b);}\n";
const CPP_WA: &str = "#include <cstdio>\nint main(){long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a-b);}\n";
const CPP_TLE: &str = "int main(){volatile unsigned long x=0;for(;;)x++;}\n";
const CPP_CE: &str = "int main(){ this is not C++ }\n";
pub(crate) const PY_AC: &str = "a, b = map(int, input().split())\nprint(a + b)\n";
const PY_WA: &str = "a, b = map(int, input().split())\nprint(a * b + 1)\n";
const PY_TLE: &str = "while True:\n    pass\n";
const PY_CE: &str = "def main(:\n    print(1)\n";

/// A running `judge serve`; killed (SIGKILL) on drop. It holds the process-wide sandbox
/// lock while it runs, so its boxes do not skew the timing of other tests' boxes.
pub(crate) struct Server {
    lock: Option<std::sync::MutexGuard<'static, ()>>,
    child: Child,
    pub(crate) url: String,
    data: PathBuf,
    pub(crate) config_dir: PathBuf,
    config: PathBuf,
    pub(crate) token: String,
}

pub(crate) struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config_dir: PathBuf,
    problems: PathBuf,
    config: PathBuf,
}

pub(crate) fn env(config: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let problems = tmp.path().join("problems");
    write_aplusb(&problems, "aplusb", 10, 256);
    write_aplusb(&problems, "bigmem", 1, 2048);
    let config_dir = tmp.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let cfg = tmp.path().join("judge.toml");
    std::fs::write(
        &cfg,
        format!("[judging]\npoll_interval = \"50ms\"\n{config}"),
    )
    .unwrap();
    Env {
        data: tmp.path().join("data"),
        config_dir,
        problems,
        config: cfg,
        _tmp: tmp,
    }
}

impl Server {
    pub(crate) fn start(e: &Env) -> Server {
        Self::start_locked(e, crate::util::sandbox_lock())
    }

    /// Starts a server holding `lock` (a restart hands its predecessor's lock on).
    fn start_locked(e: &Env, lock: std::sync::MutexGuard<'static, ()>) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&e.data)
            .arg("--problems")
            .arg(&e.problems)
            .arg("--config")
            .arg(&e.config)
            .env("JUDGE_CONFIG_DIR", &e.config_dir)
            .env("JUDGE_LOG", "judge=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning judge serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("judge: listening on ") {
                        break u.trim().to_string();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!(
                        "judge serve did not report its address: {e:?} (exit: {:?})",
                        child.try_wait()
                    );
                }
            }
        };
        let creds = std::fs::read_to_string(e.config_dir.join("client.toml"))
            .expect("client credentials written");
        let creds: toml::Table = toml::from_str(&creds).unwrap();
        assert_eq!(
            creds["server"].as_str(),
            Some(url.as_str()),
            "client.toml points at this server"
        );
        Server {
            lock: Some(lock),
            child,
            url,
            data: e.data.clone(),
            config_dir: e.config_dir.clone(),
            config: e.config.clone(),
            token: creds["token"].as_str().unwrap().to_string(),
        }
    }

    /// SIGKILL; returns the sandbox lock for the restarted server.
    fn kill9(&mut self) -> std::sync::MutexGuard<'static, ()> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.lock.take().expect("a running server holds the lock")
    }

    /// SIGTERM, then waits for the exit (at most `within`); returns the exit status and
    /// the sandbox lock.
    fn terminate(
        &mut self,
        within: Duration,
    ) -> (std::process::ExitStatus, std::sync::MutexGuard<'static, ()>) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (
                    status,
                    self.lock.take().expect("a running server holds the lock"),
                );
            }
            assert!(
                Instant::now() < deadline,
                "judge serve did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn http() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    fn post(
        &self,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = Self::http().post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, resp.json().unwrap_or(Value::Null), headers)
    }

    pub(crate) fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut req = Self::http().get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    pub(crate) fn submit(
        &self,
        token: &str,
        problem: &str,
        language: &str,
        source: &str,
    ) -> String {
        let (status, body, _) = self.post(
            Some(token),
            "/api/v1/submissions",
            &json!({"problem": problem, "language": language, "source": source}),
        );
        assert_eq!(status, 202, "submission refused: {body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Follows the event stream to its end; returns (event name, data) pairs.
    fn events(&self, token: &str, id: &str) -> Vec<(String, Value)> {
        let resp = Self::http()
            .get(format!("{}/api/v1/submissions/{id}/events", self.url))
            .bearer_auth(token)
            .timeout(Duration::from_secs(300))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let mut r = SseReader::new(resp);
        let mut out = Vec::new();
        while let Some(ev) = r.next_event().unwrap() {
            out.push((ev.event, serde_json::from_str(&ev.data).unwrap()));
        }
        out
    }

    fn view(&self, token: &str, id: &str) -> SubmissionView {
        let (status, v) = self.get(Some(token), &format!("/api/v1/submissions/{id}"));
        assert_eq!(status, 200, "{v}");
        serde_json::from_value(v).unwrap()
    }

    fn create_token(&self, user: &str, role: &str) -> String {
        let out = Command::new(BIN)
            .args([
                "token",
                "create",
                "--user",
                user,
                "--role",
                role,
                "--data-dir",
            ])
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .env("JUDGE_CONFIG_DIR", &self.config_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Checks a whole event stream: queued, compiling, compiled, one test event per test in
/// order, final; and returns the final result.
fn check_stream(events: &[(String, Value)]) -> Value {
    let n = names(events);
    assert_eq!(&n[..3], &["queued", "compiling", "compiled"], "{n:?}");
    assert_eq!(n.last(), Some(&"final"), "{n:?}");
    let tests: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "test")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        tests.len() + 4,
        events.len(),
        "only test events between compiled and final: {n:?}"
    );
    for (i, t) in tests.iter().enumerate() {
        assert_eq!(t["index"].as_u64(), Some(i as u64));
    }
    let result = events.last().unwrap().1["result"].clone();
    assert_eq!(result["tests"].as_array().unwrap().len(), tests.len());
    result
}

#[test]
fn serve_judges_ac_wa_tle_ce_in_cpp_and_python_and_streams_every_test() {
    let e = env("");
    let s = Server::start(&e);
    let cases = [
        ("cpp", CPP_AC, "AC"),
        ("cpp", CPP_WA, "WA"),
        ("cpp", CPP_TLE, "TLE"),
        ("cpp", CPP_CE, "CE"),
        ("python3", PY_AC, "AC"),
        ("python3", PY_WA, "WA"),
        ("python3", PY_TLE, "TLE"),
        ("python3", PY_CE, "CE"),
    ];
    let ids: Vec<String> = cases
        .iter()
        .map(|(lang, src, _)| s.submit(&s.token, "aplusb", lang, src))
        .collect();
    for ((lang, _, want), id) in cases.iter().zip(&ids) {
        let events = s.events(&s.token, id);
        let result = check_stream(&events);
        assert_eq!(result["verdict"], *want, "{lang} {want}: {result}");
        let n_tests = result["tests"].as_array().unwrap().len();
        match *want {
            "AC" => assert_eq!(n_tests, 11, "sample + 10 secret tests"),
            "CE" => {
                assert_eq!(n_tests, 0);
                assert_eq!(events[2].1["compile"]["ok"], false);
                assert!(!result["compile"]["message"].as_str().unwrap().is_empty());
            }
            // The first failing test ends the run (on_reject: break).
            _ => assert_eq!(
                result["tests"].as_array().unwrap().last().unwrap()["verdict"],
                *want
            ),
        }
        // The routed pool: compiled languages to microvm, Python to container.
        let pool = &events[0].1["pool"];
        assert_eq!(
            pool,
            if *lang == "cpp" {
                "microvm"
            } else {
                "container"
            }
        );
        // GET agrees with the stream, and a late follower gets the same replay.
        let v = s.view(&s.token, id);
        assert_eq!(v.state.as_str(), "done");
        assert_eq!(serde_json::to_value(v.result().unwrap()).unwrap(), result);
        let replay = s.events(&s.token, id);
        assert_eq!(
            replay, events,
            "a late follower gets the same events from the store"
        );
    }
}

#[test]
fn serve_kill9_with_jobs_queued_and_in_flight_judges_each_once_after_restart() {
    // One microvm slot, a short lease: jobs queue up behind the one in flight.
    let e = env("lease = \"6s\"\n[pools.microvm]\nslots = 1\n");
    let mut s = Server::start(&e);
    let ids: Vec<String> = (0..5)
        .map(|_| s.submit(&s.token, "aplusb", "cpp", CPP_AC))
        .collect();
    // Wait until one is being judged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ids
        .iter()
        .any(|id| s.view(&s.token, id).state.as_str() == "judging")
    {
        assert!(Instant::now() < deadline, "nothing started judging");
        std::thread::sleep(Duration::from_millis(50));
    }
    let states: Vec<String> = ids
        .iter()
        .map(|id| s.view(&s.token, id).state.as_str().to_string())
        .collect();
    assert!(
        states.iter().any(|st| st == "queued"),
        "some jobs still queued at the kill: {states:?}"
    );
    let lock = s.kill9();

    let s = Server::start_locked(&e, lock);
    for id in &ids {
        let events = s.events(&s.token, id);
        let result = check_stream(&events);
        assert_eq!(result["verdict"], "AC", "{id}: {result}");
        assert_eq!(names(&events).iter().filter(|n| **n == "final").count(), 1);
    }
    // Nothing left in the queues: no job was enqueued twice or left leased.
    let (status, stats) = s.get(Some(&s.token), "/api/v1/stats");
    assert_eq!(status, 200);
    for p in stats["pools"].as_array().unwrap() {
        let d = &p["queue_depth"];
        assert_eq!(
            (d["high"].as_u64(), d["normal"].as_u64(), d["low"].as_u64()),
            (Some(0), Some(0), Some(0)),
            "{p}"
        );
        assert_eq!(p["in_flight"], 0, "{p}");
    }
    // Every submission has exactly one final result, recorded once.
    for id in &ids {
        let v = s.view(&s.token, id);
        assert_eq!(v.state.as_str(), "done");
        assert_eq!(v.tests.len(), 11);
    }
}

#[test]
fn serve_auth_roles_and_rate_limit() {
    // The default burst of 10; a slow refill (one token per 10 s) so a loaded machine
    // cannot refill a token between the 10th and the 11th request.
    let e = env("paused = true\n[rate_limit]\nper_second = 0.1\n");
    let s = Server::start(&e);
    let body = json!({"problem": "aplusb", "language": "python3", "source": PY_AC});
    // No token, a bad token.
    let (status, v, h) = s.post(None, "/api/v1/submissions", &body);
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("missing API token"));
    assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
    let (status, _, _) = s.post(Some("jdg_nope"), "/api/v1/submissions", &body);
    assert_eq!(status, 401);
    let (status, _) = s.get(None, "/api/v1/problems");
    assert_eq!(status, 401);
    assert_eq!(s.get(None, "/healthz").0, 200, "healthz needs no token");

    // A contestant on admin routes.
    let alice = s.create_token("alice", "contestant");
    for path in [
        "/api/v1/stats",
        "/api/v1/alerts",
        "/api/v1/scaling-events",
        "/api/v1/admin/judging",
    ] {
        let (status, v) = s.get(Some(&alice), path);
        assert_eq!(status, 403, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("admin"), "{v}");
    }
    let resp = Server::http()
        .put(format!("{}/api/v1/problems/x", s.url))
        .bearer_auth(&alice)
        .body(vec![0u8; 10])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(s.get(Some(&alice), "/api/v1/problems").0, 200);

    // The 11th submission of a burst is refused with a Retry-After.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..11 {
        let (status, _, h) = s.post(Some(&alice), "/api/v1/submissions", &body);
        statuses.push(status);
        if status == 429 {
            retry_after = h
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(&statuses[..10], &[202; 10]);
    assert_eq!(statuses[10], 429);
    // 0.1 token per second: the next one within 10 s (less the time the burst took).
    let retry_after = retry_after.expect("a Retry-After header");
    assert!((5..=10).contains(&retry_after), "Retry-After {retry_after}");
    // Another user from the same address is refused too (per-IP bucket).
    let bob = s.create_token("bob", "contestant");
    assert_eq!(s.post(Some(&bob), "/api/v1/submissions", &body).0, 429);
    // Contestants see only their own submissions.
    let (_, mine) = s.get(Some(&alice), "/api/v1/submissions");
    assert_eq!(mine.as_array().unwrap().len(), 10);
    let (_, bobs) = s.get(Some(&bob), "/api/v1/submissions");
    assert_eq!(bobs.as_array().unwrap().len(), 0);
    let alice_id = mine[0]["id"].as_str().unwrap();
    assert_eq!(
        s.get(Some(&bob), &format!("/api/v1/submissions/{alice_id}"))
            .0,
        404
    );
}

#[test]
fn serve_validation_errors_say_what_is_wrong() {
    let e = env("paused = true\n[rate_limit]\nburst = 1000\n");
    let s = Server::start(&e);
    let carol = s.create_token("carol", "contestant");
    let t = &carol;
    let ok = json!({"problem": "aplusb", "language": "python3", "source": PY_AC});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (with("problem", json!("nope")), 400, "unknown problem \"nope\""),
        (with("language", json!("cobol")), 400, "unknown language \"cobol\" (expected one of"),
        (with("source", json!("")), 400, "source is empty"),
        (with("source", json!("  \n")), 400, "source is empty"),
        (with("source", json!("x".repeat(65 * 1024))), 413, "source is 66560 bytes, above the limit of 65536 bytes"),
        (with("cpus", json!(4.0)), 400, "4 vCPUs requested, above the maximum of pool microvm (0.5 vCPUs)"),
        (with("problem", json!("bigmem")), 400, "problem \"bigmem\" has a memory limit of 2048 MiB, above the maximum of pool microvm (512 MiB)"),
        (with("priority", json!("urgent")), 400, "bad JSON: unknown variant `urgent`"),
        (json!({"problem": "aplusb", "language": "python3"}), 400, "bad JSON: missing field `source`"),
        (with("extra", json!(1)), 400, "bad JSON: unknown field `extra`"),
    ];
    for (body, status, msg) in cases {
        let (got, v, _) = s.post(Some(t), "/api/v1/submissions", &body);
        assert_eq!(got, status, "{body}: {v}");
        let err = v["error"].as_str().unwrap_or_default();
        assert!(err.contains(msg), "want {msg:?}, got {err:?}");
    }
    // Not JSON at all.
    let resp = Server::http()
        .post(format!("{}/api/v1/submissions", s.url))
        .bearer_auth(t)
        .body("{problem: aplusb")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("bad JSON: "));
    // A body over the limit (1 MiB) never reaches the handler.
    let resp = Server::http()
        .post(format!("{}/api/v1/submissions", s.url))
        .bearer_auth(t)
        .body(vec![b' '; 2 << 20])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("request body too large: at most 1048576 bytes for JSON requests"),
        "{v}"
    );
    // The first admin is verified: a 2 GiB problem goes to the trusted pool (1024 MiB max).
    let (status, v, _) = s.post(
        Some(&s.token),
        "/api/v1/submissions",
        &with("problem", json!("bigmem")),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("above the maximum of pool trusted (1024 MiB)"),
        "{v}"
    );
    // Contestants may not jump the queue.
    let (status, v, _) = s.post(
        Some(t),
        "/api/v1/submissions",
        &with("priority", json!("high")),
    );
    assert_eq!(status, 403, "{v}");

    // Idempotency-Key: a retry gets the same submission.
    let post_key = |key: &str| {
        let resp = Server::http()
            .post(format!("{}/api/submit", s.url))
            .bearer_auth(t)
            .header("Idempotency-Key", key)
            .json(&ok)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        resp.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = post_key("retry-1");
    assert_eq!(post_key("retry-1"), a);
    assert_ne!(post_key("retry-2"), a);
    // Unknown submission, unknown route.
    assert_eq!(s.get(Some(t), "/api/v1/submissions/nope").0, 404);
    assert_eq!(s.get(Some(t), "/api/v1/nothing").0, 404);
    // Languages and problems are listed.
    let (_, langs) = s.get(Some(t), "/api/v1/languages");
    assert!(langs.as_array().unwrap().iter().any(|l| l["id"] == "cpp"));
    let (_, probs) = s.get(Some(t), "/api/v1/problems");
    let ids: Vec<&str> = probs
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["aplusb", "bigmem"]);
    let (status, p) = s.get(Some(t), "/api/v1/problems/aplusb");
    assert_eq!(status, 200);
    assert_eq!(p["test_count"], 11);
    assert_eq!(
        p["location"], "",
        "a contestant does not learn server paths"
    );
    let (_, p) = s.get(Some(&s.token), "/api/v1/problems/aplusb");
    assert!(
        p["location"].as_str().unwrap().ends_with("problems/aplusb"),
        "{p}"
    );
}

fn tar_with(entries: &[(&str, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, link) in entries {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(if link.is_some() {
            tar::EntryType::Symlink
        } else {
            tar::EntryType::Regular
        });
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn serve_problem_upload_refuses_traversal_links_and_oversize() {
    let e = env("paused = true\n[server]\nmax_unpacked_bytes = 100000\n");
    let s = Server::start(&e);
    let put = |token: &str, id: &str, body: Vec<u8>| {
        let resp = Server::http()
            .put(format!("{}/api/v1/problems/{id}", s.url))
            .bearer_auth(token)
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap())
    };
    let yaml: &[u8] = b"name: Up\nlimits:\n  time_limit: 1\n  memory: 256\n";
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            tar_with(&[("problem.yaml", yaml, None), ("../evil", b"x", None)]),
            400,
            "escapes the package",
        ),
        (
            tar_with(&[
                ("problem.yaml", yaml, None),
                ("data/x", b"", Some("/etc/passwd")),
            ]),
            400,
            "outside the package",
        ),
        (
            tar_with(&[
                ("problem.yaml", yaml, None),
                ("data/big", &vec![b'0'; 200_000], None),
            ]),
            413,
            "more than 100000 bytes",
        ),
        (
            b"not an archive".to_vec(),
            400,
            "not a tar, tar.gz or zip archive",
        ),
    ];
    for (body, status, msg) in cases {
        let (got, v) = put(&s.token, "up", body);
        assert_eq!(got, status, "{v}");
        assert!(
            v["error"].as_str().unwrap().contains(msg),
            "want {msg:?}: {v}"
        );
    }
    assert_eq!(
        s.get(Some(&s.token), "/api/v1/problems/up").0,
        404,
        "nothing was installed"
    );
    let (status, v) = put(
        &s.token,
        "Bad/Id",
        tar_with(&[("problem.yaml", yaml, None)]),
    );
    assert_eq!(status, 404, "a slash is not a problem id route: {v}");
    let (status, v) = put(&s.token, "BadId", tar_with(&[("problem.yaml", yaml, None)]));
    assert_eq!(status, 400, "{v}");

    // A good package, wrapped in a folder, gzip-compressed.
    let pkg = tar_with(&[
        ("up/problem.yaml", yaml, None),
        ("up/data/secret/1.in", b"2 2\n", None),
        ("up/data/secret/1.ans", b"4\n", None),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &pkg).unwrap();
    let (status, v) = put(&s.token, "up", gz.finish().unwrap());
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["test_count"], 1);
    let (status, v) = s.get(Some(&s.token), "/api/v1/problems/up");
    assert_eq!((status, v["name"].as_str()), (200, Some("Up")));
}

#[test]
fn serve_then_judge_submit_and_status_from_the_client_config() {
    let e = env("");
    // The shipped scoring problem, for the partial-score exit code.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("problems/sumbig");
    let st = Command::new("cp")
        .arg("-r")
        .arg(&shipped)
        .arg(&e.problems)
        .status()
        .unwrap();
    assert!(st.success());
    let s = Server::start(&e);
    let dir = tempfile::tempdir().unwrap();
    let run = |file: &str, src: &str, extra: &[&str]| {
        let path = dir.path().join(file);
        std::fs::write(&path, src).unwrap();
        let out = Command::new(BIN)
            .arg("submit")
            .arg(&path)
            .args(["--problem", "aplusb"])
            .args(extra)
            .env("JUDGE_CONFIG_DIR", &s.config_dir)
            .env_remove("JUDGE_SERVER")
            .env_remove("JUDGE_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    // AC with --json: the `judge test --json` object plus the id; exit 0.
    let (code, out, err) = run("a.py", PY_AC, &["--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["verdict"], "AC");
    assert_eq!(v["tests"].as_array().unwrap().len(), 11);
    let id = v["id"].as_str().unwrap().to_string();
    // WA in words; exit 10.
    let (code, out, _) = run("b.cpp", CPP_WA, &[]);
    assert_eq!(code, Some(10), "{out}");
    assert!(out.starts_with("WA Wrong Answer"), "{out}");
    // --no-wait prints only the id.
    let (code, out, _) = run("c.py", PY_AC, &["--no-wait"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim().len(), 36, "a UUID: {out}");
    // judge status --json.
    let out = Command::new(BIN)
        .args(["status", &id, "--json"])
        .env("JUDGE_CONFIG_DIR", &s.config_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            st["id"].as_str(),
            st["state"].as_str(),
            st["verdict"].as_str()
        ),
        (Some(id.as_str()), Some("done"), Some("AC"))
    );
    // A partial score on a scoring problem: exit 17, as `judge test`.
    let out = Command::new(BIN)
        .arg("submit")
        .arg(shipped.join("submissions/partially_accepted/int32.cpp"))
        .args(["--problem", "sumbig", "--json"])
        .env("JUDGE_CONFIG_DIR", &s.config_dir)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["verdict"].as_str(), v["score"].as_f64()),
        (Some("AC"), Some(30.0)),
        "{v}"
    );
    assert_eq!(out.status.code(), Some(17));
    // Reading the stream of a missing file fails cleanly.
    let out = Command::new(BIN)
        .args(["submit", "/nonexistent.py", "--problem", "aplusb"])
        .env("JUDGE_CONFIG_DIR", &s.config_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn serve_sigterm_drains_the_job_in_flight_and_keeps_the_queued_ones() {
    let e = env("drain_timeout = \"60s\"\n[pools.microvm]\nslots = 1\n");
    let mut s = Server::start(&e);
    // A slow one first (TLE: about 1 s of CPU after compiling), then two that wait.
    let slow = s.submit(&s.token, "aplusb", "cpp", CPP_TLE);
    let queued: Vec<String> = (0..2)
        .map(|_| s.submit(&s.token, "aplusb", "cpp", CPP_AC))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.view(&s.token, &slow).state.as_str() != "judging" {
        assert!(Instant::now() < deadline, "the slow job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, lock) = s.terminate(Duration::from_secs(60));
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    // Restart: the job that was in flight finished during the drain (its verdict was
    // recorded before exit); the queued ones are judged now; each ends once.
    let s = Server::start_locked(&e, lock);
    let v = s.view(&s.token, &slow);
    assert_eq!(
        v.state.as_str(),
        "done",
        "the in-flight job was finished by the drain"
    );
    assert_eq!(v.verdict.map(|v| v.to_string()), Some("TLE".to_string()));
    for id in &queued {
        let result = check_stream(&s.events(&s.token, id));
        assert_eq!(result["verdict"], "AC");
    }
}

#[test]
fn serve_verified_user_with_a_big_problem_is_judged_in_the_trusted_pool() {
    // With the seed defaults the trusted pool's 1024 MiB cannot hold a request above
    // 1 GiB (the only ones routed there); an install that wants it raises its maximum.
    let e = env("[pools.trusted]\nmemory_mib = 4096\n");
    let s = Server::start(&e);
    // The first admin is verified: bigmem (2048 MiB) goes to trusted, on the process backend.
    let id = s.submit(&s.token, "bigmem", "python3", PY_AC);
    let events = s.events(&s.token, &id);
    assert_eq!(events[0].1["pool"], "trusted");
    let result = check_stream(&events);
    assert_eq!(result["verdict"], "AC", "{result}");
    // A standard user with the same problem is routed to microvm, whose 512 MiB refuse it.
    let carol = s.create_token("carol", "contestant");
    let (status, v, _) = s.post(
        Some(&carol),
        "/api/v1/submissions",
        &json!({"problem": "bigmem", "language": "python3", "source": PY_AC}),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("pool microvm (512 MiB)"),
        "{v}"
    );
}
