//! Wire types shared by the engine's API and its clients (`judge submit`, `judge status`,
//! `judge top`). Field names are the JSON keys.

use serde::{Deserialize, Serialize};

/// Submission priority. `high` is always admitted; `low` is shed first under load.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Judged first; never shed.
    High,
    /// The default.
    #[default]
    Normal,
    /// Judged last; shed first.
    Low,
}

/// Queue depth of one pool, per priority (jobs waiting, not counting leased ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Waiting `high` jobs.
    pub high: u64,
    /// Waiting `normal` jobs.
    pub normal: u64,
    /// Waiting `low` jobs.
    pub low: u64,
}

impl QueueDepth {
    /// Total waiting jobs.
    pub fn total(&self) -> u64 {
        self.high + self.normal + self.low
    }
}

/// Live figures of one pool, as `GET /api/v1/stats` reports them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PoolStats {
    /// Pool name: `container`, `microvm` or `trusted`.
    pub name: String,
    /// Sandbox backend of the pool (`native`, `process`, ...).
    pub backend: String,
    /// Jobs waiting, per priority.
    pub queue_depth: QueueDepth,
    /// Jobs currently leased by a worker of this pool.
    pub in_flight: u64,
    /// Replicas running now.
    pub replicas: u32,
    /// Replicas the autoscaler wants.
    pub desired_replicas: u32,
    /// Autoscaler lower bound.
    pub min_replicas: u32,
    /// Autoscaler upper bound.
    pub max_replicas: u32,
    /// Concurrent slots over all replicas.
    pub slots: u32,
    /// Slots busy judging now.
    pub busy_slots: u32,
    /// Busy slots / slots, 0.0..=1.0, averaged over the last minute.
    pub utilization: f64,
    /// 95th percentile of judging time (claim to result) in ms over the last 5 minutes.
    pub p95_ms: Option<f64>,
    /// Share of jobs that ended in IE over the last 10 minutes, 0.0..=1.0.
    pub error_rate: f64,
    /// Time to make a new box ready (`Sandbox::prepare`), in ms, last observed.
    pub cold_start_ms: Option<f64>,
    /// Circuit breaker state: `closed`, `open` or `half_open`.
    pub breaker: String,
}

/// `GET /api/v1/stats`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Server time, RFC 3339.
    pub now: String,
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// Per pool.
    pub pools: Vec<PoolStats>,
    /// Submissions accepted since start.
    pub submissions_total: u64,
    /// Submissions refused by load shedding since start.
    pub shed_total: u64,
    /// Requests refused by the rate limiter since start.
    pub rate_limited_total: u64,
    /// Whether admission currently sheds `low` / `normal` submissions.
    pub shedding: Shedding,
    /// The most recent submissions, newest first (at most 20).
    pub recent: Vec<SubmissionSummary>,
}

/// Load-shedding state at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shedding {
    /// Everything admitted.
    #[default]
    None,
    /// `low` refused.
    Low,
    /// `low` and `normal` refused.
    Normal,
}

/// One line of the recent-submissions list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionSummary {
    /// Submission id.
    pub id: String,
    /// Submitting user.
    pub user: String,
    /// Problem id.
    pub problem: String,
    /// Language id.
    pub language: String,
    /// `queued`, `judging` or `done`.
    pub state: String,
    /// Final verdict when done.
    pub verdict: Option<crate::judge::Verdict>,
    /// Pool it was routed to.
    pub pool: String,
    /// Submission time, RFC 3339.
    pub submitted_at: String,
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// Alert state machine: pending → firing → resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Condition true, "for" duration not yet elapsed.
    Pending,
    /// Condition true for at least the "for" duration.
    Firing,
    /// Condition no longer true.
    Resolved,
}

/// One alert, as `GET /api/v1/alerts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id.
    pub id: i64,
    /// Rule name, e.g. `"queue_depth_critical"`.
    pub rule: String,
    /// Pool the alert is about, if any.
    pub pool: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// Current state.
    pub state: AlertState,
    /// Human-readable description with the observed value.
    pub message: String,
    /// Observed metric value when last evaluated.
    pub value: f64,
    /// When the condition first held, RFC 3339.
    pub since: String,
    /// When it resolved, RFC 3339.
    pub resolved_at: Option<String>,
}

/// One autoscaler decision, as `GET /api/v1/scaling-events` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingEvent {
    /// Stable id.
    pub id: i64,
    /// Decision time, RFC 3339.
    pub at: String,
    /// Pool scaled.
    pub pool: String,
    /// Replicas before.
    pub from: u32,
    /// Replicas after (equal to `from` when the actuator failed).
    pub to: u32,
    /// The rule that fired, e.g. `"queue_depth > 50: +2"`.
    pub rule: String,
    /// The metric value that triggered it.
    pub value: f64,
    /// Whether the actuator carried it out.
    pub ok: bool,
    /// Error text when it failed.
    pub error: Option<String>,
}
