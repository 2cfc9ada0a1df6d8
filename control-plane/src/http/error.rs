//! The one error type of the HTTP API: `{"error":{"code":"…","message":"…"}}` with a status.
//! Server-side details are logged once here and never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// A 5xx whose detail is logged, while the client gets a generic message.
    pub fn internal(code: &'static str, detail: &impl std::fmt::Display) -> Self {
        tracing::error!(code, error = %detail, "request failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, "temporarily unavailable; retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<crate::provisioning::CreateTenantError> for ApiError {
    fn from(err: crate::provisioning::CreateTenantError) -> Self {
        use crate::provisioning::CreateTenantError as E;
        let status = match &err {
            E::DuplicateSlug(_) | E::DuplicateSubscription(_) => StatusCode::CONFLICT,
            E::NoCapacity => StatusCode::SERVICE_UNAVAILABLE,
            E::Catalog(_) => return Self::internal("catalog_unavailable", &err),
            E::InvalidSlug { .. } | E::InvalidPlan(_) | E::InvalidName(_) => StatusCode::BAD_REQUEST,
        };
        Self::new(status, err.code(), err.to_string())
    }
}

impl From<crate::lifecycle::LifecycleError> for ApiError {
    fn from(err: crate::lifecycle::LifecycleError) -> Self {
        use crate::lifecycle::LifecycleError as E;
        let status = match &err {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::WrongState { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::DropUnderway(_) => StatusCode::CONFLICT,
            E::InvalidPlan(_) => StatusCode::BAD_REQUEST,
            E::Catalog(_) => return Self::internal("catalog_unavailable", &err),
        };
        Self::new(status, err.code(), err.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    /// 413 for a body over the limit, 415 without a JSON content type, else 400 (axum would say
    /// 422 for well-formed JSON of the wrong shape; here 422 means a wrong state transition).
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let (status, code) = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_body"),
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
        Self::new(status, code, rejection.body_text())
    }
}

/// `Json<T>` whose rejections (malformed JSON, wrong fields, too large) are API errors.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<crate::domains::DomainError> for ApiError {
    fn from(err: crate::domains::DomainError) -> Self {
        use crate::domains::DomainError as E;
        let status = match &err {
            E::InvalidHost(_) | E::UnderBaseDomain(_) => StatusCode::BAD_REQUEST,
            E::TenantNotFound(_) | E::NoSuchDomain { .. } => StatusCode::NOT_FOUND,
            E::Taken(_) => StatusCode::CONFLICT,
            E::Catalog(_) => return Self::internal("catalog_unavailable", &err),
        };
        Self::new(status, err.code(), err.to_string())
    }
}
