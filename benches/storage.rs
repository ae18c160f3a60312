//! `cargo bench --bench storage [-- JOBS]`: throughput and latency of the embedded SQLite
//! queue and store, the path every submission takes outside the sandbox.
//!
//! Phases (each on a fresh temporary data folder, multi-threaded tokio runtime):
//! 1. admission: `store.insert_submission` + `queue.enqueue` per submission, 8 concurrent
//!    submitters (what `POST /api/v1/submissions` does besides HTTP);
//! 2. dispatch: 16 consumers claim batches of 5 (the seed's read pacing, minus the sleep),
//!    then per job `mark_judging`, one `record_test`, `record_final`, `ack`;
//! 3. mixed: both at once;
//! 4. paced: admission alone at 500 submissions/s (open loop), the API benchmark's rate.
//!
//! Prints operations per second and p50/p99/max latency per call in µs.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use judge::engine::model::Priority;
use judge::engine::queue::{self, Job, JobQueue};
use judge::engine::store::{self, NewSubmission, Store};
use judge::judge::{CompileResult, JudgeResult, TestResult, Verdict};

const SUBMITTERS: usize = 8;
const CONSUMERS: usize = 16;
const LEASE: Duration = Duration::from_secs(60);

fn main() {
    let jobs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let (s, q) = open(dir.path());
        let t = Instant::now();
        let hist = admit(&s, &q, jobs, "a").await;
        report(
            "admission (insert_submission + enqueue)",
            jobs,
            t.elapsed(),
            &hist,
        );
        let t = Instant::now();
        let (n, hist) = dispatch(&s, &q, None).await;
        report(
            "dispatch (claim/5 + mark_judging + record_test + record_final + ack)",
            n,
            t.elapsed(),
            &hist,
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let (s, q) = open(dir.path());
        let t = Instant::now();
        let admit_task = {
            let (s, q) = (s.clone(), q.clone());
            tokio::spawn(async move { admit(&s, &q, jobs, "m").await })
        };
        let (n, dispatch_hist) = dispatch(&s, &q, Some(jobs)).await;
        let admit_hist = admit_task.await.expect("admission task");
        let elapsed = t.elapsed();
        report("mixed: admission", jobs, elapsed, &admit_hist);
        report("mixed: dispatch", n, elapsed, &dispatch_hist);

        // Open loop: one submission every 2 ms (500/s) for 4 s, each on its own task, as
        // the API would see them; the latency a POST adds for storage.
        let dir = tempfile::tempdir().expect("temp dir");
        let (s, q) = open(dir.path());
        let paced = 2000;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = stall_probe(stop.clone());
        let mut ticker = tokio::time::interval(Duration::from_millis(2));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let t = Instant::now();
        let mut tasks = Vec::with_capacity(paced);
        for i in 0..paced {
            ticker.tick().await;
            let (s, q) = (s.clone(), q.clone());
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                submit(&s, &q, format!("p{i}"), i).await;
                t.elapsed()
            }));
        }
        let mut hist = histogram();
        for task in tasks {
            record(&mut hist, task.await.expect("paced submission"));
        }
        report("paced admission at 500/s", paced, t.elapsed(), &hist);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let stalls = probe.join().expect("stall probe");
        println!(
            "  (machine noise meanwhile: a thread sleeping 1 ms woke late by p50 {} p99 {} max {} µs)",
            stalls.value_at_quantile(0.5),
            stalls.value_at_quantile(0.99),
            stalls.max()
        );
    });
}

fn open(dir: &Path) -> (Arc<dyn Store>, Arc<dyn JobQueue>) {
    let s = store::open_sqlite(&dir.join("judge.db")).expect("open store");
    let q = queue::open_sqlite(&dir.join("queue.db")).expect("open queue");
    (Arc::new(s), Arc::new(q))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// `jobs` submissions from [`SUBMITTERS`] concurrent tasks; latency per submission.
async fn admit(
    s: &Arc<dyn Store>,
    q: &Arc<dyn JobQueue>,
    jobs: usize,
    tag: &str,
) -> Histogram<u64> {
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|w| {
            let (s, q, tag) = (s.clone(), q.clone(), tag.to_string());
            tokio::spawn(async move {
                let mut hist = histogram();
                for i in (w..jobs).step_by(SUBMITTERS) {
                    let t = Instant::now();
                    submit(&s, &q, format!("{tag}{i}"), i).await;
                    record(&mut hist, t.elapsed());
                }
                hist
            })
        })
        .collect();
    let all = merge(tasks).await;
    all
}

/// What admission stores for one submission: the row, then the job.
async fn submit(s: &Arc<dyn Store>, q: &Arc<dyn JobQueue>, id: String, i: usize) {
    let priority = [Priority::High, Priority::Normal, Priority::Low][i % 3];
    s.insert_submission(&NewSubmission {
        id: id.clone(),
        user: format!("user{}", i % 50),
        problem: "aplusb".into(),
        language: "cpp".into(),
        pool: "microvm".into(),
        priority,
        source_key: format!("sources/{id}"),
        idempotency_key: Some(format!("key-{id}")),
    })
    .await
    .expect("insert submission");
    let job = Job {
        submission_id: id,
        priority,
        enqueued_at: time::OffsetDateTime::now_utc(),
    };
    q.enqueue("microvm", job).await.expect("enqueue");
}

/// [`CONSUMERS`] tasks drain the queue (until `expect` jobs are done when given, else until
/// it is empty); latency per job from claim to ack, claim amortized over its batch.
async fn dispatch(
    s: &Arc<dyn Store>,
    q: &Arc<dyn JobQueue>,
    expect: Option<usize>,
) -> (usize, Histogram<u64>) {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let (s, q, done) = (s.clone(), q.clone(), done.clone());
            tokio::spawn(async move {
                let mut hist = histogram();
                let consumer = format!("microvm-r0-s{c}");
                let result = JudgeResult {
                    verdict: Verdict::AC,
                    score: None,
                    compile: CompileResult {
                        ok: true,
                        message: String::new(),
                    },
                    tests: vec![test()],
                };
                loop {
                    let t = Instant::now();
                    let leases = q
                        .claim("microvm", &consumer, 5, LEASE)
                        .await
                        .expect("claim");
                    if leases.is_empty() {
                        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                        if expect.is_none_or(|n| finished >= n) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    let claim_share = t.elapsed() / u32::try_from(leases.len()).unwrap_or(1);
                    for lease in leases {
                        let t = Instant::now();
                        let id = &lease.job.submission_id;
                        s.mark_judging(id).await.expect("mark judging");
                        s.record_test(id, 0, &test()).await.expect("record test");
                        s.record_final(id, &result).await.expect("record final");
                        q.ack(&lease).await.expect("ack");
                        record(&mut hist, t.elapsed() + claim_share);
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                hist
            })
        })
        .collect();
    let all = merge(tasks).await;
    (done.load(std::sync::atomic::Ordering::SeqCst), all)
}

fn test() -> TestResult {
    TestResult {
        name: "secret/01".into(),
        verdict: Verdict::AC,
        time_ms: 3,
        memory_kib: 2048,
        message: String::new(),
        score: None,
    }
}

/// Records `d` in µs (at least 1).
fn record(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// A thread that sleeps 1 ms at a time until `stop` and records how late it wakes: the
/// scheduling stalls of a shared machine, to tell them apart from the storage's own tail.
fn stall_probe(
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Histogram<u64>> {
    std::thread::spawn(move || {
        let mut hist = histogram();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            record(
                &mut hist,
                t.elapsed().saturating_sub(Duration::from_millis(1)),
            );
        }
        hist
    })
}

/// The tasks' histograms merged.
async fn merge(tasks: Vec<tokio::task::JoinHandle<Histogram<u64>>>) -> Histogram<u64> {
    let mut all = histogram();
    for t in tasks {
        all.add(t.await.expect("benchmark task"))
            .expect("merge histograms");
    }
    all
}

fn report(what: &str, n: usize, elapsed: Duration, hist: &Histogram<u64>) {
    println!(
        "{what}: {n} in {:.2} s = {:.0}/s; latency µs p50 {} p99 {} max {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
}
