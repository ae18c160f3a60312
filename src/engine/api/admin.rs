//! Admin endpoints: live statistics for `judge top`, alerts, scaling events, pausing judging.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{parse_json, Admin, ApiError};
use crate::engine::clock::rfc3339;
use crate::engine::model::{Alert, PoolStats, ScalingEvent, Stats};
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
    body: Bytes,
) -> Result<Json<JudgingState>, ApiError> {
    let s: JudgingState = parse_json(&body)?;
    engine.shared.paused.send_replace(s.paused);
    tracing::info!(by = %caller.user.name, paused = s.paused, "judging {}", if s.paused { "paused" } else { "resumed" });
    Ok(Json(s))
}

impl Engine {
    /// Collects the live figures of every pool and the API counters.
    ///
    /// Errors: the queue or the store failed.
    pub async fn stats(&self) -> Result<Stats, String> {
        let mut pools = Vec::new();
        for (name, pool) in &self.pools {
            let q = &self.shared.queue;
            let depth = q.depth(name.as_str()).await.map_err(|e| e.to_string())?;
            let in_flight = q
                .in_flight(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let live = &pool.live;
            let slots = pool.slots();
            let busy = live.busy_slots.load(Ordering::Relaxed);
            let cold = live.cold_start_us.load(Ordering::Relaxed);
            pools.push(PoolStats {
                name: name.as_str().to_string(),
                backend: pool.config.backend.clone(),
                queue_depth: depth,
                in_flight,
                replicas: pool.replicas(),
                desired_replicas: pool.replicas(),
                min_replicas: pool.config.min_replicas,
                max_replicas: pool.config.max_replicas,
                slots,
                busy_slots: busy,
                utilization: if slots == 0 {
                    0.0
                } else {
                    f64::from(busy) / f64::from(slots)
                },
                p95_ms: live.quantile_ms(0.95, Duration::from_secs(300)),
                error_rate: live.error_rate(Duration::from_secs(600)),
                cold_start_ms: (cold > 0).then(|| cold as f64 / 1000.0),
                breaker: "closed".to_string(),
            });
        }
        let recent = self
            .shared
            .store
            .recent_submissions(20, None)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|s| s.summary())
            .collect();
        Ok(Stats {
            now: rfc3339(time::OffsetDateTime::now_utc()),
            uptime_s: self.started.elapsed().as_secs(),
            pools,
            submissions_total: self.submissions_total.load(Ordering::Relaxed),
            shed_total: 0,
            rate_limited_total: self.rate_limited_total.load(Ordering::Relaxed),
            shedding: Default::default(),
            recent,
        })
    }
}
