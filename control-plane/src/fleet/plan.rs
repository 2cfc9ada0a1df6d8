//! `tenantctl migrate plan`: what a run would do, changing nothing. Pending versions per tenant
//! and a histogram of versions come from one catalog query; drift (applied migrations whose
//! checksum or name differs from the files, versions missing from the directory, a catalog
//! version ahead of the history) from reading every tenant's history table, a few hundred
//! schemas per query; each concerned cluster's template database (its version, pending
//! migrations and drift, and whether the run would move it); and a headroom check of each cluster against the run's parallelism.

use super::FleetError;
use crate::catalog::fleet_runs::{self, Selection};
use crate::clusters::Cluster;
use crate::control_plane::ControlPlane;
use crate::tenant_migrations::{Applied, TenantMigrations, HISTORY_TABLE};
use std::collections::BTreeMap;
use tenancy::catalog::TenantRecord;

/// What to plan for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub selection: Selection,
    /// The `--concurrency` the run would use (for the headroom check).
    pub concurrency: usize,
    /// Read every tenant's history to find drift.
    pub drift: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub target_version: i64,
    pub tenants: usize,
    /// Tenants below the target, or whose version the catalog does not know.
    pub pending_tenants: usize,
    /// Tenants by the version the catalog records (`null`: not recorded).
    pub versions: Vec<VersionCount>,
    pub pending: Vec<PendingTenant>,
    /// `None` when the drift check was not asked for.
    pub drift: Option<Vec<Drift>>,
    /// The clusters' template databases (database tenants are cloned from them): their
    /// versions, pending migrations and drift, and whether the run would migrate them.
    pub templates: Vec<super::templates::TemplatePlan>,
    pub headroom: Vec<Headroom>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct VersionCount {
    pub version: Option<i64>,
    pub tenants: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PendingTenant {
    pub slug: String,
    pub(crate) cluster: String,
    pub(crate) version: Option<i64>,
    pub pending: Vec<i64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Drift {
    pub slug: String,
    pub(crate) cluster: String,
    pub problem: String,
}

/// Whether a cluster can take the run: connections and lock table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Headroom {
    pub cluster: String,
    pub(crate) max_connections: i64,
    pub(crate) connections_in_use: i64,
    pub(crate) max_locks_per_transaction: i64,
    /// Lock table slots: max_locks_per_transaction × (max_connections + max_prepared_transactions).
    pub lock_slots: i64,
    pub(crate) locks_in_use: i64,
    /// Relations (tables, indexes, sequences) of one tenant schema: what one tenant's
    /// transaction may lock at most.
    pub relations_per_tenant: i64,
    /// `concurrency` × relations_per_tenant.
    pub(crate) locks_needed: i64,
    pub(crate) ok: bool,
    pub(crate) warnings: Vec<String>,
}

/// Plans a run. Changes nothing: no ledger entry, no lock, only reads.
///
/// # Errors
/// The catalog, the migrations directory or a cluster being unavailable.
pub async fn plan(cp: &ControlPlane, options: &PlanOptions) -> Result<Plan, FleetError> {
    let migrations = cp.migrations().map_err(|e| FleetError::Migrations(e.to_string()))?;
    let target = migrations.target_version();
    let candidates = {
        let client = cp.catalog.get().await.map_err(super::catalog_error)?;
        fleet_runs::select(&**client, &options.selection, None).await.map_err(super::catalog_error)?
    };
    let versions_all = migrations.versions();
    let mut histogram: BTreeMap<Option<i64>, usize> = BTreeMap::new();
    let mut pending = Vec::new();
    for c in &candidates {
        *histogram.entry(c.schema_version).or_default() += 1;
        if c.schema_version.is_none_or(|v| v < target) {
            pending.push(PendingTenant {
                slug: c.tenant.slug.to_string(),
                cluster: c.tenant.cluster.clone(),
                version: c.schema_version,
                pending: versions_all
                    .iter()
                    .copied()
                    .filter(|v| c.schema_version.is_none_or(|at| *v > at))
                    .collect(),
            });
        }
    }
    let templates =
        super::templates::plan(cp, &migrations, &options.selection, candidates.iter().map(|c| &c.tenant))
            .await?;
    let mut by_cluster: BTreeMap<&str, Vec<(&TenantRecord, Option<i64>)>> = BTreeMap::new();
    for c in &candidates {
        by_cluster.entry(c.tenant.cluster.as_str()).or_default().push((&c.tenant, c.schema_version));
    }
    let mut drift = options.drift.then(Vec::new);
    let mut headroom = Vec::new();
    for (name, tenants) in by_cluster {
        let cluster = cp.cluster(name).await.map_err(|e| FleetError::Catalog(e.to_string()))?;
        if let Some(drift) = drift.as_mut() {
            drift.extend(find_drift(&cluster, &migrations, &tenants).await?);
        }
        let sample = tenants.iter().find(|(t, _)| t.database_name.is_none()).unwrap_or(&tenants[0]).0;
        headroom.push(check_headroom(&cluster, sample, options.concurrency).await?);
    }
    Ok(Plan {
        target_version: target,
        tenants: candidates.len(),
        pending_tenants: pending.len(),
        versions: histogram.into_iter().map(|(version, tenants)| VersionCount { version, tenants }).collect(),
        pending,
        drift,
        templates,
        headroom,
    })
}

fn unavailable(cluster: &Cluster, e: &tokio_postgres::Error) -> FleetError {
    FleetError::Catalog(format!("cluster {}: {}", cluster.name, tenancy::pg::describe_error(e)))
}

/// Schemas read per history query.
const HISTORIES_PER_QUERY: usize = 250;

async fn find_drift(
    cluster: &Cluster,
    migrations: &TenantMigrations,
    tenants: &[(&TenantRecord, Option<i64>)],
) -> Result<Vec<Drift>, FleetError> {
    let connect = |e: crate::clusters::ClusterError| FleetError::Catalog(e.to_string());
    let mut histories: BTreeMap<String, Vec<Applied>> = BTreeMap::new();
    let shared: Vec<&str> = tenants
        .iter()
        .filter(|(t, _)| t.database_name.is_none())
        .map(|(t, _)| t.schema_name.as_str())
        .collect();
    if !shared.is_empty() {
        let client = cluster.migrator_session(None).await.map_err(connect)?;
        let with_history: Vec<String> = client
            .query(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relname = $1 AND n.nspname = ANY($2)",
                &[&HISTORY_TABLE, &shared],
            )
            .await
            .map_err(|e| unavailable(cluster, &e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for batch in with_history.chunks(HISTORIES_PER_QUERY) {
            read_histories(cluster, &client, batch, &mut histories).await?;
        }
    }
    for (tenant, _) in tenants.iter().filter(|(t, _)| t.database_name.is_some()) {
        let client = cluster.migrator_session(tenant.database_name.as_ref()).await.map_err(connect)?;
        let schema = tenant.schema_name.as_str().to_owned();
        // A database without the history table reads as an empty history below.
        let _ = read_histories(cluster, &client, std::slice::from_ref(&schema), &mut histories).await;
    }
    let mut drift = Vec::new();
    for (tenant, recorded) in tenants {
        let key = history_key(tenant);
        let problem = match histories.get(&key) {
            None => Some("no migration history table".to_owned()),
            Some(applied) => compare(migrations, applied, *recorded),
        };
        if let Some(problem) = problem {
            drift.push(Drift { slug: tenant.slug.to_string(), cluster: tenant.cluster.clone(), problem });
        }
    }
    Ok(drift)
}

/// Histories are keyed by schema for the shared database and by database for the others
/// (every tenant database has the same schema name).
fn history_key(tenant: &TenantRecord) -> String {
    tenant.database_name.as_ref().map_or_else(|| tenant.schema_name.to_string(), |db| format!("db:{db}"))
}

async fn read_histories(
    cluster: &Cluster,
    client: &tokio_postgres::Client,
    schemas: &[String],
    into: &mut BTreeMap<String, Vec<Applied>>,
) -> Result<(), FleetError> {
    let database =
        client.query_one("SELECT current_database()", &[]).await.map_err(|e| unavailable(cluster, &e))?;
    let database: String = database.get(0);
    let own_database = database != cluster.endpoint.dbname;
    // Schema names come from the catalog's validated names and are quoted as identifiers and
    // as literals.
    let sql = schemas
        .iter()
        .map(|schema| {
            format!(
                "SELECT '{}'::text, {} FROM {}.{HISTORY_TABLE}",
                schema.replace('\'', "''"),
                Applied::COLUMNS,
                tenancy::domain::quote_ident(schema)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    for row in client.query(&sql, &[]).await.map_err(|e| unavailable(cluster, &e))? {
        let schema: String = row.get(0);
        let key = if own_database { format!("db:{database}") } else { schema };
        into.entry(key).or_default().push(Applied::from_row(&row, 1));
    }
    for schema in schemas {
        let key = if own_database { format!("db:{database}") } else { schema.clone() };
        into.entry(key).or_default();
    }
    Ok(())
}

/// What is wrong with one tenant's history against the files, if anything: what would make
/// `apply` refuse it, or a catalog version ahead of the history (`apply` would skip a tenant
/// that is not at the target).
fn compare(migrations: &TenantMigrations, applied: &[Applied], recorded: Option<i64>) -> Option<String> {
    let mut problems: Vec<String> = migrations.pending(applied).err().into_iter().collect();
    let newest = applied.iter().map(|a| a.version).max();
    if let Some(recorded) = recorded.filter(|r| newest.is_none_or(|n| *r > n)) {
        problems.push(format!(
            "the catalog records V{recorded} but the history ends at {}",
            newest.map_or_else(|| "nothing".to_owned(), |n| format!("V{n}"))
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

async fn check_headroom(
    cluster: &Cluster,
    sample: &TenantRecord,
    concurrency: usize,
) -> Result<Headroom, FleetError> {
    let connect = |e: crate::clusters::ClusterError| FleetError::Catalog(e.to_string());
    let client = cluster.migrator_session(None).await.map_err(connect)?;
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::int8,
                    current_setting('superuser_reserved_connections')::int8,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                    current_setting('max_locks_per_transaction')::int8,
                    current_setting('max_prepared_transactions')::int8,
                    (SELECT count(*) FROM pg_locks),
                    (SELECT count(*) FROM pg_class WHERE relnamespace =
                        (SELECT oid FROM pg_namespace WHERE nspname = $1))",
            &[&sample.schema_name.as_str()],
        )
        .await
        .map_err(|e| unavailable(cluster, &e))?;
    let (max_connections, reserved, in_use): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let (max_locks, prepared, locks_in_use, relations): (i64, i64, i64, i64) =
        (row.get(3), row.get(4), row.get(5), row.get(6));
    let concurrency = i64::try_from(concurrency).unwrap_or(i64::MAX);
    let lock_slots = max_locks * (max_connections + prepared);
    let locks_needed = concurrency.saturating_mul(relations);
    let mut warnings = Vec::new();
    if in_use + concurrency > max_connections - reserved {
        warnings.push(format!(
            "{in_use} connections in use + {concurrency} migrators exceed max_connections {max_connections} \
             (minus {reserved} reserved)"
        ));
    }
    if locks_in_use + locks_needed > lock_slots {
        warnings.push(format!(
            "{concurrency} tenant transactions may lock up to {locks_needed} relations; with {locks_in_use} locks \
             held now the lock table ({lock_slots} slots) would overflow: lower --concurrency or raise \
             max_locks_per_transaction"
        ));
    }
    if relations > max_locks {
        warnings.push(format!(
            "one tenant schema has {relations} relations, more than max_locks_per_transaction ({max_locks}): a \
             migration touching all of them relies on other sessions' unused slots"
        ));
    }
    Ok(Headroom {
        cluster: cluster.name.clone(),
        max_connections,
        connections_in_use: in_use,
        max_locks_per_transaction: max_locks,
        lock_slots,
        locks_in_use,
        relations_per_tenant: relations,
        locks_needed,
        ok: warnings.is_empty(),
        warnings,
    })
}
