//! JSON shapes of the submission endpoints, shared by the server and `judge submit` /
//! `judge status`. (Stats, alerts and scaling events are in [`crate::engine::model`].)

use serde::{Deserialize, Serialize};

use crate::engine::model::Priority;
use crate::judge::{CompileResult, JudgeResult, TestResult, Verdict};

/// `POST /api/v1/submissions` (and `POST /api/submit`) request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Problem id, as `GET /api/v1/problems` lists it.
    pub problem: String,
    /// Language id, as `GET /api/v1/languages` lists it.
    pub language: String,
    /// The source code (UTF-8), at most `server.max_source_bytes` bytes (64 KiB by default).
    pub source: String,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Requested CPU share in vCPUs (default 0.25); the router sends more than 0.5 to the
    /// microvm pool, and refuses more than the chosen pool's maximum.
    #[serde(default)]
    pub cpus: Option<f64>,
}

/// `202 Accepted` answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The new submission's id (or the earlier one's, for a retried Idempotency-Key).
    pub id: String,
}

pub use crate::engine::store::SubmissionState;

/// `GET /api/v1/submissions/{id}`: the submission and its [`JudgeResult`] so far.
/// `verdict` and `score` are set once `state` is `done`; `compile` once compiled;
/// `tests` grows as tests finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionView {
    /// Submission id.
    pub id: String,
    /// Where it is.
    pub state: SubmissionState,
    /// Problem id.
    pub problem: String,
    /// Language id.
    pub language: String,
    /// Submitting user.
    pub user: String,
    /// Pool it was routed to.
    pub pool: String,
    /// Priority it was queued with.
    pub priority: Priority,
    /// Submission time, RFC 3339.
    pub submitted_at: String,
    /// Final verdict.
    pub verdict: Option<Verdict>,
    /// Final score (scoring problems).
    pub score: Option<f64>,
    /// Compilation outcome, once known.
    pub compile: Option<CompileResult>,
    /// Finished tests in test order.
    pub tests: Vec<TestResult>,
    /// Number of tests that will run, once compiled.
    pub total_tests: Option<usize>,
    /// The problem's full score on scoring problems (`None` on pass-fail ones): a `done`
    /// AC with a lower score is a partial score (exit code 17 of `judge submit`).
    #[serde(default)]
    pub max_score: Option<f64>,
}

impl SubmissionView {
    /// The final result, when done.
    pub fn result(&self) -> Option<JudgeResult> {
        Some(JudgeResult {
            verdict: self.verdict?,
            score: self.score,
            compile: self.compile.clone().unwrap_or_default(),
            tests: self.tests.clone(),
        })
    }
}

/// Server-sent event names of `GET /api/v1/submissions/{id}/events`, in the order they come.
/// Each event's `data` is one JSON object:
/// - `queued`: `{"id", "pool", "position"}` (position: jobs ahead of it in its pool, roughly);
/// - `compiling`: `{}`;
/// - `compiled`: `{"compile": CompileResult, "total_tests": n}`;
/// - `test`: `{"index", "total", "result": TestResult}`;
/// - `final`: `{"result": JudgeResult, "max_score": f64 | null}`, after which the stream ends.
pub mod event {
    /// In the queue.
    pub const QUEUED: &str = "queued";
    /// Compilation started.
    pub const COMPILING: &str = "compiling";
    /// Compilation finished.
    pub const COMPILED: &str = "compiled";
    /// One test finished.
    pub const TEST: &str = "test";
    /// Judging finished; the stream ends.
    pub const FINAL: &str = "final";
}

/// Error body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong, in words.
    pub error: String,
}
