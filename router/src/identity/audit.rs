//! Every access by an internal user (tenant claim `*`) is written to the catalog's audit log:
//! who (the user claim), which tenant, what kind of access (read or write, through which door,
//! which request), when. Entries are queued as requests are admitted and written in batches by
//! one task (`control.log_internal_access`, the only write the routers' catalog role may make);
//! while the catalog is away they wait in memory, and past [`MAX_PENDING`] unwritten entries
//! internal users are refused (503 `audit_unavailable`) rather than served unaudited. At
//! shutdown what is queued is written before the router exits.

use super::{Identity, Role};
use std::sync::{Mutex, PoisonError};
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
        request: String,
    ) -> Self {
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

/// The audit log has [`MAX_PENDING`] entries it could not write yet.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("internal access cannot be audited now (the catalog is unreachable); retry shortly")]
pub struct AuditUnavailable;

/// The queue of accesses to write, and the task that writes them.
pub(crate) struct AccessAudit {
    pending: Mutex<Vec<Access>>,
    arrived: tokio::sync::Notify,
    metrics: std::sync::Arc<crate::metrics::RouterMetrics>,
}

impl AccessAudit {
    pub(crate) fn new(metrics: std::sync::Arc<crate::metrics::RouterMetrics>) -> Self {
        Self { pending: Mutex::new(Vec::new()), arrived: tokio::sync::Notify::new(), metrics }
    }

    /// Queues `access` to be written; refused when too many could not be written yet.
    pub(crate) fn record(&self, access: Access) -> Result<(), AuditUnavailable> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= MAX_PENDING {
            self.metrics.audit_refused.inc();
            return Err(AuditUnavailable);
        }
        pending.push(access);
        self.metrics.audit_pending.set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        if pending.len() >= BATCH {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Writes what is queued until `shutdown`, then what is left (a few seconds at most).
    pub(crate) async fn run(
        &self,
        catalog: deadpool_postgres::Pool,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = self.arrived.notified() => {}
                () = tokio::time::sleep(LINGER) => {}
                () = shutdown.cancelled() => break,
            }
            while self.has_pending() {
                if let Err(err) = self.write_batch(&catalog).await {
                    tracing::warn!(error = %err, pending = self.pending_len(), "internal accesses could not be written to the audit log; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            }
        }
        let last = async {
            while self.has_pending() {
                if self.write_batch(&catalog).await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), last).await.is_err() || self.has_pending() {
            tracing::error!(
                lost = self.pending_len(),
                "internal accesses not written to the audit log at shutdown"
            );
        }
    }

    fn has_pending(&self) -> bool {
        self.pending_len() > 0
    }

    fn pending_len(&self) -> usize {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Writes the oldest batch; on failure it stays queued, in order.
    async fn write_batch(&self, catalog: &deadpool_postgres::Pool) -> Result<(), String> {
        let batch: Vec<Access> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let n = pending.len().min(BATCH);
            pending.drain(..n).collect()
        };
        let result = write(catalog, &batch).await;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                self.metrics.internal_accesses.inc_by(batch.len() as u64);
            }
            Err(_) => {
                let newer = std::mem::replace(&mut *pending, batch);
                pending.extend(newer);
            }
        }
        self.metrics.audit_pending.set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        result
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
        .map_err(|e| e.to_string())
}
