//! Jobs: the work the control plane does after it has recorded what a tenant should be. The
//! queue is durable (`control.jobs`, see [`crate::catalog::jobs`]): a worker claims a job inside
//! a transaction that stays open while the job runs, so a crash puts it back. Each kind's handler
//! reads the tenant's state from the catalog and makes the databases match it, so running one
//! twice, or after a crash half-way, is safe.
//!
//! - [`runner`]: claiming, running, retrying with back-off (by the error's kind), the workers of
//!   `tenantctl serve` and the CLI's wait for a tenant's jobs.
//! - one handler per kind: [`provision`], [`lifecycle`] (access,
//!   plan, credentials, deprovisioning) and billing events ([`crate::billing::process`]).
//!
//! Adding a kind: a variant here, its handler, and its arm in [`runner`]'s dispatch.

pub(crate) mod lifecycle;
pub mod provision;
pub mod runner;

use tenancy::error::{ErrorKind, OperationError};

/// Kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
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
    /// Move the tenant to another placement ([`crate::moves`]).
    Move,
    /// Drop a moved tenant's old copy after the retention period (not a job of the tenant's:
    /// those run in order, and it would hold up every later one).
    DropMoveSource,
}

impl JobKind {
    const ALL: [Self; 8] = [
        Self::Provision,
        Self::SyncAccess,
        Self::ApplyPlan,
        Self::RotateCredentials,
        Self::Deprovision,
        Self::BillingEvent,
        Self::Move,
        Self::DropMoveSource,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::SyncAccess => "sync_access",
            Self::ApplyPlan => "apply_plan",
            Self::RotateCredentials => "rotate_credentials",
            Self::Deprovision => "deprovision",
            Self::BillingEvent => "billing_event",
            Self::Move => "move",
            Self::DropMoveSource => "drop_move_source",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// Why a job's attempt failed: its kind decides whether the job is retried (after a back-off)
/// or fails for good; a provisioning job also says at which step.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct JobError {
    pub(crate) kind: ErrorKind,
    pub(crate) step: Option<&'static str>,
    pub(crate) message: String,
}

impl JobError {
    /// An operation's error, of its kind.
    pub(crate) fn of(err: &(impl OperationError + ?Sized)) -> Self {
        Self { kind: err.kind(), step: None, message: err.to_string() }
    }

    /// A failure that trying again will not mend.
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Failed, step: None, message: message.into() }
    }
}

impl From<crate::jobs::provision::ProvisionError> for JobError {
    fn from(err: crate::jobs::provision::ProvisionError) -> Self {
        Self {
            kind: err.kind(),
            step: err.step().map(crate::jobs::provision::Step::as_str),
            message: err.to_string(),
        }
    }
}

impl From<tenancy::secrets::SecretError> for JobError {
    fn from(err: tenancy::secrets::SecretError) -> Self {
        Self::of(&err)
    }
}

impl From<crate::moves::MoveError> for JobError {
    fn from(err: crate::moves::MoveError) -> Self {
        let step = match &err {
            crate::moves::MoveError::Step { step, .. } => Some(*step),
            _ => None,
        };
        Self { kind: err.kind(), step, message: err.to_string() }
    }
}

impl From<crate::billing::process::BillingProcessError> for JobError {
    fn from(err: crate::billing::process::BillingProcessError) -> Self {
        Self::of(&err)
    }
}
