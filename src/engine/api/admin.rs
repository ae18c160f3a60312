//! Admin endpoints: live statistics for `judge top`, alerts, scaling events, pausing judging.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{parse_json, Admin, ApiError};
use crate::engine::clock::rfc3339;
use crate::engine::metrics::Sampler;
use crate::engine::model::{Alert, ScalingEvent, Stats};
use crate::engine::serve::Engine;

/// `GET /api/v1/stats` (admin): the [`Stats`] `judge top` draws.
pub async fn stats(
    State(engine): State<Arc<Engine>>,
    _admin: Admin,
) -> Result<Json<Stats>, ApiError> {
    Ok(Json(engine.stats().await.map_err(|e| {
        ApiError::internal("collecting statistics", e)
    })?))
}

/// `GET /metrics` (admin token): every metric in the Prometheus text format 0.0.4
/// (see [`crate::engine::metrics`] for the names).
pub async fn metrics(
    State(engine): State<Arc<Engine>>,
    _admin: Admin,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        engine.shared.metrics.render_prometheus(),
    )
}

/// `GET /api/v1/alerts` (admin): the 100 most recent alerts, newest first.
pub async fn alerts(
    State(engine): State<Arc<Engine>>,
    _admin: Admin,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let v = engine
        .shared
        .store
        .recent_alerts(100)
        .await
        .map_err(|e| ApiError::internal("reading alerts", e))?;
    Ok(Json(v))
}

/// `GET /api/v1/scaling-events` (admin): the 100 latest autoscaler decisions, newest first.
pub async fn scaling_events(
    State(engine): State<Arc<Engine>>,
    _admin: Admin,
) -> Result<Json<Vec<ScalingEvent>>, ApiError> {
    let v = engine
        .shared
        .store
        .latest_scaling_events(100)
        .await
        .map_err(|e| ApiError::internal("reading scaling events", e))?;
    Ok(Json(v))
}

/// Body and answer of `/api/v1/admin/judging`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgingState {
    /// Whether workers claim nothing (submissions are still accepted and queued).
    pub paused: bool,
}

/// `GET /api/v1/admin/judging` (admin).
pub async fn get_judging(State(engine): State<Arc<Engine>>, _admin: Admin) -> Json<JudgingState> {
    Json(JudgingState {
        paused: *engine.shared.paused.borrow(),
    })
}

/// `POST /api/v1/admin/judging` (admin) `{"paused": bool}`: pauses or resumes judging.
pub async fn set_judging(
    State(engine): State<Arc<Engine>>,
    Admin(caller): Admin,
    super::Body(body): super::Body,
) -> Result<Json<JudgingState>, ApiError> {
    let s: JudgingState = parse_json(&body)?;
    engine.shared.paused.send_replace(s.paused);
    tracing::info!(by = %caller.user.name, paused = s.paused, "judging {}", if s.paused { "paused" } else { "resumed" });
    Ok(Json(s))
}

impl Engine {
    /// Collects the live figures of every pool and the API counters.
    ///
    /// Errors: the store failed (a queue that fails to report leaves its last figures).
    pub async fn stats(&self) -> Result<Stats, String> {
        // Fresh figures (the sampler's are up to one sample interval old): queue depths,
        // leased jobs, breaker states, shedding level.
        let shared = &self.shared;
        let metrics = &shared.metrics;
        Sampler::new(
            metrics.clone(),
            shared.queue.clone(),
            shared.backpressure.clone(),
        )
        .sample()
        .await;
        let recent = self
            .shared
            .store
            .recent_submissions(20, None)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|s| s.summary())
            .collect();
        let mut stats = Stats {
            now: rfc3339(time::OffsetDateTime::now_utc()),
            recent,
            ..Stats::default()
        };
        metrics.fill_stats(&mut stats);
        Ok(stats)
    }
}
