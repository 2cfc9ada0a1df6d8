//! The fleet ledger in the catalog: runs and their per-tenant items (catalog migration V5), and
//! the run lock that allows one run at a time.

use crate::fleet::ItemState;
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
    pub(crate) created_by: String,
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
    pub(crate) finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub(crate) target_version: i64,
    pub(crate) selection: serde_json::Value,
    pub(crate) options: serde_json::Value,
    pub state: String,
    pub(crate) tenants: i32,
    /// Why a halted run stopped, or why a run failed before starting any tenant (a template).
    pub halt_reason: Option<String>,
    /// Who asked the run to halt (while the request waits for the run to see it, and after).
    pub(crate) halt_requested_by: Option<String>,
}

const RUN_COLUMNS: &str =
    "id, created_by, created_at, finished_at, target_version, selection, options, state, \
                           tenants, halt_reason, halt_requested_by";

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
            halt_reason: row.get(9),
            halt_requested_by: row.get(10),
        }
    }
}

/// One tenant of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    pub(crate) tenant_id: Uuid,
    pub slug: String,
    pub state: ItemState,
    /// 0: the canary wave; 1: the rest.
    pub wave: i16,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub attempts: i32,
    pub(crate) duration_ms: Option<i64>,
    pub error: Option<String>,
}

/// The run lock, held on a connection of its own. Dropping it closes that connection (it never
/// goes back to the pool still holding the lock), which releases the lock.
pub(crate) struct RunLock {
    client: Option<Object>,
}

impl RunLock {
    /// Releases the lock at once, then closes its connection: a run started right after this
    /// one finds the lock free. (Dropping the lock releases it too, but only once PostgreSQL has
    /// seen its connection close, which a run started at that moment may beat.)
    pub(crate) async fn release(mut self) {
        if let Some(client) = self.client.take() {
            // Should the unlock fail, closing the connection still releases the lock.
            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&RUN_LOCK]).await;
            drop(Object::take(client));
        }
    }
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
pub(crate) async fn try_lock(client: Object) -> Result<Result<RunLock, Option<Uuid>>, tokio_postgres::Error> {
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
/// interrupted). Reads `pg_locks`: probing with a try-lock would take the lock for an instant
/// and could make a starting run believe another one is going.
pub(crate) async fn is_locked(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                             WHERE locktype = 'advisory' AND granted AND objsubid = 1
                               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                               AND classid = ($1::int8 >> 32)::oid AND objid = ($1::int8 & 4294967295)::oid)",
            &[&RUN_LOCK],
        )
        .await?;
    Ok(row.get(0))
}

/// A tenant as a run starts it: to migrate in `wave`, or already at the run's target
/// (`done_at`: recorded as done without connecting to it).
pub(crate) struct NewItem<'a> {
    pub(crate) tenant: &'a TenantRecord,
    pub(crate) wave: i16,
    pub(crate) done_at: Option<i64>,
}

/// Records a new run with an item per tenant.
pub(crate) async fn create_run(
    client: &mut Object,
    created_by: &str,
    target_version: i64,
    selection: &serde_json::Value,
    options: &serde_json::Value,
    items: &[NewItem<'_>],
) -> Result<Uuid, tokio_postgres::Error> {
    let id = Uuid::new_v4();
    let count = i32::try_from(items.len()).unwrap_or(i32::MAX);
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO control.migration_runs (id, created_by, target_version, selection, options, state, tenants)
         VALUES ($1, $2, $3, $4, $5, 'running', $6)",
        &[&id, &created_by, &target_version, selection, options, &count],
    )
    .await?;
    insert_items(&*tx, id, items).await?;
    tx.commit().await?;
    Ok(id)
}

/// Adds tenants to a run (those that became live while it went) and counts them in.
pub(crate) async fn add_items(
    client: &mut Object,
    run: Uuid,
    items: &[NewItem<'_>],
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    insert_items(&*tx, run, items).await?;
    let added = i32::try_from(items.len()).unwrap_or(i32::MAX);
    tx.execute("UPDATE control.migration_runs SET tenants = tenants + $2 WHERE id = $1", &[&run, &added])
        .await?;
    tx.commit().await
}

async fn insert_items(
    client: &impl GenericClient,
    run: Uuid,
    items: &[NewItem<'_>],
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = items.iter().map(|i| i.tenant.id.0).collect();
    let slugs: Vec<String> = items.iter().map(|i| i.tenant.slug.to_string()).collect();
    let waves: Vec<i16> = items.iter().map(|i| i.wave).collect();
    let done_at: Vec<Option<i64>> = items.iter().map(|i| i.done_at).collect();
    client
        .execute(
            "INSERT INTO control.migration_items
                    (run_id, tenant_id, slug, wave, state, from_version, to_version, duration_ms)
             SELECT $1, t.id, t.slug, t.wave,
                    CASE WHEN t.done_at IS NULL THEN 'pending' ELSE 'done' END,
                    t.done_at, t.done_at, CASE WHEN t.done_at IS NULL THEN NULL ELSE 0 END
               FROM unnest($2::uuid[], $3::text[], $4::int2[], $5::int8[]) AS t (id, slug, wave, done_at)",
            &[&run, &ids, &slugs, &waves, &done_at],
        )
        .await?;
    Ok(())
}

/// The run, if there is one with this id.
pub async fn run(client: &impl GenericClient, id: Uuid) -> Result<Option<Run>, tokio_postgres::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM control.migration_runs WHERE id = $1");
    Ok(client.query_opt(&sql, &[&id]).await?.as_ref().map(Run::from_row))
}

/// The most recent run marked running (the only one that can be going: runs are one at a time).
pub(crate) async fn newest_running(
    client: &impl GenericClient,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT id FROM control.migration_runs WHERE state = 'running' ORDER BY created_at DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The most recent run.
pub async fn latest_run(client: &impl GenericClient) -> Result<Option<Run>, tokio_postgres::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM control.migration_runs ORDER BY created_at DESC LIMIT 1");
    Ok(client.query_opt(&sql, &[]).await?.as_ref().map(Run::from_row))
}

/// The run's items, all or only those in one of `states`, by slug.
pub async fn items(
    client: &impl GenericClient,
    run: Uuid,
    states: Option<&[ItemState]>,
) -> Result<Vec<Item>, tokio_postgres::Error> {
    let states: Option<Vec<&str>> = states.map(|states| states.iter().map(|state| state.as_str()).collect());
    let rows = client
        .query(
            "SELECT tenant_id, slug, state, wave, from_version, to_version, attempts, duration_ms, error
               FROM control.migration_items
              WHERE run_id = $1 AND ($2::text[] IS NULL OR state = ANY($2))
              ORDER BY slug",
            &[&run, &states],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Item {
            tenant_id: r.get(0),
            slug: r.get(1),
            // The column's CHECK constraint allows only the states `ItemState` knows.
            state: ItemState::parse(r.get(2)).unwrap_or(ItemState::Failed),
            wave: r.get(3),
            from_version: r.get(4),
            to_version: r.get(5),
            attempts: r.get(6),
            duration_ms: r.get(7),
            error: r.get(8),
        })
        .collect())
}

/// Items by state: `(state, count)`.
pub(crate) async fn counts(
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

/// The tenants of a run still to do (anything not done), with their current records, their
/// recorded schema version and their wave; tenants deleted since the run began are left out.
pub(crate) async fn unfinished(
    client: &impl GenericClient,
    run: Uuid,
) -> Result<Vec<Candidate>, tenancy::catalog::CatalogError> {
    let sql = format!(
        "SELECT {}, t.schema_version, i.wave
           FROM control.tenants t JOIN control.migration_items i ON i.tenant_id = t.id
          WHERE i.run_id = $1 AND i.state <> 'done' AND t.status IN ('active', 'suspended')
          ORDER BY i.wave, t.slug",
        tenancy::catalog::TENANT_COLUMNS
    );
    candidates(client, &sql, &[&run]).await
}

/// A live tenant a run may migrate: its record, the schema version the catalog has for it, and
/// its wave (for a new run, the wave is decided later).
pub(crate) struct Candidate {
    pub(crate) tenant: TenantRecord,
    pub(crate) schema_version: Option<i64>,
    pub(crate) wave: i16,
}

/// Which tenants a run covers: all live ones, or those matching every filter given; and
/// whether it moves the clusters' template databases too (a whole-fleet run always does).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "StoredSelection", into = "StoredSelection")]
pub struct Selection {
    /// Only these tenants (slugs); empty: no such filter.
    pub tenants: Vec<String>,
    pub plan: Option<String>,
    pub cluster: Option<String>,
    /// Also the templates of the selection's clusters.
    pub templates: bool,
}

/// A selection as the ledger keeps it: runs from before several tenants could be named have
/// one `tenant`. New runs keep it too, for a `tenantctl` from before that resumes one: the
/// one tenant named, or (several named) `""`, which no tenant is, so that it never reads the
/// selection as the whole fleet.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct StoredSelection {
    tenants: Vec<String>,
    tenant: Option<String>,
    plan: Option<String>,
    cluster: Option<String>,
    templates: bool,
}

impl From<StoredSelection> for Selection {
    fn from(stored: StoredSelection) -> Self {
        let mut tenants = stored.tenants;
        // Written beside `tenants` by this version (the same tenant, or ""), alone by older ones.
        if tenants.is_empty() {
            tenants.extend(stored.tenant);
        }
        Self { tenants, plan: stored.plan, cluster: stored.cluster, templates: stored.templates }
    }
}

impl From<Selection> for StoredSelection {
    fn from(selection: Selection) -> Self {
        let tenant = match selection.tenants.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            _ => Some(String::new()),
        };
        Self {
            tenants: selection.tenants,
            tenant,
            plan: selection.plan,
            cluster: selection.cluster,
            templates: selection.templates,
        }
    }
}

impl Selection {
    /// No filter: every live tenant.
    pub(crate) fn is_whole_fleet(&self) -> bool {
        self.tenants.is_empty() && self.plan.is_none() && self.cluster.is_none()
    }
}

/// The live tenants of `selection` (one catalog query), by slug; with `not_in_run`, only those
/// that are not part of that run yet.
pub(crate) async fn select(
    client: &impl GenericClient,
    selection: &Selection,
    not_in_run: Option<Uuid>,
) -> Result<Vec<Candidate>, tenancy::catalog::CatalogError> {
    let sql = format!(
        "SELECT {}, t.schema_version, 1::int2
           FROM control.tenants t
          WHERE t.status IN ('active', 'suspended')
            AND (cardinality($1::text[]) = 0 OR t.slug = ANY($1))
            AND ($2::text IS NULL OR t.plan = $2)
            AND ($3::text IS NULL OR t.cluster = $3)
            AND ($4::uuid IS NULL OR NOT EXISTS (SELECT 1 FROM control.migration_items i
                                                  WHERE i.run_id = $4 AND i.tenant_id = t.id))
          ORDER BY t.slug",
        tenancy::catalog::TENANT_COLUMNS
    );
    candidates(client, &sql, &[&selection.tenants, &selection.plan, &selection.cluster, &not_in_run]).await
}

async fn candidates(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Candidate>, tenancy::catalog::CatalogError> {
    let rows = client
        .query(sql, params)
        .await
        .map_err(|e| tenancy::catalog::CatalogError::Query(tenancy::pg::describe_error(&e)))?;
    let columns = rows.first().map_or(0, tokio_postgres::Row::len);
    rows.iter()
        .map(|row| {
            Ok(Candidate {
                tenant: TenantRecord::from_row(row)?,
                schema_version: row.get(columns - 2),
                wave: row.get(columns - 1),
            })
        })
        .collect()
}

/// Marks a tenant of the run as being migrated, unless an operator asked the run to halt:
/// then nothing changes and the answer is who asked.
pub(crate) async fn mark_running(
    client: &impl GenericClient,
    run: Uuid,
    tenant: TenantId,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "WITH request AS (SELECT halt_requested_by FROM control.migration_runs WHERE id = $1),
                  marked AS (
                    UPDATE control.migration_items
                       SET state = 'running', attempts = attempts + 1, updated_at = now()
                     WHERE run_id = $1 AND tenant_id = $2
                       AND NOT EXISTS (SELECT 1 FROM request WHERE halt_requested_by IS NOT NULL))
             SELECT (SELECT halt_requested_by FROM request)",
            &[&run, &tenant.0],
        )
        .await?;
    Ok(row.get(0))
}

/// The latest run's tenants by state, whether it is marked running, and how many of its
/// tenants finished in the last minute.
pub(crate) struct Progress {
    pub(crate) done: i64,
    pub(crate) failed: i64,
    pub(crate) remaining: i64,
    pub(crate) running: bool,
    pub(crate) finished_last_minute: i64,
}

/// [`Progress`] of the latest run, if there is one.
pub(crate) async fn latest_progress(
    client: &impl GenericClient,
) -> Result<Option<Progress>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "WITH latest AS (SELECT id, state FROM control.migration_runs ORDER BY created_at DESC LIMIT 1)
             SELECT count(*) FILTER (WHERE i.state = 'done'),
                    count(*) FILTER (WHERE i.state IN ('failed', 'drift', 'lock_timeout')),
                    count(*) FILTER (WHERE i.state IN ('pending', 'running')),
                    l.state = 'running',
                    count(*) FILTER (WHERE i.state NOT IN ('pending', 'running')
                                       AND i.updated_at > now() - interval '1 minute')
               FROM latest l LEFT JOIN control.migration_items i ON i.run_id = l.id
              GROUP BY l.state",
            &[],
        )
        .await?;
    Ok(row.map(|r| Progress {
        done: r.get(0),
        failed: r.get(1),
        remaining: r.get(2),
        running: r.get(3),
        finished_last_minute: r.get(4),
    }))
}

/// The ids of runs whose text form starts with `prefix` (hex digits and `-` only: no LIKE
/// wildcards), at most 5.
pub(crate) async fn ids_starting_with(
    client: &impl GenericClient,
    prefix: &str,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id FROM control.migration_runs WHERE id::text LIKE $1 || '%' ORDER BY created_at DESC LIMIT 5",
            &[&prefix],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records that `by` asked run `run` to halt (the first request is kept); whether the run was
/// still marked running.
pub(crate) async fn request_halt(
    client: &impl GenericClient,
    run: Uuid,
    by: &str,
) -> Result<bool, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.migration_runs SET halt_requested_by = coalesce(halt_requested_by, $2)
              WHERE id = $1 AND state = 'running'",
            &[&run, &by],
        )
        .await
        .map(|changed| changed == 1)
}

/// What became of one tenant.
pub(crate) struct Outcome<'a> {
    /// `done`, `failed`, `drift` or `lock_timeout`.
    pub(crate) state: &'a str,
    pub(crate) from_version: Option<i64>,
    pub(crate) to_version: Option<i64>,
    pub(crate) duration_ms: i64,
    pub(crate) error: Option<&'a str>,
}

/// Records a tenant's outcome; a tenant done is recorded at its new version in the catalog too.
pub(crate) async fn mark_finished(
    client: &impl GenericClient,
    run: Uuid,
    tenant: TenantId,
    outcome: &Outcome<'_>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "WITH item AS (
                UPDATE control.migration_items
                   SET state = $3, from_version = coalesce(from_version, $4), to_version = $5,
                       duration_ms = $6, error = $7, updated_at = now()
                 WHERE run_id = $1 AND tenant_id = $2)
             UPDATE control.tenants SET schema_version = $5
              WHERE id = $2 AND $3 = 'done' AND $5::int8 IS NOT NULL",
            &[
                &run,
                &tenant.0,
                &outcome.state,
                &outcome.from_version,
                &outcome.to_version,
                &outcome.duration_ms,
                &outcome.error,
            ],
        )
        .await?;
    Ok(())
}

/// Puts a tenant back in line after an attempt that may succeed later (a lock timeout).
pub(crate) async fn mark_retrying(
    client: &impl GenericClient,
    run: Uuid,
    tenant: TenantId,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.migration_items SET state = 'pending', error = $3, updated_at = now()
              WHERE run_id = $1 AND tenant_id = $2",
            &[&run, &tenant.0, &error],
        )
        .await?;
    Ok(())
}

/// Ends a run: halted when `halt_reason` says why it stopped early, otherwise completed when
/// every item is done and failed when not.
pub(crate) async fn finish_run(
    client: &impl GenericClient,
    run: Uuid,
    halt_reason: Option<&str>,
) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "UPDATE control.migration_runs
                SET finished_at = now(), halt_reason = $2,
                    state = CASE WHEN $2::text IS NOT NULL THEN 'halted'
                                 -- Tenants deleted since the run began do not count.
                                 WHEN EXISTS (SELECT 1 FROM control.migration_items i
                                                JOIN control.tenants t ON t.id = i.tenant_id
                                               WHERE i.run_id = $1 AND i.state <> 'done'
                                                 AND t.status IN ('active', 'suspended'))
                                 THEN 'failed' ELSE 'completed' END
              WHERE id = $1 AND state = 'running'
          RETURNING state",
            &[&run, &halt_reason],
        )
        .await?;
    match row {
        Some(row) => Ok(row.get(0)),
        // Ended already (halted while its process was gone): it stays as it was ended.
        None => Ok(client
            .query_one("SELECT state FROM control.migration_runs WHERE id = $1", &[&run])
            .await?
            .get(0)),
    }
}

/// Ends a run that failed before any tenant was started, saying why (a template did not
/// migrate); its tenants stay pending, for `resume`.
pub(crate) async fn fail_run(
    client: &impl GenericClient,
    run: Uuid,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.migration_runs SET finished_at = now(), state = 'failed', halt_reason = $2
              WHERE id = $1",
            &[&run, &reason],
        )
        .await?;
    Ok(())
}

/// The most recent runs, newest first.
pub(crate) async fn recent_runs(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<Run>, tokio_postgres::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM control.migration_runs ORDER BY created_at DESC LIMIT $1");
    Ok(client.query(&sql, &[&limit]).await?.iter().map(Run::from_row).collect())
}

/// Reopens a run for `resume`.
pub(crate) async fn reopen_run(
    client: &impl GenericClient,
    run: Uuid,
    halt_requested_by: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    // The halt request read with the run (`halt_requested_by`) is the one this resume answers;
    // one made since stays, and the resumed run halts at its first tenant.
    client
        .execute(
            "UPDATE control.migration_runs
                SET state = 'running', finished_at = NULL, halt_reason = NULL,
                    halt_requested_by = CASE WHEN halt_requested_by IS NOT DISTINCT FROM $2 THEN NULL
                                             ELSE halt_requested_by END
              WHERE id = $1",
            &[&run, &halt_requested_by],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Selection;

    #[test]
    fn runs_recorded_with_one_tenant_read_as_a_selection_of_that_tenant() {
        let old: Selection =
            serde_json::from_str(r#"{"tenant":"acme","plan":null,"templates":false}"#).unwrap();
        assert_eq!(old.tenants, ["acme"]);
        let whole: Selection = serde_json::from_str(r#"{"tenant":null,"plan":null,"cluster":null}"#).unwrap();
        assert!(whole.is_whole_fleet());
        let new = Selection { tenants: vec!["a".into(), "b".into()], ..Default::default() };
        let stored = serde_json::to_value(&new).unwrap();
        assert_eq!(stored["tenant"], "", "an older tenantctl reads a tenant no one is: {stored}");
        let back: Selection = serde_json::from_value(stored).unwrap();
        assert_eq!(back.tenants, ["a", "b"]);
        let one =
            serde_json::to_value(Selection { tenants: vec!["acme".into()], ..Default::default() }).unwrap();
        assert_eq!(
            (&one["tenant"], &one["tenants"]),
            (&serde_json::json!("acme"), &serde_json::json!(["acme"]))
        );
    }
}
