//! The admin listener's handlers: health, readiness, metrics, and the pools as PgBouncer's
//! `SHOW POOLS` / `SHOW STATS` would show them (see [`crate::pool::view`]).

use crate::error::RouterError;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use tenancy::domain::Slug;

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

/// `?tenant=<slug>[,<slug>…]`: only these tenants' pools.
#[derive(Debug, serde::Deserialize)]
pub struct PoolFilter {
    tenant: Option<String>,
}

impl PoolFilter {
    fn slugs(&self) -> Result<Vec<Slug>, RouterError> {
        let Some(raw) = self.tenant.as_deref() else { return Ok(Vec::new()) };
        // As the control plane's `tenant=a,b`: blanks and empty entries are not tenants.
        raw.split(',')
            .map(str::trim)
            .filter(|slug| !slug.is_empty())
            .map(|slug| {
                Slug::parse(slug).map_err(|e| RouterError::BadRequest(format!("tenant {slug:?}: {e}")))
            })
            .collect()
    }
}

/// The connection budget and every pool's connections and waiting clients (`SHOW POOLS`).
pub async fn pools(
    State(state): State<AppState>,
    Query(filter): Query<PoolFilter>,
) -> Result<Json<crate::pool::view::PoolsView>, RouterError> {
    Ok(Json(state.pools.pools_view(&filter.slugs()?)))
}

/// Every pool's counters since it was built (`SHOW STATS`).
pub async fn stats(
    State(state): State<AppState>,
    Query(filter): Query<PoolFilter>,
) -> Result<Json<crate::pool::view::StatsView>, RouterError> {
    Ok(Json(state.pools.stats_view(&filter.slugs()?)))
}
