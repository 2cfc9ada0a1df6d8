//! The fleet ledger in the catalog: runs and their per-tenant items (catalog migration V5), and
//! the run lock that allows one run at a time.

use deadpool_postgres::Object;
use tenancy::catalog::TenantRecord;
use tenancy::domain::TenantId;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Key of the session advisory lock a run holds from start to end. A process that dies loses
/// its connection and with it the lock, so a killed run never blocks the next one.
pub const RUN_LOCK: i64 = 0x7465_6e61_6e74_0005;

/// A run as the ledger has it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub id: Uuid,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub target_version: i64,
    pub selection: serde_json::Value,
    pub options: serde_json::Value,
    pub state: String,
    pub tenants: i32,
}

const RUN_COLUMNS: &str =
    "id, created_by, created_at, finished_at, target_version, selection, options, state, tenants";

impl Run {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            created_by: row.get(1),
            created_at: row.get(2),
            finished_at: row.get(3),
            target_version: row.get(4),
            selection: row.get(5),
            options: row.get(6),
            state: row.get(7),
            tenants: row.get(8),
        }
    }
}

/// One tenant of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    pub tenant_id: Uuid,
    pub slug: String,
    pub state: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub attempts: i32,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

/// The run lock, held on a connection of its own. Dropping it closes that connection (it never
/// goes back to the pool still holding the lock), which releases the lock.
pub struct RunLock {
    client: Option<Object>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// Takes the run lock, or says which run holds it (`Err(Some(id))`; `Err(None)` when the
/// holder has not recorded its run yet).
pub async fn try_lock(client: Object) -> Result<Result<RunLock, Option<Uuid>>, tokio_postgres::Error> {
    let locked: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&RUN_LOCK]).await?.get(0);
    if locked {
        return Ok(Ok(RunLock { client: Some(client) }));
    }
    let running = client
        .query_opt(
            "SELECT id FROM control.migration_runs WHERE state = 'running' ORDER BY created_at DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|row| row.get(0));
    drop(Object::take(client));
    Ok(Err(running))
}

/// Whether some process holds the run lock (a run marked running that nobody holds was
/// interrupted). Probes with a try-lock that it releases at once.
pub async fn is_locked(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT CASE WHEN pg_try_advisory_lock($1) THEN NOT pg_advisory_unlock($1) ELSE true END",
            &[&RUN_LOCK],
        )
        .await?;
    Ok(row.get(0))
}

/// Records a new run with a pending item per tenant.
pub async fn create_run(
    client: &mut Object,
    created_by: &str,
    target_version: i64,
    selection: &serde_json::Value,
    options: &serde_json::Value,
    tenants: &[TenantRecord],
) -> Result<Uuid, tokio_postgres::Error> {
    let id = Uuid::new_v4();
    let count = i32::try_from(tenants.len()).unwrap_or(i32::MAX);
    let ids: Vec<Uuid> = tenants.iter().map(|t| t.id.0).collect();
    let slugs: Vec<String> = tenants.iter().map(|t| t.slug.to_string()).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO control.migration_runs (id, created_by, target_version, selection, options, state, tenants)
         VALUES ($1, $2, $3, $4, $5, 'running', $6)",
        &[&id, &created_by, &target_version, selection, options, &count],
    )
    .await?;
    tx.execute(
        "INSERT INTO control.migration_items (run_id, tenant_id, slug, state)
         SELECT $1, t.id, t.slug, 'pending' FROM unnest($2::uuid[], $3::text[]) AS t (id, slug)",
        &[&id, &ids, &slugs],
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The run, if there is one with this id.
pub async fn run(client: &impl GenericClient, id: Uuid) -> Result<Option<Run>, tokio_postgres::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM control.migration_runs WHERE id = $1");
    Ok(client.query_opt(&sql, &[&id]).await?.as_ref().map(Run::from_row))
}

/// The most recent run.
pub async fn latest_run(client: &impl GenericClient) -> Result<Option<Run>, tokio_postgres::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM control.migration_runs ORDER BY created_at DESC LIMIT 1");
    Ok(client.query_opt(&sql, &[]).await?.as_ref().map(Run::from_row))
}

/// The run's items, all or only those in `state`, by slug.
pub async fn items(
    client: &impl GenericClient,
    run: Uuid,
    state: Option<&str>,
) -> Result<Vec<Item>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tenant_id, slug, state, from_version, to_version, attempts, duration_ms, error
               FROM control.migration_items
              WHERE run_id = $1 AND ($2::text IS NULL OR state = $2)
              ORDER BY slug",
            &[&run, &state],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Item {
            tenant_id: r.get(0),
            slug: r.get(1),
            state: r.get(2),
            from_version: r.get(3),
            to_version: r.get(4),
            attempts: r.get(5),
            duration_ms: r.get(6),
            error: r.get(7),
        })
        .collect())
}

/// Items by state: `(state, count)`.
pub async fn counts(
    client: &impl GenericClient,
    run: Uuid,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT state, count(*) FROM control.migration_items WHERE run_id = $1 GROUP BY state ORDER BY state",
            &[&run],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The tenants of a run still to do (anything not done), with their current records; tenants
/// deleted since the run began are left out.
pub async fn unfinished(
    client: &impl GenericClient,
    run: Uuid,
) -> Result<Vec<TenantRecord>, tenancy::catalog::CatalogError> {
    let sql = format!(
        "SELECT {} FROM control.tenants t JOIN control.migration_items i ON i.tenant_id = t.id
          WHERE i.run_id = $1 AND i.state <> 'done' AND t.status IN ('active', 'suspended')
          ORDER BY t.slug",
        tenancy::catalog::TENANT_COLUMNS
    );
    let rows = client
        .query(&sql, &[&run])
        .await
        .map_err(|e| tenancy::catalog::CatalogError::Query(tenancy::pg::describe_error(&e)))?;
    rows.iter().map(TenantRecord::from_row).collect()
}

/// Marks a tenant's item as being migrated (one more attempt).
pub async fn mark_running(
    client: &impl GenericClient,
    run: Uuid,
    tenant: TenantId,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.migration_items SET state = 'running', attempts = attempts + 1, updated_at = now()
              WHERE run_id = $1 AND tenant_id = $2",
            &[&run, &tenant.0],
        )
        .await?;
    Ok(())
}

/// What became of one tenant.
pub struct Outcome<'a> {
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<&'a str>,
}

/// Records a tenant's outcome: done, or failed with its error.
pub async fn mark_finished(
    client: &impl GenericClient,
    run: Uuid,
    tenant: TenantId,
    outcome: &Outcome<'_>,
) -> Result<(), tokio_postgres::Error> {
    let state = if outcome.error.is_some() { "failed" } else { "done" };
    client
        .execute(
            "UPDATE control.migration_items
                SET state = $3, from_version = coalesce(from_version, $4), to_version = $5,
                    duration_ms = $6, error = $7, updated_at = now()
              WHERE run_id = $1 AND tenant_id = $2",
            &[
                &run,
                &tenant.0,
                &state,
                &outcome.from_version,
                &outcome.to_version,
                &outcome.duration_ms,
                &outcome.error,
            ],
        )
        .await?;
    Ok(())
}

/// Ends a run: completed when every item is done, failed otherwise.
pub async fn finish_run(client: &impl GenericClient, run: Uuid) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one(
            "UPDATE control.migration_runs
                SET finished_at = now(),
                    state = CASE WHEN EXISTS (SELECT 1 FROM control.migration_items
                                               WHERE run_id = $1 AND state <> 'done')
                                 THEN 'failed' ELSE 'completed' END
              WHERE id = $1
          RETURNING state",
            &[&run],
        )
        .await?;
    Ok(row.get(0))
}

/// Reopens a run for `resume`.
pub async fn reopen_run(client: &impl GenericClient, run: Uuid) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.migration_runs SET state = 'running', finished_at = NULL WHERE id = $1",
            &[&run],
        )
        .await?;
    Ok(())
}
