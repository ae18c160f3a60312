//! `judge bench api`: the engine end to end, in one process on a temporary data folder.
//!
//! 1. End to end: A+B in C++ with 10 tests, `submitters` clients each submitting and
//!    following the events to the verdict → submissions per second, p50/p99
//!    submit-to-verdict latency, and where the time went (sandbox vs everything else).
//! 2. The API alone, judging paused: POSTs paced at `rate` per second (open loop, each
//!    request sent at its scheduled time whatever the previous ones did) → p50/p99/max.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::cli::client::{Client, SseReader};
use crate::engine::api::wire::{event, SubmitRequest, SubmitResponse};
use crate::engine::config::{Overrides, ServeConfig};
use crate::engine::credentials::{self, ClientCredentials};
use crate::engine::model::Priority;
use crate::engine::Engine;

/// Options of `judge bench api`.
#[derive(Debug, Clone)]
pub struct ApiBenchOptions {
    /// Concurrent submitters in the end-to-end phase.
    pub submitters: usize,
    /// Submissions in the end-to-end phase.
    pub submissions: usize,
    /// POSTs per second in the API-alone phase.
    pub rate: u32,
    /// Length of the API-alone phase.
    pub duration: Duration,
}

const CPP_AC: &str = "#include <cstdio>\nint main(){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 1;printf(\"%lld\\n\",a+b);}\n";

fn write_problem(root: &Path) -> std::io::Result<()> {
    let dir = root.join("aplusb");
    std::fs::create_dir_all(dir.join("data/secret"))?;
    std::fs::write(
        dir.join("problem.yaml"),
        "name: A plus B\nlimits:\n  time_limit: 1\n  memory: 256\n",
    )?;
    for i in 0..10i64 {
        let (a, b) = (i * 7919 - 100_000, i * 104_729);
        std::fs::write(
            dir.join(format!("data/secret/{i:02}.in")),
            format!("{a} {b}\n"),
        )?;
        std::fs::write(
            dir.join(format!("data/secret/{i:02}.ans")),
            format!("{}\n", a + b),
        )?;
    }
    Ok(())
}

/// The `q` quantile (0..=1) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs both phases and prints the figures.
pub fn run(opts: ApiBenchOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.submitters >= 1 && opts.submissions >= 1,
        "--submitters and --submissions must be at least 1"
    );
    anyhow::ensure!(opts.rate >= 1, "--rate must be at least 1");
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let problems = tmp.path().join("problems");
    write_problem(&problems).context("writing the A+B package")?;
    // The gateway's buckets and load shedding would measure themselves, not the API.
    let text = "[rate_limit]\nburst = 1000000\nper_second = 1000000.0\n[judging]\npoll_interval = \"50ms\"\n";
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(tmp.path().join("data")),
        problems: Some(problems),
    };
    let mut config = ServeConfig::from_toml(text, "bench", &overrides)?;
    config.config_dir = tmp.path().join("config");
    let creds_path = credentials::path_in(&config.config_dir);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Arc<Engine>>();
    let server = rt.spawn(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        crate::engine::serve_with(
            listener,
            config,
            async {
                let _ = stop_rx.await;
            },
            move |e| {
                let _ = ready_tx.send(e.clone());
            },
        )
        .await
        .map_err(anyhow::Error::from)
    });
    let engine = ready_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow!("the engine did not start"))?;
    let creds = ClientCredentials::read(&creds_path)
        .map_err(|e| anyhow!(e))?
        .context("no client credentials")?;
    let client = Client::new(&creds.server, &creds.token)?;

    let result = (|| {
        end_to_end(&engine, &client, &opts)?;
        api_alone(&engine, &rt, &creds, &opts)
    })();
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    result
}

/// Submits and follows to the verdict; returns the latency and the verdict code.
fn submit_and_follow(client: &Client, source: &str) -> anyhow::Result<(Duration, String)> {
    let t = Instant::now();
    let req = SubmitRequest {
        problem: "aplusb".into(),
        language: "cpp".into(),
        source: source.into(),
        priority: None,
        cpus: None,
    };
    let r: SubmitResponse = client.post_json("/api/v1/submissions", &req, None)?;
    let mut events: SseReader<_> =
        client.events(&format!("/api/v1/submissions/{}/events", r.id))?;
    while let Some(ev) = events.next_event()? {
        if ev.event == event::FINAL {
            let v: serde_json::Value = serde_json::from_str(&ev.data)?;
            let verdict = v["result"]["verdict"].as_str().unwrap_or("?").to_string();
            if verdict != "AC" {
                eprintln!(
                    "bench: submission {} ended {verdict}: {}",
                    r.id, v["result"]
                );
            }
            return Ok((t.elapsed(), verdict));
        }
    }
    Err(anyhow!(
        "the event stream of {} ended without a verdict",
        r.id
    ))
}

fn end_to_end(engine: &Engine, client: &Client, opts: &ApiBenchOptions) -> anyhow::Result<()> {
    // Warm-up: page in the compiler and the box.
    submit_and_follow(client, CPP_AC)?;
    // The worker records its figures just after publishing the verdict.
    std::thread::sleep(Duration::from_millis(300));
    let pools: Vec<_> = engine.pools.values().cloned().collect();
    let sandbox0: u64 = pools
        .iter()
        .map(|p| p.live.sandbox_us.load(Ordering::Relaxed))
        .sum();
    let judging0: u64 = pools
        .iter()
        .map(|p| p.live.judging_us.load(Ordering::Relaxed))
        .sum();
    let slots: u32 = pools
        .iter()
        .filter(|p| p.name().as_str() == "microvm")
        .map(|p| p.slots())
        .sum();
    let t0 = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let latencies = std::sync::Mutex::new(Vec::new());
    let not_ac = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for w in 0..opts.submitters {
            let (next, latencies, not_ac) = (&next, &latencies, &not_ac);
            handles.push(s.spawn(move || -> anyhow::Result<()> {
                // Each source differs (a comment), as real submissions do.
                while next.fetch_add(1, Ordering::Relaxed) < opts.submissions {
                    let src = format!("// submitter {w}\n{CPP_AC}");
                    let (d, verdict) = submit_and_follow(client, &src)?;
                    latencies.lock().unwrap().push(d.as_secs_f64() * 1000.0);
                    if verdict != "AC" {
                        not_ac.lock().unwrap().push(verdict);
                    }
                }
                Ok(())
            }));
        }
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow!("a submitter panicked"))?)
    })?;
    let wall = t0.elapsed();
    let mut lat = latencies.into_inner().unwrap();
    lat.sort_by(f64::total_cmp);
    let sandbox_ms = (pools
        .iter()
        .map(|p| p.live.sandbox_us.load(Ordering::Relaxed))
        .sum::<u64>()
        - sandbox0) as f64
        / 1000.0;
    let judging_ms = (pools
        .iter()
        .map(|p| p.live.judging_us.load(Ordering::Relaxed))
        .sum::<u64>()
        - judging0) as f64
        / 1000.0;
    let latency_ms: f64 = lat.iter().sum();
    let n = lat.len() as f64;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "end to end: A+B C++, 10 tests, {} submitters, {} submissions, {slots} microvm slots",
        opts.submitters,
        lat.len()
    )?;
    let not_ac = not_ac.into_inner().unwrap();
    writeln!(
        out,
        "  verdicts             {} AC, {} other {:?}",
        lat.len() - not_ac.len(),
        not_ac.len(),
        not_ac
    )?;
    writeln!(
        out,
        "  throughput           {:.2} submissions/s",
        n / wall.as_secs_f64()
    )?;
    writeln!(
        out,
        "  submit→verdict       p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms",
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
        quantile(&lat, 1.0)
    )?;
    writeln!(out, "  per submission       {:.0} ms latency = {:.0} ms judging (claim→result) + {:.0} ms queue wait and API", latency_ms / n, judging_ms / n, (latency_ms - judging_ms) / n)?;
    writeln!(out, "  judging slot time    {:.1} % inside the sandbox (compile + 10 runs), {:.1} % outside (judge core, store, events)", 100.0 * sandbox_ms / judging_ms, 100.0 * (1.0 - sandbox_ms / judging_ms))?;
    let busy = slots as f64 * wall.as_secs_f64() * 1000.0;
    writeln!(
        out,
        "  slot utilization     {:.1} % of {slots} slots busy over the run",
        100.0 * judging_ms / busy
    )?;
    Ok(())
}

fn api_alone(
    engine: &Engine,
    rt: &tokio::runtime::Runtime,
    creds: &ClientCredentials,
    opts: &ApiBenchOptions,
) -> anyhow::Result<()> {
    engine.shared.paused.send_replace(true);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let url = format!("{}/api/v1/submissions", creds.server);
    let body = serde_json::to_vec(&SubmitRequest {
        problem: "aplusb".into(),
        language: "python3".into(),
        source: "a, b = map(int, input().split())\nprint(a + b)\n".into(),
        // Load shedding never refuses `high`: the figure is the API's, not the shedder's.
        priority: Some(Priority::High),
        cpus: None,
    })?;
    let total = (opts.rate as f64 * opts.duration.as_secs_f64()).round() as usize;
    let period = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let (lat, errors, wall) = rt.block_on(async {
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            tokio::time::sleep_until(start + period * i as u32).await;
            let (http, url, body, token) =
                (http.clone(), url.clone(), body.clone(), creds.token.clone());
            tasks.spawn(async move {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = matches!(&r, Ok(resp) if resp.status().as_u16() == 202);
                (t.elapsed().as_secs_f64() * 1000.0, ok)
            });
        }
        let mut lat = Vec::with_capacity(total);
        let mut errors = 0;
        while let Some(r) = tasks.join_next().await {
            let (ms, ok) = r.expect("a request task panicked");
            lat.push(ms);
            errors += usize::from(!ok);
        }
        (lat, errors, start.elapsed())
    });
    engine.shared.paused.send_replace(false);
    let mut lat = lat;
    lat.sort_by(f64::total_cmp);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "API alone (judging paused): POST /api/v1/submissions paced at {}/s for {:?}",
        opts.rate, opts.duration
    )?;
    writeln!(
        out,
        "  sent {} in {:.2} s ({:.0}/s achieved), {errors} not 202",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64()
    )?;
    writeln!(
        out,
        "  latency              p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
        quantile(&lat, 1.0)
    )?;
    anyhow::ensure!(errors == 0, "{errors} submissions were not accepted");
    Ok(())
}
