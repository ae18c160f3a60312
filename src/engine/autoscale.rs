//! Autoscaling: per-pool rules in the seed's shape (metric, threshold, action, cooldown) within
//! min/max replicas, and the [`Actuator`] that carries the decisions out.
//!
//! The rules know nothing of how replicas are made: the local actuator starts and stops worker
//! tasks inside `judge serve`; an actuator for `judge worker` processes or a Kubernetes
//! deployment implements the same trait.
//!
//! Defaults (`[autoscale.*]` in templates/judge.toml; the bounds are `[pools.*]`) are this engine's reading of the seed
//! tables (DESIGN.md, "Backpressure and scaling"):
//! - container: 1..=10 replicas; +2 when queue_depth > 50 or p95_latency_ms > 5000, cooldown
//!   60 s; −1 when worker_idle_time > 300 s, cooldown 300 s.
//! - microvm: 1..=5; +1 when queue_depth > 20 or p95_latency_ms > 15000, cooldown 120 s; −1 when
//!   worker_idle_time > 600 s, cooldown 600 s.
//! - trusted: 1..=2; +1 when queue_depth > 10, cooldown 120 s; −1 when worker_idle_time > 600 s,
//!   cooldown 600 s.

use std::fmt;
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine::alerts::Alerter;
use crate::engine::backpressure::Backpressure;
use crate::engine::backpressure::{serde_duration, ConfigError};
use crate::engine::config::ServeConfig;
use crate::engine::metrics::{Metrics, PoolInfo, Sampler};
use crate::engine::model::ScalingEvent;
use crate::engine::pool::Pool;
use crate::engine::serve::Engine;
use crate::engine::store::{NewScalingEvent, Store};

/// A metric the rules can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMetric {
    /// Jobs waiting in the pool's queue, all priorities.
    QueueDepth,
    /// 95th percentile of submit-to-verdict latency in ms, over the metrics window.
    P95LatencyMs,
    /// Seconds for which at least one whole replica's worth of slots has stood idle with an
    /// empty queue (so a replica could go without slowing anyone down).
    WorkerIdleTime,
}

impl ScaleMetric {
    /// The name used in judge.toml and in scaling events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueDepth => "queue_depth",
            Self::P95LatencyMs => "p95_latency_ms",
            Self::WorkerIdleTime => "worker_idle_time",
        }
    }
}

/// A replica count change: `"+2"`, `"-1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step(pub i32);

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(i64),
        }
        let n = match Raw::deserialize(d)? {
            Raw::S(s) => s.trim().parse::<i32>().map_err(|_| {
                serde::de::Error::custom(format!("bad action {s:?}: expected \"+N\" or \"-N\""))
            })?,
            Raw::N(n) => {
                i32::try_from(n).map_err(|_| serde::de::Error::custom("action too big"))?
            }
        };
        Ok(Step(n))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:+}", self.0)
    }
}

/// One rule: when `metric > threshold` and the pool's last scaling action is at least
/// `cooldown` ago, change the replica count by `action`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What to watch.
    pub metric: ScaleMetric,
    /// Fires when the metric is strictly above this (jobs, ms or s depending on the metric).
    pub threshold: f64,
    /// Replica change, `"+2"` or `"-1"`.
    pub action: Step,
    /// Minimum time since the pool's previous scaling action (either direction).
    #[serde(with = "serde_duration")]
    pub cooldown: Duration,
}

impl Rule {
    fn new(metric: ScaleMetric, threshold: f64, action: i32, cooldown_s: u64) -> Self {
        Self {
            metric,
            threshold,
            action: Step(action),
            cooldown: Duration::from_secs(cooldown_s),
        }
    }

    /// `"queue_depth > 50: +2"`, as scaling events record it.
    pub fn describe(&self) -> String {
        format!(
            "{} > {}: {}",
            self.metric.as_str(),
            self.threshold,
            self.action
        )
    }
}

/// `[autoscale.POOL]`: the rules of one pool. A missing list keeps that pool's default list;
/// an empty list (`scale_down = []`) disables that direction.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolRulesConfig {
    /// Checked in order; the first that fires wins.
    pub scale_up: Option<Vec<Rule>>,
    /// Checked in order, only when no scale-up rule's condition holds.
    pub scale_down: Option<Vec<Rule>>,
}

impl PoolRulesConfig {
    /// Both lists set to the defaults of `pool`.
    pub fn default_for(pool: &str) -> Self {
        let d = PoolRules::default_for(pool);
        Self {
            scale_up: Some(d.scale_up),
            scale_down: Some(d.scale_down),
        }
    }
}

/// The scale-up and scale-down rules of one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRules {
    /// Checked in order; the first that fires wins.
    pub scale_up: Vec<Rule>,
    /// Checked in order, only when no scale-up rule's condition holds.
    pub scale_down: Vec<Rule>,
}

impl PoolRules {
    /// The default rules of `pool` (see the module docs); pools not named by the seed get the
    /// microvm table.
    pub fn default_for(pool: &str) -> Self {
        use ScaleMetric::*;
        match pool {
            "container" => Self {
                scale_up: vec![
                    Rule::new(QueueDepth, 50.0, 2, 60),
                    Rule::new(P95LatencyMs, 5000.0, 2, 60),
                ],
                scale_down: vec![Rule::new(WorkerIdleTime, 300.0, -1, 300)],
            },
            "trusted" => Self {
                scale_up: vec![Rule::new(QueueDepth, 10.0, 1, 120)],
                scale_down: vec![Rule::new(WorkerIdleTime, 600.0, -1, 600)],
            },
            _ => Self {
                scale_up: vec![
                    Rule::new(QueueDepth, 20.0, 1, 120),
                    Rule::new(P95LatencyMs, 15000.0, 1, 120),
                ],
                scale_down: vec![Rule::new(WorkerIdleTime, 600.0, -1, 600)],
            },
        }
    }

    fn validate(&self, pool: &str) -> Result<(), ConfigError> {
        let check = |dir: &str, rules: &[Rule], up: bool| {
            for (i, r) in rules.iter().enumerate() {
                let key = |k: &str| format!("autoscale.{pool}.{dir}[{i}].{k}");
                if (up && r.action.0 <= 0) || (!up && r.action.0 >= 0) {
                    let want = if up { "+N (N ≥ 1)" } else { "-N (N ≥ 1)" };
                    return Err(ConfigError::new(key("action"), format!("must be {want}")));
                }
                if !r.threshold.is_finite() || r.threshold < 0.0 {
                    return Err(ConfigError::new(key("threshold"), "must be a number ≥ 0"));
                }
            }
            Ok(())
        };
        check("scale_up", &self.scale_up, true)?;
        check("scale_down", &self.scale_down, false)
    }
}

/// Everything the scaler of one pool needs: bounds (from `[pools.POOL]`) and rules.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolScaling {
    /// Fewest replicas; the pool is brought up to it at start.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// The rules.
    pub rules: PoolRules,
}

/// `[autoscale]` in judge.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscaleConfig {
    /// Off: every pool runs `min_replicas` replicas and no rule is evaluated.
    pub enabled: bool,
    /// How often the rules are evaluated. Default 5 s.
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    /// `[autoscale.container]`.
    pub container: PoolRulesConfig,
    /// `[autoscale.microvm]`.
    pub microvm: PoolRulesConfig,
    /// `[autoscale.trusted]`.
    pub trusted: PoolRulesConfig,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(5),
            container: PoolRulesConfig::default_for("container"),
            microvm: PoolRulesConfig::default_for("microvm"),
            trusted: PoolRulesConfig::default_for("trusted"),
        }
    }
}

impl AutoscaleConfig {
    /// The rules of `pool`: configured lists, defaults for the lists not given.
    pub fn rules(&self, pool: &str) -> PoolRules {
        let def = PoolRules::default_for(pool);
        let given = match pool {
            "container" => &self.container,
            "microvm" => &self.microvm,
            "trusted" => &self.trusted,
            _ => return def,
        };
        PoolRules {
            scale_up: given.scale_up.clone().unwrap_or(def.scale_up),
            scale_down: given.scale_down.clone().unwrap_or(def.scale_down),
        }
    }

    /// Checks every value.
    ///
    /// # Errors
    /// The first value out of range, with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "autoscale.interval",
                "must be at least 100ms",
            ));
        }
        ["container", "microvm", "trusted"]
            .iter()
            .try_for_each(|p| self.rules(p).validate(p))
    }
}

/// The metrics of one pool at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolMetrics {
    /// Waiting jobs, all priorities.
    pub queue_depth: u64,
    /// p95 latency in ms over the window; `None` when nothing finished in it.
    pub p95_latency_ms: Option<f64>,
    /// See [`ScaleMetric::WorkerIdleTime`].
    pub worker_idle_time: Duration,
}

impl PoolMetrics {
    /// The value of `m`; `None` when it has no value now.
    pub fn get(&self, m: ScaleMetric) -> Option<f64> {
        match m {
            ScaleMetric::QueueDepth => Some(self.queue_depth as f64),
            ScaleMetric::P95LatencyMs => self.p95_latency_ms,
            ScaleMetric::WorkerIdleTime => Some(self.worker_idle_time.as_secs_f64()),
        }
    }
}

/// One autoscaler decision (before the actuator carries it out).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas now.
    pub from: u32,
    /// Replicas wanted.
    pub to: u32,
    /// The rule, e.g. `"queue_depth > 50: +2"` or `"min_replicas = 1"`.
    pub rule: String,
    /// The metric value that triggered it (the replica count for the bounds).
    pub value: f64,
}

impl Decision {
    /// Whether it adds replicas.
    pub fn is_scale_up(&self) -> bool {
        self.to > self.from
    }
}

/// The decision state of one pool: its rules and when it last scaled.
#[derive(Debug, Clone)]
pub struct PoolScaler {
    cfg: PoolScaling,
    last_action: Option<Instant>,
}

impl PoolScaler {
    /// A scaler that has not acted yet (no cooldown pending).
    pub fn new(cfg: PoolScaling) -> Self {
        Self {
            cfg,
            last_action: None,
        }
    }

    /// The rules.
    pub fn config(&self) -> &PoolScaling {
        &self.cfg
    }

    fn cooled(&self, now: Instant, r: &Rule) -> bool {
        self.last_action
            .is_none_or(|t| now.duration_since(t) >= r.cooldown)
    }

    /// Decides at `now` with `current` replicas and metrics `m`. A decision starts the cooldown
    /// whether or not the actuator then succeeds (so a failing actuator is not hammered).
    ///
    /// Order: bounds first (below `min_replicas` or above `max_replicas`, no cooldown); a pool
    /// with no replica and a waiting job gets one at once; then the
    /// first scale-up rule whose condition holds and whose cooldown has passed; scale-down rules
    /// only when no scale-up condition holds at all. Steps are clamped to the bounds; a rule
    /// that would change nothing is not a decision.
    pub fn decide(&mut self, now: Instant, current: u32, m: &PoolMetrics) -> Option<Decision> {
        let (min, max) = (self.cfg.min_replicas, self.cfg.max_replicas);
        let decision = if current < min {
            Some(Decision {
                from: current,
                to: min,
                rule: format!("min_replicas = {min}"),
                value: current as f64,
            })
        } else if current > max {
            Some(Decision {
                from: current,
                to: max,
                rule: format!("max_replicas = {max}"),
                value: current as f64,
            })
        } else if current == 0 && m.queue_depth > 0 && max > 0 {
            // A pool scaled to zero (min_replicas = 0) must wake for its first job, whatever
            // the thresholds say: nothing else would ever judge it.
            Some(Decision {
                from: 0,
                to: 1,
                rule: "queue_depth > 0 with no replica: +1".into(),
                value: m.queue_depth as f64,
            })
        } else {
            let holds = |r: &Rule| m.get(r.metric).filter(|v| *v > r.threshold);
            let up_holds = self.cfg.rules.scale_up.iter().any(|r| holds(r).is_some());
            let rules = if up_holds {
                &self.cfg.rules.scale_up
            } else {
                &self.cfg.rules.scale_down
            };
            rules.iter().find_map(|r| {
                let value = holds(r)?;
                if !self.cooled(now, r) {
                    return None;
                }
                let to = (i64::from(current) + i64::from(r.action.0))
                    .clamp(i64::from(min), i64::from(max));
                let to = u32::try_from(to).unwrap_or(min);
                (to != current).then(|| Decision {
                    from: current,
                    to,
                    rule: r.describe(),
                    value,
                })
            })
        };
        if decision.is_some() {
            self.last_action = Some(now);
        }
        decision
    }
}

/// Why an actuator could not scale.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// The pool is not known to this actuator.
    #[error("unknown pool {0:?}")]
    UnknownPool(String),
    /// Starting a replica failed (e.g. its sandbox could not be prepared).
    #[error("starting a replica of pool {pool:?} failed: {reason}")]
    Start {
        /// Pool.
        pool: String,
        /// What went wrong.
        reason: String,
    },
    /// The backend refused or failed otherwise.
    #[error("{0}")]
    Other(String),
}

/// Carries out scaling decisions. The local actuator starts and stops worker tasks in
/// `judge serve`; other actuators (remote `judge worker` processes, a Kubernetes deployment's
/// replica count) implement the same two calls.
pub trait Actuator: Send + Sync {
    /// Replicas of `pool` running now.
    fn replicas<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, Result<u32, ActuatorError>>;

    /// Brings `pool` to `replicas` replicas and returns how many run afterwards. Stopping a
    /// replica drains it: it finishes or hands back its leased jobs, never drops one.
    ///
    /// # Errors
    /// When the target could not be reached; some replicas may have started before the error
    /// (the next [`Actuator::replicas`] call tells).
    fn scale_to<'a>(
        &'a self,
        pool: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<u32, ActuatorError>>;
}

/// The autoscaler of a server: one [`PoolScaler`] per pool, fed by the metrics registry,
/// acting through an [`Actuator`], recording every decision in the store.
pub struct Autoscaler {
    scalers: Vec<(String, PoolScaler)>,
    actuator: Arc<dyn Actuator>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
}

impl Autoscaler {
    /// `pools`: (name, scaling) for every pool. With autoscaling disabled, pass rules that
    /// are empty ([`Autoscaler::from_config`] does): only the bounds are kept.
    pub fn new(
        pools: Vec<(String, PoolScaling)>,
        actuator: Arc<dyn Actuator>,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
    ) -> Self {
        let scalers = pools
            .into_iter()
            .map(|(n, s)| (n, PoolScaler::new(s)))
            .collect();
        Self {
            scalers,
            actuator,
            metrics,
            store,
        }
    }

    /// From the validated config: bounds from `[pools.*]`, rules from `[autoscale]`.
    pub fn from_config(
        cfg: &ServeConfig,
        actuator: Arc<dyn Actuator>,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
    ) -> Self {
        let pools = cfg
            .pools
            .iter()
            .map(|p| {
                let name = p.name.to_string();
                let rules = if cfg.autoscale.enabled {
                    cfg.autoscale.rules(&name)
                } else {
                    PoolRules {
                        scale_up: Vec::new(),
                        scale_down: Vec::new(),
                    }
                };
                let scaling = PoolScaling {
                    min_replicas: p.min_replicas,
                    max_replicas: p.max_replicas,
                    rules,
                };
                (name, scaling)
            })
            .collect();
        Self::new(pools, actuator, metrics, store)
    }

    /// One evaluation of every pool, one after the other. Returns the scaling events
    /// recorded (also when the store failed to keep one: the event is still returned and the
    /// failure logged).
    pub async fn tick(&mut self) -> Vec<ScalingEvent> {
        let mut events = Vec::new();
        for (pool, scaler) in &mut self.scalers {
            let (a, m, s) = (&*self.actuator, &*self.metrics, &*self.store);
            events.extend(evaluate_pool(a, m, s, pool, scaler).await);
        }
        events
    }

    /// Evaluates every pool every `interval` (the first time at once, which brings each pool
    /// to `min_replicas`) until `shutdown` completes. Each pool has its own loop, so a
    /// scale-down waiting for a replica to drain never delays another pool's decisions.
    pub async fn run(self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        use futures::FutureExt;
        let stop = shutdown.shared();
        let Autoscaler {
            scalers,
            actuator,
            metrics,
            store,
        } = self;
        let loops = scalers.into_iter().map(|(pool, mut scaler)| {
            let (actuator, metrics, store, stop) = (
                actuator.clone(),
                metrics.clone(),
                store.clone(),
                stop.clone(),
            );
            async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.clone() => return,
                        _ = tick.tick() => {
                            evaluate_pool(&*actuator, &metrics, &*store, &pool, &mut scaler).await;
                        }
                    }
                }
            }
        });
        futures::future::join_all(loops).await;
    }
}

/// One evaluation of one pool: decide, act, record. Returns the scaling event, if any.
async fn evaluate_pool(
    actuator: &dyn Actuator,
    metrics: &Metrics,
    store: &dyn Store,
    pool: &str,
    scaler: &mut PoolScaler,
) -> Option<ScalingEvent> {
    let current = match actuator.replicas(pool).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(pool, error = %e, "autoscaler: cannot read the replica count");
            return None;
        }
    };
    let inputs = metrics.scale_inputs(pool).unwrap_or_default();
    let Some(d) = scaler.decide(Instant::now(), current, &inputs) else {
        metrics.set_replicas(pool, current, current);
        return None;
    };
    metrics.set_replicas(pool, current, d.to);
    let (to, ok, error) = match actuator.scale_to(pool, d.to).await {
        Ok(n) => (
            n,
            n == d.to,
            (n != d.to).then(|| format!("reached {n} of {} replicas", d.to)),
        ),
        Err(e) => {
            let now = actuator.replicas(pool).await.unwrap_or(current);
            (now, false, Some(e.to_string()))
        }
    };
    if d.is_scale_up() && !ok {
        metrics.record_scale_up_failure(pool);
    }
    metrics.set_replicas(pool, to, d.to);
    let new = NewScalingEvent {
        at: OffsetDateTime::now_utc(),
        pool: pool.to_string(),
        from: d.from,
        to,
        rule: d.rule.clone(),
        value: d.value,
        ok,
        error: error.clone(),
    };
    if ok {
        tracing::info!(pool, from = d.from, to, rule = %d.rule, value = d.value, "scaled");
    } else {
        tracing::warn!(pool, from = d.from, to, rule = %d.rule, error = ?error, "scaling failed");
    }
    Some(match store.insert_scaling_event(&new).await {
        Ok(ev) => ev,
        Err(e) => {
            tracing::error!(pool, error = %e, "cannot record a scaling event");
            ScalingEvent {
                id: 0,
                at: crate::engine::clock::rfc3339(new.at),
                pool: new.pool,
                from: new.from,
                to: new.to,
                rule: new.rule,
                value: new.value,
                ok: new.ok,
                error: new.error,
            }
        }
    })
}

/// The local actuator: starts and stops replicas (worker tasks) of the pools inside this
/// `judge serve` process. Scaling down drains the stopped replicas before it returns.
pub struct LocalActuator {
    pools: BTreeMap<String, Arc<Pool>>,
}

impl LocalActuator {
    /// Over the engine's pools.
    pub fn new(pools: impl IntoIterator<Item = Arc<Pool>>) -> Self {
        Self {
            pools: pools
                .into_iter()
                .map(|p| (p.name().to_string(), p))
                .collect(),
        }
    }

    fn pool(&self, name: &str) -> Result<&Arc<Pool>, ActuatorError> {
        self.pools
            .get(name)
            .ok_or_else(|| ActuatorError::UnknownPool(name.to_string()))
    }
}

impl Actuator for LocalActuator {
    fn replicas<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, Result<u32, ActuatorError>> {
        Box::pin(async move { Ok(self.pool(pool)?.replicas()) })
    }

    fn scale_to<'a>(
        &'a self,
        pool: &'a str,
        replicas: u32,
    ) -> BoxFuture<'a, Result<u32, ActuatorError>> {
        Box::pin(async move {
            self.pool(pool)?
                .try_scale_to(replicas)
                .await
                .map_err(|e| ActuatorError::Start {
                    pool: pool.to_string(),
                    reason: e.reason,
                })
        })
    }
}

/// The metrics registry and backpressure state of an engine built from `cfg`.
pub fn observability(cfg: &ServeConfig) -> (Arc<Metrics>, Arc<Backpressure>) {
    let pools: Vec<PoolInfo> = cfg
        .pools
        .iter()
        .map(|p| PoolInfo {
            name: p.name.to_string(),
            backend: p.backend.clone(),
            slots_per_replica: p.slots,
            min_replicas: p.min_replicas,
            max_replicas: p.max_replicas,
        })
        .collect();
    let metrics = Arc::new(Metrics::new(cfg.metrics.clone(), &pools));
    let backpressure = Arc::new(Backpressure::new(
        &cfg.backpressure,
        pools.into_iter().map(|p| p.name),
    ));
    (metrics, backpressure)
}

/// Starts the engine's control loops — metrics sampler, autoscaler (local actuator), alerts —
/// which run until `stop` turns true. Await the handles before draining the pools.
pub fn spawn_control_loops(
    engine: &Arc<Engine>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let shared = &engine.shared;
    let cfg = &shared.config;
    let until_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let sampler = Sampler::new(
        shared.metrics.clone(),
        shared.queue.clone(),
        shared.backpressure.clone(),
    );
    let actuator = Arc::new(LocalActuator::new(engine.pools.values().cloned()));
    let autoscaler =
        Autoscaler::from_config(cfg, actuator, shared.metrics.clone(), shared.store.clone());
    let alerter = Alerter::new(&cfg.alerts, shared.metrics.clone(), shared.store.clone());
    vec![
        tokio::spawn(sampler.run(cfg.metrics.sample_interval, until_stop(stop.clone()))),
        tokio::spawn(autoscaler.run(cfg.autoscale.interval, until_stop(stop.clone()))),
        tokio::spawn(alerter.run(cfg.alerts.interval, until_stop(stop))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(pool: &str, min_replicas: u32, max_replicas: u32) -> PoolScaling {
        PoolScaling {
            min_replicas,
            max_replicas,
            rules: PoolRules::default_for(pool),
        }
    }

    fn depth(n: u64) -> PoolMetrics {
        PoolMetrics {
            queue_depth: n,
            ..PoolMetrics::default()
        }
    }

    fn idle(s: u64) -> PoolMetrics {
        PoolMetrics {
            worker_idle_time: Duration::from_secs(s),
            ..PoolMetrics::default()
        }
    }

    /// Applies decisions to a replica count, as an actuator that always succeeds.
    fn step(s: &mut PoolScaler, replicas: &mut u32, m: PoolMetrics) -> Option<String> {
        let d = s.decide(Instant::now(), *replicas, &m)?;
        assert_eq!(d.from, *replicas);
        *replicas = d.to;
        Some(d.rule)
    }

    #[tokio::test(start_paused = true)]
    async fn scale_up_sequence_respects_cooldown_and_max() {
        let mut s = PoolScaler::new(scaling("container", 1, 10));
        let mut r = 1;
        assert_eq!(
            step(&mut s, &mut r, depth(51)).as_deref(),
            Some("queue_depth > 50: +2")
        );
        assert_eq!(r, 3);
        // Within the 60 s cooldown nothing happens, however deep the queue.
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(step(&mut s, &mut r, depth(900)), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(step(&mut s, &mut r, depth(900)).is_some());
        assert_eq!(r, 5);
        let mut seen = vec![r];
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(60)).await;
            step(&mut s, &mut r, depth(900));
            seen.push(r);
        }
        // Clamped at max 10, and no decision once there.
        assert_eq!(seen, vec![5, 7, 9, 10, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn p95_latency_rule_fires_and_a_missing_p95_does_not() {
        let mut s = PoolScaler::new(scaling("container", 1, 10));
        let mut r = 2;
        let m = PoolMetrics {
            p95_latency_ms: Some(5000.0),
            ..PoolMetrics::default()
        };
        assert_eq!(step(&mut s, &mut r, m), None, "threshold is strict");
        assert_eq!(step(&mut s, &mut r, PoolMetrics::default()), None);
        let m = PoolMetrics {
            p95_latency_ms: Some(7000.0),
            ..PoolMetrics::default()
        };
        let d = s.decide(Instant::now(), r, &m).expect("scales");
        assert_eq!(
            (d.from, d.to, d.rule.as_str(), d.value),
            (2, 4, "p95_latency_ms > 5000: +2", 7000.0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scale_down_sequence_respects_its_cooldown_and_min() {
        let mut s = PoolScaler::new(scaling("container", 1, 10));
        let mut r = 4;
        assert_eq!(step(&mut s, &mut r, idle(300)), None, "threshold is strict");
        assert_eq!(
            step(&mut s, &mut r, idle(301)).as_deref(),
            Some("worker_idle_time > 300: -1")
        );
        assert_eq!(r, 3);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(step(&mut s, &mut r, idle(600)), None);
        let mut seen = vec![r];
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(300)).await;
            step(&mut s, &mut r, idle(900));
            seen.push(r);
        }
        assert_eq!(seen, vec![3, 2, 1, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn scale_down_waits_out_the_cooldown_after_a_scale_up() {
        let mut s = PoolScaler::new(scaling("container", 1, 10));
        let mut r = 1;
        step(&mut s, &mut r, depth(100));
        assert_eq!(r, 3);
        tokio::time::advance(Duration::from_secs(200)).await;
        assert_eq!(
            step(&mut s, &mut r, idle(400)),
            None,
            "300 s cooldown since the scale-up"
        );
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(step(&mut s, &mut r, idle(400)).is_some());
        assert_eq!(r, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_scale_down_while_a_scale_up_condition_holds() {
        let mut s = PoolScaler::new(scaling("container", 1, 10));
        let mut r = 10;
        let m = PoolMetrics {
            queue_depth: 80,
            worker_idle_time: Duration::from_secs(900),
            p95_latency_ms: None,
        };
        assert_eq!(step(&mut s, &mut r, m), None);
        assert_eq!(r, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_are_restored_without_cooldown() {
        let mut s = PoolScaler::new(scaling("microvm", 1, 5));
        let mut r = 0;
        assert_eq!(
            step(&mut s, &mut r, depth(0)).as_deref(),
            Some("min_replicas = 1")
        );
        assert_eq!(r, 1);
        let mut r = 9;
        assert_eq!(
            step(&mut s, &mut r, depth(0)).as_deref(),
            Some("max_replicas = 5")
        );
        assert_eq!(r, 5);
        // microvm scales by +1 up to 5.
        tokio::time::advance(Duration::from_secs(120)).await;
        let mut r = 4;
        assert_eq!(
            step(&mut s, &mut r, depth(21)).as_deref(),
            Some("queue_depth > 20: +1")
        );
        assert_eq!(r, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pool_scaled_to_zero_wakes_for_its_first_job() {
        let mut s = PoolScaler::new(scaling("container", 0, 10));
        let mut r = 0;
        assert_eq!(step(&mut s, &mut r, depth(0)), None);
        assert_eq!(
            step(&mut s, &mut r, depth(1)).as_deref(),
            Some("queue_depth > 0 with no replica: +1")
        );
        assert_eq!(r, 1);
    }

    #[test]
    fn config_parses_the_seed_shape_and_validates() {
        let cfg: AutoscaleConfig = toml::from_str(
            r#"
            interval = "2s"
            [[container.scale_up]]
            metric = "queue_depth"
            threshold = 30
            action = "+3"
            cooldown = "30s"
            [microvm]
            scale_down = []
            "#,
        )
        .expect("parses");
        cfg.validate().expect("valid");
        let c = cfg.rules("container");
        assert_eq!(c.scale_up.len(), 1);
        assert_eq!(c.scale_up[0].action, Step(3));
        assert_eq!(c.scale_up[0].describe(), "queue_depth > 30: +3");
        // Lists not given keep their defaults; an empty list disables that direction.
        assert_eq!(c.scale_down, PoolRules::default_for("container").scale_down);
        assert!(cfg.rules("microvm").scale_down.is_empty());
        assert_eq!(cfg.rules("trusted"), PoolRules::default_for("trusted"));

        let bad: AutoscaleConfig = toml::from_str(
            "[[trusted.scale_down]]\nmetric = \"queue_depth\"\nthreshold = 1\naction = \"+1\"\ncooldown = \"1s\"\n",
        )
        .expect("parses");
        assert_eq!(
            bad.validate().unwrap_err().key,
            "autoscale.trusted.scale_down[0].action"
        );
        assert!(toml::from_str::<AutoscaleConfig>(
            "[[container.scale_up]]\nmetric = \"cpu\"\nthreshold = 1\naction = \"+1\"\ncooldown = \"1s\"\n"
        )
        .is_err());
        assert!(toml::from_str::<AutoscaleConfig>("[gpu]\nscale_up = []\n").is_err());
    }

    /// An in-memory actuator (stands in for a cluster API) that can refuse to go above a
    /// number of replicas, to exercise the failure path of the loop.
    #[derive(Default)]
    struct MemActuator {
        replicas: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
        cap: Option<u32>,
    }

    impl Actuator for MemActuator {
        fn replicas<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, Result<u32, ActuatorError>> {
            let n = *self.replicas.lock().unwrap().get(pool).unwrap_or(&0);
            Box::pin(async move { Ok(n) })
        }

        fn scale_to<'a>(
            &'a self,
            pool: &'a str,
            to: u32,
        ) -> BoxFuture<'a, Result<u32, ActuatorError>> {
            let mut r = self.replicas.lock().unwrap();
            let res = match self.cap {
                Some(cap) if to > cap => {
                    r.insert(pool.to_string(), cap);
                    Err(ActuatorError::Start {
                        pool: pool.into(),
                        reason: "no capacity".into(),
                    })
                }
                _ => {
                    r.insert(pool.to_string(), to);
                    Ok(to)
                }
            };
            Box::pin(async move { res })
        }
    }

    fn setup(cap: Option<u32>) -> (tempfile::TempDir, Arc<Metrics>, Arc<dyn Store>, Autoscaler) {
        use crate::engine::metrics::{MetricsConfig, PoolInfo};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::engine::store::open_sqlite(&dir.path().join("store.db")).unwrap());
        let info = PoolInfo {
            name: "container".into(),
            backend: "native".into(),
            slots_per_replica: 8,
            min_replicas: 1,
            max_replicas: 10,
        };
        let metrics = Arc::new(Metrics::new(MetricsConfig::default(), &[info]));
        let actuator = Arc::new(MemActuator {
            cap,
            ..Default::default()
        });
        let scaler = Autoscaler::new(
            vec![("container".into(), scaling("container", 1, 10))],
            actuator,
            metrics.clone(),
            store.clone(),
        );
        (dir, metrics, store, scaler)
    }

    #[tokio::test(start_paused = true)]
    async fn loop_records_every_decision_in_the_store() {
        let (_dir, metrics, store, mut a) = setup(None);
        let ev = a.tick().await;
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].from, ev[0].to, ev[0].rule.as_str(), ev[0].ok),
            (0, 1, "min_replicas = 1", true)
        );
        assert!(a.tick().await.is_empty(), "nothing to do");
        metrics.sample_queue(
            "container",
            crate::engine::model::QueueDepth {
                high: 0,
                normal: 70,
                low: 0,
            },
            8,
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        let ev = a.tick().await;
        assert_eq!((ev[0].from, ev[0].to, ev[0].value), (1, 3, 70.0));
        assert_eq!(ev[0].rule, "queue_depth > 50: +2");
        let stored = store.latest_scaling_events(10).await.unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!((stored[0].from, stored[0].to), (1, 3), "newest first");
        assert!(stored[0].id > 0);
        let s = &metrics.pool_stats()[0];
        assert_eq!((s.replicas, s.desired_replicas, s.slots), (3, 3, 24));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_scale_up_is_recorded_and_raises_the_scaling_failure_alert() {
        let (_dir, metrics, store, mut a) = setup(Some(2));
        a.tick().await;
        metrics.sample_queue(
            "container",
            crate::engine::model::QueueDepth {
                high: 0,
                normal: 0,
                low: 90,
            },
            8,
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        let ev = a.tick().await;
        assert_eq!(ev.len(), 1);
        let e = &ev[0];
        assert!(!e.ok);
        assert_eq!(
            (e.from, e.to),
            (1, 2),
            "the replica that did start is counted"
        );
        assert!(
            e.error.as_deref().unwrap_or("").contains("no capacity"),
            "{e:?}"
        );
        assert_eq!(metrics.scale_up_failures("container"), 1);

        let mut alerter = crate::engine::alerts::Alerter::new(
            &crate::engine::alerts::AlertsConfig::default(),
            metrics.clone(),
            store.clone(),
        );
        let changed = alerter.tick().await;
        let fired: Vec<_> = changed
            .iter()
            .filter(|a| a.rule == "scaling_failure")
            .collect();
        assert_eq!(fired.len(), 1, "{changed:?}");
        assert_eq!(fired[0].state, crate::engine::model::AlertState::Firing);
        assert_eq!(fired[0].severity, crate::engine::model::Severity::Critical);
        let active = store.active_alerts().await.unwrap();
        assert!(active
            .iter()
            .any(|a| a.rule == "scaling_failure" && a.pool.as_deref() == Some("container")));
        // Ten minutes without another failure: resolved.
        tokio::time::advance(Duration::from_secs(601)).await;
        metrics.sample_queue("container", crate::engine::model::QueueDepth::default(), 0);
        alerter.tick().await;
        let active = store.active_alerts().await.unwrap();
        assert!(
            !active.iter().any(|a| a.rule == "scaling_failure"),
            "{active:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn run_evaluates_each_pool_in_its_own_loop_until_shutdown() {
        let (_dir, metrics, store, _) = setup(None);
        let actuator = Arc::new(MemActuator::default());
        let a = Autoscaler::new(
            vec![
                ("container".into(), scaling("container", 2, 10)),
                ("microvm".into(), scaling("microvm", 1, 5)),
            ],
            actuator.clone(),
            metrics,
            store.clone(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(a.run(Duration::from_secs(5), async {
            let _ = stopped.await;
        }));
        // The first evaluation is at once: both pools are brought to their minimum.
        for _ in 0..100 {
            if store.latest_scaling_events(10).await.unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut got: Vec<_> = store
            .latest_scaling_events(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.pool, e.from, e.to, e.rule))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "container".to_string(),
                    0,
                    2,
                    "min_replicas = 2".to_string()
                ),
                ("microvm".to_string(), 0, 1, "min_replicas = 1".to_string()),
            ]
        );
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the loops end on shutdown")
            .unwrap();
    }
}
