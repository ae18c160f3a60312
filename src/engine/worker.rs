//! Workers: a replica's loop (claim leases, run jobs in its slots) and one job's life:
//! claim → load the source from the blob store → judge on a blocking thread with the
//! pool's sandbox → stream events (per-test results into the store, live events to the
//! hub) → record the final result (idempotent) → ack. The lease is extended while judging.
//!
//! A judge fault is IE, never the contestant's verdict. A storage fault (the store or the
//! blob store failing) hands the job back instead, so it is judged again later.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::engine::backpressure::{Backpressure, ClaimOutcome, Permit, PoolBreaker};
use crate::engine::blob::{BlobError, BlobStore};
use crate::engine::catalog::Catalog;
use crate::engine::config::ServeConfig;
use crate::engine::events::{EventHub, LiveEvent};
use crate::engine::metrics::{JobRecord, Metrics};
use crate::engine::pool::Pool;
use crate::engine::queue::{JobQueue, Lease, QueueError};
use crate::engine::store::{Store, StoreError};
use crate::judge::language::Languages;
use crate::judge::{CompileResult, JudgeEvent, JudgeResult, Verdict};

/// How long a replica whose pool's circuit breaker is open waits before asking it again.
const BREAKER_RECHECK: Duration = Duration::from_millis(500);

/// What every pool's workers share with the API.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub config: ServeConfig,
    /// Submissions, results, users, problems' metadata.
    pub store: Arc<dyn Store>,
    /// Per-pool job queues.
    pub queue: Arc<dyn JobQueue>,
    /// Sources.
    pub blobs: Arc<dyn BlobStore>,
    /// Loaded problems.
    pub catalog: Catalog,
    /// The language table.
    pub languages: Arc<Languages>,
    /// Live events to followers.
    pub hub: EventHub,
    /// Judging paused (true: replicas claim nothing).
    pub paused: watch::Sender<bool>,
    /// Metrics registry: judging times, busy slots, cold starts, admission counters.
    pub metrics: Arc<Metrics>,
    /// Circuit breakers per pool, claim pacing, admission shedding.
    pub backpressure: Arc<Backpressure>,
}

/// The result recorded when the judge itself failed: IE with the reason in the compile
/// message (the contestant is never blamed).
pub fn internal_error(reason: impl Into<String>) -> JudgeResult {
    JudgeResult {
        verdict: Verdict::IE,
        score: None,
        compile: CompileResult {
            ok: false,
            message: format!("internal error: {}", reason.into()),
        },
        tests: Vec::new(),
    }
}

/// A replica: claims jobs of its pool into its free slots until `stop` turns true, then
/// drains (see the module docs of [`crate::engine::pool`]).
pub async fn run_replica(pool: Arc<Pool>, id: u32, mut stop: watch::Receiver<bool>) {
    let shared = pool.shared().clone();
    let name = pool.name().as_str();
    let consumer = format!("{name}-r{id}");
    let lease_len = shared.config.judging.lease;
    let slots = Arc::new(Semaphore::new(pool.config.slots as usize));
    let (abandon_tx, abandon_rx) = watch::channel(false);
    let mut paused = shared.paused.subscribe();
    let mut jobs = JoinSet::new();
    // The pool's circuit breaker gates every claim; the pacer spaces claims out (batches,
    // 100 ms apart while busy, exponential backoff on queue errors).
    let breaker = shared
        .backpressure
        .breaker(name)
        .unwrap_or_else(|| Arc::new(PoolBreaker::new(Default::default())));
    let mut pacer = shared.backpressure.pacer();
    tracing::info!(pool = name, replica = id, "replica started");
    loop {
        while jobs.try_join_next().is_some() {}
        if *stop.borrow() {
            break;
        }
        if *paused.borrow_and_update() {
            tokio::select! {
                _ = stop.changed() => {}
                _ = paused.changed() => {}
            }
            continue;
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                p = slots.clone().acquire_owned() => drop(p),
                _ = stop.changed() => {}
            }
            continue;
        }
        let (max, trial) = match breaker.permit() {
            Permit::Any => (pacer.batch_size(free), false),
            Permit::Trial => (1, true),
            Permit::Nothing => {
                // Open: claim nothing, the jobs stay queued (never failed by the breaker).
                tokio::select! {
                    _ = tokio::time::sleep(BREAKER_RECHECK) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        // Listen for wake-ups before looking, so an enqueue in between is not missed.
        let notified = pool.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match shared.queue.claim(name, &consumer, max, lease_len).await {
            Err(e) => {
                if trial {
                    breaker.return_trial();
                }
                let backoff = pacer.delay_after(ClaimOutcome::Error);
                tracing::warn!(
                    pool = name,
                    replica = id,
                    "claiming jobs failed, retrying in {backoff:?}: {e}"
                );
                pool.live.faults_total.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
            }
            Ok(leases) if leases.is_empty() => {
                if trial {
                    breaker.return_trial();
                }
                pacer.delay_after(ClaimOutcome::Empty);
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(shared.config.judging.poll_interval) => {}
                    _ = stop.changed() => {}
                    _ = paused.changed() => {}
                }
            }
            Ok(leases) => {
                let pause = pacer.delay_after(ClaimOutcome::Claimed(leases.len()));
                for lease in leases {
                    let permit = slots
                        .clone()
                        .try_acquire_owned()
                        .expect("claimed at most the free slots");
                    let job = run_job(pool.clone(), lease, permit, abandon_rx.clone(), trial);
                    jobs.spawn(job);
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    // Drain: let running jobs finish, then hand back what is left.
    let running = jobs.len();
    if running > 0 {
        tracing::info!(pool = name, replica = id, running, "replica draining");
        let finish = async { while jobs.join_next().await.is_some() {} };
        if tokio::time::timeout(shared.config.judging.drain_timeout, finish)
            .await
            .is_err()
        {
            let _ = abandon_tx.send(true);
            while jobs.join_next().await.is_some() {}
        }
    }
    match shared.queue.release_consumer(name, &consumer).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(pool = name, replica = id, "handed back {n} leases"),
        Err(e) => tracing::warn!(
            pool = name,
            replica = id,
            "handing back leases failed (they expire): {e}"
        ),
    }
    tracing::info!(pool = name, replica = id, "replica stopped");
}

/// How a job ended for its lease.
enum JobEnd {
    /// Final result recorded (or found recorded): ack.
    Done { ie: bool },
    /// Nothing to judge (unknown or finished submission): ack without stats.
    Skip,
    /// An internal fault: hand the job back so it is judged again.
    Retry(String),
    /// Shutdown cut it short: hand it back.
    Abandoned,
}

/// Frees the busy slot in the metrics when the job ends, however it ends (a killed replica
/// included).
struct Busy(Arc<Pool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.shared().metrics.slot_free(self.0.name().as_str());
    }
}

/// Aborts the lease heartbeat when the job ends, however it ends: a job cut short by a
/// killed replica must stop extending its lease, or the job would never be redelivered.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_job(
    pool: Arc<Pool>,
    lease: Lease,
    _permit: OwnedSemaphorePermit,
    abandon: watch::Receiver<bool>,
    trial: bool,
) {
    pool.shared().metrics.slot_busy(pool.name().as_str());
    let _busy = Busy(pool.clone());
    let started = Instant::now();
    let shared = pool.shared().clone();
    let id = lease.job.submission_id.clone();

    // Heartbeat: extend the lease every third of its length while judging.
    let (lease_tx, lease_rx) = watch::channel(lease.clone());
    let heartbeat = AbortOnDrop({
        let queue = shared.queue.clone();
        let len = shared.config.judging.lease;
        let id = id.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(len / 3).await;
                let cur = lease_tx.borrow().clone();
                match queue.extend(&cur, len).await {
                    Ok(l) => {
                        let _ = lease_tx.send(l);
                    }
                    Err(e @ QueueError::LeaseLost { .. }) => {
                        tracing::warn!(submission = %id, "lease lost while judging: {e}");
                        return;
                    }
                    Err(e) => tracing::warn!(submission = %id, "extending the lease failed: {e}"),
                }
            }
        })
    });

    let end = judge_job(&pool, &id, abandon).await;
    drop(heartbeat);
    let breaker = shared.backpressure.breaker(pool.name().as_str());
    match (&end, &breaker) {
        (JobEnd::Done { ie: false }, Some(b)) => b.record_success(trial),
        (JobEnd::Done { ie: true } | JobEnd::Retry(_), Some(b)) => b.record_internal_failure(trial),
        (JobEnd::Skip | JobEnd::Abandoned, Some(b)) if trial => b.return_trial(),
        _ => {}
    }
    let lease = lease_rx.borrow().clone();
    let queue = &shared.queue;
    match end {
        JobEnd::Done { ie } => {
            let queued = time::OffsetDateTime::now_utc() - lease.job.enqueued_at;
            let took = started.elapsed();
            pool.live
                .judging_us
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
            pool.live.judged.fetch_add(1, Ordering::Relaxed);
            shared.metrics.record_job(
                pool.name().as_str(),
                JobRecord {
                    processing: took,
                    latency: queued.try_into().unwrap_or_default(),
                    internal_error: ie,
                },
            );
            if let Err(e) = queue.ack(&lease).await {
                tracing::warn!(submission = %id, "ack refused (the result is recorded): {e}");
            }
        }
        JobEnd::Skip => {
            if let Err(e) = queue.ack(&lease).await {
                tracing::warn!(submission = %id, "ack refused: {e}");
            }
        }
        JobEnd::Retry(reason) => {
            pool.live.faults_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(submission = %id, "handing the job back after an internal fault: {reason}");
            shared.hub.abandon(&id);
            // Give the failing component a moment before the job comes round again.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Err(e) = queue.release(&lease).await {
                tracing::warn!(submission = %id, "release refused (the lease will expire): {e}");
            }
        }
        JobEnd::Abandoned => {
            shared.hub.abandon(&id);
            if let Err(e) = queue.release(&lease).await {
                tracing::warn!(submission = %id, "release refused (the lease will expire): {e}");
            }
        }
    }
}

fn store_fault(what: &str, e: StoreError) -> JobEnd {
    JobEnd::Retry(format!("{what}: {e}"))
}

async fn judge_job(pool: &Arc<Pool>, id: &str, mut abandon: watch::Receiver<bool>) -> JobEnd {
    let shared = pool.shared();
    let sub = match shared.store.get_submission(id).await {
        Ok(s) => s,
        Err(StoreError::NotFound { .. }) => {
            tracing::warn!(submission = %id, "job for an unknown submission; dropped");
            return JobEnd::Skip;
        }
        Err(e) => return store_fault("reading the submission", e),
    };
    match shared.store.mark_judging(id).await {
        Ok(true) => {}
        Ok(false) => return JobEnd::Skip, // already done: a redelivery after the final result
        Err(e) => return store_fault("marking it judging", e),
    }
    shared.hub.publish(id, LiveEvent::Judging);

    let result = 'judge: {
        let Some(problem) = shared.catalog.get(&sub.problem) else {
            break 'judge internal_error(format!(
                "problem {:?} is not installed on this server",
                sub.problem
            ));
        };
        let Some(language) = shared.languages.get(&sub.language).cloned() else {
            break 'judge internal_error(format!(
                "language {:?} is not known to this server",
                sub.language
            ));
        };
        let source = match shared.blobs.get(&sub.source_key).await {
            Ok(b) => b,
            Err(BlobError::NotFound { .. }) => {
                break 'judge internal_error(format!(
                    "the source {} is missing from the blob store",
                    sub.source_key
                ))
            }
            Err(e) => return JobEnd::Retry(format!("reading the source: {e}")),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<JudgeEvent>();
        let sandbox = pool.sandbox.clone();
        let opts = judge_options();
        let handle = tokio::task::spawn_blocking(move || {
            let mut on_event = |ev: &JudgeEvent| {
                let _ = tx.send(ev.clone());
            };
            crate::judge::runner::judge(
                &*sandbox,
                &problem,
                &language,
                &source,
                &opts,
                &mut on_event,
            )
        });
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => forward(shared, id, ev).await,
                    None => break,
                },
                changed = abandon.changed() => {
                    if changed.is_err() || *abandon.borrow() {
                        return JobEnd::Abandoned;
                    }
                }
            }
        }
        match handle.await {
            Ok(r) => r,
            Err(e) => internal_error(format!("the judge panicked: {e}")),
        }
    };

    // Record the final result; the first one recorded wins (a redelivered job's second
    // result is dropped), so what followers see is what the store holds.
    let mut delay = Duration::from_millis(100);
    let recorded = loop {
        match shared.store.record_final(id, &result).await {
            Ok(r) => break r,
            Err(e @ StoreError::NotFound { .. }) => return store_fault("recording the result", e),
            Err(e) if delay > Duration::from_secs(5) => {
                return store_fault("recording the result", e)
            }
            Err(e) => {
                tracing::warn!(submission = %id, "recording the result failed, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    };
    let final_result = if recorded {
        result
    } else {
        match shared.store.get_submission(id).await.map(|s| s.result) {
            Ok(Some(r)) => r,
            _ => result,
        }
    };
    let ie = final_result.verdict == Verdict::IE;
    shared.hub.publish(id, LiveEvent::Final(final_result));
    JobEnd::Done { ie }
}

/// Per-test results go to the store before followers hear of them, so a follower that
/// re-reads the store never misses one it was told about.
async fn forward(shared: &Shared, id: &str, ev: JudgeEvent) {
    match ev {
        JudgeEvent::Compiling => shared.hub.publish(id, LiveEvent::Compiling),
        JudgeEvent::Compiled {
            compile,
            total_tests,
        } => shared.hub.publish(
            id,
            LiveEvent::Compiled {
                compile,
                total_tests,
            },
        ),
        JudgeEvent::TestFinished {
            index,
            total,
            result,
        } => {
            if let Err(e) = shared.store.record_test(id, index as u32, &result).await {
                tracing::warn!(submission = %id, index, "recording a test result failed: {e}");
            }
            shared.hub.publish(
                id,
                LiveEvent::Test {
                    index,
                    total,
                    result,
                },
            );
        }
        JudgeEvent::Finished { .. } => {}
    }
}

/// Options of a server-side judging: every test in the package's order, stopping where
/// the package's rules say (as `judge test` without flags). The pool's limits were checked
/// at admission (a problem above them is refused with a 4xx).
fn judge_options() -> crate::judge::runner::JudgeOptions {
    crate::judge::runner::JudgeOptions::default()
}
