//! The one error type of the HTTP API: `{"error":{"code":"…","message":"…"}}` with a status.
//! An operation's error becomes one through its [`ErrorKind`] ([`status_of`] is the only
//! mapping); a server-side error's detail is logged once, by the request counter
//! ([`logged_once`]), and never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tenancy::error::{ErrorKind, OperationError};

#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// The kind and server-side detail of an operation's error (logged, never sent).
    failure: Option<Failure>,
}

/// What a response carries (as an extension) about the operation error behind it.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) code: &'static str,
    /// The error's own message; for a 5xx it is logged and the client gets a generic one.
    pub(crate) detail: String,
}

/// The HTTP status of each kind of operation error.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::WrongState => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable | ErrorKind::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Misconfigured | ErrorKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An error of the HTTP layer itself (authentication, a malformed request).
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), failure: None }
    }
}

impl<E: OperationError> From<E> for ApiError {
    fn from(err: E) -> Self {
        let kind = err.kind();
        let status = status_of(kind);
        let message = if status.is_server_error() {
            err.public_message().unwrap_or_else(|| {
                match kind {
                    ErrorKind::Unavailable | ErrorKind::TimedOut => "temporarily unavailable; retry later",
                    _ => "internal error; the server's log says more",
                }
                .to_owned()
            })
        } else {
            err.to_string()
        };
        let failure = Failure { kind, code: err.code(), detail: err.to_string() };
        Self { status, code: err.code(), message, failure: Some(failure) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(failure) = self.failure {
            response.extensions_mut().insert(failure);
        }
        response
    }
}

/// Logs a server-side error once (with its detail, which the client did not get) and returns
/// its kind, for the error metric. Called by the request counter for every response.
pub(crate) fn logged_once(response: &Response) -> Option<ErrorKind> {
    let failure = response.extensions().get::<Failure>();
    if response.status().is_server_error() {
        match failure {
            Some(f) => tracing::error!(code = f.code, kind = %f.kind, error = %f.detail, "request failed"),
            None => tracing::error!(status = response.status().as_u16(), "request failed"),
        }
    }
    failure.map(|f| f.kind)
}

impl ApiError {
    /// A JSON body axum could not take: 413 over the limit, 415 without a JSON content type,
    /// else 400 (axum would say 422 for well-formed JSON of the wrong shape; here 422 means a
    /// wrong state transition).
    fn from_json_rejection(rejection: &axum::extract::rejection::JsonRejection) -> Self {
        let (status, code) = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_body"),
        };
        Self::new(status, code, rejection.body_text())
    }

    /// A body axum could not read (413 over the limit).
    pub(crate) fn from_bytes_rejection(rejection: &axum::extract::rejection::BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
        Self::new(status, code, rejection.body_text())
    }
}

/// `Json<T>` whose rejections (malformed JSON, wrong fields, too large) are API errors.
pub(crate) struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Self(value))
            .map_err(|rejection| ApiError::from_json_rejection(&rejection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach 10.0.3.7:5432 as admin")]
    struct Down;

    impl OperationError for Down {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Unavailable
        }

        fn code(&self) -> &'static str {
            "catalog_unavailable"
        }
    }

    #[test]
    fn a_server_side_error_keeps_its_detail_out_of_the_answer_and_in_the_log() {
        let err = ApiError::from(Down);
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code, "catalog_unavailable");
        assert!(!err.message.contains("10.0.3.7"), "{}", err.message);
        let response = err.into_response();
        let failure = response.extensions().get::<Failure>().expect("the failure travels with the response");
        assert!(failure.detail.contains("10.0.3.7"));
        assert_eq!(logged_once(&response), Some(ErrorKind::Unavailable));
    }

    #[test]
    fn a_server_side_error_may_say_what_to_do_when_that_names_nothing_internal() {
        let err = ApiError::from(crate::tenants::CreateTenantError::NoCapacity);
        assert_eq!((err.status, err.code), (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"));
        assert!(err.message.contains("tenantctl clusters add"), "{}", err.message);
    }

    #[test]
    fn each_kind_has_its_status() {
        let statuses: Vec<u16> = [
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::WrongState,
            ErrorKind::Unavailable,
            ErrorKind::Misconfigured,
            ErrorKind::Failed,
            ErrorKind::TimedOut,
        ]
        .into_iter()
        .map(|kind| status_of(kind).as_u16())
        .collect();
        assert_eq!(statuses, [400, 404, 409, 422, 503, 500, 500, 503]);
    }
}
