//! Bearer-token authentication of the operator API.

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tenancy::catalog::CatalogError;

/// The operator a request acts as (the token's name), for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct Operator(pub String);

pub(super) async fn require_operator(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthorized("send an operator token: Authorization: Bearer <token> (tenantctl tokens create)")
        })?;
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let name = crate::catalog::tokens::verify(&**client, token.trim())
        .await
        .map_err(CatalogError::from)?
        .ok_or_else(|| unauthorized("unknown or revoked token"))?;
    drop(client);
    request.extensions_mut().insert(Operator(name));
    Ok(next.run(request).await)
}
