//! Every access by an internal user (tenant claim `*`) is written to the catalog's audit log:
//! who (the user claim), which tenant, what kind of access (read or write, through which door,
//! which request), when. An entry is queued before the request runs and written within
//! [`LINGER`], in a batch, by one task (`control.log_internal_access`, the only write the
//! routers' catalog role may make); while the catalog is away entries wait in memory, and past
//! [`MAX_PENDING`] unwritten ones internal users are refused (503 `audit_unavailable`) rather
//! than served unaudited. The writer stops after the router's listeners have drained, writing
//! what is queued; after that nothing more is accepted. A router killed outright loses what it
//! had not written yet (at most [`LINGER`]'s worth, or the backlog of a catalog outage).

use super::{Identity, Role};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tenancy::catalog::TenantRecord;

/// Most entries waiting to be written; past it internal users are refused.
pub(crate) const MAX_PENDING: usize = 10_000;
/// Most entries written in one statement.
const BATCH: usize = 500;
/// How long an entry may wait to be written when few arrive.
const LINGER: Duration = Duration::from_millis(200);
/// How long after a failed write the next is tried.
const RETRY: Duration = Duration::from_secs(1);
/// Longest one batch's write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most of a request's description kept (its method and path).
const MAX_REQUEST: usize = 512;

/// Through which door, and so what the request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    Sql,
    Proxy,
}

impl Door {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sql => "sql",
            Self::Proxy => "proxy",
        }
    }
}

/// One access by an internal user.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    at: chrono::DateTime<chrono::Utc>,
    user: String,
    role: Role,
    tenant: uuid::Uuid,
    door: Door,
    /// Whether it may write (`false` for a read-only role or a request that only reads).
    writes: bool,
    /// What was asked: `POST /sql`, or the proxied method and path (no query string, no body).
    request: String,
}

impl Access {
    pub(crate) fn new(
        identity: &Identity,
        tenant: &TenantRecord,
        door: Door,
        writes: bool,
        mut request: String,
    ) -> Self {
        if request.len() > MAX_REQUEST {
            let mut end = MAX_REQUEST;
            while !request.is_char_boundary(end) {
                end -= 1;
            }
            request.truncate(end);
        }
        Self {
            at: chrono::Utc::now(),
            user: identity.user.clone().unwrap_or_default(),
            role: identity.role,
            tenant: tenant.id.0,
            door,
            writes: writes && !identity.role.read_only(),
            request,
        }
    }

    fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "role": self.role.as_str(),
            "door": self.door.as_str(),
            "access": if self.writes { "write" } else { "read" },
            "request": self.request,
        })
    }
}

/// The audit log has [`MAX_PENDING`] entries it could not write yet, or the writer has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("internal access cannot be audited now (the catalog is unreachable, or the router is stopping); retry shortly")]
pub struct AuditUnavailable;

/// Entries not written yet.
#[derive(Default)]
struct Queue {
    pending: Vec<Access>,
    /// Taken off `pending` by a write that has not finished (counted against the limit).
    writing: usize,
    /// The writer has stopped: nothing more is accepted.
    closed: bool,
}

/// The queue of accesses to write, and the task that writes them.
pub(crate) struct AccessAudit {
    queue: Mutex<Queue>,
    arrived: tokio::sync::Notify,
    metrics: std::sync::Arc<crate::metrics::RouterMetrics>,
}

impl AccessAudit {
    pub(crate) fn new(metrics: std::sync::Arc<crate::metrics::RouterMetrics>) -> Self {
        Self { queue: Mutex::new(Queue::default()), arrived: tokio::sync::Notify::new(), metrics }
    }

    /// Queues `access` to be written; refused when too many could not be written yet, or once
    /// the writer has stopped.
    pub(crate) fn record(&self, access: Access) -> Result<(), AuditUnavailable> {
        let mut queue = self.lock();
        if queue.closed || queue.pending.len() + queue.writing >= MAX_PENDING {
            self.metrics.audit_refused.inc();
            return Err(AuditUnavailable);
        }
        queue.pending.push(access);
        self.count(&queue);
        if queue.pending.len() >= BATCH {
            self.arrived.notify_one();
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, queue: &Queue) {
        self.metrics
            .audit_pending
            .set(i64::try_from(queue.pending.len() + queue.writing).unwrap_or(i64::MAX));
    }

    /// Writes what is queued until `stop` (cancelled once nothing can queue more: after the
    /// listeners have drained), then closes the queue and writes what is left (a few seconds at
    /// most).
    pub(crate) async fn run(
        &self,
        catalog: deadpool_postgres::Pool,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = self.arrived.notified() => {}
                () = tokio::time::sleep(LINGER) => {}
                () = stop.cancelled() => break,
            }
            while self.pending() > 0 {
                if let Err(err) = self.write_batch(&catalog).await {
                    tracing::warn!(error = %err, pending = self.pending(), "internal accesses could not be written to the audit log; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        () = stop.cancelled() => break,
                    }
                }
            }
        }
        self.lock().closed = true;
        let last = async {
            while self.pending() > 0 {
                if self.write_batch(&catalog).await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), last).await.is_err() || self.pending() > 0 {
            tracing::error!(
                lost = self.pending(),
                "internal accesses not written to the audit log at shutdown"
            );
        }
    }

    fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Writes the oldest batch; on failure it stays queued, in order.
    async fn write_batch(&self, catalog: &deadpool_postgres::Pool) -> Result<(), String> {
        let batch: Vec<Access> = {
            let mut queue = self.lock();
            let n = queue.pending.len().min(BATCH);
            queue.writing = n;
            queue.pending.drain(..n).collect()
        };
        let result = match tokio::time::timeout(WRITE_TIMEOUT, write(catalog, &batch)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        };
        let mut queue = self.lock();
        queue.writing = 0;
        match result {
            Ok(()) => {
                self.metrics.internal_accesses.inc_by(batch.len() as u64);
            }
            Err(_) => {
                let newer = std::mem::replace(&mut queue.pending, batch);
                queue.pending.extend(newer);
            }
        }
        self.count(&queue);
        result
    }
}

/// The writer of a router's [`AccessAudit`]: stopped (and its last entries written) once the
/// router's listeners have drained.
pub struct AuditWriter {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AuditWriter {
    pub(crate) fn spawn(audit: std::sync::Arc<AccessAudit>, catalog: deadpool_postgres::Pool) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { audit.run(catalog, stop).await }
        });
        Self { stop, task }
    }

    /// Writes what is queued, refuses what comes after, and returns once done.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn write(catalog: &deadpool_postgres::Pool, batch: &[Access]) -> Result<(), String> {
    let client = catalog.get().await.map_err(|e| e.to_string())?;
    let ats: Vec<_> = batch.iter().map(|a| a.at).collect();
    let users: Vec<&str> = batch.iter().map(|a| a.user.as_str()).collect();
    let tenants: Vec<uuid::Uuid> = batch.iter().map(|a| a.tenant).collect();
    let details: Vec<serde_json::Value> = batch.iter().map(Access::detail).collect();
    client
        .execute(
            "SELECT control.log_internal_access($1::timestamptz[], $2::text[], $3::uuid[], $4::jsonb[])",
            &[&ats, &users, &tenants, &details],
        )
        .await
        .map(|_| ())
        .map_err(|e| tenancy::pg::describe_error(&e))
}
