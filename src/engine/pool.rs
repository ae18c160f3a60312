//! A pool: a set of replicas started and stopped at run time, each a worker task with the
//! pool's slots (concurrent jobs), all judging with the pool's sandbox backend.
//!
//! Stopping a replica drains it: it claims nothing more, lets its jobs finish for up to the
//! drain timeout, then hands back the leases of those still running (the queue redelivers
//! them). Live counts are in [`PoolLive`], figures over time in the engine's
//! [`crate::engine::metrics::Metrics`], one per engine, never in globals.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::engine::config::PoolConfig;
use crate::engine::router::PoolName;
use crate::engine::worker::{self, Shared};
use crate::sandbox::Sandbox;

/// Live counts of one pool that its replicas and workers keep (figures over time — busy
/// slots, judging times, error rate, cold starts — are in [`crate::engine::metrics::Metrics`]).
#[derive(Debug, Default)]
pub struct PoolLive {
    /// Replicas running now.
    pub replicas: AtomicU32,
    /// Internal failures that handed a job back instead of finishing it (storage faults).
    pub faults_total: AtomicU64,
    /// Wall time spent inside `Sandbox::run` (compiles, tests, checkers), µs, since start:
    /// with the judging times it gives the share of time outside the sandbox.
    pub sandbox_us: AtomicU64,
    /// `Sandbox::run` calls since start.
    pub sandbox_runs: AtomicU64,
    /// Judging time (claim to recorded result) summed over finished jobs, µs, since start.
    pub judging_us: AtomicU64,
    /// Jobs finished (result recorded) since start.
    pub judged: AtomicU64,
}

/// Why a pool could not start a replica.
#[derive(Debug, thiserror::Error)]
#[error("pool {pool}: starting a replica failed ({running} running): {reason}")]
pub struct StartError {
    /// The pool.
    pub pool: PoolName,
    /// Replicas running after the attempt.
    pub running: u32,
    /// Why, e.g. the sandbox could not prepare a box.
    pub reason: String,
}

/// The pool's sandbox, timing every run into [`PoolLive::sandbox_us`].
struct Metered {
    inner: Arc<dyn Sandbox>,
    live: Arc<PoolLive>,
}

impl Sandbox for Metered {
    fn run(
        &self,
        spec: &crate::sandbox::RunSpec,
    ) -> Result<crate::sandbox::RunOutcome, crate::sandbox::SandboxError> {
        let t = Instant::now();
        let r = self.inner.run(spec);
        self.live
            .sandbox_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.live.sandbox_runs.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn prepare(&self) -> Result<Duration, crate::sandbox::SandboxError> {
        self.inner.prepare()
    }
}

/// A running replica.
#[derive(Debug)]
struct Replica {
    id: u32,
    /// Set to true to drain it.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// One pool of replicas.
pub struct Pool {
    /// The pool's configuration (slots per replica, limits, backend).
    pub config: PoolConfig,
    /// Its sandbox, shared by all its slots.
    pub sandbox: Arc<dyn Sandbox>,
    /// Live figures.
    pub live: Arc<PoolLive>,
    /// Woken on every enqueue to this pool, so an idle replica claims at once.
    pub wake: Arc<Notify>,
    shared: Arc<Shared>,
    replicas: tokio::sync::Mutex<Vec<Replica>>,
    next_id: AtomicU32,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.config)
            .field("sandbox", &self.sandbox.name())
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool with no replica yet.
    pub fn new(config: PoolConfig, sandbox: Arc<dyn Sandbox>, shared: Arc<Shared>) -> Arc<Pool> {
        let live = Arc::new(PoolLive::default());
        Arc::new(Pool {
            config,
            sandbox: Arc::new(Metered {
                inner: sandbox,
                live: live.clone(),
            }),
            live,
            wake: Arc::new(Notify::new()),
            shared,
            replicas: tokio::sync::Mutex::new(Vec::new()),
            next_id: AtomicU32::new(1),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> PoolName {
        self.config.name
    }

    /// Replicas running now.
    pub fn replicas(&self) -> u32 {
        self.live.replicas.load(Ordering::Relaxed)
    }

    /// Concurrent slots over all replicas.
    pub fn slots(&self) -> u32 {
        self.replicas() * self.config.slots
    }

    /// Starts or drains replicas until `n` run; returns how many run afterwards. A replica
    /// whose box cannot be prepared is not started (see [`Pool::try_scale_to`]; the error
    /// is logged). Drained replicas finish or hand back their jobs before this returns.
    pub async fn scale_to(self: &Arc<Self>, n: u32) -> u32 {
        match self.try_scale_to(n).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("{e}");
                e.running
            }
        }
    }

    /// Starts or drains replicas until `n` run and returns how many run. Each new replica
    /// first makes one box ready (`Sandbox::prepare`, the cold-start figure); when that fails
    /// no further replica is started. Drained replicas (the newest first) finish or hand
    /// back their jobs before this returns.
    ///
    /// # Errors
    /// [`StartError`] when a replica could not be started; it says how many run.
    pub async fn try_scale_to(self: &Arc<Self>, n: u32) -> Result<u32, StartError> {
        let name = self.name().as_str();
        let mut replicas = self.replicas.lock().await;
        let mut failed = None;
        while (replicas.len() as u32) < n {
            let sandbox = self.sandbox.clone();
            match tokio::task::spawn_blocking(move || sandbox.prepare()).await {
                Ok(Ok(took)) => self.shared.metrics.record_cold_start(name, took),
                Ok(Err(e)) => {
                    failed = Some(format!("the sandbox could not prepare a box: {e}"));
                    break;
                }
                Err(e) => {
                    failed = Some(format!("preparing a box panicked: {e}"));
                    break;
                }
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(worker::run_replica(self.clone(), id, stop_rx));
            replicas.push(Replica { id, stop, task });
            self.set_running(replicas.len());
        }
        let mut draining = Vec::new();
        while (replicas.len() as u32) > n {
            let r = replicas.pop().expect("len > n >= 0");
            let _ = r.stop.send(true);
            draining.push(r);
        }
        self.set_running(replicas.len());
        drop(replicas);
        for r in draining {
            if let Err(e) = r.task.await {
                tracing::error!(pool = %self.name(), replica = r.id, "replica task failed: {e}");
            }
        }
        match failed {
            None => Ok(self.replicas()),
            Some(reason) => Err(StartError {
                pool: self.name(),
                running: self.replicas(),
                reason,
            }),
        }
    }

    /// Kills the newest replica at once, as a crash would: no drain, no hand-back. Its jobs'
    /// leases are left to expire, after which the queue hands the jobs to another replica
    /// (failure drills and tests). Returns the killed replica's id, `None` when none runs.
    pub async fn kill_replica(self: &Arc<Self>) -> Option<u32> {
        let mut replicas = self.replicas.lock().await;
        let r = replicas.pop()?;
        r.task.abort();
        self.set_running(replicas.len());
        drop(replicas);
        let _ = r.task.await;
        tracing::warn!(pool = %self.name(), replica = r.id, "replica killed");
        Some(r.id)
    }

    fn set_running(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.live.replicas.store(n, Ordering::Relaxed);
        self.shared
            .metrics
            .set_running_replicas(self.name().as_str(), n);
    }

    /// Drains every replica (graceful shutdown).
    pub async fn stop(self: &Arc<Self>) {
        self.scale_to(0).await;
    }

    /// The shared engine parts the workers use.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
