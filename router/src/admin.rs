use crate::http::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// Ready when the catalog answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let catalog = match state.catalog.get().await {
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
            "tenant_pools": state.pools.open_pools(),
        })),
    )
}
