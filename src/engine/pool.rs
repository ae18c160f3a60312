//! A pool: a set of replicas started and stopped at run time, each a worker task with the
//! pool's slots (concurrent jobs), all judging with the pool's sandbox backend.
//!
//! Stopping a replica drains it: it claims nothing more, lets its jobs finish for up to the
//! drain timeout, then hands back the leases of those still running (the queue redelivers
//! them). The live numbers the autoscaler, metrics and `/api/v1/stats` need are in
//! [`PoolLive`], one per pool, never in globals.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::engine::config::PoolConfig;
use crate::engine::router::PoolName;
use crate::engine::worker::{self, Shared};
use crate::sandbox::Sandbox;

/// Judging durations are kept this long for the percentile and the error rate.
const WINDOW: Duration = Duration::from_secs(600);
/// At most this many samples are kept (oldest dropped first).
const MAX_SAMPLES: usize = 100_000;

/// Live figures of one pool, updated by its workers.
#[derive(Debug, Default)]
pub struct PoolLive {
    /// Replicas running now.
    pub replicas: AtomicU32,
    /// Slots busy judging now, over all replicas.
    pub busy_slots: AtomicU32,
    /// Jobs finished since start (any verdict).
    pub judged_total: AtomicU64,
    /// Jobs finished in IE since start.
    pub ie_total: AtomicU64,
    /// Internal failures that handed a job back instead of finishing it (storage faults).
    pub faults_total: AtomicU64,
    /// Last `Sandbox::prepare` time, µs (0: never measured).
    pub cold_start_us: AtomicU64,
    samples: Mutex<VecDeque<Sample>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    ms: f64,
    ie: bool,
}

impl PoolLive {
    /// Records one finished job: its judging time (claim to final result) and whether it
    /// ended in IE.
    pub fn record(&self, took: Duration, ie: bool) {
        self.judged_total.fetch_add(1, Ordering::Relaxed);
        if ie {
            self.ie_total.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back(Sample {
            at: now,
            ms: took.as_secs_f64() * 1000.0,
            ie,
        });
        while s.len() > MAX_SAMPLES || s.front().is_some_and(|f| now.duration_since(f.at) > WINDOW)
        {
            s.pop_front();
        }
    }

    /// The `q` quantile (0..=1) of judging times in ms over the last `over`; `None` when
    /// no job finished in that time.
    pub fn quantile_ms(&self, q: f64, over: Duration) -> Option<f64> {
        let now = Instant::now();
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<f64> = s
            .iter()
            .filter(|x| now.duration_since(x.at) <= over)
            .map(|x| x.ms)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        Some(v[i])
    }

    /// Share of jobs that ended in IE over the last `over`, 0.0..=1.0 (0 when none ran).
    pub fn error_rate(&self, over: Duration) -> f64 {
        let now = Instant::now();
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (n, ie) = s
            .iter()
            .filter(|x| now.duration_since(x.at) <= over)
            .fold((0u64, 0u64), |(n, ie), x| (n + 1, ie + x.ie as u64));
        if n == 0 {
            0.0
        } else {
            ie as f64 / n as f64
        }
    }

    /// Every judging time (ms) finished in the last `over`, oldest first.
    pub fn durations_ms(&self, over: Duration) -> Vec<f64> {
        let now = Instant::now();
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.iter()
            .filter(|x| now.duration_since(x.at) <= over)
            .map(|x| x.ms)
            .collect()
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
        Arc::new(Pool {
            config,
            sandbox,
            live: Arc::new(PoolLive::default()),
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

    /// Starts or drains replicas until `n` run; returns how many run afterwards. Drained
    /// replicas finish or hand back their jobs before this returns. The newest replicas
    /// are stopped first.
    pub async fn scale_to(self: &Arc<Self>, n: u32) -> u32 {
        let mut replicas = self.replicas.lock().await;
        while (replicas.len() as u32) < n {
            // A new replica makes one box ready first: the cold-start figure.
            let sandbox = self.sandbox.clone();
            if let Ok(Ok(took)) = tokio::task::spawn_blocking(move || sandbox.prepare()).await {
                self.live
                    .cold_start_us
                    .store(took.as_micros() as u64, Ordering::Relaxed);
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(worker::run_replica(self.clone(), id, stop_rx));
            replicas.push(Replica { id, stop, task });
            self.live
                .replicas
                .store(replicas.len() as u32, Ordering::Relaxed);
        }
        let mut draining = Vec::new();
        while (replicas.len() as u32) > n {
            let r = replicas.pop().expect("len > n >= 0");
            let _ = r.stop.send(true);
            draining.push(r);
        }
        self.live
            .replicas
            .store(replicas.len() as u32, Ordering::Relaxed);
        drop(replicas);
        for r in draining {
            if let Err(e) = r.task.await {
                tracing::error!(pool = %self.name(), replica = r.id, "replica task failed: {e}");
            }
        }
        self.replicas()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_error_rate() {
        let live = PoolLive::default();
        for ms in 1..=100u64 {
            live.record(Duration::from_millis(ms), ms % 10 == 0);
        }
        let hour = Duration::from_secs(3600);
        assert_eq!(live.quantile_ms(0.95, hour), Some(95.0));
        assert_eq!(live.quantile_ms(0.5, hour), Some(50.0));
        assert_eq!(live.quantile_ms(1.0, hour), Some(100.0));
        assert!((live.error_rate(hour) - 0.1).abs() < 1e-9);
        assert_eq!(live.judged_total.load(Ordering::Relaxed), 100);
        assert_eq!(live.ie_total.load(Ordering::Relaxed), 10);
        let empty = PoolLive::default();
        assert_eq!(empty.quantile_ms(0.95, hour), None);
        assert_eq!(empty.error_rate(hour), 0.0);
    }
}
