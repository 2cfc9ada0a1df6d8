//! Read-only views of the job queue, the audit log and received billing events.

use super::api::{AuditEntry, AuditQuery, BillingEventsQuery, HistoryQuery, Job};
use super::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use tenancy::catalog::CatalogError;

/// `tenant=a,b`: the slugs named (none when absent or empty).
fn slugs_of(raw: Option<&str>) -> Vec<String> {
    raw.map(comma_list).unwrap_or_default()
}

/// `a,b`: the entries named, blanks and empty entries left out.
pub(super) fn comma_list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn limit_of(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(100);
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
    let limit = limit_of(query.limit)?;
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let jobs = crate::catalog::jobs::recent(&**client, query.tenant.as_deref(), limit)
        .await
        .map_err(CatalogError::from)?;
    Ok(Json(
        jobs.into_iter()
            .map(|j| Job {
                id: j.id,
                kind: j.kind,
                tenant_id: j.tenant_id.map(|id| id.to_string()),
                state: j.state,
                attempts: j.attempts,
                last_error: j.last_error,
                run_after: time(j.run_after),
                created_at: time(j.created_at),
                finished_at: j.finished_at.map(time),
                due: j.due,
            })
            .collect(),
    ))
}

/// The audit log, most recent first: lifecycle changes by operators and billing events, and
/// internal users' accesses to tenants through the routers (`tenant.access`).
#[utoipa::path(get, path = "/v1/audit", params(AuditQuery), tag = "history",
    responses((status = 200, body = [AuditEntry]), (status = 400, body = super::api::ErrorBody)))]
pub(super) async fn audit(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = limit_of(query.limit)?;
    let since = match &query.since {
        None => None,
        Some(since) => Some(chrono::DateTime::parse_from_rfc3339(since).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("since must be an RFC 3339 time: {e}"),
            )
        })?),
    };
    let filter = crate::catalog::audit::AuditFilter {
        tenants: slugs_of(query.tenant.as_deref()),
        actor: query.actor,
        action: query.action,
        since: since.map(|at| at.with_timezone(&chrono::Utc)),
    };
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let entries =
        crate::catalog::audit::recent(&**client, &filter, limit).await.map_err(CatalogError::from)?;
    Ok(Json(
        entries
            .into_iter()
            .map(|a| AuditEntry {
                id: a.id,
                at: time(a.at),
                actor: a.actor,
                action: a.action,
                tenant_id: a.tenant_id.map(|id| id.to_string()),
                detail: a.detail,
            })
            .collect(),
    ))
}

/// Received billing events, newest first, and what became of each: processed, ignored, failed
/// (and why) or pending (queued, or retried after a transient failure, and why).
#[utoipa::path(get, path = "/v1/billing/events", params(BillingEventsQuery), tag = "billing",
    responses((status = 200, body = [crate::billing::events::EventStatus]), (status = 400, body = super::api::ErrorBody)))]
pub(super) async fn billing_events(
    State(state): State<AppState>,
    Query(query): Query<BillingEventsQuery>,
) -> Result<Json<Vec<crate::billing::events::EventStatus>>, ApiError> {
    let filter = crate::billing::events::EventFilter {
        tenants: slugs_of(query.tenant.as_deref()),
        event_id: None,
        limit: limit_of(query.limit)?,
    };
    Ok(Json(crate::billing::events::list(&state.cp, &filter).await?))
}
