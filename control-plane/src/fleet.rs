//! Fleet migrations: apply the migrations directory to every selected tenant, in parallel with a
//! bound, one tenant's failure never stopping the others. (Waves, the per-tenant ledger and
//! resume build on this.)

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
    pub slug: String,
    pub tenant_id: String,
    pub applied: Vec<i64>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// The whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
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

/// Applies pending migrations to every selected tenant.
pub async fn apply(
    cp: &ControlPlane,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, FleetError> {
    let started = Instant::now();
    let migrations = cp.migrations().map_err(|e| FleetError::Migrations(e.to_string()))?;
    let tenants = select(cp, options).await?;
    // Templates first: a tenant created while the run goes is cloned at the target version.
    let mut clusters: Vec<&str> = tenants.iter().map(|t| t.cluster.as_str()).collect();
    clusters.push(tenancy::domain::ClusterName::DEFAULT);
    clusters.sort_unstable();
    clusters.dedup();
    for name in clusters {
        let cluster = cp.cluster(name).await.map_err(|e| FleetError::Template(e.to_string()))?;
        cluster
            .migrate_template_if_present(&migrations)
            .await
            .map_err(|e| FleetError::Template(e.to_string()))?;
    }
    progress.start(tenants.len());
    let mut results: Vec<TenantResult> = futures::stream::iter(tenants.iter())
        .map(|tenant| migrate_one(cp, &migrations, tenant))
        .buffer_unordered(options.concurrency.max(1))
        .inspect(|result| progress.tenant_done(result))
        .collect()
        .await;
    progress.finish();
    results.sort_by(|a, b| a.slug.cmp(&b.slug));
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let migrated = results.iter().filter(|r| r.error.is_none() && !r.applied.is_empty()).count();
    Ok(ApplyReport {
        target_version: migrations.target_version(),
        tenants: results.len(),
        migrated,
        up_to_date: results.len() - failed - migrated,
        failed,
        duration_ms: millis(started.elapsed()),
        results,
    })
}
