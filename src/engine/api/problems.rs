//! Problems and languages.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{Admin, ApiError, Caller};
use crate::engine::catalog::CatalogError;
use crate::engine::serve::Engine;
use crate::engine::store::ProblemMeta;

/// The metadata a caller may see: the package's place on the server only for admins.
fn for_caller(mut m: ProblemMeta, caller: &Caller) -> ProblemMeta {
    if !caller.is_admin() {
        m.location = String::new();
    }
    m
}

/// `GET /api/v1/problems`: every installed problem's metadata, by id.
pub async fn list(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
) -> Result<Json<Vec<ProblemMeta>>, ApiError> {
    let mut v = engine
        .shared
        .store
        .list_problems()
        .await
        .map_err(|e| ApiError::internal("listing problems", e))?;
    // Only problems that loaded are judged; list those.
    v.retain(|m| engine.shared.catalog.get(&m.id).is_some());
    Ok(Json(
        v.into_iter().map(|m| for_caller(m, &caller)).collect(),
    ))
}

/// `GET /api/v1/problems/{id}`.
pub async fn get_one(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProblemMeta>, ApiError> {
    match engine.shared.store.get_problem(&id).await {
        Ok(Some(m)) if engine.shared.catalog.get(&id).is_some() => Ok(Json(for_caller(m, &caller))),
        Ok(_) => Err(ApiError::not_found(format!("no problem {id:?}"))),
        Err(e) => Err(ApiError::internal("reading the problem", e)),
    }
}

/// `PUT /api/v1/problems/{id}` (admin): installs or replaces a problem from a tar, tar.gz
/// or zip package. 201 with its metadata; 400 for a refused package (path traversal, links
/// out of it, special files, not a valid package), 413 when too large.
pub async fn upload(
    State(engine): State<Arc<Engine>>,
    _admin: Admin,
    Path(id): Path<String>,
    super::Body(body): super::Body,
) -> Result<(StatusCode, Json<ProblemMeta>), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: send the package (tar, tar.gz or zip) as the request body",
        ));
    }
    let max = engine.shared.config.api.max_unpacked_bytes;
    match engine
        .shared
        .catalog
        .upload(&*engine.shared.store, &id, body, max)
        .await
    {
        Ok(meta) => Ok((StatusCode::CREATED, Json(meta))),
        Err(CatalogError::Package(e @ crate::engine::package::PackageError::TooLarge(_))) => {
            Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))
        }
        Err(e) if e.is_client_fault() => Err(ApiError::bad_request(e.to_string())),
        Err(e) => Err(ApiError::internal("installing the problem package", e)),
    }
}

/// One entry of `GET /api/v1/languages`.
#[derive(Debug, Serialize)]
pub struct LanguageInfo {
    /// Id to submit with.
    pub id: String,
    /// Human name.
    pub name: String,
    /// File extensions that select it.
    pub extensions: Vec<String>,
}

/// `GET /api/v1/languages`.
pub async fn languages(
    State(engine): State<Arc<Engine>>,
    _caller: Caller,
) -> Json<Vec<LanguageInfo>> {
    Json(
        engine
            .shared
            .languages
            .all()
            .iter()
            .map(|l| LanguageInfo {
                id: l.id.clone(),
                name: l.name.clone(),
                extensions: l.extensions.clone(),
            })
            .collect(),
    )
}
