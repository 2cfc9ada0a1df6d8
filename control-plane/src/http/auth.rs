//! Bearer-token authentication and authorization of the operator API: every request needs a
//! live token, and the token's scope must cover the request (reads need `read_only`, changes
//! `operator`, managing tokens `admin`).

use super::{ApiError, AppState};
use crate::catalog::tokens::{self, Scope, Verdict};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tenancy::catalog::CatalogError;

/// The operator a request acts as (the token's name, for the audit log) and its scope.
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    pub(crate) name: String,
    pub(crate) scope: Scope,
    pub(crate) expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The scope a request needs: token management is `admin`'s, every other change
/// `operator`'s, and reading anything `read_only`'s.
fn required_scope(method: &Method, route: &str) -> Scope {
    // No route (never, behind `route_layer`): the most, rather than the least.
    if route.is_empty() || route == "/v1/tokens" || route.starts_with("/v1/tokens/") {
        Scope::Admin
    } else if matches!(*method, Method::GET | Method::HEAD) {
        Scope::ReadOnly
    } else {
        Scope::Operator
    }
}

pub(super) async fn require_operator(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unauthorized = |message: String| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthorized(
                "send an operator token: Authorization: Bearer <token> (tenantctl tokens create)".to_owned(),
            )
        })?;
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let verdict = tokens::verify(&**client, token.trim()).await.map_err(CatalogError::from)?;
    drop(client);
    let caller = match verdict {
        Verdict::Valid(caller) => caller,
        Verdict::Expired(at) => {
            return Err(unauthorized(format!(
                "this token expired at {}; ask an admin for a new one (tenantctl tokens create)",
                at.to_rfc3339()
            )))
        }
        Verdict::Refused => return Err(unauthorized("unknown or revoked token".to_owned())),
    };
    let route = request.extensions().get::<MatchedPath>().map_or("", |p| p.as_str());
    let needed = required_scope(request.method(), route);
    if caller.scope < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token's scope is {}; {} {route} needs {needed}", caller.scope, request.method()),
        ));
    }
    request.extensions_mut().insert(Operator {
        name: caller.name,
        scope: caller.scope,
        expires_at: caller.expires_at,
    });
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_read_only_changes_operator_and_tokens_admin() {
        assert_eq!(required_scope(&Method::GET, "/v1/tenants"), Scope::ReadOnly);
        assert_eq!(required_scope(&Method::GET, "/v1/migrations/runs/{id}"), Scope::ReadOnly);
        assert_eq!(required_scope(&Method::POST, "/v1/tenants/{slug}/suspend"), Scope::Operator);
        assert_eq!(required_scope(&Method::DELETE, "/v1/tenants/{slug}"), Scope::Operator);
        assert_eq!(required_scope(&Method::PATCH, "/v1/tenants/{slug}/config"), Scope::Operator);
        assert_eq!(required_scope(&Method::GET, "/v1/tokens"), Scope::Admin);
        assert_eq!(required_scope(&Method::DELETE, "/v1/tokens/{id}"), Scope::Admin);
        assert_eq!(required_scope(&Method::GET, ""), Scope::Admin);
    }
}
