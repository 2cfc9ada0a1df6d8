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
