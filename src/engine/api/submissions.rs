//! Submitting, reading and following submissions.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ratelimit::retry_after_secs;
use super::wire::{event, SubmissionView, SubmitRequest, SubmitResponse};
use super::{parse_json, ApiError, Caller};
use crate::engine::clock::rfc3339;
use crate::engine::events::LiveEvent;
use crate::engine::model::Priority;
use crate::engine::queue::Job;
use crate::engine::router::{select_pool, RouteRequest};
use crate::engine::serve::Engine;
use crate::engine::store::{
    new_submission_id, InsertOutcome, NewSubmission, StoreError, Submission, SubmissionState,
};
use crate::judge::{CompileResult, JudgeResult, TestResult};

/// Requested vCPUs when a submission names none: one single-threaded program.
pub const DEFAULT_CPUS: f64 = 0.25;
/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 200;

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// `POST /api/v1/submissions` and `POST /api/submit`.
pub async fn submit(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    headers: HeaderMap,
    super::Body(body): super::Body,
) -> Result<Response, ApiError> {
    // The first gate: a token per submission from the user's and the address's buckets.
    if let Err(wait) = engine
        .limiter
        .acquire(&caller.user.name, caller.ip, Instant::now())
    {
        engine.shared.metrics.record_rate_limited();
        let secs = retry_after_secs(wait);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit: at most {} submissions at once and {} per second per user and per address; retry in {secs} s",
                engine.shared.config.rate_limit.burst, engine.shared.config.rate_limit.per_second
            ),
        );
        e.retry_after = Some(secs);
        return Err(e);
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ))
                })?;
            Some(k.to_string())
        }
    };
    let req: SubmitRequest = parse_json(&body)?;
    let shared = &engine.shared;
    let cfg = &shared.config;

    // Validation: each message says what is wrong.
    if req.source.trim().is_empty() {
        return Err(ApiError::bad_request("source is empty"));
    }
    if req.source.len() as u64 > cfg.api.max_source_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "source is {} bytes, above the limit of {} bytes",
                req.source.len(),
                cfg.api.max_source_bytes
            ),
        ));
    }
    let Some(problem) = shared.catalog.get(&req.problem) else {
        return Err(ApiError::bad_request(format!(
            "unknown problem {:?} (GET /api/v1/problems lists them)",
            req.problem
        )));
    };
    if shared.languages.get(&req.language).is_none() {
        let known: Vec<&str> = shared
            .languages
            .all()
            .iter()
            .map(|l| l.id.as_str())
            .collect();
        return Err(ApiError::bad_request(format!(
            "unknown language {:?} (expected one of {})",
            req.language,
            known.join(", ")
        )));
    }
    let priority = req.priority.unwrap_or_default();
    if priority == Priority::High && !caller.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "priority high is reserved for admins",
        ));
    }
    let cpus = req.cpus.unwrap_or(DEFAULT_CPUS);
    if !(cpus.is_finite() && cpus > 0.0) {
        return Err(ApiError::bad_request(format!(
            "cpus must be a number above 0, not {cpus}"
        )));
    }
    let memory = problem.memory_limit_bytes();
    let pool_name = select_pool(&RouteRequest {
        trust: caller.user.trust,
        language: &req.language,
        memory_bytes: memory,
        cpus,
    });
    let pool_cfg = cfg.pool(pool_name);
    if memory > pool_cfg.memory_bytes {
        return Err(ApiError::bad_request(format!(
            "problem {:?} has a memory limit of {}, above the maximum of pool {pool_name} ({})",
            req.problem,
            mib(memory),
            mib(pool_cfg.memory_bytes)
        )));
    }
    if cpus > pool_cfg.cpus {
        return Err(ApiError::bad_request(format!(
            "{cpus} vCPUs requested, above the maximum of pool {pool_name} ({} vCPUs)",
            pool_cfg.cpus
        )));
    }
    let time_limit = Duration::from_millis(problem.time_limit_ms());
    if time_limit > pool_cfg.timeout {
        return Err(ApiError::bad_request(format!(
            "problem {:?} has a time limit of {} ms, above the maximum of pool {pool_name} ({} ms)",
            req.problem,
            time_limit.as_millis(),
            pool_cfg.timeout.as_millis()
        )));
    }

    // A retry with the same key answers the earlier submission without storing anything.
    if let Some(k) = &idempotency_key {
        match shared
            .store
            .find_by_idempotency_key(&caller.user.name, k)
            .await
        {
            Ok(Some(earlier)) => return Ok(accepted(&earlier.id)),
            Ok(None) => {}
            Err(e) => return Err(ApiError::internal("looking up the Idempotency-Key", e)),
        }
    }

    // Load shedding (DESIGN.md "Backpressure"): after the rate limiter, validation and the
    // idempotent-retry answer, before anything is stored; `high` is always admitted.
    if let Err(shed) = shared
        .backpressure
        .admit(priority, &*shared.queue, &shared.metrics)
        .await
    {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, shed.message);
        e.retry_after = Some(shed.retry_after_s);
        return Err(e);
    }

    let id = new_submission_id();
    let source_key = format!("sources/{id}");
    shared
        .blobs
        .put(&source_key, Bytes::from(req.source.into_bytes()))
        .await
        .map_err(|e| ApiError::internal("storing the source", e))?;
    let new = NewSubmission {
        id: id.clone(),
        user: caller.user.name.clone(),
        problem: req.problem,
        language: req.language,
        pool: pool_name.as_str().to_string(),
        priority,
        source_key: source_key.clone(),
        idempotency_key,
    };
    let stored = match shared.store.insert_submission(&new).await {
        Ok(InsertOutcome::Created(s)) => s,
        Ok(InsertOutcome::Duplicate(earlier)) => {
            // A concurrent retry won the race; this request's source blob is unused.
            let _ = shared.blobs.delete(&source_key).await;
            return Ok(accepted(&earlier.id));
        }
        Err(e) => return Err(ApiError::internal("storing the submission", e)),
    };
    // Enqueue after the insert; a crash in between is repaired at start (every unfinished
    // submission is enqueued again, idempotently).
    let job = Job {
        submission_id: stored.id.clone(),
        priority,
        enqueued_at: stored.submitted_at,
    };
    shared
        .queue
        .enqueue(pool_name.as_str(), job)
        .await
        .map_err(|e| ApiError::internal("queueing the submission", e))?;
    engine.shared.metrics.record_submission();
    if let Some(pool) = engine.pools.get(&pool_name) {
        pool.wake.notify_waiters();
    }
    Ok(accepted(&id))
}

fn accepted(id: &str) -> Response {
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(SubmitResponse { id: id.to_string() }),
    )
        .into_response();
    if let Ok(v) = format!("/api/v1/submissions/{id}").parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Reads a submission the caller may see: their own, or any for an admin.
async fn visible(engine: &Engine, caller: &Caller, id: &str) -> Result<Submission, ApiError> {
    let not_found = || ApiError::not_found(format!("no submission {id:?}"));
    let sub = match engine.shared.store.get_submission(id).await {
        Ok(s) => s,
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(ApiError::internal("reading the submission", e)),
    };
    if sub.user != caller.user.name && !caller.is_admin() {
        return Err(not_found());
    }
    Ok(sub)
}

/// The view of a stored submission with the per-test results recorded so far.
pub async fn view(engine: &Engine, sub: Submission) -> Result<SubmissionView, ApiError> {
    let max_score = engine
        .shared
        .catalog
        .get(&sub.problem)
        .and_then(|p| p.max_score());
    let (tests, compile, verdict, score) = match &sub.result {
        Some(r) => (
            r.tests.clone(),
            Some(r.compile.clone()),
            Some(r.verdict),
            r.score,
        ),
        None => {
            let tests = engine
                .shared
                .store
                .test_results(&sub.id)
                .await
                .map_err(|e| ApiError::internal("reading test results", e))?
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>();
            (tests, None, None, None)
        }
    };
    let (compile, total_tests) = match (&sub.result, engine.shared.hub.compiled(&sub.id)) {
        (Some(r), _) => (compile, Some(r.tests.len())),
        (None, Some((c, n))) => (Some(c), Some(n)),
        (None, None) => (compile, None),
    };
    Ok(SubmissionView {
        id: sub.id,
        state: sub.state,
        problem: sub.problem,
        language: sub.language,
        user: sub.user,
        pool: sub.pool,
        priority: sub.priority,
        submitted_at: rfc3339(sub.submitted_at),
        verdict,
        score,
        compile,
        tests,
        total_tests,
        max_score,
    })
}

/// `GET /api/v1/submissions/{id}`.
pub async fn get_one(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SubmissionView>, ApiError> {
    let sub = visible(&engine, &caller, &id).await?;
    Ok(Json(view(&engine, sub).await?))
}

/// Query of `GET /api/v1/submissions`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// At most this many (default 20, at most 200).
    limit: Option<usize>,
}

/// `GET /api/v1/submissions`: the caller's recent submissions (an admin's: everyone's), newest first.
pub async fn list(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<crate::engine::model::SubmissionSummary>>, ApiError> {
    let limit = q.limit.unwrap_or(20).min(200);
    let user = (!caller.is_admin()).then_some(caller.user.name.as_str());
    let subs = engine
        .shared
        .store
        .recent_submissions(limit, user)
        .await
        .map_err(|e| ApiError::internal("listing submissions", e))?;
    Ok(Json(subs.iter().map(Submission::summary).collect()))
}

fn sse(name: &str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

fn test_event(index: usize, total: usize, result: &TestResult) -> Event {
    sse(
        event::TEST,
        serde_json::json!({ "index": index, "total": total, "result": result }),
    )
}

fn final_event(result: &JudgeResult, max_score: Option<f64>) -> Event {
    sse(
        event::FINAL,
        serde_json::json!({ "result": result, "max_score": max_score }),
    )
}

/// `GET /api/v1/submissions/{id}/events`: what happened so far (from the store), then live
/// events, until the final result; then the stream ends.
pub async fn events(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<ReceiverStream<Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the store, so nothing falls between the two.
    let sub_live = engine.shared.hub.subscribe(&id);
    let sub = match visible(&engine, &caller, &id).await {
        Ok(s) => s,
        Err(e) => {
            drop(sub_live);
            engine.shared.hub.unsubscribe(&id);
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let engine2 = engine.clone();
    tokio::spawn(async move {
        let id = sub.id.clone();
        follow(&engine2, sub, sub_live, &tx).await;
        engine2.shared.hub.unsubscribe(&id);
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What a follower has sent so far.
struct Sent {
    /// The problem's full score (scoring problems), sent with `final`.
    max_score: Option<f64>,
    compiling: bool,
    compiled: bool,
    tests: usize,
    total: usize,
}

impl Sent {
    /// The `compiling` event, unless sent already.
    fn compiling(&mut self) -> Option<Event> {
        (!std::mem::replace(&mut self.compiling, true))
            .then(|| sse(event::COMPILING, serde_json::json!({})))
    }

    /// The `compiled` event, unless sent already.
    fn compiled(&mut self, compile: &CompileResult, total: usize) -> Option<Event> {
        if std::mem::replace(&mut self.compiled, true) {
            return None;
        }
        self.total = total;
        Some(sse(
            event::COMPILED,
            serde_json::json!({ "compile": compile, "total_tests": total }),
        ))
    }
}

/// Sends `ev` if there is one; false when the follower left.
async fn send_opt(tx: &mpsc::Sender<Result<Event, Infallible>>, ev: Option<Event>) -> bool {
    match ev {
        Some(ev) => tx.send(Ok(ev)).await.is_ok(),
        None => true,
    }
}

async fn follow(
    engine: &Engine,
    sub: Submission,
    live: crate::engine::events::Subscription,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) {
    let id = sub.id.clone();
    let mut rx = live.rx;
    let mut shutdown = engine.shutdown.clone();
    let problem = engine.shared.catalog.get(&sub.problem);
    let problem_tests = problem.as_ref().map(|p| p.test_count()).unwrap_or(0);
    let queued = sse(
        event::QUEUED,
        serde_json::json!({ "id": id, "pool": sub.pool }),
    );
    if !send_opt(tx, Some(queued)).await {
        return;
    }
    let mut sent = Sent {
        max_score: problem.and_then(|p| p.max_score()),
        compiling: false,
        compiled: false,
        tests: 0,
        total: problem_tests,
    };
    // Catch up from the store (and the hub's compile outcome), then go live.
    let mut compiled_now = live.compiled;
    let mut current = Some(sub);
    loop {
        if let Some(s) = current.take() {
            if let Some(result) = &s.result {
                catch_up_done(tx, &mut sent, result).await;
                return;
            }
            if s.state == SubmissionState::Judging {
                if !send_opt(tx, sent.compiling()).await {
                    return;
                }
                if let Some((c, n)) = compiled_now.take() {
                    if !send_opt(tx, sent.compiled(&c, n)).await {
                        return;
                    }
                }
                let tests = engine
                    .shared
                    .store
                    .test_results(&id)
                    .await
                    .unwrap_or_default();
                for (index, t) in tests {
                    let index = index as usize;
                    if index == sent.tests {
                        sent.tests += 1;
                        if !send_opt(tx, Some(test_event(index, sent.total.max(sent.tests), &t)))
                            .await
                        {
                            return;
                        }
                    }
                }
            }
        }
        // Live events; every few seconds without one, look at the store again (a final
        // result recorded by another process, or events dropped while lagging).
        let ev = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), rx.recv()) => r,
            _ = shutdown.changed() => return,
        };
        let (out, refresh) = match ev {
            Ok(Ok(LiveEvent::Judging)) => (None, false),
            Ok(Ok(LiveEvent::Compiling)) => (sent.compiling(), false),
            Ok(Ok(LiveEvent::Compiled {
                compile,
                total_tests,
            })) => (sent.compiled(&compile, total_tests), false),
            Ok(Ok(LiveEvent::Test {
                index,
                total,
                result,
            })) if index == sent.tests => {
                sent.tests += 1;
                (Some(test_event(index, total, &result)), false)
            }
            // A gap (or a redelivery restarting at 0): the store knows.
            Ok(Ok(LiveEvent::Test { index, .. })) => (None, index > sent.tests),
            Ok(Ok(LiveEvent::Final(result))) => {
                catch_up_done(tx, &mut sent, &result).await;
                return;
            }
            Ok(Err(RecvError::Lagged(_))) | Err(_) => (None, true),
            Ok(Err(RecvError::Closed)) => {
                // The channel closed without a final event for us (dropped at Final before we
                // subscribed, or the worker gave the job back): re-read the store and follow a
                // fresh channel.
                let again = engine.shared.hub.subscribe(&id);
                rx = again.rx;
                compiled_now = again.compiled;
                (None, true)
            }
        };
        if !send_opt(tx, out).await {
            return;
        }
        if refresh {
            match engine.shared.store.get_submission(&id).await {
                Ok(s) => current = Some(s),
                Err(e) => {
                    tracing::warn!(submission = %id, "event stream: re-reading the submission failed: {e}");
                    return;
                }
            }
        }
    }
}

/// Sends what is missing of a finished submission, then `final`.
async fn catch_up_done(
    tx: &mpsc::Sender<Result<Event, Infallible>>,
    sent: &mut Sent,
    result: &JudgeResult,
) {
    if !send_opt(tx, sent.compiling()).await {
        return;
    }
    // The number of tests the runner announced: every test of the problem once compiled
    // (the store keeps only those that ran).
    let total = if result.compile.ok {
        sent.total.max(result.tests.len())
    } else {
        result.tests.len()
    };
    if !send_opt(tx, sent.compiled(&result.compile, total)).await {
        return;
    }
    for (index, t) in result.tests.iter().enumerate().skip(sent.tests) {
        if !send_opt(tx, Some(test_event(index, sent.total, t))).await {
            return;
        }
    }
    sent.tests = result.tests.len();
    let _ = send_opt(tx, Some(final_event(result, sent.max_score))).await;
}
