use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// The process is up.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the catalog answers.
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let details = serde_json::json!({ "secrets_backend": state.cp.secrets.backend() });
    let (ready, body) = tenancy::pg::readiness(&state.cp.catalog, details).await;
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
