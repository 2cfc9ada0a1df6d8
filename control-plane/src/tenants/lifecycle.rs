//! Tenant lifecycle after provisioning: suspend, resume, change plan, rotate credentials,
//! deprovision, and retry a failed provisioning.
//!
//! A request checks the transition, records the new status (bumping the generation) and
//! enqueues the job that does the work, in one transaction; routers are told at once. The jobs
//! ([`crate::jobs::lifecycle`]) converge the database on what the catalog says, so a repeated or resumed job is
//! harmless, and a tenant's jobs run one at a time, in order.

use super::{Announcement, Recorded};
use crate::catalog::{audit, jobs, tenants};
use crate::control_plane::ControlPlane;
use crate::jobs::JobKind;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{PlanName, Slug, TenantStatus};
use tenancy::error::{ErrorKind, OperationError};

/// What to do to a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Suspend,
    Resume,
    ChangePlan(String),
    RotateCredentials,
    /// Deprovision after `retention` (0 allowed): drop schema and role, delete the secret,
    /// keep a tombstone.
    Deprovision {
        retention: Duration,
    },
    /// Provision a `failed` tenant again, from where it failed.
    Retry,
    /// Bring a deprovisioning tenant back before its data is dropped: the drop is taken off the
    /// queue and the tenant gets the status it had before it was deleted.
    Restore,
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::ChangePlan(_) => "change plan",
            Self::RotateCredentials => "rotate credentials",
            Self::Deprovision { .. } => "deprovision",
            Self::Retry => "retry",
            Self::Restore => "restore",
        }
    }
}

/// Why a lifecycle request was refused. Nothing changes when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no tenant {0}")]
    NotFound(String),
    #[error("cannot {operation} tenant {slug}: it is {status}")]
    WrongState { operation: &'static str, slug: String, status: TenantStatus },
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    #[error("tenant {0} is being dropped right now; it can no longer be restored")]
    DropUnderway(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("the config of tenant {0} changed while it was being edited; nothing was saved: edit it again")]
    Changed(String),
    #[error("the tenant's template {0} cannot be read (see the control plane's log): its config cannot be checked")]
    Template(String),
    #[error("catalog unavailable: {0}")]
    Catalog(String),
}

impl OperationError for LifecycleError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::WrongState { .. } => ErrorKind::WrongState,
            Self::InvalidPlan(_) => ErrorKind::Invalid,
            Self::DropUnderway(_) | Self::Changed(_) => ErrorKind::Conflict,
            Self::InvalidConfig(_) => ErrorKind::Invalid,
            Self::Template(_) => ErrorKind::Misconfigured,
            Self::Catalog(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::WrongState { .. } => "wrong_state",
            Self::InvalidPlan(_) => "invalid_plan",
            Self::DropUnderway(_) => "drop_underway",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Changed(_) => "changed_meanwhile",
            Self::Template(_) => "template_unreadable",
            Self::Catalog(_) => "catalog_unavailable",
        }
    }
}

/// The tenant as the transaction now sees it.
pub(super) async fn reload(
    tx: &deadpool_postgres::Transaction<'_>,
    id: tenancy::domain::TenantId,
    slug: &Slug,
) -> Result<TenantRecord, LifecycleError> {
    tenancy::catalog::tenant_by_id(&**tx, id)
        .await
        .map_err(|e| LifecycleError::Catalog(e.to_string()))?
        .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))
}

pub(super) fn catalog_error(e: &tokio_postgres::Error) -> LifecycleError {
    LifecycleError::Catalog(tenancy::pg::describe_error(e))
}

/// The transition an operation makes from `status`: the new status and the job to run, or
/// `None` when the tenant is already where the operation would take it.
fn transition(
    operation: &Operation,
    status: TenantStatus,
) -> Result<Option<(TenantStatus, JobKind)>, TenantStatus> {
    use TenantStatus as S;
    Ok(match (operation, status) {
        (Operation::Suspend, S::Active) => Some((S::Suspended, JobKind::SyncAccess)),
        (Operation::Suspend, S::Suspended) | (Operation::Resume, S::Active) => None,
        (Operation::Resume, S::Suspended) => Some((S::Active, JobKind::SyncAccess)),
        (Operation::ChangePlan(_), S::Active | S::Suspended) => Some((status, JobKind::ApplyPlan)),
        (Operation::RotateCredentials, S::Active | S::Suspended) => {
            Some((status, JobKind::RotateCredentials))
        }
        (Operation::Deprovision { .. }, S::Active | S::Suspended | S::Failed) => {
            Some((S::Deprovisioning, JobKind::Deprovision))
        }
        // Again: reschedules the drop (e.g. `--retention 0s` to drop now), or re-queues a
        // deprovisioning that failed (e.g. its archive could not be written).
        (Operation::Deprovision { .. }, S::Deprovisioning) => Some((S::Deprovisioning, JobKind::Deprovision)),
        // The status it goes back to is the one it had before the delete (see `request`).
        (Operation::Restore, S::Deprovisioning) => Some((S::Active, JobKind::SyncAccess)),
        (Operation::Retry, S::Failed) => Some((S::Provisioning, JobKind::Provision)),
        (_, other) => return Err(other),
    })
}

/// Requests `operation` on the live tenant `slug` in a transaction of its own (see
/// [`request_in`]); returns the tenant as it now is. Workers are woken and routers told once it
/// is committed.
pub async fn request(
    cp: &ControlPlane,
    slug: &Slug,
    operation: &Operation,
    actor: &str,
) -> Result<TenantRecord, LifecycleError> {
    super::in_transaction(cp, LifecycleError::Catalog, async |tx| {
        request_in(tx, cp, slug, operation, actor).await.map(Recorded::into_parts)
    })
    .await
}

/// Checks and records `operation` on the live tenant `slug` within `tx` (the tenant's row is
/// locked until it ends): the new status, the job that does the work, the audit entry. Nothing
/// is written when it is refused; nothing is announced when the tenant is already where the
/// operation leads. The caller commits, then sends the announcement.
pub(crate) async fn request_in(
    tx: &deadpool_postgres::Transaction<'_>,
    cp: &ControlPlane,
    slug: &Slug,
    operation: &Operation,
    actor: &str,
) -> Result<Recorded, LifecycleError> {
    let id = tenants::lock_live(&**tx, slug)
        .await
        .map_err(|e| catalog_error(&e))?
        .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
    let tenant = tenancy::catalog::tenant_by_id(&**tx, id)
        .await
        .map_err(|e| LifecycleError::Catalog(e.to_string()))?
        .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
    let step = transition(operation, tenant.status).map_err(|status| LifecycleError::WrongState {
        operation: operation.name(),
        slug: slug.to_string(),
        status,
    })?;
    let Some((mut status, job)) = step else {
        return Ok(Recorded { tenant, announcement: Announcement::none() });
    };
    let payload = serde_json::json!({});
    let mut delay = Duration::ZERO;
    match operation {
        Operation::ChangePlan(raw) => {
            let plan = PlanName::parse(raw).map_err(|e| LifecycleError::InvalidPlan(e.to_string()))?;
            cp.templates.load(&plan).map_err(|e| LifecycleError::InvalidPlan(e.to_string()))?;
            tenants::set_plan(&**tx, id, &plan).await.map_err(|e| catalog_error(&e))?;
        }
        Operation::Deprovision { retention } => {
            delay = *retention;
            tenants::schedule_deprovision(&**tx, id, *retention).await.map_err(|e| catalog_error(&e))?;
        }
        Operation::Restore => {
            if !jobs::cancel(&**tx, JobKind::Deprovision, id).await.map_err(|e| catalog_error(&e))? {
                return Err(LifecycleError::DropUnderway(slug.to_string()));
            }
            status = status_before_delete(tx, id).await?;
            tenants::clear_deprovision(&**tx, id).await.map_err(|e| catalog_error(&e))?;
        }
        _ => {}
    }
    if status != tenant.status {
        tenants::set_status(&**tx, id, status).await.map_err(|e| catalog_error(&e))?;
    }
    if job == JobKind::Deprovision {
        if status != tenant.status {
            // Lock the role out now; the data goes after the retention period.
            jobs::enqueue(&**tx, JobKind::SyncAccess, Some(id), &serde_json::json!({}))
                .await
                .map_err(|e| catalog_error(&e))?;
        }
        // Deleted again: the queued drop moves to the new time (it is not queued twice).
        jobs::schedule(&**tx, job, id, &payload, delay).await.map_err(|e| catalog_error(&e))?;
    } else {
        jobs::enqueue_after(&**tx, job, Some(id), &payload, delay).await.map_err(|e| catalog_error(&e))?;
    }
    let detail = serde_json::json!({ "from": tenant.status, "to": status, "plan": match operation {
        Operation::ChangePlan(plan) => Some(plan.as_str()),
        _ => None,
    }});
    audit::record(&**tx, actor, &format!("tenant.{}", operation.name().replace(' ', "_")), Some(id), detail)
        .await
        .map_err(|e| catalog_error(&e))?;
    let updated = reload(tx, id, slug).await?;
    tracing::info!(tenant = %slug, operation = operation.name(), actor, status = %updated.status, "tenant operation requested");
    let announcement = Announcement::jobs_and_tenant(&updated);
    Ok(Recorded { tenant: updated, announcement })
}

/// The status a deprovisioning tenant had before it was deleted, from the audit log (active
/// when the log does not say).
async fn status_before_delete(
    tx: &deadpool_postgres::Transaction<'_>,
    id: tenancy::domain::TenantId,
) -> Result<TenantStatus, LifecycleError> {
    let before = audit::status_before_delete(&**tx, id).await.map_err(|e| catalog_error(&e))?;
    let before = before.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok());
    Ok(match before {
        Some(status @ (TenantStatus::Suspended | TenantStatus::Failed)) => status,
        _ => TenantStatus::Active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TenantStatus as S;

    #[test]
    fn transitions_follow_the_lifecycle() {
        assert_eq!(transition(&Operation::Suspend, S::Active), Ok(Some((S::Suspended, JobKind::SyncAccess))));
        assert_eq!(transition(&Operation::Suspend, S::Suspended), Ok(None));
        assert_eq!(transition(&Operation::Resume, S::Suspended), Ok(Some((S::Active, JobKind::SyncAccess))));
        assert_eq!(transition(&Operation::Resume, S::Provisioning), Err(S::Provisioning));
        assert_eq!(transition(&Operation::Suspend, S::Deprovisioning), Err(S::Deprovisioning));
        assert_eq!(transition(&Operation::Retry, S::Active), Err(S::Active));
        assert_eq!(transition(&Operation::Retry, S::Failed), Ok(Some((S::Provisioning, JobKind::Provision))));
        let forever = Operation::Deprovision { retention: Duration::ZERO };
        assert_eq!(transition(&forever, S::Suspended), Ok(Some((S::Deprovisioning, JobKind::Deprovision))));
        assert_eq!(transition(&forever, S::Deleted), Err(S::Deleted));
        assert_eq!(transition(&Operation::ChangePlan("pro".into()), S::Provisioning), Err(S::Provisioning));
        assert_eq!(
            transition(&forever, S::Deprovisioning),
            Ok(Some((S::Deprovisioning, JobKind::Deprovision)))
        );
        assert_eq!(
            transition(&Operation::Restore, S::Deprovisioning),
            Ok(Some((S::Active, JobKind::SyncAccess)))
        );
        assert_eq!(transition(&Operation::Restore, S::Active), Err(S::Active));
        assert_eq!(transition(&Operation::Restore, S::Deleted), Err(S::Deleted));
    }
}
