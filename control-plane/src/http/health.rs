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

/// Prometheus metrics (OpenMetrics text).
pub(super) async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    if let Ok(client) = state.cp.catalog.get().await {
        if let Ok(counts) = crate::catalog::tenants::count_by_status(&**client).await {
            for (status, count) in counts {
                let labels = crate::metrics::StatusLabels { status };
                state.cp.metrics.tenants.get_or_create(&labels).set(count);
            }
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.cp.metrics.encode(),
    )
}
