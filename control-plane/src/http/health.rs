use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// The process is up.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// The catalog answers.
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let catalog = match state.cp.catalog.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let status = if catalog {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "catalog": if catalog { "ok" } else { "unreachable" },
            "secrets_backend": state.cp.secrets.backend(),
        })),
    )
}
