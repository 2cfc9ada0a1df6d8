//! The durable job queue in `control.jobs`.
//!
//! A worker claims a job with `FOR UPDATE SKIP LOCKED` inside a transaction and keeps that
//! transaction open while the job runs. If the worker dies, PostgreSQL ends the transaction and
//! the job is claimable again: nothing needs a lease or a reaper.
//!
//! Jobs of one tenant run one at a time and in order: a tenant's job is not claimable while an
//! earlier job of the same tenant is still queued (or running).

use std::time::Duration;
use tenancy::domain::TenantId;
use tokio_postgres::{GenericClient, Transaction};

/// Kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Create a tenant's role, schema, migrations, template, credentials and domains.
    Provision,
    /// Make the tenant role's LOGIN match the tenant's status (suspend / resume), ending the
    /// sessions of a suspended tenant.
    SyncAccess,
    /// Apply the tenant's (new) plan template: limits, config, connection limit.
    ApplyPlan,
    /// Give the tenant a new password (secret first, then the role).
    RotateCredentials,
    /// Drop the tenant's schema, role and secret after its retention period; keep a tombstone.
    Deprovision,
    /// Act on a stored billing event.
    BillingEvent,
}

impl JobKind {
    const ALL: [Self; 6] = [
        Self::Provision,
        Self::SyncAccess,
        Self::ApplyPlan,
        Self::RotateCredentials,
        Self::Deprovision,
        Self::BillingEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::SyncAccess => "sync_access",
            Self::ApplyPlan => "apply_plan",
            Self::RotateCredentials => "rotate_credentials",
            Self::Deprovision => "deprovision",
            Self::BillingEvent => "billing_event",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: Option<JobKind>,
    pub raw_kind: String,
    pub tenant: Option<TenantId>,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub max_attempts: i32,
}

pub async fn enqueue(
    client: &impl GenericClient,
    kind: JobKind,
    tenant: Option<TenantId>,
    payload: &serde_json::Value,
) -> Result<i64, tokio_postgres::Error> {
    enqueue_after(client, kind, tenant, payload, Duration::ZERO).await
}

/// Enqueues a job that becomes runnable after `delay` (e.g. a deprovisioning retention period).
pub async fn enqueue_after(
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

/// Claims the oldest runnable job, optionally only one for `tenant`. The row stays locked until
/// `tx` ends.
pub async fn claim(
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
              ORDER BY run_after, id
              LIMIT 1
                FOR UPDATE SKIP LOCKED",
            &[&tenant.map(|t| t.0)],
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

pub async fn complete(tx: &Transaction<'_>, id: i64) -> Result<(), tokio_postgres::Error> {
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
pub async fn record_failure(
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

/// Whether `tenant` has a queued job due within `horizon` (used by the CLI's waiting).
pub async fn has_due_job(
    client: &impl GenericClient,
    tenant: TenantId,
    horizon: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let horizon_ms = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM control.jobs WHERE tenant_id = $1 AND state = 'queued'
                              AND run_after <= now() + make_interval(secs => $2::bigint / 1000.0))",
            &[&tenant.0, &horizon_ms],
        )
        .await?;
    Ok(row.get(0))
}
