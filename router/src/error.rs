//! The router's one error type: every failure becomes a status and a JSON body. PostgreSQL
//! errors use the shape Neon's driver reads (`message`, `code` = SQLSTATE, `detail`, `hint`,
//! `position`); the router's own errors add `{"error":{"code","message"}}`.
//!
//! The failures of a request's credentials ([`AuthError`]) and body ([`PayloadError`]) are
//! defined here, with the error they become, so that this module depends on no door (`sql`
//! uses them, not the other way round).

use crate::identity::TokenError;
use crate::pool::PoolCheckoutError;
use crate::resolve::ResolveTenantError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Resolve(#[from] ResolveTenantError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Pool(#[from] PoolCheckoutError),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("response is larger than the {0}-byte limit; select fewer rows or columns")]
    ResponseTooLarge(usize),
    #[error("too many requests for this tenant's plan; slow down")]
    RateLimited,
    #[error(transparent)]
    TooManyFailedAttempts(#[from] crate::failed_attempts::Blocked),
    #[error("{0}")]
    StatementNotAllowed(&'static str),
    #[error(transparent)]
    Proxy(#[from] crate::upstream::ProxyError),
    #[error(transparent)]
    AuditUnavailable(#[from] crate::identity::audit::AuditUnavailable),
    #[error("{message}")]
    Postgres { message: String, body: serde_json::Value },
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send the tenant's connection string in Neon-Connection-String")]
    Missing,
    #[error("Neon-Connection-String is not a valid postgres:// URL")]
    Malformed,
    #[error("the connection string's host is not the tenant of the request's Host")]
    WrongTenant,
    #[error("password authentication failed for user {0:?}")]
    BadCredentials(String),
    #[error("tenant directory unavailable")]
    Unavailable(String),
    #[error(transparent)]
    Token(crate::identity::TokenError),
}

/// Why a body was refused; messages are sent back as they are.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, an unknown field, a value of the wrong type, or neither (or both) of `query`
    /// and `queries`.
    #[error("{0}")]
    Malformed(String),
    /// PostgreSQL's protocol sends SQL text NUL-terminated: it cannot carry U+0000.
    #[error("a query contains a NUL character (\\u0000), which SQL text cannot hold; pass such data as a parameter")]
    NulInQuery,
}

impl RouterError {
    /// A PostgreSQL error: the server's error as Neon returns it, or a connection failure.
    pub fn from_pg(err: &tokio_postgres::Error) -> Self {
        match err.as_db_error() {
            Some(db) => Self::Postgres {
                message: db.message().to_owned(),
                body: json!({
                    "message": db.message(),
                    "code": db.code().code(),
                    "severity": db.severity(),
                    "detail": db.detail(),
                    "hint": db.hint(),
                    "position": match db.position() {
                        Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(p.to_string()),
                        _ => None,
                    },
                    "schema": db.schema(),
                    "table": db.table(),
                    "column": db.column(),
                    "constraint": db.constraint(),
                }),
            },
            None => Self::Pool(PoolCheckoutError::Database(err.to_string())),
        }
    }

    /// A request that ran past its plan's statement timeout (`deadline`, margin included) and
    /// was cancelled: PostgreSQL's `query_canceled` (57014), as Neon's driver reads it.
    pub fn deadline_exceeded(deadline: std::time::Duration) -> Self {
        let message = format!(
            "canceling statement: the request ran longer than its plan's statement timeout ({} ms)",
            deadline.as_millis()
        );
        Self::Postgres { body: json!({ "message": message, "code": "57014", "severity": "ERROR" }), message }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Resolve(e) => (
                match e {
                    ResolveTenantError::InvalidHost(_)
                    | ResolveTenantError::MissingHost
                    | ResolveTenantError::DuplicateHost => StatusCode::BAD_REQUEST,
                    ResolveTenantError::NotFound => StatusCode::NOT_FOUND,
                    ResolveTenantError::Suspended => StatusCode::FORBIDDEN,
                    ResolveTenantError::Provisioning
                    | ResolveTenantError::Unavailable(_)
                    | ResolveTenantError::UnknownHostsThrottled
                    | ResolveTenantError::Moving
                    | ResolveTenantError::WritesPaused => StatusCode::SERVICE_UNAVAILABLE,
                },
                e.code(),
            ),
            Self::Auth(AuthError::Missing | AuthError::BadCredentials(_)) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            Self::Auth(AuthError::Malformed) => (StatusCode::BAD_REQUEST, "invalid_connection_string"),
            Self::Auth(AuthError::WrongTenant) => (StatusCode::FORBIDDEN, "wrong_tenant"),
            Self::Auth(AuthError::Unavailable(_)) => (StatusCode::SERVICE_UNAVAILABLE, "catalog_unavailable"),
            Self::Auth(AuthError::Token(TokenError::WrongTenant)) => (StatusCode::FORBIDDEN, "wrong_tenant"),
            Self::Auth(AuthError::Token(TokenError::Forbidden(_))) => {
                (StatusCode::FORBIDDEN, "role_not_allowed")
            }
            Self::Auth(AuthError::Token(TokenError::KeysUnavailable)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "identity_provider_unavailable")
            }
            Self::Auth(AuthError::Token(TokenError::Invalid(_) | TokenError::NotConfigured)) => {
                (StatusCode::UNAUTHORIZED, "invalid_token")
            }
            Self::AuditUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            Self::Pool(PoolCheckoutError::Exhausted) => (StatusCode::SERVICE_UNAVAILABLE, "pool_exhausted"),
            Self::Pool(PoolCheckoutError::NoReader) => (StatusCode::FORBIDDEN, "read_only_unavailable"),
            Self::Pool(_) => (StatusCode::SERVICE_UNAVAILABLE, "tenant_unavailable"),
            Self::BadRequest(_) | Self::Payload(PayloadError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Self::Payload(PayloadError::NulInQuery) => (StatusCode::BAD_REQUEST, "nul_character"),
            Self::ResponseTooLarge(_) => (StatusCode::BAD_REQUEST, "response_too_large"),
            Self::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::TooManyFailedAttempts(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_failed_attempts"),
            Self::StatementNotAllowed(_) => (StatusCode::FORBIDDEN, "statement_not_allowed"),
            Self::Proxy(crate::upstream::ProxyError::NotConfigured) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Proxy(crate::upstream::ProxyError::Unreachable) => {
                (StatusCode::BAD_GATEWAY, "upstream_unavailable")
            }
            Self::Proxy(crate::upstream::ProxyError::Timeout) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            Self::Postgres { .. } => (StatusCode::BAD_REQUEST, "postgres_error"),
        }
    }
}

impl IntoResponse for RouterError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = match &self {
            Self::Postgres { body, .. } => (status, axum::Json(body.clone())).into_response(),
            other => {
                // Details of dependency failures are logged, not sent.
                let message = match other {
                    Self::Pool(PoolCheckoutError::Database(_) | PoolCheckoutError::Secrets(_))
                    | Self::Auth(AuthError::Unavailable(_))
                    | Self::Resolve(ResolveTenantError::Unavailable(_)) => {
                        tracing::error!(code, error = %other, "request failed");
                        "the tenant's database is temporarily unavailable; retry shortly".to_owned()
                    }
                    Self::Pool(PoolCheckoutError::Exhausted) => {
                        // Logged by code, so that alerting can count it exactly.
                        tracing::warn!(code, "no connection free within the checkout timeout");
                        other.to_string()
                    }
                    _ => other.to_string(),
                };
                let body = json!({ "message": message, "error": { "code": code, "message": message } });
                (status, axum::Json(body)).into_response()
            }
        };
        if let Self::TooManyFailedAttempts(blocked) = &self {
            let seconds = blocked.retry_after.as_secs() + u64::from(blocked.retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        } else if code == "invalid_token" {
            // RFC 6750 §3: what a client holding a bearer token is told when it is refused.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        } else if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
