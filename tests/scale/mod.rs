//! Backpressure and scaling end to end, with the engine in this process (so a test can reach
//! a pool and crash one of its replicas): load shedding with hysteresis under a flood, and a
//! replica killed mid-job whose job another replica judges.
//!
//! The pools use the default native sandbox, which needs root (CI runs as root); without
//! it the tests say so and return.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use judge::engine::config::{Overrides, ServeConfig};
use judge::engine::model::{ScalingEvent, Shedding, Stats};
use judge::engine::router::PoolName;
use judge::engine::serve::{create_token, serve_with, Engine};
use judge::engine::store::{Role, Trust};
use serde_json::{json, Value};

/// A+B with `n` secret tests (and one sample).
fn write_aplusb(root: &Path, n: usize) {
    let dir = root.join("aplusb");
    std::fs::create_dir_all(dir.join("data/sample")).unwrap();
    std::fs::create_dir_all(dir.join("data/secret")).unwrap();
    std::fs::write(
        dir.join("problem.yaml"),
        "name: A plus B\nlimits:\n  time_limit: 2\n  memory: 256\n",
    )
    .unwrap();
    std::fs::write(dir.join("data/sample/1.in"), "1 2\n").unwrap();
    std::fs::write(dir.join("data/sample/1.ans"), "3\n").unwrap();
    for i in 0..n {
        let (a, b) = (i as i64 * 31 - 7, i as i64 * 1009);
        std::fs::write(
            dir.join(format!("data/secret/{i}.in")),
            format!("{a} {b}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("data/secret/{i}.ans")),
            format!("{}\n", a + b),
        )
        .unwrap();
    }
}

const PY_AC: &str = "a, b = map(int, input().split())\nprint(a + b)\n";

/// An engine serving on 127.0.0.1:0 in this process, with an admin token.
struct Running {
    engine: Arc<Engine>,
    url: String,
    token: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _tmp: tempfile::TempDir,
}

/// `container`: extra keys of `[pools.container]`; `config`: further sections.
async fn start(container: &str, config: &str, tests: usize) -> Option<Running> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: the native sandbox needs root");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let problems = tmp.path().join("problems");
    write_aplusb(&problems, tests);
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(tmp.path().join("data")),
        problems: Some(problems),
    };
    let text = format!(
        "[rate_limit]\nburst = 1000000\nper_second = 1000000.0\n\
         [pools.container]\n{container}\n\
         [metrics]\nsample_interval = \"200ms\"\n{config}"
    );
    let mut cfg =
        ServeConfig::from_toml(&text, "test judge.toml", &overrides).expect("valid config");
    cfg.config_dir = tmp.path().join("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let r = serve_with(
            listener,
            cfg,
            async { stopped.await.ok().unwrap_or(()) },
            |e| {
                let _ = ready_tx.send(e.clone());
            },
        )
        .await;
        if let Err(e) = r {
            panic!("serve failed: {e}");
        }
    });
    let engine = ready_rx.await.expect("engine started");
    let token = create_token(
        &*engine.shared.store,
        "ops",
        Role::Admin,
        Trust::Standard,
        "scale tests",
    )
    .await
    .unwrap();
    let url = engine.url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    Some(Running {
        engine,
        url,
        token,
        http,
        stop: Some(stop),
        task,
        _tmp: tmp,
    })
}

impl Running {
    async fn submit(&self, priority: &str) -> (u16, Value, Option<String>) {
        let r = self
            .http
            .post(format!("{}/api/v1/submissions", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"problem": "aplusb", "language": "python3", "source": PY_AC, "priority": priority}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, r.json().await.unwrap_or(Value::Null), retry)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Polls submission `id` until its state is `state`; panics with `what` at `deadline`.
    async fn wait_state(&self, id: &str, state: &str, deadline: Instant, what: &str) -> Value {
        loop {
            assert!(Instant::now() < deadline, "{what}");
            let v: Value = self.get(&format!("/api/v1/submissions/{id}")).await;
            if v["state"] == state {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stats(&self) -> Stats {
        self.get("/api/v1/stats").await
    }

    async fn set_paused(&self, paused: bool) {
        let r = self
            .http
            .post(format!("{}/api/v1/admin/judging", self.url))
            .bearer_auth(&self.token)
            .json(&json!({ "paused": paused }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = tokio::time::timeout(Duration::from_secs(60), &mut self.task).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn depth(s: &Stats) -> u64 {
    s.pools.iter().map(|p| p.queue_depth.total()).sum()
}

fn in_flight(s: &Stats) -> u64 {
    s.pools.iter().map(|p| p.in_flight).sum()
}

/// DESIGN.md "Backpressure and scaling": above 1000 waiting jobs new `low` submissions are
/// refused (503 + Retry-After + why), `high` ones still accepted, admission resumes below 500,
/// and no accepted submission is lost.
#[test]
fn flood_of_2000_low_sheds_above_1000_resumes_below_500_and_judges_every_accepted() {
    // Native sandbox runs in this process: serialised with the other modules' runs.
    let _sandbox = crate::util::sandbox_lock();
    runtime().block_on(
        flood_of_2000_low_sheds_above_1000_resumes_below_500_and_judges_every_accepted_body(),
    );
}

async fn flood_of_2000_low_sheds_above_1000_resumes_below_500_and_judges_every_accepted_body() {
    let Some(srv) = start(
        "min_replicas = 2\nmax_replicas = 2",
        "[judging]\npaused = true\npoll_interval = \"50ms\"\n",
        1,
    )
    .await
    else {
        return;
    };
    let t0 = Instant::now();
    let mut accepted = Vec::new();
    let mut first_refusal = None;
    for i in 0..2000 {
        let (status, body, retry) = srv.submit("low").await;
        match status {
            202 => {
                assert!(
                    first_refusal.is_none(),
                    "submission {i} accepted after a refusal"
                );
                accepted.push(body["id"].as_str().unwrap().to_string());
            }
            503 => {
                if first_refusal.is_none() {
                    first_refusal = Some(i);
                    assert_eq!(retry.as_deref(), Some("30"), "Retry-After");
                    let msg = body["error"].as_str().unwrap_or_default();
                    assert!(
                        msg.contains("overloaded") && msg.contains("1000"),
                        "the 503 says why: {msg}"
                    );
                }
            }
            other => panic!("submission {i}: unexpected {other}: {body}"),
        }
    }
    eprintln!("flood of 2000 posted in {:.1}s", t0.elapsed().as_secs_f64());
    // The 1001st is admitted at depth 1000 (not above it); from depth 1001 on, refused.
    assert_eq!(accepted.len(), 1001);
    assert_eq!(first_refusal, Some(1001));
    let s = srv.stats().await;
    assert_eq!(depth(&s), 1001);
    assert_eq!(s.shedding, Shedding::Low);
    assert_eq!(s.shed_total, 999);
    // high is always admitted; normal is not shed until 2000.
    let (status, body, _) = srv.submit("high").await;
    assert_eq!(status, 202, "{body}");
    accepted.push(body["id"].as_str().unwrap().to_string());
    let (status, body, _) = srv.submit("normal").await;
    assert_eq!(status, 202, "{body}");
    accepted.push(body["id"].as_str().unwrap().to_string());

    // Resume judging and watch the drain: still refused above 500, admitted again below.
    srv.set_paused(false).await;
    let (mut refused_while_draining, mut resumed_at) = (false, None);
    let deadline = Instant::now() + Duration::from_secs(240);
    while resumed_at.is_none() {
        assert!(
            Instant::now() < deadline,
            "queue did not drain below 500 in time"
        );
        let d = depth(&srv.stats().await);
        if !refused_while_draining && (600..1000).contains(&d) {
            let (status, _, _) = srv.submit("low").await;
            assert_eq!(status, 503, "still shedding at depth {d}");
            refused_while_draining = true;
        }
        if d < 450 {
            let (status, body, _) = srv.submit("low").await;
            assert_eq!(
                status, 202,
                "admission resumes below 500 (depth {d}): {body}"
            );
            accepted.push(body["id"].as_str().unwrap().to_string());
            resumed_at = Some(d);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused_while_draining,
        "never sampled a depth between 600 and 1000 while draining"
    );
    assert_eq!(srv.stats().await.shedding, Shedding::None);

    // Every accepted submission is judged, once.
    loop {
        assert!(
            Instant::now() < deadline,
            "accepted submissions not all judged in time"
        );
        let s = srv.stats().await;
        if depth(&s) == 0 && in_flight(&s) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut verdicts = std::collections::BTreeMap::new();
    for id in &accepted {
        let v: Value = srv.get(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(v["state"], "done", "{v}");
        *verdicts
            .entry(v["verdict"].as_str().unwrap_or("-").to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(verdicts.get("AC"), Some(&accepted.len()), "{verdicts:?}");
    let c = &srv.stats().await.pools[0];
    eprintln!(
        "container: p95 judging {:?} ms, utilization {:.2}, cold start {:?} ms",
        c.p95_ms, c.utilization, c.cold_start_ms
    );
    eprintln!(
        "{} accepted submissions judged AC in {:.1}s",
        accepted.len(),
        t0.elapsed().as_secs_f64()
    );
    srv.shutdown().await;
}

/// A replica that dies mid-job (no drain, no hand-back) loses nothing: its lease expires, the
/// autoscaler brings the pool back to min_replicas, and the new replica judges the job.
#[test]
fn a_job_of_a_killed_replica_is_judged_by_another() {
    // Native sandbox runs in this process: serialised with the other modules' runs.
    let _sandbox = crate::util::sandbox_lock();
    runtime().block_on(a_job_of_a_killed_replica_is_judged_by_another_body());
}

async fn a_job_of_a_killed_replica_is_judged_by_another_body() {
    let Some(srv) = start(
        "min_replicas = 1\nmax_replicas = 1",
        "[judging]\nlease = \"3s\"\npoll_interval = \"50ms\"\n\
         [autoscale]\ninterval = \"200ms\"\n",
        2,
    )
    .await
    else {
        return;
    };
    let pool = srv.engine.pools[&PoolName::Container].clone();
    // Slow enough to be caught mid-job: about a second per test.
    let slow = "import time\ntime.sleep(0.7)\na, b = map(int, input().split())\nprint(a + b)\n";
    let r = srv
        .http
        .post(format!("{}/api/v1/submissions", srv.url))
        .bearer_auth(&srv.token)
        .json(&json!({"problem": "aplusb", "language": "python3", "source": slow}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    srv.wait_state(&id, "judging", deadline, "never started judging")
        .await;
    let killed = pool.kill_replica().await.expect("a replica to kill");
    assert_eq!(pool.replicas(), 0);
    let v = srv
        .wait_state(
            &id,
            "done",
            deadline,
            "the job was not judged after the replica died",
        )
        .await;
    assert_eq!(v["verdict"], "AC", "{v}");
    let sub = srv.engine.shared.store.get_submission(&id).await.unwrap();
    assert_eq!(
        sub.attempts, 2,
        "judged again after the first delivery died with its replica"
    );
    assert_eq!(pool.replicas(), 1);
    let events: Vec<ScalingEvent> = srv.get("/api/v1/scaling-events").await;
    assert!(
        events.iter().any(|e| e.pool == "container"
            && e.from == 0
            && e.to == 1
            && e.rule == "min_replicas = 1"
            && e.ok),
        "the autoscaler restored the pool after replica {killed} died: {events:?}"
    );
    srv.shutdown().await;
}

/// DESIGN.md "Backpressure": five consecutive internal failures open the pool's breaker;
/// while open the pool claims nothing and the other jobs stay queued (not failed); after
/// `open_for` one trial job is judged and its success closes the breaker.
#[test]
fn five_internal_errors_open_the_breaker_and_a_good_trial_closes_it() {
    let _sandbox = crate::util::sandbox_lock();
    runtime().block_on(five_internal_errors_open_the_breaker_and_a_good_trial_closes_it_body());
}

async fn five_internal_errors_open_the_breaker_and_a_good_trial_closes_it_body() {
    // One slot: jobs are claimed one at a time, so the order of outcomes is fixed.
    let Some(srv) = start(
        "slots = 1\nmin_replicas = 1\nmax_replicas = 1",
        "[judging]\npaused = true\npoll_interval = \"50ms\"\n\
         [backpressure.breaker]\nopen_for = \"3s\"\n",
        1,
    )
    .await
    else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..7 {
        let (status, body, _) = srv.submit("normal").await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // The first five lose their source: judging them is an internal error (IE), the
    // judge's fault, exactly what the breaker counts.
    for id in &ids[..5] {
        let sub = srv.engine.shared.store.get_submission(id).await.unwrap();
        srv.engine
            .shared
            .blobs
            .delete(&sub.source_key)
            .await
            .unwrap();
    }
    srv.set_paused(false).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let verdict = |v: &Value| v["verdict"].as_str().map(str::to_string);
    srv.wait_state(
        &ids[4],
        "done",
        deadline,
        "the five IE jobs were not judged",
    )
    .await;
    let opened = Instant::now();
    for id in &ids[..5] {
        let v: Value = srv.get(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(verdict(&v).as_deref(), Some("IE"), "{v}");
    }
    // Open: the two good jobs wait in the queue, untouched.
    let s = srv.stats().await;
    assert_eq!(s.pools[0].name, "container");
    assert_eq!(s.pools[0].breaker, "open");
    assert_eq!(depth(&s), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = srv.stats().await;
    assert_eq!(
        (s.pools[0].breaker.as_str(), depth(&s)),
        ("open", 2),
        "nothing claimed while open"
    );
    for id in &ids[5..] {
        let v: Value = srv.get(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(v["state"], "queued", "{v}");
    }
    // After open_for, the trial (job 6) is judged AC and closes it; job 7 follows.
    srv.wait_state(
        &ids[6],
        "done",
        deadline,
        "the queued jobs were not judged after the breaker closed",
    )
    .await;
    assert!(
        opened.elapsed() >= Duration::from_millis(2500),
        "claimed before open_for ended"
    );
    for id in &ids[5..] {
        let v: Value = srv.get(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(verdict(&v).as_deref(), Some("AC"), "{v}");
    }
    let s = srv.stats().await;
    assert_eq!(s.pools[0].breaker, "closed");
    assert!(
        s.pools[0].error_rate > 0.7,
        "5 of 7 jobs were IE: {}",
        s.pools[0].error_rate
    );
    srv.shutdown().await;
}
