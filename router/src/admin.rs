use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// Ready when the catalog answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let details = serde_json::json!({ "tenant_pools": state.pools.open_pools() });
    let (ready, body) = tenancy::pg::readiness(&state.catalog, details).await;
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// Prometheus metrics (OpenMetrics text).
pub async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let metrics = &state.metrics;
    metrics.pools_open.set(i64::try_from(state.pools.open_pools()).unwrap_or(i64::MAX));
    metrics.connections_in_use.set(i64::try_from(state.pools.connections_in_use()).unwrap_or(i64::MAX));
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.encode(),
    )
}
