//! Read-only views of the job queue and the audit log.

use super::api::{AuditEntry, HistoryQuery, Job};
use super::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use tenancy::catalog::CatalogError;

fn limit_of(query: &HistoryQuery) -> Result<i64, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if (1..=500).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be 1 to 500, got {limit}"),
        ))
    }
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339()
}

/// Jobs, most recent first.
#[utoipa::path(get, path = "/v1/jobs", params(HistoryQuery), tag = "history",
    responses((status = 200, body = [Job]), (status = 400, body = super::api::ErrorBody)))]
pub(super) async fn jobs(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let limit = limit_of(&query)?;
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let rows = client
        .query(
            "SELECT j.id, j.kind, j.tenant_id, j.state, j.attempts, j.last_error, j.run_after, j.created_at, j.finished_at
               FROM control.jobs j
              WHERE $1::text IS NULL OR j.tenant_id = (SELECT id FROM control.tenants WHERE slug = $1
                                                          ORDER BY created_at DESC LIMIT 1)
              ORDER BY j.id DESC LIMIT $2",
            &[&query.tenant, &limit],
        )
        .await
        .map_err(CatalogError::from)?;
    Ok(Json(
        rows.iter()
            .map(|r| Job {
                id: r.get(0),
                kind: r.get(1),
                tenant_id: r.get::<_, Option<uuid::Uuid>>(2).map(|id| id.to_string()),
                state: r.get(3),
                attempts: r.get(4),
                last_error: r.get(5),
                run_after: time(r.get(6)),
                created_at: time(r.get(7)),
                finished_at: r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(8).map(time),
            })
            .collect(),
    ))
}

/// The audit log, most recent first.
#[utoipa::path(get, path = "/v1/audit", params(HistoryQuery), tag = "history",
    responses((status = 200, body = [AuditEntry]), (status = 400, body = super::api::ErrorBody)))]
pub(super) async fn audit(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = limit_of(&query)?;
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let rows = client
        .query(
            "SELECT a.id, a.at, a.actor, a.action, a.tenant_id, a.detail
               FROM control.audit_log a
              WHERE $1::text IS NULL OR a.tenant_id IN (SELECT id FROM control.tenants WHERE slug = $1)
              ORDER BY a.id DESC LIMIT $2",
            &[&query.tenant, &limit],
        )
        .await
        .map_err(CatalogError::from)?;
    Ok(Json(
        rows.iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at: time(r.get(1)),
                actor: r.get(2),
                action: r.get(3),
                tenant_id: r.get::<_, Option<uuid::Uuid>>(4).map(|id| id.to_string()),
                detail: r.get(5),
            })
            .collect(),
    ))
}
