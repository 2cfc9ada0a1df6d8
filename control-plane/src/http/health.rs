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
        if let Ok(rows) =
            client.query("SELECT status, count(*) FROM control.tenants GROUP BY status", &[]).await
        {
            for row in rows {
                let labels = crate::metrics::StatusLabels { status: row.get(0) };
                state.cp.metrics.tenants.get_or_create(&labels).set(row.get(1));
            }
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.cp.metrics.encode(),
    )
}
