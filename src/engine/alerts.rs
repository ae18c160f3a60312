//! Alerts: the seed's table as configurable rules with "for" durations, evaluated over metric
//! samples; each alert goes pending → firing → resolved.
//!
//! Seed table (DESIGN.md, "Backpressure and scaling"), the defaults of `[[alerts.rules]]`:
//! queue depth > 100 for 5 min (warning), > 500 for 5 min (critical), error rate > 5 % for
//! 10 min (warning), worker memory > 90 % (critical; "for 1m" is this engine's choice so one
//! sample's spike does not page anyone), scaling failure (critical, at once).

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use serde::Deserialize;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::engine::backpressure::{serde_duration, ConfigError};
use crate::engine::metrics::Metrics;
use crate::engine::model::{Alert, AlertState, Severity};
use crate::engine::store::{AlertUpdate as StoreAlertUpdate, Store};

/// A metric alert rules can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    /// Waiting jobs of a pool.
    QueueDepth,
    /// Share of a pool's jobs that ended in IE over the last 10 minutes, 0.0..=1.0.
    ErrorRate,
    /// Share of the workers' host memory in use, 0.0..=1.0 (not per pool).
    WorkerMemory,
    /// Failed scale-ups of a pool in the last 10 minutes.
    ScalingFailures,
}

impl AlertMetric {
    /// The name in judge.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueDepth => "queue_depth",
            Self::ErrorRate => "error_rate",
            Self::WorkerMemory => "worker_memory",
            Self::ScalingFailures => "scaling_failures",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Self::ErrorRate | Self::WorkerMemory => format!("{:.1} %", v * 100.0),
            Self::QueueDepth | Self::ScalingFailures => format!("{v}"),
        }
    }
}

/// One rule: alert when `metric > threshold` has held for `for`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Stable name, e.g. `queue_depth_critical`; the alert's `rule`.
    pub name: String,
    /// What to watch.
    pub metric: AlertMetric,
    /// Strictly-above threshold (jobs, a 0..1 share, or a count).
    pub threshold: f64,
    /// How long the condition must hold before the alert fires (`"0s"`: at once).
    #[serde(rename = "for", with = "serde_duration")]
    pub for_: Duration,
    /// `warning` or `critical`.
    pub severity: Severity,
}

impl AlertRule {
    fn new(
        name: &str,
        metric: AlertMetric,
        threshold: f64,
        for_s: u64,
        severity: Severity,
    ) -> Self {
        Self {
            name: name.into(),
            metric,
            threshold,
            for_: Duration::from_secs(for_s),
            severity,
        }
    }
}

/// `[alerts]` in judge.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often rules are evaluated. Default 15 s.
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    /// Optional URL that receives a JSON POST of the alert on each firing and resolution.
    pub webhook: Option<String>,
    /// The rules; the seed table by default.
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        use AlertMetric::*;
        use Severity::*;
        Self {
            interval: Duration::from_secs(15),
            webhook: None,
            rules: vec![
                AlertRule::new("queue_depth_warning", QueueDepth, 100.0, 300, Warning),
                AlertRule::new("queue_depth_critical", QueueDepth, 500.0, 300, Critical),
                AlertRule::new("error_rate_warning", ErrorRate, 0.05, 600, Warning),
                AlertRule::new("worker_memory_critical", WorkerMemory, 0.9, 60, Critical),
                AlertRule::new("scaling_failure", ScalingFailures, 0.0, 0, Critical),
            ],
        }
    }
}

impl AlertsConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// The first value out of range, with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "alerts.interval",
                "must be at least 100ms",
            ));
        }
        if let Some(url) = &self.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    "alerts.webhook",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.name.is_empty() || !names.insert(r.name.as_str()) {
                return Err(ConfigError::new(
                    format!("alerts.rules[{i}].name"),
                    "must be non-empty and unique",
                ));
            }
            if !r.threshold.is_finite() {
                return Err(ConfigError::new(
                    format!("alerts.rules[{i}].threshold"),
                    "must be a number",
                ));
            }
        }
        Ok(())
    }
}

/// One metric reading: `pool` is `None` for server-wide metrics (worker memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Which metric.
    pub metric: AlertMetric,
    /// Which pool, if per pool.
    pub pool: Option<String>,
    /// The value.
    pub value: f64,
}

/// An alert whose state or value changed at an evaluation, to store (the store keys open
/// alerts by rule and pool and assigns the id).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertUpdate {
    /// Rule name and pool.
    pub key: (String, Option<String>),
    /// The alert as it stands; `id` is 0 (the store assigns it).
    pub alert: Alert,
    /// Whether the state changed (pending, firing, resolved) — a webhook goes out on firing and
    /// resolved transitions.
    pub transition: bool,
}

#[derive(Debug, Clone)]
struct Active {
    state: AlertState,
    since: Instant,
    since_wall: String,
    value: f64,
}

/// Evaluates the rules over samples and tracks the alerts in flight.
#[derive(Debug)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    active: BTreeMap<(String, Option<String>), Active>,
}

impl AlertEngine {
    /// An engine with no alert in flight.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        Self {
            rules,
            active: BTreeMap::new(),
        }
    }

    /// Alerts pending or firing now.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Evaluates every rule over `samples` at `now` (`wall`: the same moment, RFC 3339).
    /// A tracked alert whose metric has no sample this time counts as no longer holding.
    pub fn evaluate(&mut self, now: Instant, wall: &str, samples: &[Sample]) -> Vec<AlertUpdate> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for rule in &self.rules {
            for s in samples.iter().filter(|s| s.metric == rule.metric) {
                let key = (rule.name.clone(), s.pool.clone());
                let holds = s.value > rule.threshold;
                if holds {
                    seen.insert(key.clone());
                }
                let prev = self.active.get(&key).map(|a| a.state);
                let next = match (prev, holds) {
                    (None, false) => continue,
                    (None, true) if rule.for_.is_zero() => AlertState::Firing,
                    (None, true) => AlertState::Pending,
                    (Some(AlertState::Pending), true) => {
                        let since = self.active[&key].since;
                        if now.duration_since(since) >= rule.for_ {
                            AlertState::Firing
                        } else {
                            AlertState::Pending
                        }
                    }
                    (Some(st), true) => st,
                    (Some(_), false) => AlertState::Resolved,
                };
                let entry = self.active.entry(key.clone()).or_insert_with(|| Active {
                    state: next,
                    since: now,
                    since_wall: wall.to_string(),
                    value: s.value,
                });
                let transition = prev != Some(next);
                let changed = transition || entry.value != s.value;
                entry.state = next;
                entry.value = s.value;
                if changed {
                    out.push(Self::update(rule, &key, entry, wall, transition));
                }
                if next == AlertState::Resolved {
                    self.active.remove(&key);
                }
            }
        }
        // Alerts whose metric disappeared (a pool gone, a sampler that stopped) resolve.
        let gone: Vec<_> = self
            .active
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let Some(mut a) = self.active.remove(&key) else {
                continue;
            };
            let Some(rule) = self.rules.iter().find(|r| r.name == key.0) else {
                continue;
            };
            a.state = AlertState::Resolved;
            out.push(Self::update(rule, &key, &a, wall, true));
        }
        out
    }

    fn update(
        rule: &AlertRule,
        key: &(String, Option<String>),
        a: &Active,
        wall: &str,
        transition: bool,
    ) -> AlertUpdate {
        let scope = key
            .1
            .as_deref()
            .map(|p| format!("pool {p}: "))
            .unwrap_or_default();
        let (metric, limit, now) = (
            rule.metric.as_str(),
            rule.metric.format(rule.threshold),
            rule.metric.format(a.value),
        );
        let hold = humantime::format_duration(rule.for_);
        let message = match a.state {
            AlertState::Pending => {
                format!("{scope}{metric} is above {limit} (now {now}); fires if it stays there for {hold}")
            }
            AlertState::Firing if rule.for_.is_zero() => {
                format!("{scope}{metric} is above {limit} (now {now})")
            }
            AlertState::Firing => {
                format!("{scope}{metric} has been above {limit} for {hold} (now {now})")
            }
            AlertState::Resolved => {
                format!("{scope}{metric} is back to at most {limit} (now {now})")
            }
        };
        AlertUpdate {
            key: key.clone(),
            alert: Alert {
                id: 0,
                rule: rule.name.clone(),
                pool: key.1.clone(),
                severity: rule.severity,
                state: a.state,
                message,
                value: a.value,
                since: a.since_wall.clone(),
                resolved_at: (a.state == AlertState::Resolved).then(|| wall.to_string()),
            },
            transition,
        }
    }
}

/// The alert loop of a server: evaluates the rules over the metrics registry, stores every
/// change through the [`Store`], and POSTs firing and resolved alerts to the webhook.
pub struct Alerter {
    engine: AlertEngine,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    webhook: Option<(reqwest::Client, String)>,
}

impl Alerter {
    /// From `[alerts]`.
    pub fn new(cfg: &AlertsConfig, metrics: Arc<Metrics>, store: Arc<dyn Store>) -> Self {
        let webhook = cfg.webhook.clone().map(|url| {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            (client, url)
        });
        Self {
            engine: AlertEngine::new(cfg.rules.clone()),
            metrics,
            store,
            webhook,
        }
    }

    /// One evaluation. Returns the alerts as stored after it (only those that changed).
    pub async fn tick(&mut self) -> Vec<Alert> {
        let now = OffsetDateTime::now_utc();
        let wall = crate::engine::clock::rfc3339(now);
        let updates = self
            .engine
            .evaluate(Instant::now(), &wall, &self.metrics.alert_samples());
        let mut out = Vec::new();
        for u in updates {
            let a = &u.alert;
            let up = StoreAlertUpdate {
                rule: a.rule.clone(),
                pool: a.pool.clone(),
                severity: a.severity,
                state: a.state,
                message: a.message.clone(),
                value: a.value,
                at: now,
            };
            let stored = match self.store.upsert_alert(&up).await {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(rule = %a.rule, error = %e, "cannot store an alert");
                    u.alert.clone()
                }
            };
            if u.transition {
                match stored.state {
                    AlertState::Firing => tracing::warn!(rule = %stored.rule, "{}", stored.message),
                    AlertState::Resolved => {
                        tracing::info!(rule = %stored.rule, "resolved: {}", stored.message)
                    }
                    AlertState::Pending => {}
                }
                if stored.state != AlertState::Pending {
                    self.notify(&stored);
                }
            }
            out.push(stored);
        }
        out
    }

    /// POSTs `alert` as JSON to the webhook in the background; failures are logged.
    fn notify(&self, alert: &Alert) {
        let Some((client, url)) = &self.webhook else {
            return;
        };
        let req = client.post(url).json(alert);
        let rule = alert.rule.clone();
        tokio::spawn(async move {
            match req.send().await.and_then(|r| r.error_for_status()) {
                Ok(_) => tracing::debug!(rule, "alert webhook delivered"),
                Err(e) => tracing::warn!(rule, error = %e, "alert webhook failed"),
            }
        });
    }

    /// Evaluates every `interval` until `shutdown` completes.
    pub async fn run(
        mut self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => { self.tick().await; }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(pool: &str, v: f64) -> Sample {
        Sample {
            metric: AlertMetric::QueueDepth,
            pool: Some(pool.into()),
            value: v,
        }
    }

    fn states(u: &[AlertUpdate]) -> Vec<(String, AlertState)> {
        u.iter()
            .map(|u| (u.alert.rule.clone(), u.alert.state))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn queue_depth_goes_pending_then_firing_after_5_minutes_then_resolves() {
        let mut e = AlertEngine::new(AlertsConfig::default().rules);
        let up = e.evaluate(Instant::now(), "t0", &[depth("container", 150.0)]);
        assert_eq!(
            states(&up),
            vec![("queue_depth_warning".into(), AlertState::Pending)]
        );
        assert!(up[0].transition);
        assert_eq!(up[0].alert.pool.as_deref(), Some("container"));
        assert_eq!(
            up[0].alert.message,
            "pool container: queue_depth is above 100 (now 150); fires if it stays there for 5m"
        );
        tokio::time::advance(Duration::from_secs(299)).await;
        let up = e.evaluate(Instant::now(), "t1", &[depth("container", 150.0)]);
        assert!(up.is_empty(), "same state, same value: nothing to store");
        tokio::time::advance(Duration::from_secs(1)).await;
        let up = e.evaluate(Instant::now(), "t2", &[depth("container", 160.0)]);
        assert_eq!(
            states(&up),
            vec![("queue_depth_warning".into(), AlertState::Firing)]
        );
        assert_eq!(up[0].alert.since, "t0");
        assert_eq!(up[0].alert.value, 160.0);
        assert!(
            up[0].alert.message.contains("has been above 100"),
            "{}",
            up[0].alert.message
        );
        let up = e.evaluate(Instant::now(), "t3", &[depth("container", 40.0)]);
        assert_eq!(
            states(&up),
            vec![("queue_depth_warning".into(), AlertState::Resolved)]
        );
        assert_eq!(
            up[0].key,
            (
                "queue_depth_warning".to_string(),
                Some("container".to_string())
            )
        );
        assert_eq!(up[0].alert.resolved_at.as_deref(), Some("t3"));
        assert_eq!(
            up[0].alert.message,
            "pool container: queue_depth is back to at most 100 (now 40)"
        );
        assert_eq!(e.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dip_during_pending_restarts_the_for_duration() {
        let mut e = AlertEngine::new(AlertsConfig::default().rules);
        e.evaluate(Instant::now(), "t0", &[depth("microvm", 600.0)]);
        tokio::time::advance(Duration::from_secs(200)).await;
        let up = e.evaluate(Instant::now(), "t1", &[depth("microvm", 90.0)]);
        assert_eq!(
            states(&up),
            vec![
                ("queue_depth_warning".into(), AlertState::Resolved),
                ("queue_depth_critical".into(), AlertState::Resolved)
            ]
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        e.evaluate(Instant::now(), "t2", &[depth("microvm", 600.0)]);
        tokio::time::advance(Duration::from_secs(299)).await;
        let up = e.evaluate(Instant::now(), "t3", &[depth("microvm", 600.0)]);
        assert!(up.is_empty(), "only 299 s since the dip");
        tokio::time::advance(Duration::from_secs(1)).await;
        let up = e.evaluate(Instant::now(), "t4", &[depth("microvm", 600.0)]);
        assert_eq!(
            states(&up),
            vec![
                ("queue_depth_warning".into(), AlertState::Firing),
                ("queue_depth_critical".into(), AlertState::Firing)
            ]
        );
        assert!(up.iter().all(|u| u.alert.since == "t2"));
    }

    #[tokio::test(start_paused = true)]
    async fn error_rate_needs_10_minutes_and_scaling_failure_fires_at_once() {
        let mut e = AlertEngine::new(AlertsConfig::default().rules);
        let err = |v| Sample {
            metric: AlertMetric::ErrorRate,
            pool: Some("container".into()),
            value: v,
        };
        let fail = |v| Sample {
            metric: AlertMetric::ScalingFailures,
            pool: Some("microvm".into()),
            value: v,
        };
        let up = e.evaluate(Instant::now(), "t0", &[err(0.06), fail(1.0)]);
        assert_eq!(
            states(&up),
            vec![
                ("error_rate_warning".into(), AlertState::Pending),
                ("scaling_failure".into(), AlertState::Firing)
            ]
        );
        assert_eq!(up[1].alert.severity, Severity::Critical);
        tokio::time::advance(Duration::from_secs(599)).await;
        let up = e.evaluate(Instant::now(), "t1", &[err(0.06), fail(1.0)]);
        assert!(up.is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        let up = e.evaluate(Instant::now(), "t2", &[err(0.05), fail(0.0)]);
        // 5 % is not above 5 %: the pending alert resolves instead of firing.
        assert_eq!(
            states(&up),
            vec![
                ("error_rate_warning".into(), AlertState::Resolved),
                ("scaling_failure".into(), AlertState::Resolved)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pools_are_tracked_separately_and_a_vanished_sample_resolves() {
        let mut e = AlertEngine::new(AlertsConfig::default().rules);
        let mem = |v| Sample {
            metric: AlertMetric::WorkerMemory,
            pool: None,
            value: v,
        };
        e.evaluate(
            Instant::now(),
            "t0",
            &[depth("a", 700.0), depth("b", 700.0), mem(0.95)],
        );
        assert_eq!(e.active(), 5);
        tokio::time::advance(Duration::from_secs(60)).await;
        let up = e.evaluate(
            Instant::now(),
            "t1",
            &[depth("a", 700.0), depth("b", 700.0), mem(0.95)],
        );
        assert_eq!(
            states(&up),
            vec![("worker_memory_critical".into(), AlertState::Firing)]
        );
        assert!(
            up[0].alert.message.contains("95.0 %"),
            "{}",
            up[0].alert.message
        );
        let up = e.evaluate(Instant::now(), "t2", &[depth("a", 700.0), mem(0.95)]);
        assert_eq!(up.len(), 2);
        assert!(
            up.iter()
                .all(|u| u.alert.pool.as_deref() == Some("b")
                    && u.alert.state == AlertState::Resolved)
        );
        assert_eq!(e.active(), 3);
    }

    #[test]
    fn config_parses_rules_with_for_and_validates() {
        let cfg: AlertsConfig = toml::from_str(
            r#"
            webhook = "https://hooks.example.org/judge"
            [[rules]]
            name = "deep"
            metric = "queue_depth"
            threshold = 10
            for = "30s"
            severity = "critical"
            "#,
        )
        .expect("parses");
        cfg.validate().expect("valid");
        assert_eq!(cfg.rules.len(), 1);
        assert_eq!(cfg.rules[0].for_, Duration::from_secs(30));
        let bad: AlertsConfig = toml::from_str("webhook = \"ftp://x\"\n").expect("parses");
        assert_eq!(bad.validate().unwrap_err().key, "alerts.webhook");
    }

    #[tokio::test]
    async fn alerter_stores_transitions_and_posts_the_webhook() {
        use crate::engine::metrics::{MetricsConfig, PoolInfo};
        // A real HTTP receiver on a free port that keeps what it is sent.
        let got = Arc::new(tokio::sync::Mutex::new(Vec::<Alert>::new()));
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(a): axum::Json<Alert>| {
                let sink = sink.clone();
                async move { sink.lock().await.push(a) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::engine::store::open_sqlite(&dir.path().join("s.db")).unwrap());
        let info = PoolInfo {
            name: "microvm".into(),
            backend: "native".into(),
            slots_per_replica: 2,
            min_replicas: 1,
            max_replicas: 5,
        };
        let metrics = Arc::new(Metrics::new(MetricsConfig::default(), &[info]));
        let cfg = AlertsConfig {
            webhook: Some(format!("http://{addr}/hook")),
            rules: vec![AlertRule::new(
                "deep",
                AlertMetric::QueueDepth,
                3.0,
                0,
                Severity::Critical,
            )],
            ..AlertsConfig::default()
        };
        let mut alerter = Alerter::new(&cfg, metrics.clone(), store.clone());
        let deep = crate::engine::model::QueueDepth {
            high: 1,
            normal: 2,
            low: 3,
        };
        metrics.sample_queue("microvm", deep, 0);
        let changed = alerter.tick().await;
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].state, AlertState::Firing);
        assert!(changed[0].id > 0);
        metrics.sample_queue("microvm", crate::engine::model::QueueDepth::default(), 0);
        let changed = alerter.tick().await;
        assert_eq!(changed[0].state, AlertState::Resolved);
        assert!(changed[0].resolved_at.is_some());
        let recent = store.recent_alerts(10).await.unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].state, AlertState::Resolved);
        // Both transitions reach the webhook (delivered in the background).
        for _ in 0..200 {
            if got.lock().await.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let posts = got.lock().await.clone();
        let states: Vec<_> = posts.iter().map(|a| a.state).collect();
        assert_eq!(states.len(), 2, "{posts:?}");
        assert!(states.contains(&AlertState::Firing) && states.contains(&AlertState::Resolved));
        assert!(posts
            .iter()
            .all(|a| a.rule == "deep" && a.pool.as_deref() == Some("microvm")));
    }
}
