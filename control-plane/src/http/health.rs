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
        if let Ok(Some(run)) = crate::catalog::fleet_runs::latest_progress(&**client).await {
            let gauges = &state.cp.metrics.fleet_run;
            for (label, count) in [("done", run.done), ("failed", run.failed), ("remaining", run.remaining)] {
                gauges.tenants.get_or_create(&crate::metrics::RunItemLabels { state: label }).set(count);
            }
            gauges.running.set(i64::from(run.running));
            gauges.rate.set(run.finished_last_minute as f64 / 60.0);
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.cp.metrics.encode(),
    )
}
