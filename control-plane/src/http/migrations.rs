//! `/v1/migrations/runs`: start a fleet migration run and watch it, over the same library
//! functions as `tenantctl migrate apply` and `migrate status`. A run started here goes on in
//! the server process; if that process stops, the run is `interrupted` and can be resumed with
//! `tenantctl migrate resume <id>`.

use super::{ApiError, AppState, Operator};
use crate::catalog::fleet_runs;
use crate::fleet::{self, FleetError, RunStatus};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use tenancy::catalog::CatalogError;
use utoipa::{IntoParams, ToSchema};

/// Which tenants and how; every field is optional (all live tenants, `tenantctl migrate apply`'s
/// defaults).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRun {
    /// Only this tenant (slug).
    pub(crate) tenant: Option<String>,
    /// Only these tenants (slugs), with `tenant` if given too.
    pub(crate) tenants: Option<Vec<String>>,
    /// Only tenants on this plan.
    pub(crate) plan: Option<String>,
    /// Only tenants on this cluster.
    pub(crate) cluster: Option<String>,
    /// Also migrate the template databases of the selected tenants' clusters (default false;
    /// a run without tenant, plan or cluster always migrates every template).
    pub(crate) include_templates: Option<bool>,
    /// Tenants migrated at the same time on each cluster (1 to 256, default 4).
    pub(crate) concurrency: Option<usize>,
    /// Tenants of the canary wave (default 0).
    pub(crate) canary: Option<usize>,
    /// Halt once more tenants than this failed.
    pub(crate) max_failures: Option<usize>,
    /// Further attempts after a lock timeout (default 3).
    pub(crate) retries: Option<u32>,
    /// lock_timeout of tenant transactions in ms (default 5000; 0 = none).
    pub(crate) lock_timeout_ms: Option<u64>,
    /// statement_timeout of tenant transactions in ms (default 600000; 0 = none).
    pub(crate) statement_timeout_ms: Option<u64>,
    /// One transaction per tenant (default false).
    pub(crate) grouped: Option<bool>,
    /// Tenants per migrator connection (default 200).
    pub(crate) tenants_per_connection: Option<usize>,
}

/// A run: its record, its items by state, and its items (all, or those of `?state=`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MigrationRun {
    pub(crate) id: String,
    pub(crate) created_by: String,
    pub(crate) created_at: String,
    pub(crate) finished_at: Option<String>,
    pub(crate) target_version: i64,
    /// running, interrupted (its process is gone; resume it), completed, failed or halted.
    pub(crate) state: String,
    pub(crate) halt_reason: Option<String>,
    /// Who asked the run to halt (`POST …/halt`), once asked.
    pub(crate) halt_requested_by: Option<String>,
    #[schema(value_type = Object)]
    pub(crate) selection: serde_json::Value,
    #[schema(value_type = Object)]
    pub(crate) options: serde_json::Value,
    pub(crate) tenants: i32,
    /// Items by state.
    #[schema(value_type = Object)]
    pub(crate) counts: std::collections::BTreeMap<String, i64>,
    pub(crate) items: Vec<MigrationItem>,
}

/// One tenant of a run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MigrationItem {
    pub(crate) tenant_id: String,
    pub(crate) slug: String,
    /// pending, running, done, failed, drift or lock_timeout.
    pub(crate) state: String,
    /// 0 for the canary wave, 1 for the rest.
    pub(crate) wave: i16,
    pub(crate) from_version: Option<i64>,
    pub(crate) to_version: Option<i64>,
    pub(crate) attempts: i32,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) error: Option<String>,
}

impl From<RunStatus> for MigrationRun {
    fn from(status: RunStatus) -> Self {
        let run = status.run;
        Self {
            id: run.id.to_string(),
            created_by: run.created_by,
            created_at: run.created_at.to_rfc3339(),
            finished_at: run.finished_at.map(|t| t.to_rfc3339()),
            target_version: run.target_version,
            state: status.state,
            halt_reason: run.halt_reason,
            halt_requested_by: run.halt_requested_by,
            selection: run.selection,
            options: run.options,
            tenants: run.tenants,
            counts: status.counts,
            items: status
                .items
                .into_iter()
                .map(|i| MigrationItem {
                    tenant_id: i.tenant_id.to_string(),
                    slug: i.slug,
                    state: i.state.as_str().to_owned(),
                    wave: i.wave,
                    from_version: i.from_version,
                    to_version: i.to_version,
                    attempts: i.attempts,
                    duration_ms: i.duration_ms,
                    error: i.error,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ItemsQuery {
    /// Only items in this state (pending, running, done, failed, drift, lock_timeout).
    pub(crate) state: Option<String>,
}

fn bad_options(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_options", message)
}

/// Which tenants a run (or a plan) is about, checked: the tenants named, on a plan, on a
/// cluster; none of them: the whole fleet.
fn selection(
    tenants: Vec<String>,
    plan: Option<String>,
    cluster: Option<String>,
    include_templates: Option<bool>,
) -> Result<fleet_runs::Selection, ApiError> {
    for tenant in &tenants {
        tenancy::domain::Slug::parse(tenant).map_err(|e| bad_options(format!("tenant {tenant:?}: {e}")))?;
    }
    if let Some(plan) = &plan {
        tenancy::domain::PlanName::parse(plan).map_err(|e| bad_options(format!("plan: {e}")))?;
    }
    if let Some(cluster) = &cluster {
        tenancy::domain::ClusterName::parse(cluster).map_err(|e| bad_options(format!("cluster: {e}")))?;
    }
    Ok(fleet_runs::Selection { tenants, plan, cluster, templates: include_templates.unwrap_or(false) })
}

fn options(body: StartRun) -> Result<fleet::ApplyOptions, ApiError> {
    if body.tenants.as_ref().is_some_and(Vec::is_empty) {
        // An empty list must not mean "no filter": the whole fleet.
        return Err(bad_options(
            "tenants: name at least one tenant, or leave it out for the whole fleet".to_owned(),
        ));
    }
    let tenants: Vec<String> = body.tenants.unwrap_or_default().into_iter().chain(body.tenant).collect();
    let selection = selection(tenants, body.plan, body.cluster, body.include_templates)?;
    let defaults = fleet::RunOptions::default();
    // Ranges are checked by `fleet::begin` (the same checks as the CLI's).
    let concurrency = body.concurrency.unwrap_or(defaults.concurrency);
    Ok(fleet::ApplyOptions {
        selection,
        run: fleet::RunOptions {
            concurrency,
            canary: body.canary.unwrap_or(defaults.canary),
            max_failures: body.max_failures,
            retries: body.retries.unwrap_or(defaults.retries),
            lock_timeout_ms: body.lock_timeout_ms.unwrap_or(defaults.lock_timeout_ms),
            statement_timeout_ms: body.statement_timeout_ms.unwrap_or(defaults.statement_timeout_ms),
            grouped: body.grouped.unwrap_or(defaults.grouped),
            tenants_per_connection: body.tenants_per_connection.unwrap_or(defaults.tenants_per_connection),
        },
    })
}

/// `GET /v1/migrations/plan`'s selection and checks, as `tenantctl migrate plan` takes them.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PlanQuery {
    /// Only these tenants (comma-separated slugs).
    pub(crate) tenant: Option<String>,
    /// Only tenants on this plan.
    pub(crate) plan: Option<String>,
    /// Only tenants on this cluster.
    pub(crate) cluster: Option<String>,
    /// Whether the run would also migrate the selected tenants' clusters' template databases.
    pub(crate) include_templates: Option<bool>,
    /// The concurrency the run would use, for the headroom check (1 to 256, default 4).
    pub(crate) concurrency: Option<usize>,
    /// Read every tenant's history table to find drift (default true).
    pub(crate) drift: Option<bool>,
}

/// How long the control plane computes a plan before giving up (a drift check reads every
/// selected tenant's history).
pub(crate) const PLAN_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// What a run with this selection would do, changing nothing: tenants by version, pending
/// migrations per tenant, drift, the template databases, each cluster's headroom. One plan is
/// computed at a time (409 `plan_running` meanwhile), for at most 5 minutes (503 `timeout`).
#[utoipa::path(get, path = "/v1/migrations/plan", params(PlanQuery), tag = "migrations",
    responses((status = 200, body = fleet::plan::Plan), (status = 400, body = super::api::ErrorBody),
              (status = 409, body = super::api::ErrorBody), (status = 503, body = super::api::ErrorBody)))]
pub(super) async fn plan(
    State(state): State<AppState>,
    Query(query): Query<PlanQuery>,
) -> Result<Json<fleet::plan::Plan>, ApiError> {
    let tenants: Vec<String> = match query.tenant {
        None => Vec::new(),
        Some(raw) => {
            let named = super::history::comma_list(&raw);
            if named.is_empty() {
                // An empty list must not mean "no filter": the whole fleet.
                return Err(bad_options(
                    "tenant: name at least one tenant, or leave it out for the whole fleet".to_owned(),
                ));
            }
            named
        }
    };
    let concurrency = query.concurrency.unwrap_or(fleet::RunOptions::default().concurrency);
    if !(1..=256).contains(&concurrency) {
        return Err(bad_options(format!("concurrency must be 1 to 256, got {concurrency}")));
    }
    let options = fleet::plan::PlanOptions {
        selection: selection(tenants, query.plan, query.cluster, query.include_templates)?,
        concurrency,
        drift: query.drift.unwrap_or(true),
    };
    let _turn = state.plans.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "plan_running",
            "another plan is being computed: try again when it is done",
        )
    })?;
    match tokio::time::timeout(PLAN_TIME_LIMIT, fleet::plan::plan(&state.cp, &options)).await {
        Ok(plan) => Ok(Json(plan?)),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the plan took longer than 5 minutes: plan fewer tenants (tenant, plan, cluster), or without the drift check (drift=false)",
        )),
    }
}

/// Logs a run's progress every 10% (a run started over the API has no terminal).
struct LoggedProgress {
    run: uuid::Uuid,
    total: AtomicUsize,
    done: AtomicUsize,
}

impl fleet::Progress for LoggedProgress {
    fn start(&self, more: usize) {
        self.total.fetch_add(more, Ordering::Relaxed);
    }

    fn tenant_done(&self, _result: &fleet::TenantResult) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed).max(done);
        if done * 10 / total != (done - 1) * 10 / total {
            tracing::info!(run = %self.run, done, total, "fleet migration progress");
        }
    }

    fn finish(&self) {}
}

/// Start a fleet migration run. Tenants at the target already are marked done at once; the
/// others are migrated in the background: follow with `GET /v1/migrations/runs/{id}`.
#[utoipa::path(post, path = "/v1/migrations/runs", request_body = StartRun, tag = "migrations",
    responses((status = 202, body = MigrationRun), (status = 400, body = super::api::ErrorBody),
              (status = 409, description = "another run is going", body = super::api::ErrorBody)))]
pub(super) async fn start(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<MigrationRun>), ApiError> {
    // No body: every default.
    let body = body.map_err(|rejection| ApiError::from_bytes_rejection(&rejection))?;
    let body: StartRun = if body.iter().all(u8::is_ascii_whitespace) {
        StartRun::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("invalid JSON body: {e}"))
        })?
    };
    let options = options(body)?;
    let begun = fleet::begin(&state.cp, &options, &operator.name).await?;
    Ok((StatusCode::ACCEPTED, Json(go_on(&state, begun).await?)))
}

/// Executes a begun run in the background; answers with its status now.
async fn go_on(state: &AppState, begun: fleet::Begun) -> Result<MigrationRun, ApiError> {
    let run = begun.run_id();
    let cp = state.cp.clone();
    tokio::spawn(async move {
        let progress = LoggedProgress { run, total: 0.into(), done: 0.into() };
        match begun.execute(&cp, &progress).await {
            Ok(report) => tracing::info!(%run, state = %report.state, migrated = report.migrated,
                failed = report.failed + report.drift + report.lock_timeout, "fleet migration run ended"),
            Err(error) => tracing::error!(%run, %error, "fleet migration run stopped; resume it"),
        }
    });
    let status = fleet::status(&state.cp, Some(run), Some(&[])).await?.ok_or(FleetError::NoSuchRun(run))?;
    Ok(status.into())
}

/// Continue a run that halted, failed or was interrupted (like `tenantctl migrate resume`):
/// every tenant of it not migrated yet is migrated, in the background.
#[utoipa::path(post, path = "/v1/migrations/runs/{id}/resume", params(("id" = String, Path)),
    tag = "migrations",
    responses((status = 202, body = MigrationRun), (status = 404, body = super::api::ErrorBody),
              (status = 409, description = "another run is going, or the migrations changed",
               body = super::api::ErrorBody)))]
pub(super) async fn resume(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<MigrationRun>), ApiError> {
    let run = fleet::resolve_run(&state.cp, &id).await?;
    let begun = fleet::resume_begin(&state.cp, run, None, &operator.name).await?;
    tracing::info!(%run, by = %operator.name, "fleet migration run resumed");
    Ok((StatusCode::ACCEPTED, Json(go_on(&state, begun).await?)))
}

/// Ask a running run to halt: no new tenant is started (running ones finish) and the run ends
/// `halted`; resume it later.
#[utoipa::path(post, path = "/v1/migrations/runs/{id}/halt", params(("id" = String, Path)),
    tag = "migrations",
    responses((status = 202, body = MigrationRun), (status = 404, body = super::api::ErrorBody),
              (status = 422, description = "the run is not running", body = super::api::ErrorBody)))]
pub(super) async fn halt(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<MigrationRun>), ApiError> {
    let run = fleet::resolve_run(&state.cp, &id).await?;
    let status = fleet::halt(&state.cp, run, &operator.name).await?;
    Ok((StatusCode::ACCEPTED, Json(status.into())))
}

/// The most recent runs (without items), newest first.
#[utoipa::path(get, path = "/v1/migrations/runs", tag = "migrations",
    responses((status = 200, body = Vec<MigrationRun>)))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Vec<MigrationRun>>, ApiError> {
    let runs = {
        let client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
        fleet_runs::recent_runs(&**client, 20).await.map_err(CatalogError::from)?
    };
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        if let Some(status) = fleet::status(&state.cp, Some(run.id), Some(&[])).await? {
            out.push(status.into());
        }
    }
    Ok(Json(out))
}

/// A run's progress, with its tenants (all, or those in `state`).
#[utoipa::path(get, path = "/v1/migrations/runs/{id}", params(("id" = String, Path), ItemsQuery),
    tag = "migrations",
    responses((status = 200, body = MigrationRun), (status = 400, body = super::api::ErrorBody),
              (status = 404, body = super::api::ErrorBody)))]
pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ItemsQuery>,
) -> Result<Json<MigrationRun>, ApiError> {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no fleet migration run {id:?}"));
    let run = fleet::resolve_run(&state.cp, &id).await?;
    let states = match query.state.as_deref() {
        None => None,
        Some(s) => Some(fleet::ItemState::parse(s).ok_or_else(|| {
            let known: Vec<&str> = fleet::ItemState::ALL.iter().map(|state| state.as_str()).collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("state must be one of {}, got {s:?}", known.join(", ")),
            )
        })?),
    };
    let filter = states.map(|s| [s]);
    let status =
        fleet::status(&state.cp, Some(run), filter.as_ref().map(|f| &f[..])).await?.ok_or_else(not_found)?;
    Ok(Json(status.into()))
}
