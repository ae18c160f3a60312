//! The metrics registry of one engine: what workers, the admission path and the samplers
//! record, summarized for `/api/v1/stats`, the autoscaler and the alerts, and rendered for
//! Prometheus on `GET /metrics`.
//!
//! The exposition text is rendered here from our own data rather than through the `metrics`
//! crate's global recorder: the registry is per engine (integration tests run several servers
//! in one process, and a global recorder would mix their figures), the p95 and error rate need
//! sliding windows we keep anyway (HDR histograms per 10 s slot), and the Prometheus text format
//! (version 0.0.4) is small. Histograms are real Prometheus histograms: cumulative `_bucket`
//! series with `le` labels up to `+Inf`, plus `_sum` and `_count`.
//!
//! Metric names (all prefixed `judge_`): `queue_depth{pool,priority}`, `in_flight{pool}`,
//! `processing_time_seconds{pool}` (histogram, claim to result), `latency_seconds{pool}`
//! (histogram, submit to verdict), `processing_time_p95_seconds{pool}`,
//! `worker_utilization{pool}`, `error_rate{pool}`, `jobs_total{pool,outcome}`,
//! `cold_start_seconds{pool}`, `replicas{pool}`, `replicas_desired{pool}`, `slots{pool}`,
//! `busy_slots{pool}`, `circuit_breaker_open{pool}`, `submissions_total`,
//! `shed_total{priority}`, `rate_limited_total`, `shedding_level`, `worker_memory_ratio`,
//! `uptime_seconds`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::time::Instant;

use crate::engine::backpressure::{serde_duration, Backpressure, BreakerState, ConfigError};
use crate::engine::model::{PoolStats, Priority, QueueDepth, Shedding};
use crate::engine::queue::JobQueue;

/// Width of one slot of the sliding windows.
const SLOT: Duration = Duration::from_secs(10);
/// Largest value the HDR histograms hold, in ms (1 hour).
const HDR_MAX_MS: u64 = 3_600_000;

/// `[metrics]` in judge.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Window of the p95 figures (stats, autoscaler). Default 5 min; a multiple of 10 s.
    #[serde(with = "serde_duration")]
    pub p95_window: Duration,
    /// Window of the error rate. Default 10 min (the seed's alert "for" duration).
    #[serde(with = "serde_duration")]
    pub error_window: Duration,
    /// Window over which utilization is averaged. Default 1 min.
    #[serde(with = "serde_duration")]
    pub utilization_window: Duration,
    /// How often queue depths, utilization and host memory are sampled. Default 1 s.
    #[serde(with = "serde_duration")]
    pub sample_interval: Duration,
    /// Upper bounds (seconds) of the buckets of the time histograms on /metrics.
    pub buckets_s: Vec<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            p95_window: Duration::from_secs(300),
            error_window: Duration::from_secs(600),
            utilization_window: Duration::from_secs(60),
            sample_interval: Duration::from_secs(1),
            buckets_s: vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
        }
    }
}

impl MetricsConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// The first value out of range, with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, d) in [
            ("metrics.p95_window", self.p95_window),
            ("metrics.error_window", self.error_window),
        ] {
            if d < SLOT || d > Duration::from_secs(3600) {
                return Err(ConfigError::new(key, "must be between 10s and 1h"));
            }
        }
        if self.utilization_window.is_zero() {
            return Err(ConfigError::new(
                "metrics.utilization_window",
                "must be above 0",
            ));
        }
        if self.sample_interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "metrics.sample_interval",
                "must be at least 100ms",
            ));
        }
        let ok = !self.buckets_s.is_empty()
            && self.buckets_s.iter().all(|b| b.is_finite() && *b > 0.0)
            && self.buckets_s.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(ConfigError::new(
                "metrics.buckets_s",
                "must be a non-empty, strictly increasing list of positive seconds",
            ));
        }
        Ok(())
    }

    fn slots(d: Duration) -> usize {
        (d.as_millis() / SLOT.as_millis()).max(1) as usize
    }
}

/// A Prometheus histogram: cumulative-at-render bucket counts, sum and count.
#[derive(Debug, Clone)]
struct PromHistogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl PromHistogram {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

fn hdr() -> Histogram<u64> {
    // 1 ms .. 1 h at 3 significant figures; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, HDR_MAX_MS, 3).expect("valid HDR histogram bounds")
}

/// One 10 s slot of the sliding windows.
#[derive(Debug)]
struct Slot {
    /// Slot number since the registry started.
    index: u64,
    processing_ms: Histogram<u64>,
    latency_ms: Histogram<u64>,
    jobs: u64,
    internal_errors: u64,
}

/// How one job went, as a worker reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobRecord {
    /// Claim to recorded result.
    pub processing: Duration,
    /// Submission to recorded result (includes the wait in the queue).
    pub latency: Duration,
    /// Whether it ended in IE (a sandbox or storage fault).
    pub internal_error: bool,
}

#[derive(Debug)]
struct PoolState {
    backend: String,
    min_replicas: u32,
    max_replicas: u32,
    slots_per_replica: u32,
    replicas: u32,
    desired_replicas: u32,
    busy_slots: u32,
    queue_depth: QueueDepth,
    in_flight: u64,
    breaker: BreakerState,
    window: VecDeque<Slot>,
    processing: PromHistogram,
    latency: PromHistogram,
    jobs_ok: u64,
    jobs_internal_error: u64,
    cold_start: Option<Duration>,
    utilization: VecDeque<(Instant, f64)>,
    idle_since: Option<Instant>,
    scale_up_failures: VecDeque<Instant>,
}

/// What a pool is, for the registry: fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// `container`, `microvm`, `trusted`.
    pub name: String,
    /// Sandbox backend name.
    pub backend: String,
    /// Concurrent slots of one replica.
    pub slots_per_replica: u32,
    /// Autoscaler bounds.
    pub min_replicas: u32,
    /// Autoscaler bounds.
    pub max_replicas: u32,
}

/// The registry. Cheap to share behind an `Arc`; every method locks one pool's state briefly.
#[derive(Debug)]
pub struct Metrics {
    cfg: MetricsConfig,
    started: Instant,
    pools: BTreeMap<String, Mutex<PoolState>>,
    submissions_total: AtomicU64,
    shed_low: AtomicU64,
    shed_normal: AtomicU64,
    rate_limited_total: AtomicU64,
    shedding: Mutex<Shedding>,
    /// Host memory in use, 0..1, as f64 bits.
    memory_ratio: AtomicU64,
}

impl Metrics {
    /// A registry for `pools`, started now.
    pub fn new(cfg: MetricsConfig, pools: &[PoolInfo]) -> Self {
        let pools = pools
            .iter()
            .map(|p| {
                let st = PoolState {
                    backend: p.backend.clone(),
                    min_replicas: p.min_replicas,
                    max_replicas: p.max_replicas,
                    slots_per_replica: p.slots_per_replica,
                    replicas: 0,
                    desired_replicas: p.min_replicas,
                    busy_slots: 0,
                    queue_depth: QueueDepth::default(),
                    in_flight: 0,
                    breaker: BreakerState::Closed,
                    window: VecDeque::new(),
                    processing: PromHistogram::new(&cfg.buckets_s),
                    latency: PromHistogram::new(&cfg.buckets_s),
                    jobs_ok: 0,
                    jobs_internal_error: 0,
                    cold_start: None,
                    utilization: VecDeque::new(),
                    idle_since: None,
                    scale_up_failures: VecDeque::new(),
                };
                (p.name.clone(), Mutex::new(st))
            })
            .collect();
        Self {
            cfg,
            started: Instant::now(),
            pools,
            submissions_total: AtomicU64::new(0),
            shed_low: AtomicU64::new(0),
            shed_normal: AtomicU64::new(0),
            rate_limited_total: AtomicU64::new(0),
            shedding: Mutex::new(Shedding::None),
            memory_ratio: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MetricsConfig {
        &self.cfg
    }

    /// Pool names, sorted.
    pub fn pool_names(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    fn with_pool<R>(&self, pool: &str, f: impl FnOnce(&mut PoolState) -> R) -> Option<R> {
        let m = self.pools.get(pool)?;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut g))
    }

    fn slot_index(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.started).as_millis() / SLOT.as_millis()) as u64
    }

    // ---- recorded by workers ------------------------------------------------------------

    /// A job of `pool` finished (its result is recorded). Unknown pools are ignored.
    pub fn record_job(&self, pool: &str, job: JobRecord) {
        self.record_job_at(Instant::now(), pool, job);
    }

    fn record_job_at(&self, now: Instant, pool: &str, job: JobRecord) {
        let index = self.slot_index(now);
        let keep = MetricsConfig::slots(self.cfg.p95_window.max(self.cfg.error_window));
        self.with_pool(pool, |p| {
            if p.window.back().is_none_or(|s| s.index != index) {
                p.window.push_back(Slot {
                    index,
                    processing_ms: hdr(),
                    latency_ms: hdr(),
                    jobs: 0,
                    internal_errors: 0,
                });
            }
            while p
                .window
                .front()
                .is_some_and(|s| s.index + keep as u64 <= index)
            {
                p.window.pop_front();
            }
            let slot = p.window.back_mut().expect("pushed above");
            let ms = |d: Duration| (d.as_millis() as u64).clamp(1, HDR_MAX_MS);
            // saturating_record clamps to the histogram's range instead of failing.
            slot.processing_ms.saturating_record(ms(job.processing));
            slot.latency_ms.saturating_record(ms(job.latency));
            slot.jobs += 1;
            p.processing.observe(job.processing.as_secs_f64());
            p.latency.observe(job.latency.as_secs_f64());
            if job.internal_error {
                slot.internal_errors += 1;
                p.jobs_internal_error += 1;
            } else {
                p.jobs_ok += 1;
            }
        });
    }

    /// A slot of `pool` started judging a job.
    pub fn slot_busy(&self, pool: &str) {
        self.with_pool(pool, |p| p.busy_slots += 1);
    }

    /// A slot of `pool` is free again.
    pub fn slot_free(&self, pool: &str) {
        self.with_pool(pool, |p| p.busy_slots = p.busy_slots.saturating_sub(1));
    }

    /// Time to get a new box or replica of `pool` ready (`Sandbox::prepare`, replica start).
    pub fn record_cold_start(&self, pool: &str, d: Duration) {
        self.with_pool(pool, |p| p.cold_start = Some(d));
    }

    /// The pool's circuit breaker changed state.
    pub fn set_breaker(&self, pool: &str, s: BreakerState) {
        self.with_pool(pool, |p| p.breaker = s);
    }

    // ---- recorded by the autoscaler / actuator ------------------------------------------

    /// Replicas running and wanted.
    pub fn set_replicas(&self, pool: &str, running: u32, desired: u32) {
        self.with_pool(pool, |p| {
            p.replicas = running;
            p.desired_replicas = desired;
        });
    }

    /// Replicas running now (the pool reports each start, drain and crash).
    pub fn set_running_replicas(&self, pool: &str, running: u32) {
        self.with_pool(pool, |p| p.replicas = running);
    }

    /// A scale-up of `pool` failed (feeds the scaling failure alert for 10 minutes).
    pub fn record_scale_up_failure(&self, pool: &str) {
        let now = Instant::now();
        self.with_pool(pool, |p| p.scale_up_failures.push_back(now));
    }

    // ---- recorded by the admission path -------------------------------------------------

    /// A submission was accepted.
    pub fn record_submission(&self) {
        self.submissions_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A submission of `priority` was refused by load shedding.
    pub fn record_shed(&self, priority: Priority) {
        match priority {
            Priority::Low => &self.shed_low,
            Priority::Normal | Priority::High => &self.shed_normal,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused by the rate limiter.
    pub fn record_rate_limited(&self) {
        self.rate_limited_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The admission's shedding level.
    pub fn set_shedding(&self, s: Shedding) {
        *self.shedding.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    // ---- recorded by the sampler --------------------------------------------------------

    /// A fresh reading of `pool`'s queue: waiting jobs per priority and leased jobs.
    /// Also samples utilization and tracks worker idle time.
    pub fn sample_queue(&self, pool: &str, depth: QueueDepth, in_flight: u64) {
        self.sample_queue_at(Instant::now(), pool, depth, in_flight);
    }

    fn sample_queue_at(&self, now: Instant, pool: &str, depth: QueueDepth, in_flight: u64) {
        let window = self.cfg.utilization_window;
        self.with_pool(pool, |p| {
            p.queue_depth = depth;
            p.in_flight = in_flight;
            let slots = p.replicas * p.slots_per_replica;
            let util = if slots == 0 {
                0.0
            } else {
                f64::from(p.busy_slots.min(slots)) / f64::from(slots)
            };
            p.utilization.push_back((now, util));
            while p
                .utilization
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > window)
            {
                p.utilization.pop_front();
            }
            let free = slots.saturating_sub(p.busy_slots);
            let replica_idle = p.replicas > 0 && depth.total() == 0 && free >= p.slots_per_replica;
            p.idle_since = if replica_idle {
                Some(p.idle_since.unwrap_or(now))
            } else {
                None
            };
        });
    }

    /// Share of host memory in use (0..1), from the sampler.
    pub fn set_memory_ratio(&self, r: f64) {
        self.memory_ratio.store(r.to_bits(), Ordering::Relaxed);
    }

    // ---- read by stats, the autoscaler and alerts ---------------------------------------

    /// Total waiting jobs over all pools, as last sampled.
    pub fn total_depth(&self) -> u64 {
        self.pools
            .keys()
            .filter_map(|p| self.with_pool(p, |s| s.queue_depth.total()))
            .sum()
    }

    /// Submissions refused by shedding since start.
    pub fn shed_total(&self) -> u64 {
        self.shed_low.load(Ordering::Relaxed) + self.shed_normal.load(Ordering::Relaxed)
    }

    /// What the autoscaler reads for `pool`.
    pub fn scale_inputs(&self, pool: &str) -> Option<crate::engine::autoscale::PoolMetrics> {
        self.scale_inputs_at(Instant::now(), pool)
    }

    fn scale_inputs_at(
        &self,
        now: Instant,
        pool: &str,
    ) -> Option<crate::engine::autoscale::PoolMetrics> {
        let p95 = self.latency_p95_at(now, pool);
        self.with_pool(pool, |p| crate::engine::autoscale::PoolMetrics {
            queue_depth: p.queue_depth.total(),
            p95_latency_ms: p95,
            worker_idle_time: p
                .idle_since
                .map(|t| now.duration_since(t))
                .unwrap_or_default(),
        })
    }

    fn window_p95(
        &self,
        now: Instant,
        pool: &str,
        pick: fn(&Slot) -> &Histogram<u64>,
    ) -> Option<f64> {
        let index = self.slot_index(now);
        let n = MetricsConfig::slots(self.cfg.p95_window) as u64;
        self.with_pool(pool, |p| {
            let mut merged = hdr();
            for s in p.window.iter().filter(|s| s.index + n > index) {
                // Same bounds on every slot histogram: adding cannot fail.
                let _ = merged.add(pick(s));
            }
            (!merged.is_empty()).then(|| merged.value_at_quantile(0.95) as f64)
        })
        .flatten()
    }

    /// p95 of processing time (claim to result) in ms over the p95 window.
    pub fn processing_p95(&self, pool: &str) -> Option<f64> {
        self.window_p95(Instant::now(), pool, |s| &s.processing_ms)
    }

    fn latency_p95_at(&self, now: Instant, pool: &str) -> Option<f64> {
        self.window_p95(now, pool, |s| &s.latency_ms)
    }

    /// Share of `pool`'s jobs that ended in IE over the error window (0 with no jobs).
    pub fn error_rate(&self, pool: &str) -> f64 {
        self.error_rate_at(Instant::now(), pool)
    }

    fn error_rate_at(&self, now: Instant, pool: &str) -> f64 {
        let index = self.slot_index(now);
        let n = MetricsConfig::slots(self.cfg.error_window) as u64;
        self.with_pool(pool, |p| {
            let (jobs, ie) = p
                .window
                .iter()
                .filter(|s| s.index + n > index)
                .fold((0, 0), |(j, e), s| (j + s.jobs, e + s.internal_errors));
            if jobs == 0 {
                0.0
            } else {
                ie as f64 / jobs as f64
            }
        })
        .unwrap_or(0.0)
    }

    /// Failed scale-ups of `pool` in the last 10 minutes.
    pub fn scale_up_failures(&self, pool: &str) -> u64 {
        let now = Instant::now();
        self.with_pool(pool, |p| {
            while p
                .scale_up_failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(600))
            {
                p.scale_up_failures.pop_front();
            }
            p.scale_up_failures.len() as u64
        })
        .unwrap_or(0)
    }

    /// The alert samples: queue depth, error rate and scaling failures per pool, host memory.
    pub fn alert_samples(&self) -> Vec<crate::engine::alerts::Sample> {
        use crate::engine::alerts::{AlertMetric, Sample};
        let mut out = Vec::new();
        for pool in self.pools.keys() {
            let depth = self.with_pool(pool, |p| p.queue_depth.total()).unwrap_or(0);
            let s = |metric, value| Sample {
                metric,
                pool: Some(pool.clone()),
                value,
            };
            out.push(s(AlertMetric::QueueDepth, depth as f64));
            out.push(s(AlertMetric::ErrorRate, self.error_rate(pool)));
            out.push(s(
                AlertMetric::ScalingFailures,
                self.scale_up_failures(pool) as f64,
            ));
        }
        out.push(Sample {
            metric: AlertMetric::WorkerMemory,
            pool: None,
            value: f64::from_bits(self.memory_ratio.load(Ordering::Relaxed)),
        });
        out
    }

    /// The per-pool part of `/api/v1/stats`.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let now = Instant::now();
        self.pools
            .keys()
            .filter_map(|name| {
                let p95 = self.window_p95(now, name, |s| &s.processing_ms);
                let error_rate = self.error_rate_at(now, name);
                self.with_pool(name, |p| PoolStats {
                    name: name.clone(),
                    backend: p.backend.clone(),
                    queue_depth: p.queue_depth,
                    in_flight: p.in_flight,
                    replicas: p.replicas,
                    desired_replicas: p.desired_replicas,
                    min_replicas: p.min_replicas,
                    max_replicas: p.max_replicas,
                    slots: p.replicas * p.slots_per_replica,
                    busy_slots: p.busy_slots,
                    utilization: if p.utilization.is_empty() {
                        0.0
                    } else {
                        p.utilization.iter().map(|(_, u)| u).sum::<f64>()
                            / p.utilization.len() as f64
                    },
                    p95_ms: p95,
                    error_rate,
                    cold_start_ms: p.cold_start.map(|d| d.as_secs_f64() * 1000.0),
                    breaker: p.breaker.as_str().to_string(),
                })
            })
            .collect()
    }

    /// Fills the server-wide counters of `/api/v1/stats` (pools, totals, shedding, uptime);
    /// the caller sets `now` and `recent`.
    pub fn fill_stats(&self, stats: &mut crate::engine::model::Stats) {
        stats.uptime_s = self.started.elapsed().as_secs();
        stats.pools = self.pool_stats();
        stats.submissions_total = self.submissions_total.load(Ordering::Relaxed);
        stats.shed_total = self.shed_total();
        stats.rate_limited_total = self.rate_limited_total.load(Ordering::Relaxed);
        stats.shedding = *self.shedding.lock().unwrap_or_else(|e| e.into_inner());
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render_prometheus(&self) -> String {
        let mut o = String::with_capacity(8192);
        let stats = self.pool_stats();
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP judge_{name} {help}\n# TYPE judge_{name} {kind}");
        };
        let gauge = |o: &mut String, name: &str, help: &str, f: &dyn Fn(&PoolStats) -> f64| {
            head(o, name, "gauge", help);
            for s in &stats {
                let _ = writeln!(o, "judge_{name}{{pool=\"{}\"}} {}", s.name, f(s));
            }
        };
        head(
            &mut o,
            "queue_depth",
            "gauge",
            "Jobs waiting in the queue, per pool and priority.",
        );
        for s in &stats {
            for (prio, v) in [
                ("high", s.queue_depth.high),
                ("normal", s.queue_depth.normal),
                ("low", s.queue_depth.low),
            ] {
                let _ = writeln!(
                    o,
                    "judge_queue_depth{{pool=\"{}\",priority=\"{prio}\"}} {v}",
                    s.name
                );
            }
        }
        gauge(&mut o, "in_flight", "Jobs leased by a worker.", &|s| {
            s.in_flight as f64
        });
        gauge(&mut o, "replicas", "Replicas running.", &|s| {
            f64::from(s.replicas)
        });
        gauge(
            &mut o,
            "replicas_desired",
            "Replicas the autoscaler wants.",
            &|s| f64::from(s.desired_replicas),
        );
        gauge(
            &mut o,
            "slots",
            "Concurrent judging slots over all replicas.",
            &|s| f64::from(s.slots),
        );
        gauge(&mut o, "busy_slots", "Slots judging now.", &|s| {
            f64::from(s.busy_slots)
        });
        gauge(
            &mut o,
            "worker_utilization",
            "Busy slots / slots, averaged over the utilization window.",
            &|s| s.utilization,
        );
        gauge(
            &mut o,
            "error_rate",
            "Share of jobs that ended in IE over the error window.",
            &|s| s.error_rate,
        );
        gauge(
            &mut o,
            "processing_time_p95_seconds",
            "p95 of claim-to-result time over the p95 window (HDR histogram).",
            &|s| s.p95_ms.unwrap_or(0.0) / 1000.0,
        );
        gauge(
            &mut o,
            "cold_start_seconds",
            "Last observed time to make a box or replica ready.",
            &|s| s.cold_start_ms.unwrap_or(0.0) / 1000.0,
        );
        gauge(
            &mut o,
            "circuit_breaker_open",
            "1 while the pool's circuit breaker is open or half-open.",
            &|s| {
                if s.breaker == "closed" {
                    0.0
                } else {
                    1.0
                }
            },
        );
        let hist =
            |o: &mut String, name: &str, help: &str, pick: fn(&PoolState) -> &PromHistogram| {
                head(o, name, "histogram", help);
                for pool in self.pools.keys() {
                    self.with_pool(pool, |p| {
                        pick(p).render(o, &format!("judge_{name}"), &format!("pool=\"{pool}\""))
                    });
                }
            };
        hist(
            &mut o,
            "processing_time_seconds",
            "Claim-to-result time of judged jobs.",
            |p| &p.processing,
        );
        hist(
            &mut o,
            "latency_seconds",
            "Submit-to-verdict time of judged jobs.",
            |p| &p.latency,
        );
        head(
            &mut o,
            "jobs_total",
            "counter",
            "Jobs judged, by outcome (internal_error: IE).",
        );
        for pool in self.pools.keys() {
            self.with_pool(pool, |p| {
                let _ = writeln!(
                    o,
                    "judge_jobs_total{{pool=\"{pool}\",outcome=\"ok\"}} {}",
                    p.jobs_ok
                );
                let _ = writeln!(
                    o,
                    "judge_jobs_total{{pool=\"{pool}\",outcome=\"internal_error\"}} {}",
                    p.jobs_internal_error
                );
            });
        }
        head(
            &mut o,
            "submissions_total",
            "counter",
            "Submissions accepted.",
        );
        let _ = writeln!(
            o,
            "judge_submissions_total {}",
            self.submissions_total.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "shed_total",
            "counter",
            "Submissions refused by load shedding, per priority.",
        );
        let _ = writeln!(
            o,
            "judge_shed_total{{priority=\"low\"}} {}",
            self.shed_low.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "judge_shed_total{{priority=\"normal\"}} {}",
            self.shed_normal.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "rate_limited_total",
            "counter",
            "Requests refused by the rate limiter.",
        );
        let _ = writeln!(
            o,
            "judge_rate_limited_total {}",
            self.rate_limited_total.load(Ordering::Relaxed)
        );
        head(
            &mut o,
            "shedding_level",
            "gauge",
            "Admission shedding: 0 none, 1 low refused, 2 low and normal refused.",
        );
        let level = match *self.shedding.lock().unwrap_or_else(|e| e.into_inner()) {
            Shedding::None => 0,
            Shedding::Low => 1,
            Shedding::Normal => 2,
        };
        let _ = writeln!(o, "judge_shedding_level {level}");
        head(
            &mut o,
            "worker_memory_ratio",
            "gauge",
            "Share of the workers' host memory in use.",
        );
        let _ = writeln!(
            o,
            "judge_worker_memory_ratio {}",
            f64::from_bits(self.memory_ratio.load(Ordering::Relaxed))
        );
        head(
            &mut o,
            "uptime_seconds",
            "gauge",
            "Seconds since the engine started.",
        );
        let _ = writeln!(
            o,
            "judge_uptime_seconds {}",
            self.started.elapsed().as_secs()
        );
        o
    }
}

/// Samples what no request reports by itself into the registry: each pool's queue depth and
/// leased jobs (which also drives utilization and idle time), the shedding level (so it
/// follows a draining queue with no submissions arriving), breaker states and host memory.
pub struct Sampler {
    metrics: Arc<Metrics>,
    queue: Arc<dyn JobQueue>,
    backpressure: Arc<Backpressure>,
}

impl Sampler {
    /// A sampler over `queue` for the pools of `metrics`.
    pub fn new(
        metrics: Arc<Metrics>,
        queue: Arc<dyn JobQueue>,
        backpressure: Arc<Backpressure>,
    ) -> Self {
        Self {
            metrics,
            queue,
            backpressure,
        }
    }

    /// One sample of everything. Queue errors are logged and leave the last reading.
    pub async fn sample(&self) {
        let mut total = 0;
        let mut complete = true;
        for pool in self.metrics.pool_names() {
            let depth = self.queue.depth(&pool).await;
            let in_flight = self.queue.in_flight(&pool).await;
            match (depth, in_flight) {
                (Ok(d), Ok(f)) => {
                    total += d.total();
                    self.metrics.sample_queue(&pool, d, f);
                }
                (Err(e), _) | (_, Err(e)) => {
                    complete = false;
                    tracing::warn!(pool, error = %e, "metrics: cannot sample the queue");
                }
            }
        }
        if complete {
            let level = self.backpressure.shedder().observe(total);
            self.metrics.set_shedding(level);
        }
        for (pool, state) in self.backpressure.breaker_states() {
            self.metrics.set_breaker(&pool, state);
        }
        match host_memory_ratio() {
            Ok(r) => self.metrics.set_memory_ratio(r),
            Err(e) => tracing::debug!(error = %e, "metrics: no host memory figure"),
        }
    }

    /// Samples every `interval` until `shutdown` completes.
    pub async fn run(self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => self.sample().await,
            }
        }
    }
}

/// Share of this host's memory in use, `1 - MemAvailable / MemTotal` from /proc/meminfo.
///
/// # Errors
/// When /proc/meminfo cannot be read or lacks either field.
pub fn host_memory_ratio() -> std::io::Result<f64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    parse_meminfo(&text)
        .ok_or_else(|| std::io::Error::other("/proc/meminfo: no MemTotal/MemAvailable"))
}

fn parse_meminfo(text: &str) -> Option<f64> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let total = field("MemTotal:")?;
    let avail = field("MemAvailable:")?;
    (total > 0.0).then(|| (1.0 - avail / total).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Metrics {
        Metrics::new(
            MetricsConfig::default(),
            &[PoolInfo {
                name: "container".into(),
                backend: "native".into(),
                slots_per_replica: 8,
                min_replicas: 1,
                max_replicas: 10,
            }],
        )
    }

    fn job(ms: u64, ie: bool) -> JobRecord {
        JobRecord {
            processing: Duration::from_millis(ms),
            latency: Duration::from_millis(ms * 2),
            internal_error: ie,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn p95_comes_from_the_sliding_window() {
        let m = registry();
        for i in 1..=100 {
            m.record_job("container", job(i * 10, false));
        }
        let p95 = m.processing_p95("container").expect("jobs recorded");
        assert!((945.0..=955.0).contains(&p95), "p95 {p95}");
        let inputs = m.scale_inputs("container").expect("pool");
        assert!((1890.0..=1910.0).contains(&inputs.p95_latency_ms.expect("p95")));
        // Five minutes later the old slot has left the window.
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(m.processing_p95("container"), None);
        m.record_job("container", job(20, false));
        assert_eq!(m.processing_p95("container"), Some(20.0));
        // Unknown pools are ignored, not a panic.
        m.record_job("nope", job(1, false));
        assert_eq!(m.processing_p95("nope"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn error_rate_covers_ten_minutes() {
        let m = registry();
        for i in 0..20 {
            m.record_job("container", job(5, i < 2));
        }
        assert!((m.error_rate("container") - 0.1).abs() < 1e-9);
        tokio::time::advance(Duration::from_secs(300)).await;
        for _ in 0..20 {
            m.record_job("container", job(5, false));
        }
        assert!((m.error_rate("container") - 0.05).abs() < 1e-9);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(m.error_rate("container"), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn utilization_and_idle_time_follow_samples() {
        let m = registry();
        m.set_replicas("container", 2, 2);
        for _ in 0..12 {
            m.slot_busy("container");
        }
        m.sample_queue(
            "container",
            QueueDepth {
                high: 0,
                normal: 3,
                low: 1,
            },
            12,
        );
        for _ in 0..12 {
            m.slot_free("container");
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        m.sample_queue("container", QueueDepth::default(), 0);
        let s = &m.pool_stats()[0];
        assert_eq!(s.slots, 16);
        assert!((s.utilization - 0.375).abs() < 1e-9, "{}", s.utilization);
        tokio::time::advance(Duration::from_secs(120)).await;
        m.sample_queue("container", QueueDepth::default(), 0);
        let inputs = m.scale_inputs("container").expect("pool");
        assert_eq!(inputs.worker_idle_time, Duration::from_secs(120));
        assert_eq!(
            m.pool_stats()[0].utilization,
            0.0,
            "old samples left the 1 min window"
        );
        // Work arriving resets the idle clock.
        m.sample_queue(
            "container",
            QueueDepth {
                high: 1,
                normal: 0,
                low: 0,
            },
            0,
        );
        assert_eq!(
            m.scale_inputs("container").expect("pool").worker_idle_time,
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn prometheus_histograms_are_cumulative_and_consistent() {
        let m = registry();
        for ms in [30, 80, 80, 400, 7000, 200_000] {
            m.record_job("container", job(ms, false));
        }
        m.record_shed(Priority::Low);
        m.record_rate_limited();
        let text = m.render_prometheus();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .expect("value")
                .to_string()
        };
        assert!(text.contains("# TYPE judge_processing_time_seconds histogram"));
        assert_eq!(
            line("judge_processing_time_seconds_bucket{pool=\"container\",le=\"0.05\"}"),
            "1"
        );
        assert_eq!(
            line("judge_processing_time_seconds_bucket{pool=\"container\",le=\"0.1\"}"),
            "3"
        );
        assert_eq!(
            line("judge_processing_time_seconds_bucket{pool=\"container\",le=\"0.5\"}"),
            "4"
        );
        assert_eq!(
            line("judge_processing_time_seconds_bucket{pool=\"container\",le=\"10\"}"),
            "5"
        );
        assert_eq!(
            line("judge_processing_time_seconds_bucket{pool=\"container\",le=\"120\"}"),
            "5"
        );
        assert_eq!(
            line("judge_processing_time_seconds_bucket{pool=\"container\",le=\"+Inf\"}"),
            "6"
        );
        assert_eq!(
            line("judge_processing_time_seconds_count{pool=\"container\"}"),
            "6"
        );
        let sum: f64 = line("judge_processing_time_seconds_sum{pool=\"container\"}")
            .parse()
            .expect("f64");
        assert!((sum - 207.59).abs() < 1e-9, "{sum}");
        assert_eq!(line("judge_shed_total{priority=\"low\"}"), "1");
        assert_eq!(line("judge_rate_limited_total"), "1");
        assert_eq!(
            line("judge_queue_depth{pool=\"container\",priority=\"low\"}"),
            "0"
        );
        // Every sample line names a declared metric family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().expect("name");
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} "))
                    || text.contains(&format!("# TYPE {name} ")),
                "{l}"
            );
        }
    }

    #[test]
    fn meminfo_parses() {
        let text = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(parse_meminfo(text), Some(0.75));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        let r = host_memory_ratio().expect("/proc/meminfo on Linux");
        assert!((0.0..=1.0).contains(&r));
    }

    #[test]
    fn config_validation() {
        assert!(MetricsConfig::default().validate().is_ok());
        let bad: MetricsConfig = toml::from_str("buckets_s = [1.0, 0.5]\n").expect("parses");
        assert_eq!(bad.validate().unwrap_err().key, "metrics.buckets_s");
    }
}
