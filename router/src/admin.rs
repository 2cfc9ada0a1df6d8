use crate::http::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// Ready when the catalog answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let details = serde_json::json!({ "tenant_pools": state.pools.open_pools() });
    let (ready, body) = tenancy::pg::readiness(&state.catalog, details).await;
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
