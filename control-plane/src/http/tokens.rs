//! `/v1/tokens` (admin tokens only): list, create and revoke operator tokens; and `/v1/whoami`,
//! which tells any token its own name and scope (the console shows only what it may do).

use super::{ApiError, ApiJson, AppState, Operator};
use crate::catalog::tokens::{self, NewToken, Scope, TokenInfo};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tenancy::catalog::CatalogError;
use utoipa::{IntoParams, ToSchema};

/// The token a request came with.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WhoAmI {
    /// The token's name (the actor in the audit log).
    pub(crate) name: String,
    pub(crate) scope: Scope,
    /// When the token stops working (RFC 3339); absent: until revoked.
    pub(crate) expires_at: Option<String>,
    /// The control plane's version (`tenantctl serve`'s).
    pub(crate) server_version: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// Who or what the token is for (1 to 100 printable characters); the actor in the audit log.
    pub(crate) name: String,
    pub(crate) scope: Scope,
    /// Lifetime, e.g. `90d` or `12h` (1 minute to 10 years); none: until revoked.
    pub(crate) expires_in: Option<String>,
}

/// A token just created: the token itself is in this answer only.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    pub(crate) token: String,
    #[serde(flatten)]
    pub(crate) info: TokenInfo,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokensQuery {
    /// Also revoked tokens (default false).
    pub(crate) all: Option<bool>,
}

/// The calling token's name, scope and expiry, and the control plane's version.
#[utoipa::path(get, path = "/v1/whoami", tag = "tokens", responses((status = 200, body = WhoAmI)))]
pub(super) async fn whoami(Extension(operator): Extension<Operator>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: operator.name,
        scope: operator.scope,
        expires_at: operator.expires_at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// Tokens, newest first, never the tokens themselves.
#[utoipa::path(get, path = "/v1/tokens", params(TokensQuery), tag = "tokens",
    responses((status = 200, body = [TokenInfo]), (status = 403, body = super::api::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<TokensQuery>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    Ok(Json(tokens::list(&**client, query.all.unwrap_or(false)).await.map_err(CatalogError::from)?))
}

/// Create a token; it is shown in this answer only (the catalog keeps its hash).
#[utoipa::path(post, path = "/v1/tokens", request_body = CreateToken, tag = "tokens",
    responses((status = 201, body = CreatedToken), (status = 400, body = super::api::ErrorBody),
              (status = 403, body = super::api::ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", message);
    let name = tokens::check_name(&body.name).map_err(|e| bad(e.to_owned()))?;
    let expires_at = match body.expires_in.as_deref() {
        None => None,
        Some(raw) => {
            let lifetime = humantime::parse_duration(raw).map_err(|e| bad(format!("expires_in: {e}")))?;
            Some(tokens::expiry(lifetime).map_err(|e| bad(e.to_owned()))?)
        }
    };
    let new = NewToken { name, scope: body.scope, expires_at, created_by: &operator.name };
    let mut client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let (token, info) = tokens::issue(&mut client, &new).await.map_err(CatalogError::from)?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

/// Revoke a token (at once: its next request is refused). Revoking a revoked token changes
/// nothing.
#[utoipa::path(delete, path = "/v1/tokens/{id}", params(("id" = i64, Path)), tag = "tokens",
    responses((status = 200, body = TokenInfo), (status = 403, body = super::api::ErrorBody),
              (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(id): Path<i64>,
) -> Result<Json<TokenInfo>, ApiError> {
    let mut client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    tokens::withdraw(&mut client, id, &operator.name)
        .await
        .map_err(CatalogError::from)?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no token {id}")))
}
