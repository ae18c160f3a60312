//! Backpressure: the circuit breaker of each pool, load shedding at admission, and the pacing
//! of queue reads.
//!
//! Values come from DESIGN.md, "Backpressure and scaling" (the seed architecture); every one is a
//! default of the `[backpressure]` section of templates/judge.toml.
//!
//! The state machines here take the current time as an argument ([`tokio::time::Instant`]) so that
//! they are pure and deterministic; the async callers pass `Instant::now()`, and tests drive them
//! under tokio's paused clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::engine::metrics::Metrics;
use crate::engine::model::{Priority, Shedding};
use crate::engine::queue::JobQueue;

/// A configuration value out of range: names the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// Dotted key in judge.toml, e.g. `backpressure.shedding.resume_below`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// Builds an error for `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Serde helpers for durations written as humantime strings (`"100ms"`, `"30s"`, `"5m"`).
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses `"30s"`, `"100ms"`, `"5m"`, `"1h 30m"`.
    ///
    /// # Errors
    /// A string humantime cannot parse.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {s:?}: {e}")))
    }

    /// Writes the humantime form.
    ///
    /// # Errors
    /// Never, beyond the serializer's own.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*v).to_string())
    }
}

/// `[backpressure]` in judge.toml.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BackpressureConfig {
    /// `[backpressure.breaker]`.
    pub breaker: BreakerConfig,
    /// `[backpressure.shedding]`.
    pub shedding: SheddingConfig,
    /// `[backpressure.claims]`.
    pub claims: PacingConfig,
}

impl BackpressureConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// The first value out of range, with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.breaker.validate()?;
        self.shedding.validate()?;
        self.claims.validate()
    }
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

/// `[backpressure.breaker]`: the circuit breaker of each pool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive internal failures (IE from a sandbox or storage fault, never a contestant's
    /// verdict) that open the breaker. Seed: 5.
    pub failure_threshold: u32,
    /// How long the breaker stays open before one half-open trial. Seed: 30 s.
    #[serde(with = "serde_duration")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::new(
                "backpressure.breaker.failure_threshold",
                "must be at least 1",
            ));
        }
        if self.open_for.is_zero() {
            return Err(ConfigError::new(
                "backpressure.breaker.open_for",
                "must be above 0",
            ));
        }
        Ok(())
    }
}

/// The externally visible state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Claims flow normally.
    Closed,
    /// The pool claims nothing until the open period ends.
    Open,
    /// One trial job may be (or is being) judged; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`, as `/api/v1/stats` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What the breaker allows a replica to claim now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Claim as many jobs as there are free slots (within the claim batch).
    Any,
    /// Claim at most one job: the half-open trial. Report its outcome with `trial = true`, or
    /// hand the permit back with [`CircuitBreaker::return_trial`] if the queue was empty.
    Trial,
    /// Claim nothing; jobs stay queued.
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_out: bool },
}

/// Circuit breaker of one pool (shared by its replicas behind a mutex, see [`PoolBreaker`]).
///
/// Closed → (N consecutive internal failures) → Open → (open_for elapsed) → HalfOpen: one trial
/// job → success closes it, an internal failure opens it again for another `open_for`.
/// The breaker only stops claims; it never fails a job (DESIGN.md, "Backpressure and scaling").
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    inner: Inner,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            inner: Inner::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// State at `now` (an open breaker whose period is over reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks what may be claimed at `now`. Handing out [`Permit::Trial`] reserves the single trial:
    /// further calls answer [`Permit::Nothing`] until its outcome is reported or it is returned.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.inner {
            Inner::Closed { .. } => Permit::Any,
            Inner::Open { until } if now < until => Permit::Nothing,
            Inner::Open { .. } | Inner::HalfOpen { trial_out: false } => {
                self.inner = Inner::HalfOpen { trial_out: true };
                Permit::Trial
            }
            Inner::HalfOpen { trial_out: true } => Permit::Nothing,
        }
    }

    /// Hands back an unused trial permit (the claim found nothing, or the claim itself errored
    /// before a job was taken).
    pub fn return_trial(&mut self) {
        if let Inner::HalfOpen { trial_out: true } = self.inner {
            self.inner = Inner::HalfOpen { trial_out: false };
        }
    }

    /// Records a job that ended without an internal failure (any contestant verdict counts as a
    /// success). `trial`: the job was claimed under [`Permit::Trial`].
    pub fn record_success(&mut self, trial: bool) {
        match self.inner {
            Inner::Closed { .. } => {
                self.inner = Inner::Closed {
                    consecutive_failures: 0,
                }
            }
            Inner::HalfOpen { trial_out: true } if trial => {
                self.inner = Inner::Closed {
                    consecutive_failures: 0,
                };
            }
            // Outcomes of jobs claimed before the breaker opened say nothing about the trial.
            Inner::Open { .. } | Inner::HalfOpen { .. } => {}
        }
    }

    /// Records an internal failure (IE from a sandbox or storage fault) at `now`.
    /// `trial`: the job was claimed under [`Permit::Trial`].
    pub fn record_internal_failure(&mut self, now: Instant, trial: bool) {
        match self.inner {
            Inner::Closed {
                consecutive_failures,
            } => {
                let n = consecutive_failures + 1;
                self.inner = if n >= self.cfg.failure_threshold {
                    Inner::Open {
                        until: now + self.cfg.open_for,
                    }
                } else {
                    Inner::Closed {
                        consecutive_failures: n,
                    }
                };
            }
            Inner::HalfOpen { trial_out: true } if trial => {
                self.inner = Inner::Open {
                    until: now + self.cfg.open_for,
                };
            }
            Inner::Open { .. } | Inner::HalfOpen { .. } => {}
        }
    }
}

/// A pool's breaker shared by its replicas; every method takes `Instant::now()` itself.
#[derive(Debug)]
pub struct PoolBreaker(Mutex<CircuitBreaker>);

impl PoolBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self(Mutex::new(CircuitBreaker::new(cfg)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        // A panic while holding this lock leaves a consistent state machine behind.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`CircuitBreaker::state`].
    pub fn state(&self) -> BreakerState {
        self.lock().state(Instant::now())
    }

    /// See [`CircuitBreaker::permit`].
    pub fn permit(&self) -> Permit {
        self.lock().permit(Instant::now())
    }

    /// See [`CircuitBreaker::return_trial`].
    pub fn return_trial(&self) {
        self.lock().return_trial();
    }

    /// See [`CircuitBreaker::record_success`].
    pub fn record_success(&self, trial: bool) {
        self.lock().record_success(trial);
    }

    /// See [`CircuitBreaker::record_internal_failure`].
    pub fn record_internal_failure(&self, trial: bool) {
        self.lock().record_internal_failure(Instant::now(), trial);
    }
}

// ---------------------------------------------------------------------------------------------
// Load shedding
// ---------------------------------------------------------------------------------------------

/// `[backpressure.shedding]`: load shedding at admission, with hysteresis.
///
/// The depth compared is the total of waiting jobs over all pools (leased jobs not counted).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SheddingConfig {
    /// Above this many waiting jobs, new `low` submissions are refused. Seed: 1000.
    pub low_above: u64,
    /// Above this many waiting jobs, new `normal` submissions are refused too. The seed says
    /// "then normal" without a figure; 2000 (twice `low_above`) is this engine's choice.
    pub normal_above: u64,
    /// Admission resumes (for both priorities) once the depth is below this. Seed: 500.
    pub resume_below: u64,
    /// The Retry-After sent with a 503. Default 30 s.
    #[serde(with = "serde_duration")]
    pub retry_after: Duration,
}

impl Default for SheddingConfig {
    fn default() -> Self {
        Self {
            low_above: 1000,
            normal_above: 2000,
            resume_below: 500,
            retry_after: Duration::from_secs(30),
        }
    }
}

impl SheddingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.resume_below > self.low_above {
            return Err(ConfigError::new(
                "backpressure.shedding.resume_below",
                format!("must not exceed low_above ({})", self.low_above),
            ));
        }
        if self.normal_above < self.low_above {
            return Err(ConfigError::new(
                "backpressure.shedding.normal_above",
                format!("must be at least low_above ({})", self.low_above),
            ));
        }
        if self.retry_after < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "backpressure.shedding.retry_after",
                "must be at least 1s (Retry-After is in whole seconds)",
            ));
        }
        Ok(())
    }
}

/// A refused submission: answer 503 with `Retry-After: retry_after_s` and `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Shed {
    /// Seconds for the Retry-After header.
    pub retry_after_s: u64,
    /// Why, for the response body.
    pub message: String,
}

/// The pure hysteresis: the shedding level after observing `depth` waiting jobs in state `prev`.
pub fn next_shedding(cfg: &SheddingConfig, prev: Shedding, depth: u64) -> Shedding {
    if depth > cfg.normal_above {
        Shedding::Normal
    } else if depth > cfg.low_above {
        match prev {
            Shedding::Normal => Shedding::Normal,
            Shedding::None | Shedding::Low => Shedding::Low,
        }
    } else if depth < cfg.resume_below {
        Shedding::None
    } else {
        prev
    }
}

/// Admission control: one per server, consulted by `POST /api/v1/submissions` after the rate
/// limiter. Thread-safe. (Refusals are counted by [`crate::engine::metrics::Metrics`].)
#[derive(Debug)]
pub struct Shedder {
    cfg: SheddingConfig,
    state: Mutex<Shedding>,
}

impl Shedder {
    /// Admits everything until a depth above `low_above` is observed.
    pub fn new(cfg: SheddingConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(Shedding::None),
        }
    }

    /// Updates the level from a fresh depth reading (also called by the metrics sampler so the
    /// level follows a draining queue without submissions). Returns the new level.
    pub fn observe(&self, depth: u64) -> Shedding {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = next_shedding(&self.cfg, *s, depth);
        *s
    }

    /// The current level.
    pub fn level(&self) -> Shedding {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides on one submission of `priority` given `depth` waiting jobs right now.
    ///
    /// # Errors
    /// [`Shed`] when the submission must be refused; the caller answers 503 and must not
    /// enqueue it. `high` is never refused.
    pub fn admit(&self, priority: Priority, depth: u64) -> Result<(), Shed> {
        let level = self.observe(depth);
        let refused = match priority {
            Priority::High => false,
            Priority::Normal => level == Shedding::Normal,
            Priority::Low => level != Shedding::None,
        };
        if !refused {
            return Ok(());
        }
        let threshold = match level {
            Shedding::Normal => self.cfg.normal_above,
            Shedding::Low | Shedding::None => self.cfg.low_above,
        };
        let prio = match priority {
            Priority::Low => "low",
            Priority::Normal | Priority::High => "normal",
        };
        Err(Shed {
            retry_after_s: self.cfg.retry_after.as_secs().max(1),
            message: format!(
                "the judge is overloaded: {depth} submissions are waiting (over {threshold}), so new \
                 {prio}-priority submissions are refused until fewer than {} wait; retry later",
                self.cfg.resume_below
            ),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Claim pacing
// ---------------------------------------------------------------------------------------------

/// `[backpressure.claims]`: how replicas read the queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingConfig {
    /// Most jobs claimed in one queue read. Seed: 5.
    pub batch: u32,
    /// Pause between reads while jobs keep coming. Seed: 100 ms.
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    /// Pause after a read that found the queue empty (a new job also wakes the replica when the
    /// queue can signal it). Default 250 ms.
    #[serde(with = "serde_duration")]
    pub idle_poll: Duration,
    /// First pause after a queue error; doubled on each further error. Seed: 100 ms.
    #[serde(with = "serde_duration")]
    pub backoff_min: Duration,
    /// Cap of the error backoff. Seed: 30 s.
    #[serde(with = "serde_duration")]
    pub backoff_max: Duration,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            batch: 5,
            interval: Duration::from_millis(100),
            idle_poll: Duration::from_millis(250),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl PacingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.batch == 0 {
            return Err(ConfigError::new(
                "backpressure.claims.batch",
                "must be at least 1",
            ));
        }
        if self.backoff_min.is_zero() {
            return Err(ConfigError::new(
                "backpressure.claims.backoff_min",
                "must be above 0",
            ));
        }
        if self.backoff_max < self.backoff_min {
            return Err(ConfigError::new(
                "backpressure.claims.backoff_max",
                "must be at least backoff_min",
            ));
        }
        Ok(())
    }
}

/// How a queue read went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The read returned this many jobs (at least one).
    Claimed(usize),
    /// The queue had nothing for us.
    Empty,
    /// The queue failed (storage fault); reads back off exponentially.
    Error,
}

/// Paces one replica's queue reads: batches of `batch`, `interval` apart while busy,
/// exponential backoff from `backoff_min` to `backoff_max` while the queue errors.
#[derive(Debug, Clone)]
pub struct ClaimPacer {
    cfg: PacingConfig,
    backoff: Option<Duration>,
}

impl ClaimPacer {
    /// A pacer with no pending backoff.
    pub fn new(cfg: PacingConfig) -> Self {
        Self { cfg, backoff: None }
    }

    /// How many jobs to ask for when `free_slots` slots are free (0 when none are).
    pub fn batch_size(&self, free_slots: usize) -> usize {
        free_slots.min(self.cfg.batch as usize)
    }

    /// The pause before the next read, given how this one went.
    pub fn delay_after(&mut self, outcome: ClaimOutcome) -> Duration {
        match outcome {
            ClaimOutcome::Claimed(_) => {
                self.backoff = None;
                self.cfg.interval
            }
            ClaimOutcome::Empty => {
                self.backoff = None;
                self.cfg.idle_poll
            }
            ClaimOutcome::Error => {
                let next = match self.backoff {
                    None => self.cfg.backoff_min,
                    Some(d) => d.saturating_mul(2).min(self.cfg.backoff_max),
                };
                self.backoff = Some(next);
                next
            }
        }
    }

    /// Sleeps for [`Self::delay_after`] (tokio time, so paused-clock tests control it).
    pub async fn pace(&mut self, outcome: ClaimOutcome) {
        tokio::time::sleep(self.delay_after(outcome)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The server's backpressure state
// ---------------------------------------------------------------------------------------------

/// The backpressure state of one server: the admission shedder, one breaker per pool, and the
/// pacing every replica's claim loop follows. Shared as `Arc<Backpressure>`.
#[derive(Debug)]
pub struct Backpressure {
    shedder: Shedder,
    breakers: BTreeMap<String, Arc<PoolBreaker>>,
    claims: PacingConfig,
}

impl Backpressure {
    /// From `[backpressure]`, with a closed breaker for each of `pools`.
    pub fn new(cfg: &BackpressureConfig, pools: impl IntoIterator<Item = String>) -> Self {
        Self {
            shedder: Shedder::new(cfg.shedding.clone()),
            breakers: pools
                .into_iter()
                .map(|p| (p, Arc::new(PoolBreaker::new(cfg.breaker.clone()))))
                .collect(),
            claims: cfg.claims.clone(),
        }
    }

    /// The breaker of `pool` (`None` for an unknown pool).
    pub fn breaker(&self, pool: &str) -> Option<Arc<PoolBreaker>> {
        self.breakers.get(pool).cloned()
    }

    /// Breaker states by pool.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.breakers
            .iter()
            .map(|(p, b)| (p.clone(), b.state()))
            .collect()
    }

    /// A fresh pacer for one replica's claim loop.
    pub fn pacer(&self) -> ClaimPacer {
        ClaimPacer::new(self.claims.clone())
    }

    /// The admission shedder.
    pub fn shedder(&self) -> &Shedder {
        &self.shedder
    }

    /// Admission control for one submission of `priority`, after the rate limiter and before
    /// anything is stored: reads the waiting jobs of every pool from `queue` (a `high`
    /// submission skips the read: it is always admitted), updates the shedding level and
    /// counts refusals in `metrics`. Each admission reads the depth itself, so sequential
    /// submissions are shed exactly above the threshold; concurrent ones that read the same
    /// depth may overshoot it by how many were in flight together.
    ///
    /// # Errors
    /// [`Shed`]: answer 503 with Retry-After and the message; the submission must not be
    /// stored or enqueued. A queue that cannot report its depth does not refuse anyone (the
    /// enqueue that follows reports the fault).
    pub async fn admit(
        &self,
        priority: Priority,
        queue: &dyn JobQueue,
        metrics: &Metrics,
    ) -> Result<(), Shed> {
        if priority == Priority::High {
            return Ok(());
        }
        let mut depth = 0;
        for pool in self.breakers.keys() {
            match queue.depth(pool).await {
                Ok(d) => depth += d.total(),
                Err(e) => {
                    tracing::warn!(pool, error = %e, "admission: cannot read the queue depth");
                    return Ok(());
                }
            }
        }
        let res = self.shedder.admit(priority, depth);
        metrics.set_shedding(self.shedder.level());
        if res.is_err() {
            metrics.record_shed(priority);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig::default())
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_five_consecutive_internal_failures() {
        let mut b = breaker();
        for _ in 0..4 {
            b.record_internal_failure(Instant::now(), false);
            assert_eq!(b.permit(Instant::now()), Permit::Any);
        }
        b.record_internal_failure(Instant::now(), false);
        assert_eq!(b.state(Instant::now()), BreakerState::Open);
        assert_eq!(b.permit(Instant::now()), Permit::Nothing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_consecutive_count() {
        let mut b = breaker();
        for _ in 0..4 {
            b.record_internal_failure(Instant::now(), false);
        }
        b.record_success(false);
        for _ in 0..4 {
            b.record_internal_failure(Instant::now(), false);
        }
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
        b.record_internal_failure(Instant::now(), false);
        assert_eq!(b.state(Instant::now()), BreakerState::Open);
    }

    fn opened() -> CircuitBreaker {
        let mut b = breaker();
        for _ in 0..5 {
            b.record_internal_failure(Instant::now(), false);
        }
        b
    }

    #[tokio::test(start_paused = true)]
    async fn open_breaker_claims_nothing_for_30s_then_allows_one_trial() {
        let mut b = opened();
        tokio::time::advance(Duration::from_millis(29_999)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Nothing);
        assert_eq!(b.state(Instant::now()), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(Instant::now()), BreakerState::HalfOpen);
        assert_eq!(b.permit(Instant::now()), Permit::Trial);
        // Only one trial at a time.
        assert_eq!(b.permit(Instant::now()), Permit::Nothing);
        assert_eq!(b.permit(Instant::now()), Permit::Nothing);
    }

    #[tokio::test(start_paused = true)]
    async fn successful_trial_closes_the_breaker() {
        let mut b = opened();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Trial);
        // A late success of a job claimed before the breaker opened is not the trial.
        b.record_success(false);
        assert_eq!(b.state(Instant::now()), BreakerState::HalfOpen);
        b.record_success(true);
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
        assert_eq!(b.permit(Instant::now()), Permit::Any);
        // Closed again with a fresh count: four failures keep it closed.
        for _ in 0..4 {
            b.record_internal_failure(Instant::now(), false);
        }
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens_for_another_period() {
        let mut b = opened();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Trial);
        tokio::time::advance(Duration::from_secs(2)).await;
        b.record_internal_failure(Instant::now(), true);
        assert_eq!(b.state(Instant::now()), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Nothing);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Trial);
    }

    #[tokio::test(start_paused = true)]
    async fn returned_trial_can_be_taken_again() {
        let mut b = opened();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Trial);
        b.return_trial();
        assert_eq!(b.permit(Instant::now()), Permit::Trial);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_open_do_not_extend_the_open_period() {
        let mut b = opened();
        tokio::time::advance(Duration::from_secs(20)).await;
        b.record_internal_failure(Instant::now(), false);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Trial);
    }

    #[test]
    fn shedding_hysteresis_follows_the_seed_thresholds() {
        let cfg = SheddingConfig::default();
        let mut s = Shedding::None;
        let mut seq = Vec::new();
        for depth in [
            0, 999, 1000, 1001, 800, 500, 1500, 2000, 2001, 1500, 900, 500, 499, 700,
        ] {
            s = next_shedding(&cfg, s, depth);
            seq.push(s);
        }
        use Shedding::*;
        assert_eq!(
            seq,
            vec![
                None, None, None, Low, Low, Low, Low, Low, Normal, Normal, Normal, Normal, None,
                None
            ]
        );
    }

    #[test]
    fn shedder_refuses_low_then_normal_never_high() {
        let sh = Shedder::new(SheddingConfig::default());
        assert!(sh.admit(Priority::Low, 1000).is_ok());
        let err = sh.admit(Priority::Low, 1001).unwrap_err();
        assert_eq!(err.retry_after_s, 30);
        assert!(
            err.message.contains("1001 submissions are waiting"),
            "{}",
            err.message
        );
        assert!(sh.admit(Priority::Normal, 1001).is_ok());
        assert!(sh.admit(Priority::Normal, 2001).is_err());
        assert!(sh.admit(Priority::High, 5000).is_ok());
        // Still shedding between the marks while draining...
        assert!(sh.admit(Priority::Normal, 600).is_err());
        assert!(sh.admit(Priority::Low, 500).is_err());
        // ...and admitting again below 500.
        assert!(sh.admit(Priority::Low, 499).is_ok());
        assert!(sh.admit(Priority::Low, 900).is_ok());
        assert_eq!(sh.level(), Shedding::None);
    }

    #[test]
    fn pacer_batches_and_backs_off_exponentially_to_the_cap() {
        let mut p = ClaimPacer::new(PacingConfig::default());
        assert_eq!(p.batch_size(8), 5);
        assert_eq!(p.batch_size(3), 3);
        assert_eq!(p.batch_size(0), 0);
        assert_eq!(
            p.delay_after(ClaimOutcome::Claimed(5)),
            Duration::from_millis(100)
        );
        let mut delays = Vec::new();
        for _ in 0..12 {
            delays.push(p.delay_after(ClaimOutcome::Error).as_millis());
        }
        assert_eq!(
            delays,
            vec![100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
        // A good read resets the backoff.
        assert_eq!(
            p.delay_after(ClaimOutcome::Empty),
            Duration::from_millis(250)
        );
        assert_eq!(
            p.delay_after(ClaimOutcome::Error),
            Duration::from_millis(100)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pace_sleeps_on_tokio_time() {
        let mut p = ClaimPacer::new(PacingConfig::default());
        let t0 = Instant::now();
        p.pace(ClaimOutcome::Claimed(5)).await;
        p.pace(ClaimOutcome::Error).await;
        p.pace(ClaimOutcome::Error).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(100 + 100 + 200));
    }

    #[test]
    fn config_validation_names_the_key() {
        let cfg: BackpressureConfig =
            toml::from_str("[shedding]\nresume_below = 2000\n").expect("parses");
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.key, "backpressure.shedding.resume_below");
        let cfg: BackpressureConfig =
            toml::from_str("[claims]\ninterval = \"50ms\"\nbackoff_max = \"10s\"\n")
                .expect("parses");
        assert_eq!(cfg.claims.interval, Duration::from_millis(50));
        assert_eq!(cfg.claims.backoff_max, Duration::from_secs(10));
        assert!(cfg.validate().is_ok());
        assert!(toml::from_str::<BackpressureConfig>("[claims]\nbatchh = 3\n").is_err());
    }

    #[tokio::test]
    async fn admission_reads_the_real_queue_and_the_sampler_follows_the_drain() {
        use crate::engine::metrics::{Metrics, MetricsConfig, PoolInfo, Sampler};
        use crate::engine::queue::{Job, JobQueue};
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn JobQueue> =
            Arc::new(crate::engine::queue::open_sqlite(&dir.path().join("q.db")).unwrap());
        let pools = ["container".to_string(), "microvm".to_string()];
        let info = |n: &str| PoolInfo {
            name: n.into(),
            backend: "native".into(),
            slots_per_replica: 2,
            min_replicas: 1,
            max_replicas: 2,
        };
        let metrics = Arc::new(Metrics::new(
            MetricsConfig::default(),
            &[info("container"), info("microvm")],
        ));
        let cfg = BackpressureConfig {
            shedding: SheddingConfig {
                low_above: 6,
                normal_above: 9,
                resume_below: 3,
                ..SheddingConfig::default()
            },
            ..BackpressureConfig::default()
        };
        let bp = Arc::new(Backpressure::new(&cfg, pools.clone()));
        let mut accepted = 0;
        let mut refused = Vec::new();
        for i in 0..12 {
            let prio = if i % 2 == 0 {
                Priority::Low
            } else {
                Priority::Normal
            };
            match bp.admit(prio, queue.as_ref(), &metrics).await {
                Ok(()) => {
                    let job = Job {
                        submission_id: format!("s{i}"),
                        priority: prio,
                        enqueued_at: time::OffsetDateTime::now_utc(),
                    };
                    queue.enqueue(&pools[i % 2], job).await.unwrap();
                    accepted += 1;
                }
                Err(shed) => refused.push((i, shed.retry_after_s)),
            }
        }
        // Depth 0..=6 admits both; above 6 only normal, and above 9 nothing but high.
        // i: 0..6 in (depth 7 after i=6), i=7 normal in (8), i=8 low out, i=9 normal in (9),
        // i=10 low out, i=11 normal in (depth 9 is not above 9) -> 10.
        assert_eq!(refused, vec![(8, 30), (10, 30)]);
        assert_eq!(accepted, 10);
        assert!(bp
            .admit(Priority::Low, queue.as_ref(), &metrics)
            .await
            .is_err());
        assert!(bp
            .admit(Priority::High, queue.as_ref(), &metrics)
            .await
            .is_ok());
        assert_eq!(metrics.shed_total(), 3);

        // Drain 8 jobs: the sampler sees depth 2 and lifts shedding without any submission.
        let sampler = Sampler::new(metrics.clone(), queue.clone(), bp.clone());
        sampler.sample().await;
        assert_eq!(metrics.total_depth(), 10);
        assert_eq!(bp.shedder().level(), Shedding::Normal);
        for pool in &pools {
            for lease in queue
                .claim(pool, "t", 4, Duration::from_secs(30))
                .await
                .unwrap()
            {
                queue.ack(&lease).await.unwrap();
            }
        }
        sampler.sample().await;
        assert_eq!(metrics.total_depth(), 2);
        assert_eq!(bp.shedder().level(), Shedding::None);
        let mut stats = crate::engine::model::Stats::default();
        metrics.fill_stats(&mut stats);
        assert_eq!(stats.shedding, Shedding::None);
        assert_eq!(stats.shed_total, 3);
        assert_eq!(stats.pools.len(), 2);
        assert_eq!(stats.pools[0].breaker, "closed");
    }
}
