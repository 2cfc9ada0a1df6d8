//! Placement: which cluster a new tenant goes to.

use crate::tenants::CreateTenantError;

/// Key of the advisory lock that makes placements one at a time, so two concurrent requests do
/// not both take a cluster's last free place.
pub const PLACEMENT_LOCK: i64 = 0x7465_6e61_6e63_7902;

/// The cluster a new tenant goes to: `pinned` (registered, and not being drained; its capacity
/// is the operator's to overrule), else the least loaded (live tenants / capacity) with room.
/// Takes the placement lock for the rest of `tx`, which must record the tenant before it
/// commits.
pub(crate) async fn place(
    tx: &deadpool_postgres::Transaction<'_>,
    pinned: Option<&str>,
) -> Result<String, CreateTenantError> {
    let catalog_error =
        |e: tokio_postgres::Error| CreateTenantError::Catalog(tenancy::pg::describe_error(&e));
    crate::catalog::clusters::lock_placement(&**tx).await.map_err(catalog_error)?;
    if let Some(name) = pinned {
        return match crate::catalog::clusters::draining(&**tx, name).await.map_err(catalog_error)? {
            None => Err(CreateTenantError::UnknownCluster(name.to_owned())),
            Some(true) => Err(CreateTenantError::ClusterDraining(name.to_owned())),
            Some(false) => Ok(name.to_owned()),
        };
    }
    crate::catalog::clusters::least_loaded_with_room(&**tx, None)
        .await
        .map_err(catalog_error)?
        .ok_or(CreateTenantError::NoCapacity)
}
