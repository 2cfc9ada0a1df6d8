//! `/v1/tenants/{slug}/moves`: start, watch and abort a tenant's move, over the same library
//! functions as `tenantctl tenants move` and `tenants moves`. A move started here runs in the
//! server's job workers; poll it until its `state` is no longer `running`.

use super::{ApiError, ApiJson, AppState, Operator};
use crate::moves::view::Move;
use crate::moves::{self, Destination};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use tenancy::domain::Slug;
use utoipa::ToSchema;

/// Where the tenant goes, and how; what is not given stays as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartMove {
    /// The cluster to move it to (default: the one it is on).
    pub(crate) to_cluster: Option<String>,
    /// `schema` or `database` (default: the isolation it has).
    pub(crate) isolation: Option<String>,
    /// `replication` (default: logical replication, only the switch pauses the tenant) or
    /// `dump` (pg_dump and pg_restore, for a source without logical replication: the tenant's
    /// writes wait while its data is copied).
    pub(crate) method: Option<String>,
    /// Drop the old copy right after the switch (default: keep it for MOVE_SOURCE_RETENTION).
    pub(crate) drop_source: Option<bool>,
}

fn slug(raw: &str) -> Result<Slug, ApiError> {
    Slug::parse(raw)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no tenant {raw:?} ({e})")))
}

fn invalid(code: &'static str) -> impl Fn(tenancy::domain::UnknownValue) -> ApiError {
    move |e| ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

/// Start moving a tenant; the move runs in the background (poll its moves until it is done).
#[utoipa::path(post, path = "/v1/tenants/{slug}/moves", request_body = StartMove, tag = "moves",
    responses((status = 202, body = Move), (status = 400, body = super::api::ErrorBody),
              (status = 404, body = super::api::ErrorBody), (status = 409, body = super::api::ErrorBody),
              (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn start(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<StartMove>,
) -> Result<(StatusCode, Json<Move>), ApiError> {
    let slug = slug(&raw)?;
    let destination = Destination {
        cluster: body.to_cluster,
        isolation: body
            .isolation
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(invalid("invalid_isolation"))?,
        drop_source: body.drop_source.unwrap_or(false),
        method: body
            .method
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(invalid("invalid_method"))?
            .unwrap_or_default(),
    };
    let record = moves::start(&state.cp, &slug, &destination, &operator.name).await?;
    Ok((StatusCode::ACCEPTED, Json((&record).into())))
}

/// A tenant's moves, newest first (at most 50).
#[utoipa::path(get, path = "/v1/tenants/{slug}/moves", tag = "moves",
    responses((status = 200, body = Vec<Move>), (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Vec<Move>>, ApiError> {
    let records = moves::of_tenant(&state.cp, &slug(&raw)?, 50).await?;
    Ok(Json(records.iter().map(Move::from).collect()))
}

/// Stop a tenant's running move before its switch: what it made is removed and the tenant
/// stays where it is (refused with 422 once the move is past its point of no return).
#[utoipa::path(post, path = "/v1/tenants/{slug}/moves/abort", tag = "moves",
    responses((status = 202, body = Move), (status = 404, body = super::api::ErrorBody),
              (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn abort(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<Move>), ApiError> {
    let record = moves::abort(&state.cp, &slug(&raw)?, &operator.name).await?;
    Ok((StatusCode::ACCEPTED, Json((&record).into())))
}
