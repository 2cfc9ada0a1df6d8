//! The durable job queue in `control.jobs`.
//!
//! A worker claims a job with `FOR UPDATE SKIP LOCKED` inside a transaction and keeps that
//! transaction open while the job runs. If the worker dies, PostgreSQL ends the transaction and
//! the job is claimable again: nothing needs a lease or a reaper.
//!
//! Jobs of one tenant run one at a time and in order: a tenant's job is not claimable while an
//! earlier job of the same tenant is still queued (or running).

use crate::jobs::JobKind;
use std::time::Duration;
use tenancy::domain::TenantId;
use tokio_postgres::{GenericClient, Transaction};

/// A claimed job.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) id: i64,
    pub(crate) kind: Option<JobKind>,
    pub(crate) raw_kind: String,
    pub(crate) tenant: Option<TenantId>,
    pub(crate) payload: serde_json::Value,
    pub(crate) attempts: i32,
    pub(crate) max_attempts: i32,
}

pub(crate) async fn enqueue(
    client: &impl GenericClient,
    kind: JobKind,
    tenant: Option<TenantId>,
    payload: &serde_json::Value,
) -> Result<i64, tokio_postgres::Error> {
    enqueue_after(client, kind, tenant, payload, Duration::ZERO).await
}

/// Enqueues a job that becomes runnable after `delay` (e.g. a deprovisioning retention period).
pub(crate) async fn enqueue_after(
    client: &impl GenericClient,
    kind: JobKind,
    tenant: Option<TenantId>,
    payload: &serde_json::Value,
    delay: Duration,
) -> Result<i64, tokio_postgres::Error> {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            "INSERT INTO control.jobs (kind, tenant_id, payload, run_after)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint / 1000.0)) RETURNING id",
            &[&kind.as_str(), &tenant.map(|t| t.0), payload, &delay_ms],
        )
        .await?;
    Ok(row.get(0))
}

/// Lets job `id` be tried again however often it fails with an error that trying again may
/// mend (a move: given up half-way, it would leave its tenant paused, or its copy behind).
pub(crate) async fn keep_trying(client: &impl GenericClient, id: i64) -> Result<(), tokio_postgres::Error> {
    client
        .execute("UPDATE control.jobs SET max_attempts = 2147483647 WHERE id = $1", &[&id])
        .await
        .map(|_| ())
}

/// Makes `tenant`'s queued job of `kind` run after `delay` from now, or enqueues one when none
/// is queued: a tenant never has two of them queued (the second would only run after the
/// first, whatever its own time). Returns the job's id.
pub(crate) async fn schedule(
    client: &impl GenericClient,
    kind: JobKind,
    tenant: TenantId,
    payload: &serde_json::Value,
    delay: Duration,
) -> Result<i64, tokio_postgres::Error> {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let moved = client
        .query_opt(
            "UPDATE control.jobs SET run_after = now() + make_interval(secs => $3::bigint / 1000.0),
                    updated_at = now()
              WHERE id = (SELECT id FROM control.jobs WHERE tenant_id = $1 AND kind = $2 AND state = 'queued'
                           ORDER BY id LIMIT 1)
          RETURNING id",
            &[&tenant.0, &kind.as_str(), &delay_ms],
        )
        .await?;
    match moved {
        Some(row) => Ok(row.get(0)),
        None => enqueue_after(client, kind, Some(tenant), payload, delay).await,
    }
}

/// When `tenant`'s next queued job of `kind` is due (a deprovisioning tenant's drop), if one is
/// queued.
pub(crate) async fn scheduled(
    client: &impl GenericClient,
    kind: JobKind,
    tenant: TenantId,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT min(run_after) FROM control.jobs WHERE tenant_id = $1 AND kind = $2 AND state = 'queued'",
            &[&tenant.0, &kind.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

/// Takes `tenant`'s queued jobs of `kind` off the queue (a restored tenant's drop). `Ok(false)`
/// when one of them is running right now (claimed by a worker): nothing is removed then.
pub(crate) async fn cancel(
    client: &impl GenericClient,
    kind: JobKind,
    tenant: TenantId,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "WITH queued AS (SELECT id FROM control.jobs WHERE tenant_id = $1 AND kind = $2 AND state = 'queued'),
                  free AS (SELECT id FROM control.jobs WHERE id IN (SELECT id FROM queued) FOR UPDATE SKIP LOCKED)
             SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM free)",
            &[&tenant.0, &kind.as_str()],
        )
        .await?;
    let (queued, free): (i64, i64) = (row.get(0), row.get(1));
    if queued != free {
        return Ok(false);
    }
    client
        .execute(
            "DELETE FROM control.jobs WHERE tenant_id = $1 AND kind = $2 AND state = 'queued'",
            &[&tenant.0, &kind.as_str()],
        )
        .await?;
    Ok(true)
}

/// Whether `tenant` has a job of `kind` queued (or running). Never waits on a running job's lock.
pub(crate) async fn has_queued(
    client: &impl GenericClient,
    tenant: TenantId,
    kind: JobKind,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM control.jobs WHERE tenant_id = $1 AND kind = $2 AND state = 'queued' LIMIT 1",
            &[&tenant.0, &kind.as_str()],
        )
        .await?;
    Ok(row.is_some())
}

/// The class of the advisory lock a job run outside its claim's transaction is held by, on a
/// session of its own (key: the job's id modulo 2^31 - 1): claims skip such a job.
pub(crate) const RUNNING_ELSEWHERE: i32 = 0x6a6f_6273;

/// Takes job `id`'s lock on `session` (see [`RUNNING_ELSEWHERE`]); `false` when another
/// session holds it.
pub(crate) async fn hold(client: &impl GenericClient, id: i64) -> Result<bool, tokio_postgres::Error> {
    let key = i32::try_from(id % i64::from(i32::MAX)).unwrap_or_default();
    let row = client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&RUNNING_ELSEWHERE, &key]).await?;
    Ok(row.get(0))
}

/// Releases what [`hold`] took.
pub(crate) async fn let_go(client: &impl GenericClient, id: i64) -> Result<(), tokio_postgres::Error> {
    let key = i32::try_from(id % i64::from(i32::MAX)).unwrap_or_default();
    client.execute("SELECT pg_advisory_unlock($1, $2)", &[&RUNNING_ELSEWHERE, &key]).await.map(|_| ())
}

/// Locks job `id`'s row again in `tx` (to record the outcome of a job run outside its claim);
/// `false` when it is no longer queued.
pub(crate) async fn relock(tx: &Transaction<'_>, id: i64) -> Result<bool, tokio_postgres::Error> {
    let row = tx
        .query_opt("SELECT 1 FROM control.jobs WHERE id = $1 AND state = 'queued' FOR UPDATE", &[&id])
        .await?;
    Ok(row.is_some())
}

/// Claims the oldest runnable job, optionally only one for `tenant`. The row stays locked until
/// `tx` ends.
pub(crate) async fn claim(
    tx: &Transaction<'_>,
    tenant: Option<TenantId>,
) -> Result<Option<Job>, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "SELECT id, kind, tenant_id, payload, attempts, max_attempts
               FROM control.jobs j
              WHERE state = 'queued' AND run_after <= now()
                AND ($1::uuid IS NULL OR tenant_id = $1)
                AND (j.tenant_id IS NULL OR NOT EXISTS (
                      SELECT 1 FROM control.jobs earlier
                       WHERE earlier.tenant_id = j.tenant_id AND earlier.state = 'queued'
                         AND earlier.id < j.id))
                AND NOT EXISTS (
                      SELECT 1 FROM pg_locks l
                       WHERE l.locktype = 'advisory' AND l.objsubid = 2
                         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                         AND l.classid = $2::int::oid AND l.objid = (j.id % 2147483647)::int::oid)
              ORDER BY run_after, id
              LIMIT 1
                FOR UPDATE SKIP LOCKED",
            &[&tenant.map(|t| t.0), &RUNNING_ELSEWHERE],
        )
        .await?;
    Ok(row.map(|row| {
        let raw_kind: String = row.get(1);
        Job {
            id: row.get(0),
            kind: JobKind::parse(&raw_kind),
            raw_kind,
            tenant: row.get::<_, Option<uuid::Uuid>>(2).map(TenantId),
            payload: row.get(3),
            attempts: row.get(4),
            max_attempts: row.get(5),
        }
    }))
}

pub(crate) async fn complete(tx: &Transaction<'_>, id: i64) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE control.jobs
            SET state = 'done', attempts = attempts + 1, last_error = NULL,
                finished_at = clock_timestamp(), updated_at = clock_timestamp()
          WHERE id = $1",
        &[&id],
    )
    .await
    .map(|_| ())
}

/// Records a failed attempt: the job runs again after `retry_in`, or is failed for good.
pub(crate) async fn record_failure(
    tx: &Transaction<'_>,
    id: i64,
    error: &str,
    retry_in: Option<Duration>,
) -> Result<(), tokio_postgres::Error> {
    match retry_in {
        Some(delay) => {
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE control.jobs
                    SET attempts = attempts + 1, last_error = $2, updated_at = clock_timestamp(),
                        run_after = clock_timestamp() + make_interval(secs => $3::bigint / 1000.0)
                  WHERE id = $1",
                &[&id, &error, &delay_ms],
            )
            .await
        }
        None => {
            tx.execute(
                "UPDATE control.jobs
                    SET state = 'failed', attempts = attempts + 1, last_error = $2,
                        finished_at = clock_timestamp(), updated_at = clock_timestamp()
                  WHERE id = $1",
                &[&id, &error],
            )
            .await
        }
    }
    .map(|_| ())
}

/// Whether `tenant` has a queued job that can run within `horizon` (used by the CLI's waiting):
/// due by then, and not queued behind an earlier job of the tenant that is not.
pub(crate) async fn has_due_job(
    client: &impl GenericClient,
    tenant: TenantId,
    horizon: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let horizon_ms = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            "WITH due AS (SELECT now() + make_interval(secs => $2::bigint / 1000.0) AS by)
             SELECT EXISTS (SELECT 1 FROM control.jobs j, due WHERE j.tenant_id = $1 AND j.state = 'queued'
                              AND j.run_after <= due.by
                              AND NOT EXISTS (SELECT 1 FROM control.jobs earlier
                                               WHERE earlier.tenant_id = j.tenant_id AND earlier.state = 'queued'
                                                 AND earlier.id < j.id AND earlier.run_after > due.by))",
            &[&tenant.0, &horizon_ms],
        )
        .await?;
    Ok(row.get(0))
}

/// A job as the history shows it.
pub(crate) struct JobRecord {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) tenant_id: Option<uuid::Uuid>,
    pub(crate) state: String,
    pub(crate) attempts: i32,
    pub(crate) last_error: Option<String>,
    pub(crate) run_after: chrono::DateTime<chrono::Utc>,
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
    pub(crate) finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Queued and able to run within [`WAIT_HORIZON`] (see [`has_due_job`]).
    pub(crate) due: bool,
}

/// How far ahead a command that waits for a tenant's work looks: a job due later (a drop
/// after its retention period) is not waited for.
pub(crate) const WAIT_HORIZON: Duration = Duration::from_secs(60);

/// The newest `limit` jobs (of the newest tenant with that slug, when `slug` is given), newest
/// first.
pub(crate) async fn recent(
    client: &impl GenericClient,
    slug: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRecord>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH due AS (SELECT now() + make_interval(secs => $3::bigint / 1000.0) AS by)
             SELECT j.id, j.kind, j.tenant_id, j.state, j.attempts, j.last_error, j.run_after, j.created_at, j.finished_at,
                    j.state = 'queued' AND j.run_after <= due.by
                      AND NOT EXISTS (SELECT 1 FROM control.jobs earlier
                                       WHERE earlier.tenant_id = j.tenant_id AND earlier.state = 'queued'
                                         AND earlier.id < j.id AND earlier.run_after > due.by) AS due
               FROM control.jobs j, due
              WHERE $1::text IS NULL OR j.tenant_id = (SELECT id FROM control.tenants WHERE slug = $1
                                                          ORDER BY created_at DESC LIMIT 1)
              ORDER BY j.id DESC LIMIT $2",
            &[&slug, &limit, &i64::try_from(WAIT_HORIZON.as_millis()).unwrap_or(i64::MAX)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| JobRecord {
            id: r.get("id"),
            kind: r.get("kind"),
            tenant_id: r.get("tenant_id"),
            state: r.get("state"),
            attempts: r.get("attempts"),
            last_error: r.get("last_error"),
            run_after: r.get("run_after"),
            created_at: r.get("created_at"),
            finished_at: r.get("finished_at"),
            due: r.get("due"),
        })
        .collect())
}
