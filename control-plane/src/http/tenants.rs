//! `/v1/tenants`: the operator API over the same library functions as the CLI.

use super::api::{
    CreateTenant, DeleteQuery, ListQuery, SetConfig, SetPlan, TemplateUpgrades, Tenant, TenantPage,
};
use super::auth::Operator;
use super::{ApiError, ApiJson, AppState};
use crate::tenants::{self, Operation, TenantRequest};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use tenancy::catalog::CatalogError;
use tenancy::domain::{PlanName, Slug, TenantStatus};

type Accepted = (StatusCode, Json<Tenant>);

fn slug(raw: &str) -> Result<Slug, ApiError> {
    Slug::parse(raw)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no tenant {raw:?} ({e})")))
}

fn accepted(state: &AppState, tenant: &tenancy::catalog::TenantRecord) -> Accepted {
    (StatusCode::ACCEPTED, Json(Tenant::from_record(tenant, &state.cp.base_domain)))
}

/// Create a tenant; provisioning runs in the background (poll the tenant until `active`).
#[utoipa::path(post, path = "/v1/tenants", request_body = CreateTenant, tag = "tenants",
    responses((status = 202, body = Tenant), (status = 400, body = super::api::ErrorBody),
              (status = 409, body = super::api::ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<Accepted, ApiError> {
    let isolation = body
        .isolation
        .as_deref()
        .map(str::parse::<tenancy::domain::Isolation>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_isolation", e.to_string()))?;
    let request = TenantRequest {
        slug: body.slug,
        display_name: body.name,
        plan: body.plan,
        billing_customer_id: None,
        billing_subscription_id: None,
        isolation,
        cluster: body.cluster,
    };
    let tenant = tenants::create(&state.cp, &request, &operator.name).await?;
    Ok(accepted(&state, &tenant))
}

/// List tenants, a page at a time, by slug.
#[utoipa::path(get, path = "/v1/tenants", params(ListQuery), tag = "tenants",
    responses((status = 200, body = TenantPage), (status = 400, body = super::api::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<TenantPage>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message);
    if query.q.as_ref().is_some_and(|q| q.chars().count() > 100) {
        return Err(bad("q must be at most 100 characters".to_owned()));
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad(format!("limit must be 1 to 500, got {limit}")));
    }
    let status = query
        .status
        .as_deref()
        .map(str::parse::<TenantStatus>)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let plan = query.plan.as_deref().map(PlanName::parse).transpose().map_err(|e| bad(e.to_string()))?;
    let filter = crate::catalog::tenants::TenantFilter {
        status,
        plan,
        cluster: query.cluster,
        search: query.q.filter(|q| !q.trim().is_empty()).map(|q| q.trim().to_owned()),
        schema_version: query.schema_version,
        include_deleted: status == Some(TenantStatus::Deleted),
        after: query.cursor,
        limit: Some(limit + 1),
    };
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let mut records = crate::catalog::tenants::list(&**client, &filter).await?;
    let more = records.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more.then(|| records.last().map(|(t, _)| t.slug.to_string())).flatten();
    let tenants = records
        .iter()
        .map(|(t, version)| Tenant {
            schema_version: *version,
            ..Tenant::from_record(t, &state.cp.base_domain)
        })
        .collect();
    Ok(Json(TenantPage { tenants, next_cursor }))
}

/// One tenant.
#[utoipa::path(get, path = "/v1/tenants/{slug}", tag = "tenants",
    responses((status = 200, body = Tenant), (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn show(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let slug = slug(&raw)?;
    let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let tenant = tenancy::catalog::tenant_by_slug(&**client, &slug)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no tenant {slug}")))?;
    drop(client);
    Ok(Json(crate::tenants::view::shown(&state.cp, &tenant).await?))
}

async fn operate(
    state: &AppState,
    raw: &str,
    operation: &Operation,
    operator: &Operator,
) -> Result<Accepted, ApiError> {
    let slug = slug(raw)?;
    let tenant = tenants::request(&state.cp, &slug, operation, &operator.name).await?;
    Ok(accepted(state, &tenant))
}

/// Suspend: the role can no longer log in; routers answer 403.
#[utoipa::path(post, path = "/v1/tenants/{slug}/suspend", tag = "tenants",
    responses((status = 202, body = Tenant), (status = 404, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn suspend(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
) -> Result<Accepted, ApiError> {
    operate(&state, &raw, &Operation::Suspend, &operator).await
}

/// Resume a suspended tenant.
#[utoipa::path(post, path = "/v1/tenants/{slug}/resume", tag = "tenants",
    responses((status = 202, body = Tenant), (status = 404, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn resume(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
) -> Result<Accepted, ApiError> {
    operate(&state, &raw, &Operation::Resume, &operator).await
}

/// New password: secret first, then the role; routers pick it up.
#[utoipa::path(post, path = "/v1/tenants/{slug}/rotate-credentials", tag = "tenants",
    responses((status = 202, body = Tenant), (status = 404, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn rotate_credentials(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
) -> Result<Accepted, ApiError> {
    operate(&state, &raw, &Operation::RotateCredentials, &operator).await
}

/// Provision a failed tenant again.
#[utoipa::path(post, path = "/v1/tenants/{slug}/retry", tag = "tenants",
    responses((status = 202, body = Tenant), (status = 404, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn retry(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
) -> Result<Accepted, ApiError> {
    operate(&state, &raw, &Operation::Retry, &operator).await
}

/// Bring a deprovisioning tenant back before its drop (409 `drop_underway` while the drop runs).
#[utoipa::path(post, path = "/v1/tenants/{slug}/restore", tag = "tenants",
    responses((status = 202, body = Tenant), (status = 404, body = super::api::ErrorBody), (status = 409, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn restore(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
) -> Result<Accepted, ApiError> {
    operate(&state, &raw, &Operation::Restore, &operator).await
}

/// Move the tenant to another plan (no data is moved).
#[utoipa::path(put, path = "/v1/tenants/{slug}/plan", request_body = SetPlan, tag = "tenants",
    responses((status = 202, body = Tenant), (status = 400, body = super::api::ErrorBody),
              (status = 404, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn set_plan(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<SetPlan>,
) -> Result<Accepted, ApiError> {
    operate(&state, &raw, &Operation::ChangePlan(body.plan), &operator).await
}

/// Deprovision: routers answer 404 at once; data dropped after the retention period.
#[utoipa::path(delete, path = "/v1/tenants/{slug}", params(DeleteQuery), tag = "tenants",
    responses((status = 202, body = Tenant), (status = 400, body = super::api::ErrorBody),
              (status = 404, body = super::api::ErrorBody), (status = 422, body = super::api::ErrorBody)))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<Accepted, ApiError> {
    let retention = match query.retention.as_deref() {
        Some(raw) => humantime::parse_duration(raw).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("retention {raw:?}: {e}"))
        })?,
        None => state.cp.deprovision_retention,
    };
    operate(&state, &raw, &Operation::Deprovision { retention }, &operator).await
}

/// The tenant's config (modules, module settings, theme) with what it was built from: its
/// plan template and that template's version, and where its data is.
#[utoipa::path(get, path = "/v1/tenants/{slug}/config", tag = "tenants",
    responses((status = 200, body = crate::tenants::TenantProfile), (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn get_config(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<crate::tenants::TenantProfile>, ApiError> {
    Ok(Json(tenants::profile_of(&state.cp, &slug(&raw)?).await?))
}

/// Replace the tenant's config (modules, module settings, theme).
#[utoipa::path(put, path = "/v1/tenants/{slug}/config", request_body = SetConfig, tag = "tenants",
    responses((status = 200, body = Tenant), (status = 400, body = super::api::ErrorBody), (status = 404, body = super::api::ErrorBody),
              (status = 409, body = super::api::ErrorBody)))]
pub(super) async fn set_config(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<SetConfig>,
) -> Result<Json<Tenant>, ApiError> {
    let slug = slug(&raw)?;
    if !body.config.is_object() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_config", "config must be a JSON object"));
    }
    let change = match body.expected {
        Some(expected) => tenants::ConfigChange::ReplaceIf { expected, config: body.config },
        None => tenants::ConfigChange::Replace(body.config),
    };
    let tenant = tenants::update_config(&state.cp, &slug, change, &operator.name).await?;
    Ok(Json(Tenant::from_record(&tenant, &state.cp.base_domain)))
}

/// Change the tenant's config with a JSON merge patch (RFC 7386, `application/merge-patch+json`):
/// objects merge key by key, `null` removes a key, anything else replaces the value.
#[utoipa::path(patch, path = "/v1/tenants/{slug}/config", tag = "tenants",
    request_body(content = Object, content_type = "application/merge-patch+json",
        description = "A JSON merge patch of the config, e.g. {\"theme\": {\"logo\": \"acme.svg\"}, \"beta\": null}"),
    responses((status = 200, body = Tenant), (status = 400, body = super::api::ErrorBody), (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn patch_config(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<Tenant>, ApiError> {
    let slug = slug(&raw)?;
    if !patch.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_config",
            "a config patch must be a JSON object (a merge patch of the config)",
        ));
    }
    let change = tenants::ConfigChange::Patch(patch);
    let tenant = tenants::update_config(&state.cp, &slug, change, &operator.name).await?;
    Ok(Json(Tenant::from_record(&tenant, &state.cp.base_domain)))
}

/// Opt the tenant in or out of template upgrades (`tenantctl templates upgrade` skips a tenant
/// that opted out unless it is named).
#[utoipa::path(put, path = "/v1/tenants/{slug}/template-upgrades", request_body = TemplateUpgrades, tag = "tenants",
    responses((status = 200, body = TemplateUpgrades), (status = 400, body = super::api::ErrorBody), (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn set_template_upgrades(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<TemplateUpgrades>,
) -> Result<Json<TemplateUpgrades>, ApiError> {
    tenants::set_template_upgrades(&state.cp, &slug(&raw)?, body.enabled, &operator.name).await?;
    Ok(Json(body))
}

/// The tenant's host names.
#[utoipa::path(get, path = "/v1/tenants/{slug}/domains", tag = "tenants",
    responses((status = 200, body = [crate::tenants::domains::Domain]), (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn domains(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Vec<crate::tenants::domains::Domain>>, ApiError> {
    Ok(Json(crate::tenants::domains::list(&state.cp, &slug(&raw)?).await?))
}

/// Add a custom domain (idempotent).
#[utoipa::path(post, path = "/v1/tenants/{slug}/domains", request_body = super::api::AddDomain, tag = "tenants",
    responses((status = 201, body = crate::tenants::domains::Domain), (status = 400, body = super::api::ErrorBody),
              (status = 404, body = super::api::ErrorBody), (status = 409, body = super::api::ErrorBody)))]
pub(super) async fn add_domain(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<super::api::AddDomain>,
) -> Result<(StatusCode, Json<crate::tenants::domains::Domain>), ApiError> {
    let host = crate::tenants::domains::add(&state.cp, &slug(&raw)?, &body.host, &operator.name).await?;
    Ok((StatusCode::CREATED, Json(crate::tenants::domains::Domain { host, kind: "custom".into() })))
}

/// Remove a custom domain.
#[utoipa::path(delete, path = "/v1/tenants/{slug}/domains/{host}", tag = "tenants",
    responses((status = 204), (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn remove_domain(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path((raw, host)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    crate::tenants::domains::remove(&state.cp, &slug(&raw)?, &host, &operator.name).await?;
    Ok(StatusCode::NO_CONTENT)
}
