//! The fleet at a glance: `/v1/fleet` (tenants by status, plan and schema version, now and
//! hour by hour), `/v1/clusters` (load against capacity) and `/v1/routers/pools` (each
//! router's pools against its connection budget, from its admin listener).

use super::{ApiError, AppState};
use crate::catalog::fleet_summary::{self, Count, Snapshot, VersionCount};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tenancy::catalog::CatalogError;
use utoipa::{IntoParams, ToSchema};

/// How often `tenantctl serve` records the fleet's counts (the hour's last one is kept).
pub(super) const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FleetSummary {
    /// Live (not deleted) tenants by status and plan, now.
    pub(crate) counts: Vec<Count>,
    /// Active and suspended tenants by schema version, now.
    pub(crate) schema_versions: Vec<VersionCount>,
    /// The newest migration in the server's migrations directory (absent when it cannot be
    /// read).
    pub(crate) target_version: Option<i64>,
    /// Hourly counts by status and plan over the asked period, oldest first.
    pub(crate) history: Vec<Snapshot>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SummaryQuery {
    /// Days of history, 1 to 90 (default 14).
    pub(crate) days: Option<i64>,
}

/// A cluster with its load.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Cluster {
    pub(crate) name: String,
    /// Most live tenants placed on it.
    pub(crate) capacity: i32,
    /// Live (not deleted) tenants placed on it.
    pub(crate) tenants: i64,
    /// Being drained: takes no new tenants.
    pub(crate) draining: bool,
}

/// Tenants by status, plan and schema version, now and hour by hour.
#[utoipa::path(get, path = "/v1/fleet", params(SummaryQuery), tag = "fleet",
    responses((status = 200, body = FleetSummary), (status = 400, body = super::api::ErrorBody)))]
pub(super) async fn summary(
    State(state): State<AppState>,
    Query(query): Query<SummaryQuery>,
) -> Result<Json<FleetSummary>, ApiError> {
    let days = query.days.unwrap_or(14);
    if !(1..=90).contains(&days) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("days must be 1 to 90, got {days}"),
        ));
    }
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let counts = fleet_summary::counts(&**client).await.map_err(CatalogError::from)?;
    let schema_versions = fleet_summary::by_schema_version(&**client).await.map_err(CatalogError::from)?;
    let since = chrono::Utc::now() - chrono::Duration::days(days);
    let history = fleet_summary::history(&**client, since).await.map_err(CatalogError::from)?;
    let target_version = state.cp.migrations().ok().map(|m| m.target_version());
    Ok(Json(FleetSummary { counts, schema_versions, target_version, history }))
}

/// The registered clusters with their load, by name.
#[utoipa::path(get, path = "/v1/clusters", tag = "fleet", responses((status = 200, body = [Cluster])))]
pub(super) async fn clusters(State(state): State<AppState>) -> Result<Json<Vec<Cluster>>, ApiError> {
    let clusters = crate::clusters::list(&state.cp).await?;
    Ok(Json(
        clusters
            .into_iter()
            .map(|c| Cluster { name: c.name, capacity: c.capacity, tenants: c.tenants, draining: c.draining })
            .collect(),
    ))
}

/// Every router's pools and connection budget (`GET /pools` on each router's admin listener,
/// `TENANTCTL_ROUTERS`), asked at once; a router that does not answer has an `error` instead.
#[utoipa::path(get, path = "/v1/routers/pools", tag = "fleet",
    responses((status = 200, description = "`{\"routers\": [{\"router\": url, \"budget\": …, \"pools\": […]} or {\"router\": url, \"error\": {code, message}}]}`",
               body = Object)))]
pub(super) async fn router_pools(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let answers = crate::routers::ask(&state.routers, "pools", &[], std::time::Duration::from_secs(3))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot build an HTTP client");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "cannot ask the routers")
        })?;
    Ok(Json(crate::routers::answers_json(answers).0))
}

/// Records the fleet's counts every [`SNAPSHOT_EVERY`] until `shutdown`; a failure is logged
/// and the next tick tries again.
pub(super) async fn record_snapshots(
    cp: std::sync::Arc<crate::control_plane::ControlPlane>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let recorded = match cp.catalog.get().await {
            Ok(client) => {
                fleet_summary::record_snapshot(&**client).await.map_err(|e| tenancy::pg::describe_error(&e))
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record the fleet's counts; trying again later");
        }
    }
}
