//! Alerts: the seed's table as configurable rules with "for" durations, evaluated over metric
//! samples; each alert goes pending → firing → resolved.
//!
//! Seed table (DESIGN.md, "Backpressure and scaling"), the defaults of `[[alerts.rules]]`:
//! queue depth > 100 for 5 min (warning), > 500 for 5 min (critical), error rate > 5 % for
//! 10 min (warning), worker memory > 90 % (critical; "for 1m" is this engine's choice so one
//! sample's spike does not page anyone), scaling failure (critical, at once).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::engine::backpressure::{serde_duration, ConfigError};
use crate::engine::model::{Alert, AlertState, Severity};

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

/// An alert whose state or value changed at an evaluation: store it (upsert by `alert.id`
/// when known, else insert and remember the id with [`AlertEngine::set_id`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertUpdate {
    /// Rule name and pool, the key to hand back to [`AlertEngine::set_id`].
    pub key: (String, Option<String>),
    /// The alert as it stands; `id` is 0 until the store assigned one.
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
    id: i64,
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

    /// Records the store's id for an alert in flight.
    pub fn set_id(&mut self, key: &(String, Option<String>), id: i64) {
        if let Some(a) = self.active.get_mut(key) {
            a.id = id;
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
                    id: 0,
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
        let verb = match a.state {
            AlertState::Pending => "is",
            AlertState::Firing => "has been",
            AlertState::Resolved => "was",
        };
        let message = format!(
            "{scope}{} {verb} above {} (now {}){}",
            rule.metric.as_str(),
            rule.metric.format(rule.threshold),
            rule.metric.format(a.value),
            if rule.for_.is_zero() {
                String::new()
            } else {
                format!(" for {}", humantime::format_duration(rule.for_))
            },
        );
        AlertUpdate {
            key: key.clone(),
            alert: Alert {
                id: a.id,
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
        e.set_id(&up[0].key, 7);
        let up = e.evaluate(Instant::now(), "t3", &[depth("container", 40.0)]);
        assert_eq!(
            states(&up),
            vec![("queue_depth_warning".into(), AlertState::Resolved)]
        );
        assert_eq!(up[0].alert.id, 7);
        assert_eq!(up[0].alert.resolved_at.as_deref(), Some("t3"));
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
}
