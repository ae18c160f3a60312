//! The engine's durable records: submissions and their results, users and API tokens,
//! problems' metadata, scaling events and alerts.
//!
//! Callers hold an `Arc<dyn Store>`; only the code that builds the engine from its config
//! names a backend. The embedded default is [`SqliteStore`] (one SQLite file, WAL mode,
//! versioned migrations); a PostgreSQL backend (tokio-postgres) can follow behind the same
//! trait. Times are UTC; the SQLite backend keeps them as milliseconds since the epoch.
//!
//! Submission life cycle: [`Store::insert_submission`] (`queued`) →
//! [`Store::mark_judging`] (`judging`, once per delivery of its job) →
//! [`Store::record_test`] per finished test case → [`Store::record_final`] (`done`).
//! Recording the final result is idempotent: the first final result wins and a redelivered
//! job never produces a second one (DESIGN.md, "Storage adapters": at-least-once queue,
//! idempotent results).

mod sqlite;
pub(crate) mod sqlite_conn;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::engine::clock::{rfc3339, Clock, SystemClock};
use crate::engine::model::{
    Alert, AlertState, Priority, ScalingEvent, Severity, SubmissionSummary,
};
use crate::judge::{JudgeResult, TestResult};

pub use sqlite::SqliteStore;

/// Errors of a [`Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist, e.g. `submission 7f3c… not found`.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, with its key.
        what: String,
    },
    /// The write contradicts what is stored (a duplicate key, a forbidden state transition).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed (I/O, corruption, a bad migration); `context` says during what.
    #[error("store backend error while {context}: {source}")]
    Backend {
        /// The operation that failed, e.g. `"inserting submission 7f3c…"`.
        context: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// A [`StoreError::Backend`] with `context`.
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Where a submission is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubmissionState {
    /// Accepted and waiting in its pool's queue.
    Queued,
    /// A worker holds its job's lease and is judging it.
    Judging,
    /// The final result is recorded.
    Done,
}

impl SubmissionState {
    /// `"queued"`, `"judging"` or `"done"` (the JSON and database spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionState::Queued => "queued",
            SubmissionState::Judging => "judging",
            SubmissionState::Done => "done",
        }
    }
}

impl std::str::FromStr for SubmissionState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(SubmissionState::Queued),
            "judging" => Ok(SubmissionState::Judging),
            "done" => Ok(SubmissionState::Done),
            _ => Err(format!(
                "unknown submission state {s:?} (expected queued, judging or done)"
            )),
        }
    }
}

/// A submission to insert. Its `submitted_at` is the store clock's now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubmission {
    /// Submission id: a UUID v4 in its hyphenated text form (see [`new_submission_id`]).
    pub id: String,
    /// Submitting user's name.
    pub user: String,
    /// Problem id.
    pub problem: String,
    /// Language id, e.g. `"cpp"`.
    pub language: String,
    /// The pool the router chose: `container`, `microvm` or `trusted`.
    pub pool: String,
    /// Queue priority.
    pub priority: Priority,
    /// Blob key of the source code, e.g. `"sources/<id>"`.
    pub source_key: String,
    /// The client's `Idempotency-Key`, unique per user.
    pub idempotency_key: Option<String>,
}

/// A stored submission.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    /// Submission id (UUID v4 text).
    pub id: String,
    /// Submitting user's name.
    pub user: String,
    /// Problem id.
    pub problem: String,
    /// Language id.
    pub language: String,
    /// Pool it was routed to.
    pub pool: String,
    /// Queue priority.
    pub priority: Priority,
    /// Blob key of the source code.
    pub source_key: String,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// Life-cycle state.
    pub state: SubmissionState,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    /// When judging last started (the latest delivery of its job).
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When the final result was recorded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Times its job was delivered to a worker ([`Store::mark_judging`] calls); above 1 after
    /// a redelivery.
    pub attempts: u32,
    /// The final result, once `done`.
    pub result: Option<JudgeResult>,
}

impl Submission {
    /// The one-line summary `GET /api/v1/stats` lists.
    pub fn summary(&self) -> SubmissionSummary {
        SubmissionSummary {
            id: self.id.clone(),
            user: self.user.clone(),
            problem: self.problem.clone(),
            language: self.language.clone(),
            state: self.state.as_str().to_string(),
            verdict: self.result.as_ref().map(|r| r.verdict),
            pool: self.pool.clone(),
            submitted_at: rfc3339(self.submitted_at),
        }
    }
}

/// What [`Store::insert_submission`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The submission was stored.
    Created(Submission),
    /// The user already has a submission with this idempotency key; nothing was stored and
    /// this is the earlier submission (the API answers with its id).
    Duplicate(Submission),
}

impl InsertOutcome {
    /// The stored submission, new or earlier.
    pub fn submission(&self) -> &Submission {
        match self {
            InsertOutcome::Created(s) | InsertOutcome::Duplicate(s) => s,
        }
    }
}

/// Counts of submissions per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StateCounts {
    /// `queued` submissions.
    pub queued: u64,
    /// `judging` submissions.
    pub judging: u64,
    /// `done` submissions.
    pub done: u64,
}

impl StateCounts {
    /// All submissions.
    pub fn total(&self) -> u64 {
        self.queued + self.judging + self.done
    }
}

/// A user's role at the API gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May submit and read their own submissions.
    Contestant,
    /// May also upload problems and create tokens.
    Admin,
}

impl Role {
    /// `"contestant"` or `"admin"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Contestant => "contestant",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "contestant" => Ok(Role::Contestant),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?} (expected contestant or admin)")),
        }
    }
}

/// How far the router trusts a user (`verified` users may use the `trusted` pool); set by
/// an admin with `judge token create --trust`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Everyone.
    #[default]
    Standard,
    /// Vetted users, who may use the `trusted` pool.
    Verified,
}

impl Trust {
    /// `"standard"` or `"verified"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Standard => "standard",
            Trust::Verified => "verified",
        }
    }
}

impl std::str::FromStr for Trust {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Trust::Standard),
            "verified" => Ok(Trust::Verified),
            _ => Err(format!(
                "unknown trust {s:?} (expected standard or verified)"
            )),
        }
    }
}

/// A user of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Unique user name.
    pub name: String,
    /// Gateway role.
    pub role: Role,
    /// Router trust.
    pub trust: Trust,
}

/// An API token's stored record (the token itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Row id.
    pub id: i64,
    /// Lower-case hex SHA-256 of the token (see [`hash_token`]).
    pub token_hash: String,
    /// The user it authenticates.
    pub user: String,
    /// Free text, e.g. `"local client"`.
    pub label: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Lower-case hex SHA-256 of an API token: the form tokens are stored and looked up in.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random API token: `"jdg_"` + 64 hex digits (256 bits from the OS RNG).
pub fn generate_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("jdg_{}", hex::encode(bytes))
}

/// A fresh submission id: a UUID v4, hyphenated lower case.
pub fn new_submission_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A problem's metadata, as the API lists it. The package itself is a blob or a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemMeta {
    /// Problem id (the package's short name), e.g. `"aplusb"`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Problem type: `pass-fail`, `scoring` or `interactive` (Kattis problem package format).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Time limit per test case in ms.
    pub time_limit_ms: u64,
    /// Memory limit in bytes.
    pub memory_limit_bytes: u64,
    /// Number of test cases (sample and secret).
    pub test_count: u32,
    /// Where the package lives: a blob key (`"problems/<id>.tar"`) or a local folder path.
    pub location: String,
    /// When the metadata was last written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A scaling decision to record (see [`ScalingEvent`] for the fields' meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct NewScalingEvent {
    /// Decision time.
    pub at: OffsetDateTime,
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

/// An alert evaluation to store with [`Store::upsert_alert`].
#[derive(Debug, Clone, PartialEq)]
pub struct AlertUpdate {
    /// Rule name, e.g. `"queue_depth_critical"`.
    pub rule: String,
    /// Pool the alert is about, if any.
    pub pool: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// The state the evaluator computed.
    pub state: AlertState,
    /// Human-readable description with the observed value.
    pub message: String,
    /// Observed metric value.
    pub value: f64,
    /// Evaluation time: becomes `since` of a new alert, `resolved_at` of a resolution.
    pub at: OffsetDateTime,
}

impl AlertUpdate {
    /// The update that stores `alert` as an evaluator reports it (the wire type of
    /// `GET /api/v1/alerts`; its `id` is ignored, the store keys alerts by rule and pool):
    /// `at` is its `resolved_at` when resolved, else its `since`.
    /// Errors: [`StoreError::Conflict`] when those times are not RFC 3339.
    pub fn from_alert(alert: &Alert) -> StoreResult<AlertUpdate> {
        let when = match (alert.state, &alert.resolved_at) {
            (AlertState::Resolved, Some(t)) => t,
            _ => &alert.since,
        };
        let at = OffsetDateTime::parse(when, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                StoreError::Conflict(format!(
                    "alert {} has a time {when:?} that is not RFC 3339: {e}",
                    alert.rule
                ))
            })?;
        Ok(AlertUpdate {
            rule: alert.rule.clone(),
            pool: alert.pool.clone(),
            severity: alert.severity,
            state: alert.state,
            message: alert.message.clone(),
            value: alert.value,
            at,
        })
    }
}

/// What [`Store::prune_history`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrunedHistory {
    /// Scaling events deleted.
    pub scaling_events: u64,
    /// Resolved alerts deleted.
    pub alerts: u64,
}

/// The engine's durable records. Implementations are `Send + Sync` and shared as
/// `Arc<dyn Store>`; every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // --- submissions -------------------------------------------------------------------

    /// Stores a new `queued` submission stamped with the store's now.
    ///
    /// When `new.idempotency_key` is set and the same user already has a submission with
    /// that key, nothing is written and [`InsertOutcome::Duplicate`] carries the earlier one
    /// (atomic: two racing retries create one submission).
    /// Errors: [`StoreError::Conflict`] when the id exists already.
    async fn insert_submission(&self, new: &NewSubmission) -> StoreResult<InsertOutcome>;

    /// The submission with this id, with its final result when done.
    /// Errors: [`StoreError::NotFound`].
    async fn get_submission(&self, id: &str) -> StoreResult<Submission>;

    /// The user's submission sent with this `Idempotency-Key`, if any.
    async fn find_by_idempotency_key(
        &self,
        user: &str,
        key: &str,
    ) -> StoreResult<Option<Submission>>;

    /// The `limit` most recent submissions, newest first, optionally only one user's.
    async fn recent_submissions(
        &self,
        limit: usize,
        user: Option<&str>,
    ) -> StoreResult<Vec<Submission>>;

    /// Every submission not yet `done`, oldest first: at startup the engine enqueues them
    /// again ([`crate::engine::queue::JobQueue::enqueue`] is idempotent per submission), so a
    /// crash between storing a submission and enqueuing its job loses nothing.
    async fn unfinished_submissions(&self) -> StoreResult<Vec<Submission>>;

    /// A worker starts judging (a delivery of the job): state `judging`, `started_at` = now,
    /// `attempts` + 1, and the per-test results of an earlier attempt are cleared so the
    /// stream restarts from test 0. Returns false, changing nothing, when the submission is
    /// already `done` (the worker then just acks its job).
    /// Errors: [`StoreError::NotFound`].
    async fn mark_judging(&self, id: &str) -> StoreResult<bool>;

    /// Its job went back to the queue (released by a stopping replica or an open circuit
    /// breaker): state `queued` again, keeping `attempts` and `started_at`. Returns false,
    /// changing nothing, when the submission is already `done`.
    /// Errors: [`StoreError::NotFound`].
    async fn mark_queued(&self, id: &str) -> StoreResult<bool>;

    /// Records the result of test case `index` (0-based, test order) as it arrives.
    /// Idempotent per (submission, index): writing the same index again replaces it.
    /// Returns false, changing nothing, once the submission is `done`.
    /// Errors: [`StoreError::NotFound`].
    async fn record_test(&self, id: &str, index: u32, result: &TestResult) -> StoreResult<bool>;

    /// The per-test results recorded so far, by index.
    async fn test_results(&self, id: &str) -> StoreResult<Vec<(u32, TestResult)>>;

    /// Records the final result: state `done`, `finished_at` = now. Idempotent: returns false
    /// and leaves the first final result untouched when one exists already, so a redelivered
    /// job never produces two final results.
    /// Errors: [`StoreError::NotFound`].
    async fn record_final(&self, id: &str, result: &JudgeResult) -> StoreResult<bool>;

    /// Submissions per state.
    async fn count_by_state(&self) -> StoreResult<StateCounts>;

    // --- users and tokens ---------------------------------------------------------------

    /// Creates the user or updates its role and trust.
    async fn upsert_user(&self, user: &User) -> StoreResult<()>;

    /// The user with this name.
    async fn get_user(&self, name: &str) -> StoreResult<Option<User>>;

    /// Stores a token for an existing user by its hash ([`hash_token`]) and returns its
    /// record. Errors: [`StoreError::NotFound`] for an unknown user, [`StoreError::Conflict`]
    /// when the hash is stored already.
    async fn insert_token(
        &self,
        user: &str,
        token_hash: &str,
        label: &str,
    ) -> StoreResult<TokenRecord>;

    /// The user a token hash authenticates (`None` for an unknown or revoked token).
    async fn user_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<User>>;

    /// Deletes a token; returns whether it existed.
    async fn revoke_token(&self, token_hash: &str) -> StoreResult<bool>;

    /// Number of users with role `admin` (first start creates one when there is none).
    async fn count_admins(&self) -> StoreResult<u64>;

    // --- problems ----------------------------------------------------------------------

    /// Creates or replaces a problem's metadata (`updated_at` is taken as given).
    async fn upsert_problem(&self, meta: &ProblemMeta) -> StoreResult<()>;

    /// One problem's metadata.
    async fn get_problem(&self, id: &str) -> StoreResult<Option<ProblemMeta>>;

    /// All problems, by id.
    async fn list_problems(&self) -> StoreResult<Vec<ProblemMeta>>;

    /// Deletes a problem's metadata; returns whether it existed.
    async fn delete_problem(&self, id: &str) -> StoreResult<bool>;

    // --- scaling events and alerts -------------------------------------------------------

    /// Records an autoscaler decision and returns it with its id.
    async fn insert_scaling_event(&self, event: &NewScalingEvent) -> StoreResult<ScalingEvent>;

    /// The `limit` latest scaling events, newest first (by time, then id).
    async fn latest_scaling_events(&self, limit: usize) -> StoreResult<Vec<ScalingEvent>>;

    /// Stores an alert evaluation. At most one alert per (rule, pool) is open (pending or
    /// firing); resolved alerts are history, and the next pending/firing update opens a
    /// new one (new id, `since` = `at`).
    ///
    /// Transitions of the open alert: pending → pending | firing | resolved, firing →
    /// firing | resolved. Severity, message and value are refreshed on each update.
    /// Returns the alert as stored, or `None` for a `resolved` update with nothing open.
    /// Errors: [`StoreError::Conflict`] for firing → pending (a firing alert resolves first).
    async fn upsert_alert(&self, update: &AlertUpdate) -> StoreResult<Option<Alert>>;

    /// Resolves every open alert at `at` and returns how many: at startup, since the alert
    /// evaluator's "for" timers died with the previous process and it starts over from
    /// pending (which a firing alert cannot go back to).
    async fn resolve_open_alerts(&self, at: OffsetDateTime) -> StoreResult<u64>;

    /// Deletes history older than `before`: scaling events decided before it and resolved
    /// alerts resolved before it (open alerts stay). Returns how many rows went, per kind.
    async fn prune_history(&self, before: OffsetDateTime) -> StoreResult<PrunedHistory>;

    /// Open alerts (pending and firing): critical before warning, firing before pending,
    /// then oldest first.
    async fn active_alerts(&self) -> StoreResult<Vec<Alert>>;

    /// The `limit` most recent alerts of any state, newest `since` first.
    async fn recent_alerts(&self, limit: usize) -> StoreResult<Vec<Alert>>;
}

/// Opens (creating if needed) the SQLite store at `path`, with the system clock: WAL mode,
/// foreign keys on, busy timeout 5 s, migrations applied.
/// Errors: [`StoreError::Backend`] when the file cannot be opened or migrated, or was
/// written by a newer `judge` (its schema version is above the one this build knows).
pub fn open_sqlite(path: &Path) -> StoreResult<SqliteStore> {
    SqliteStore::open(path, Arc::new(SystemClock))
}

/// [`open_sqlite`] with an injected clock (tests).
pub fn open_sqlite_with_clock(path: &Path, clock: Arc<dyn Clock>) -> StoreResult<SqliteStore> {
    SqliteStore::open(path, clock)
}

#[cfg(test)]
mod tests;
