//! The HTTP API (`/api/v1`, JSON) and its gateway: Bearer-token authentication (tokens
//! stored hashed), roles, the token bucket per user and per IP, validation with messages
//! that say what is wrong, a body size limit and request timeouts.
//!
//! Routes:
//! - `GET /healthz` (no token)
//! - `POST /api/v1/submissions`, `POST /api/submit` → 202 `{id}` (`Idempotency-Key` honoured)
//! - `GET /api/v1/submissions` (own recent ones; all for admins), `GET /api/v1/submissions/{id}`
//! - `GET /api/v1/submissions/{id}/events` (server-sent events, see [`wire::event`])
//! - `GET /api/v1/problems`, `GET /api/v1/problems/{id}`
//! - `PUT /api/v1/problems/{id}` (admin; body: a tar, tar.gz or zip problem package)
//! - `GET /api/v1/languages`
//! - `GET /api/v1/stats`, `/api/v1/alerts`, `/api/v1/scaling-events` (admin)
//! - `GET|POST /api/v1/admin/judging` (admin; `{"paused": bool}`)

pub mod admin;
pub mod problems;
pub mod ratelimit;
pub mod submissions;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::timeout::TimeoutLayer;

use crate::engine::serve::Engine;
use crate::engine::store::{hash_token, Role, User};

/// An error answer: a status and a message in `{"error": …}`, plus a Retry-After for 429/503.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What is wrong, in words.
    pub message: String,
    /// Seconds for a Retry-After header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 500 with the cause logged and a generic message answered.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error while {context}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(wire::ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// An authenticated caller (any role). Extracting it answers 401 without a valid
/// `Authorization: Bearer TOKEN`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user the token belongs to.
    pub user: User,
    /// The peer address (for the per-IP bucket).
    pub ip: std::net::IpAddr,
}

impl Caller {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

#[axum::async_trait]
impl FromRequestParts<Arc<Engine>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API token: send `Authorization: Bearer TOKEN`",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "malformed Authorization header: expected `Bearer TOKEN`",
                )
            })?;
        let user = engine
            .shared
            .store
            .user_by_token_hash(&hash_token(token))
            .await
            .map_err(|e| ApiError::internal("checking the API token", e))?
            .ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked API token")
            })?;
        Ok(Caller { user, ip })
    }
}

/// An authenticated admin. Extracting it answers 401 without a token, 403 for a contestant.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

#[axum::async_trait]
impl FromRequestParts<Arc<Engine>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Arc<Engine>) -> Result<Self, ApiError> {
        let c = Caller::from_request_parts(parts, engine).await?;
        if !c.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "user {:?} is a contestant; this needs the admin role",
                    c.user.name
                ),
            ));
        }
        Ok(Admin(c))
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// The API's router over `engine`. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// so the per-IP bucket sees peer addresses.
pub fn router(engine: Arc<Engine>) -> Router {
    let api = &engine.shared.config.api;
    let json_limit = api.body_limit_bytes as usize;
    let package_limit = api.max_package_bytes as usize;
    let timeout = api.request_timeout;
    // Every route but the event stream answers 408 past the request timeout.
    let timed = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/api/v1/submissions",
            post(submissions::submit).get(submissions::list),
        )
        .route("/api/submit", post(submissions::submit))
        .route("/api/v1/submissions/:id", get(submissions::get_one))
        .route("/api/v1/problems", get(problems::list))
        .route(
            "/api/v1/problems/:id",
            get(problems::get_one)
                .put(problems::upload)
                .layer(DefaultBodyLimit::max(package_limit)),
        )
        .route("/api/v1/languages", get(problems::languages))
        .route("/api/v1/stats", get(admin::stats))
        .route("/metrics", get(admin::metrics))
        .route("/api/v1/alerts", get(admin::alerts))
        .route("/api/v1/scaling-events", get(admin::scaling_events))
        .route(
            "/api/v1/admin/judging",
            get(admin::get_judging).post(admin::set_judging),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    Router::new()
        .route("/api/v1/submissions/:id/events", get(submissions::events))
        .merge(timed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(engine)
}

/// A request body read whole, within the route's size limit: a body over it is answered
/// 413 with the limit in words (JSON, like every other error).
#[derive(Debug)]
pub struct Body(pub bytes::Bytes);

#[axum::async_trait]
impl axum::extract::FromRequest<Arc<Engine>> for Body {
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        engine: &Arc<Engine>,
    ) -> Result<Self, ApiError> {
        match <bytes::Bytes as axum::extract::FromRequest<Arc<Engine>>>::from_request(req, engine)
            .await
        {
            Ok(b) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                let api = &engine.shared.config.api;
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body too large: at most {} bytes for JSON requests, {} bytes for a problem package",
                        api.body_limit_bytes, api.max_package_bytes
                    ),
                ))
            }
            Err(e) => Err(ApiError::bad_request(format!(
                "reading the request body: {}",
                e.body_text()
            ))),
        }
    }
}

/// Parses a JSON body with a message that says what is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))
}
