//! The tenant service: every request on a tenant, as the API, the CLI and billing make it —
//! create ([`create`]), the lifecycle operations ([`request`]: suspend, resume, change plan,
//! rotate credentials, delete and restore, retry), config ([`update_config`]) and custom domains
//! ([`domains`]).
//!
//! Every request on a tenant runs in ONE catalog transaction: it checks the request, records the
//! tenant's new state, the job that makes the databases match it and the audit entry — or, when
//! refused, writes nothing. Requests compose: each has a `*_in(tx, …)` form that works inside the
//! caller's transaction (billing records an event's tenant changes and the event's mark in one)
//! and returns, beside the tenant, what to [`Announcement::send`] once that transaction has
//! committed: the job workers to wake, the routers to tell. The plain form opens the
//! transaction, commits and announces.

mod config;
mod create;
pub mod domains;
mod lifecycle;
pub(crate) mod view;

pub(crate) use config::{
    profile_of, set_template_upgrades, update_config, upgrade_profile, ConfigChange, DataSource,
    ProfileOutcome, TenantProfile,
};
pub(crate) use create::create_in;
pub use create::{create, CreateTenantError, TenantRequest};
pub(crate) use lifecycle::request_in;
pub use lifecycle::{request, LifecycleError, Operation};

use crate::control_plane::ControlPlane;
use tenancy::catalog::TenantRecord;

/// Runs a request (`record`: one of the `*_in` functions) in a transaction of its own, commits
/// it, then sends what it has to announce; `unavailable` is the request's error for a catalog
/// that fails.
async fn in_transaction<T, E>(
    cp: &ControlPlane,
    unavailable: impl Fn(String) -> E,
    record: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<(T, Announcement), E>,
) -> Result<T, E> {
    let mut client = cp.catalog.get().await.map_err(|e| unavailable(e.to_string()))?;
    let tx = client.transaction().await.map_err(|e| unavailable(tenancy::pg::describe_error(&e)))?;
    let (recorded, announcement) = record(&tx).await?;
    tx.commit().await.map_err(|e| unavailable(tenancy::pg::describe_error(&e)))?;
    announcement.send(cp).await;
    Ok(recorded)
}

/// A request recorded within a transaction that has not committed yet.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// The tenant as the transaction now sees it.
    pub(crate) tenant: TenantRecord,
    /// What to announce once the transaction has committed (nothing when the request changed
    /// nothing).
    pub(crate) announcement: Announcement,
}

impl Recorded {
    fn into_parts(self) -> (TenantRecord, Announcement) {
        (self.tenant, self.announcement)
    }
}

/// What to tell others once a transaction with tenant requests has committed: this process's
/// job workers (jobs were queued) and the routers (a tenant changed). Announcing before the
/// commit would have workers and routers read the catalog before the change is there.
#[derive(Debug, Default)]
#[must_use = "announce it (`send`) once the transaction has committed"]
pub(crate) struct Announcement {
    wake_workers: bool,
    /// The tenant routers are told about, and host names they forget.
    tell_routers: Option<(TenantRecord, Vec<String>)>,
}

impl Announcement {
    /// Nothing to announce.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Jobs were queued: wake the workers.
    pub(crate) fn jobs() -> Self {
        Self { wake_workers: true, tell_routers: None }
    }

    /// `tenant` changed: tell routers (and have them forget `hosts`).
    pub(crate) fn tenant(tenant: &TenantRecord, hosts: Vec<String>) -> Self {
        Self { wake_workers: false, tell_routers: Some((tenant.clone(), hosts)) }
    }

    /// Jobs were queued and `tenant` changed.
    pub(crate) fn jobs_and_tenant(tenant: &TenantRecord) -> Self {
        Self { wake_workers: true, ..Self::tenant(tenant, Vec::new()) }
    }

    /// This announcement and a `later` one of the same transaction: routers hear of the tenant
    /// as the later request left it.
    pub(crate) fn and(self, later: Self) -> Self {
        Self {
            wake_workers: self.wake_workers || later.wake_workers,
            tell_routers: later.tell_routers.or(self.tell_routers),
        }
    }

    /// Wakes the workers and tells the routers (best effort: see
    /// [`ControlPlane::publish_change`]).
    pub(crate) async fn send(self, cp: &ControlPlane) {
        if self.wake_workers {
            cp.jobs_enqueued.notify_waiters();
        }
        if let Some((tenant, hosts)) = self.tell_routers {
            cp.publish_change_with_hosts(&tenant, hosts).await;
        }
    }
}
