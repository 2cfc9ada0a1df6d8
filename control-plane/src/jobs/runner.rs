//! The job runner: claims jobs from the catalog queue and runs each with its kind's handler.
//! Runs inside `tenantctl serve` (several workers at once) and inside CLI commands that wait for
//! their job.

use super::provision;
use super::{JobError, JobKind};
use crate::catalog::jobs::{self, Job};
use crate::control_plane::ControlPlane;
use std::sync::Arc;
use std::time::Duration;
use tenancy::domain::TenantId;
use tenancy::error::{ErrorKind, OperationError};
use tokio_util::sync::CancellationToken;

/// How often an idle worker looks for jobs enqueued by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What happened to a claimed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    Done,
    /// Failed for now; it runs again after a back-off.
    Retrying,
    /// Failed for good (the tenant, if any, is left `failed` with the step and error).
    Failed,
}

/// Why the worker itself (not a job) failed: the catalog could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("job queue unavailable: {0}")]
pub struct WorkerError(String);

impl OperationError for WorkerError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Unavailable
    }

    fn code(&self) -> &'static str {
        "catalog_unavailable"
    }
}

fn backoff(attempt: i32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.clamp(0, 8)))
}

/// Claims and runs one runnable job (optionally only one of `tenant`'s). `None`: nothing to do.
pub(crate) async fn run_next(
    cp: &ControlPlane,
    tenant: Option<TenantId>,
) -> Result<Option<JobOutcome>, WorkerError> {
    let queue_error = |e: tokio_postgres::Error| WorkerError(tenancy::pg::describe_error(&e));
    let mut client = cp.catalog.get().await.map_err(|e| WorkerError(e.to_string()))?;
    let tx = client.transaction().await.map_err(queue_error)?;
    let Some(job) = jobs::claim(&tx, tenant).await.map_err(queue_error)? else {
        return Ok(None);
    };
    let span = tracing::info_span!("job", id = job.id, kind = %job.raw_kind, tenant = tracing::field::Empty);
    if let Some(t) = job.tenant {
        span.record("tenant", tracing::field::display(t));
    }
    if job.kind == Some(JobKind::Move) {
        return tracing::Instrument::instrument(Box::pin(run_outside_claim(cp, tx, job)), span)
            .await
            .map(Some);
    }
    let result = tracing::Instrument::instrument(run_job(cp, &job), span.clone()).await;
    let _entered = span.enter();
    let outcome = record_outcome(cp, &tx, &job, result).await.map_err(queue_error)?;
    tx.commit().await.map_err(queue_error)?;
    Ok(Some(outcome))
}

/// Runs a job after its claim's transaction has ended, held meanwhile by an advisory lock on a
/// session of its own (which ends with the process, as a transaction would): a move creates a
/// replication slot, which waits for every transaction holding a transaction id, and a claim
/// holds one (it locked the job's row). The outcome is recorded in a new transaction.
async fn run_outside_claim(
    cp: &ControlPlane,
    claim: deadpool_postgres::Transaction<'_>,
    job: Job,
) -> Result<JobOutcome, WorkerError> {
    let queue_error = |e: tokio_postgres::Error| WorkerError(tenancy::pg::describe_error(&e));
    // Its own connection, closed at the end (never back in the pool with a lock held).
    let session =
        deadpool_postgres::Object::take(cp.catalog.get().await.map_err(|e| WorkerError(e.to_string()))?);
    if !jobs::hold(&*session, job.id).await.map_err(queue_error)? {
        // Another worker runs it (it took the lock after this claim's look).
        return Ok(JobOutcome::Retrying);
    }
    claim.commit().await.map_err(queue_error)?;
    let result = run_job(cp, &job).await;
    let mut client = cp.catalog.get().await.map_err(|e| WorkerError(e.to_string()))?;
    let tx = client.transaction().await.map_err(queue_error)?;
    let outcome = if jobs::relock(&tx, job.id).await.map_err(queue_error)? {
        record_outcome(cp, &tx, &job, result).await.map_err(queue_error)?
    } else {
        JobOutcome::Done
    };
    tx.commit().await.map_err(queue_error)?;
    jobs::let_go(&*session, job.id).await.map_err(queue_error)?;
    Ok(outcome)
}

/// Records what became of `job` in `tx`, the transaction that holds its row.
async fn record_outcome(
    cp: &ControlPlane,
    tx: &tokio_postgres::Transaction<'_>,
    job: &Job,
    result: Result<(), JobError>,
) -> Result<JobOutcome, tokio_postgres::Error> {
    if let Err(failure) = &result {
        cp.metrics.error("job", failure.kind);
    }
    let outcome = match result {
        Ok(()) => {
            jobs::complete(tx, job.id).await?;
            JobOutcome::Done
        }
        Err(failure) if failure.kind.is_retryable() && job.attempts + 1 < job.max_attempts => {
            let delay = backoff(job.attempts);
            tracing::warn!(error = %failure.message, retry_in = ?delay, "job failed; will retry");
            jobs::record_failure(tx, job.id, &failure.message, Some(delay)).await?;
            JobOutcome::Retrying
        }
        Err(failure) => {
            tracing::error!(error = %failure.message, "job failed");
            jobs::record_failure(tx, job.id, &failure.message, None).await?;
            if let (Some(tenant), JobKind::Provision) =
                (job.tenant, job.kind.unwrap_or(JobKind::BillingEvent))
            {
                crate::catalog::tenants::mark_failed(
                    tx,
                    tenant,
                    failure.step.unwrap_or("start"),
                    &failure.message,
                )
                .await?;
            }
            JobOutcome::Failed
        }
    };
    let outcome_label = match outcome {
        JobOutcome::Done => "done",
        JobOutcome::Retrying => "retrying",
        JobOutcome::Failed => "failed",
    };
    cp.metrics.job(&job.raw_kind, outcome_label);
    Ok(outcome)
}

/// Runs one job. The match is exhaustive over job kinds, so a new kind cannot be forgotten.
async fn run_job(cp: &ControlPlane, job: &Job) -> Result<(), JobError> {
    use super::lifecycle as work;
    let Some(kind) = job.kind else {
        return Err(JobError::permanent(format!("job of unknown kind {:?}", job.raw_kind)));
    };
    match (kind, job.tenant) {
        (JobKind::BillingEvent, _) => {
            crate::billing::process::process_job(cp, &job.payload).await.map_err(Into::into)
        }
        (JobKind::DropMoveSource, _) => Ok(Box::pin(crate::moves::drop_source(cp, move_of(job)?)).await?),
        (_, None) => Err(JobError::permanent(format!("{} job without a tenant", kind.as_str()))),
        (JobKind::Provision, Some(tenant)) => {
            provision::provision(cp, tenant).await.map(|_| ()).map_err(Into::into)
        }
        (JobKind::SyncAccess, Some(tenant)) => Ok(work::sync_access(cp, tenant).await?),
        (JobKind::ApplyPlan, Some(tenant)) => Ok(work::apply_plan(cp, tenant).await?),
        (JobKind::RotateCredentials, Some(tenant)) => Ok(work::rotate_credentials(cp, tenant).await?),
        (JobKind::Deprovision, Some(tenant)) => Ok(work::deprovision(cp, tenant).await?),
        // Boxed: every job's future would otherwise hold room for a move's (large).
        (JobKind::Move, Some(_)) => Ok(Box::pin(crate::moves::run(cp, move_of(job)?)).await?),
    }
}

/// The move a `move` or `drop_move_source` job is about.
fn move_of(job: &Job) -> Result<i64, JobError> {
    job.payload["move"]
        .as_i64()
        .ok_or_else(|| JobError::permanent(format!("{} job without a move", job.raw_kind)))
}

/// Runs `tenant`'s due jobs in this process until none is left (a `tenantctl serve` elsewhere
/// may run some of them; then this waits for it). Jobs scheduled further ahead than `horizon`
/// (a deprovisioning retention period) are not waited for.
pub async fn drain(cp: &ControlPlane, tenant: TenantId, horizon: Duration) -> Result<(), WorkerError> {
    loop {
        let ran = run_next(cp, Some(tenant)).await?;
        let client = cp.catalog.get().await.map_err(|e| WorkerError(e.to_string()))?;
        let pending = jobs::has_due_job(&**client, tenant, horizon)
            .await
            .map_err(|e| WorkerError(tenancy::pg::describe_error(&e)))?;
        if !pending {
            return Ok(());
        }
        if ran.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs every job due now (of any tenant, or of none: the drop of a moved tenant's old copy)
/// in this process, one after another, until none is left; returns how many ran.
pub async fn run_due(cp: &ControlPlane) -> Result<usize, WorkerError> {
    let mut ran = 0;
    while run_next(cp, None).await?.is_some() {
        ran += 1;
    }
    Ok(ran)
}

/// Runs `concurrency` workers until `shutdown` is cancelled; a job in progress is finished first.
pub(crate) async fn run_workers(cp: Arc<ControlPlane>, concurrency: usize, shutdown: CancellationToken) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (cp, shutdown) = (cp.clone(), shutdown.clone());
        set.spawn(async move {
            while !shutdown.is_cancelled() {
                match run_next(&cp, None).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(err) => tracing::warn!(error = %err, "worker could not claim a job"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = cp.jobs_enqueued.notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}
