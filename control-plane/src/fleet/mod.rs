//! Fleet migrations: apply the migrations directory to every selected tenant, in parallel with a
//! bound, one tenant's failure never stopping the others. Every run is recorded in the fleet
//! ledger ([`ledger`]) as it goes — one item per tenant — so it can be watched, and a run whose
//! process died can be resumed without redoing what is done. One run at a time.

pub mod ledger;

use crate::context::ControlPlane;
use crate::tenant_schema::{migrate_schema, TenantMigrations};
use futures::StreamExt as _;
use std::time::{Duration, Instant};
use tenancy::catalog::TenantRecord;
use tenancy::domain::{PlanName, Slug, TenantStatus};

/// Which tenants, and how.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub concurrency: usize,
    pub tenant: Option<Slug>,
    pub plan: Option<PlanName>,
}

/// One tenant's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantResult {
    /// The version the tenant was at, when it was known (it had pending migrations applied).
    pub from_version: Option<i64>,
    pub slug: String,
    pub tenant_id: String,
    pub applied: Vec<i64>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// The whole run (or, after `resume`, what this invocation did).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    pub run_id: uuid::Uuid,
    /// `completed`, or `failed` when any tenant of the run is not migrated.
    pub state: String,
    pub target_version: i64,
    pub tenants: usize,
    pub migrated: usize,
    pub up_to_date: usize,
    pub failed: usize,
    pub duration_ms: u64,
    pub results: Vec<TenantResult>,
}

/// Told about each finished tenant (drives the progress bar).
pub trait Progress: Sync {
    fn start(&self, total: usize);
    fn tenant_done(&self, result: &TenantResult);
    fn finish(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("catalog unavailable: {0}")]
    Catalog(String),
    #[error("{0}")]
    Migrations(String),
    #[error("migrating a template database failed (no tenant was migrated): {0}")]
    Template(String),
    #[error("another fleet migration is running{}; wait for it, or watch it with `tenantctl migrate status`", .0.map(|id| format!(" (run {id})")).unwrap_or_default())]
    Busy(Option<uuid::Uuid>),
    #[error("no fleet migration run {0}")]
    NoSuchRun(uuid::Uuid),
    #[error("run {run} was for V{run_target} but the migrations directory now ends at V{now}; start a new `migrate apply`")]
    TargetChanged { run: uuid::Uuid, run_target: i64, now: i64 },
}

fn catalog_error(e: impl std::fmt::Display) -> FleetError {
    FleetError::Catalog(e.to_string())
}

/// Live tenants whose schema exists and may be migrated.
async fn select(cp: &ControlPlane, options: &ApplyOptions) -> Result<Vec<TenantRecord>, FleetError> {
    let client = cp.catalog.get().await.map_err(|e| FleetError::Catalog(e.to_string()))?;
    let tenants = match &options.tenant {
        // One tenant: look it up rather than list the fleet.
        Some(slug) => tenancy::catalog::tenant_by_slug(&**client, slug).await.map(Vec::from_iter),
        None => {
            let filter =
                crate::catalog::tenants::TenantFilter { plan: options.plan.clone(), ..Default::default() };
            crate::catalog::tenants::list(&**client, &filter).await
        }
    }
    .map_err(|e| FleetError::Catalog(e.to_string()))?;
    Ok(tenants
        .into_iter()
        .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
        .filter(|t| options.plan.as_ref().is_none_or(|plan| *plan == t.plan))
        .collect())
}

async fn migrate_one(
    cp: &ControlPlane,
    migrations: &TenantMigrations,
    tenant: &TenantRecord,
) -> TenantResult {
    let started = Instant::now();
    let outcome = async {
        let cluster = cp.cluster(&tenant.cluster).await.map_err(|e| e.to_string())?;
        let mut migrator =
            cluster.migrator_for(tenant.database_name.as_ref()).await.map_err(|e| e.to_string())?;
        migrate_schema(
            &mut migrator,
            migrations,
            &tenant.schema_name,
            &cluster.owner,
            Some(&tenant.role_name),
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    let (applied, error) = match outcome {
        Ok(migrated) => (migrated.applied, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    TenantResult {
        from_version: applied.first().map(|first| first - 1),
        slug: tenant.slug.to_string(),
        tenant_id: tenant.id.to_string(),
        applied,
        error,
        duration_ms: millis(started.elapsed()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Applies pending migrations to every selected tenant, as a new run in the ledger.
///
/// # Errors
/// [`FleetError::Busy`] when another run is going; catalog, migrations and template errors
/// before any tenant is touched.
pub async fn apply(
    cp: &ControlPlane,
    options: &ApplyOptions,
    created_by: &str,
    progress: &dyn Progress,
) -> Result<ApplyReport, FleetError> {
    let started = Instant::now();
    let migrations = cp.migrations().map_err(|e| FleetError::Migrations(e.to_string()))?;
    let _lock = lock(cp).await?;
    let tenants = select(cp, options).await?;
    migrate_templates(cp, &migrations, &tenants).await?;
    let selection = serde_json::json!({
        "tenant": options.tenant.as_ref().map(ToString::to_string),
        "plan": options.plan.as_ref().map(ToString::to_string),
    });
    let run_options = serde_json::json!({ "concurrency": options.concurrency });
    let run = {
        let mut client = cp.catalog.get().await.map_err(catalog_error)?;
        ledger::create_run(
            &mut client,
            created_by,
            migrations.target_version(),
            &selection,
            &run_options,
            &tenants,
        )
        .await
        .map_err(catalog_error)?
    };
    run_tenants(cp, &migrations, run, &tenants, options.concurrency, progress, started).await
}

/// Continues a run whose process died (or that finished with failures, once they are fixed):
/// every tenant not done yet is migrated; done tenants are not touched again.
///
/// # Errors
/// As [`apply`]; [`FleetError::NoSuchRun`]; [`FleetError::TargetChanged`] when migrations were
/// added since the run began.
pub async fn resume(
    cp: &ControlPlane,
    run: uuid::Uuid,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<ApplyReport, FleetError> {
    let started = Instant::now();
    let migrations = cp.migrations().map_err(|e| FleetError::Migrations(e.to_string()))?;
    let _lock = lock(cp).await?;
    let client = cp.catalog.get().await.map_err(catalog_error)?;
    let recorded =
        ledger::run(&**client, run).await.map_err(catalog_error)?.ok_or(FleetError::NoSuchRun(run))?;
    if recorded.target_version != migrations.target_version() {
        return Err(FleetError::TargetChanged {
            run,
            run_target: recorded.target_version,
            now: migrations.target_version(),
        });
    }
    let tenants = ledger::unfinished(&**client, run).await.map_err(catalog_error)?;
    ledger::reopen_run(&**client, run).await.map_err(catalog_error)?;
    drop(client);
    migrate_templates(cp, &migrations, &tenants).await?;
    run_tenants(cp, &migrations, run, &tenants, concurrency, progress, started).await
}

/// The run lock, or [`FleetError::Busy`] naming the run that holds it.
async fn lock(cp: &ControlPlane) -> Result<ledger::RunLock, FleetError> {
    let client = cp.catalog.get().await.map_err(catalog_error)?;
    ledger::try_lock(client).await.map_err(catalog_error)?.map_err(FleetError::Busy)
}

/// Templates first: a tenant created while the run goes is cloned at the target version.
async fn migrate_templates(
    cp: &ControlPlane,
    migrations: &TenantMigrations,
    tenants: &[TenantRecord],
) -> Result<(), FleetError> {
    let mut clusters: Vec<&str> = tenants.iter().map(|t| t.cluster.as_str()).collect();
    clusters.push(tenancy::domain::ClusterName::DEFAULT);
    clusters.sort_unstable();
    clusters.dedup();
    for name in clusters {
        let cluster = cp.cluster(name).await.map_err(|e| FleetError::Template(e.to_string()))?;
        cluster
            .migrate_template_if_present(migrations)
            .await
            .map_err(|e| FleetError::Template(e.to_string()))?;
    }
    Ok(())
}

/// Migrates one tenant, its item marked running before and done or failed after.
async fn migrate_recorded(
    cp: &ControlPlane,
    migrations: &TenantMigrations,
    run: uuid::Uuid,
    tenant: &TenantRecord,
) -> Result<TenantResult, FleetError> {
    {
        let client = cp.catalog.get().await.map_err(catalog_error)?;
        ledger::mark_running(&**client, run, tenant.id).await.map_err(catalog_error)?;
    }
    // No catalog connection is held while the tenant migrates: with `--concurrency` above the
    // catalog pool's size, the migrations' own catalog reads would otherwise wait forever.
    let result = migrate_one(cp, migrations, tenant).await;
    let client = cp.catalog.get().await.map_err(catalog_error)?;
    let outcome = ledger::Outcome {
        from_version: result.from_version,
        to_version: result.error.is_none().then_some(migrations.target_version()),
        duration_ms: i64::try_from(result.duration_ms).unwrap_or(i64::MAX),
        error: result.error.as_deref(),
    };
    ledger::mark_finished(&**client, run, tenant.id, &outcome).await.map_err(catalog_error)?;
    Ok(result)
}

/// Migrates `tenants` with bounded parallelism, recording each in the run's ledger.
async fn run_tenants(
    cp: &ControlPlane,
    migrations: &TenantMigrations,
    run: uuid::Uuid,
    tenants: &[TenantRecord],
    concurrency: usize,
    progress: &dyn Progress,
    started: Instant,
) -> Result<ApplyReport, FleetError> {
    progress.start(tenants.len());
    let target = migrations.target_version();
    // By index: a closure over `&TenantRecord` would make this future not provably `Send`.
    let mut results: Vec<TenantResult> = futures::stream::iter(0..tenants.len())
        .map(|i| migrate_recorded(cp, migrations, run, &tenants[i]))
        .buffer_unordered(concurrency.max(1))
        .inspect(|result| {
            if let Ok(result) = result {
                progress.tenant_done(result);
            }
        })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    progress.finish();
    let state = {
        let client = cp.catalog.get().await.map_err(catalog_error)?;
        ledger::finish_run(&**client, run).await.map_err(catalog_error)?
    };
    results.sort_by(|a, b| a.slug.cmp(&b.slug));
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let migrated = results.iter().filter(|r| r.error.is_none() && !r.applied.is_empty()).count();
    Ok(ApplyReport {
        run_id: run,
        state,
        target_version: target,
        tenants: results.len(),
        migrated,
        up_to_date: results.len() - failed - migrated,
        failed,
        duration_ms: millis(started.elapsed()),
        results,
    })
}
