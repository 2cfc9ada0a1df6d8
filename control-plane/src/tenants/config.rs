//! A tenant's config (modules, module settings, theme): what its plan template gave it, replaced
//! by an operator.

use super::lifecycle::{catalog_error, reload};
use super::{Announcement, LifecycleError, Recorded};
use crate::control_plane::ControlPlane;
use tenancy::catalog::TenantRecord;
use tenancy::domain::Slug;

/// Replaces the config of the live tenant `slug` in a transaction of its own (see
/// [`set_config_in`]); routers are told once it has committed.
pub(crate) async fn set_config(
    cp: &ControlPlane,
    slug: &Slug,
    config: serde_json::Value,
    actor: &str,
) -> Result<TenantRecord, LifecycleError> {
    super::in_transaction(cp, LifecycleError::Catalog, async |tx| {
        set_config_in(tx, slug, config, actor).await.map(Recorded::into_parts)
    })
    .await
}

/// Records the live tenant `slug`'s new config (bumping its generation) and the audit entry
/// within `tx`. The caller commits, then sends the announcement.
pub(crate) async fn set_config_in(
    tx: &deadpool_postgres::Transaction<'_>,
    slug: &Slug,
    config: serde_json::Value,
    actor: &str,
) -> Result<Recorded, LifecycleError> {
    let id = crate::catalog::tenants::set_config(&**tx, slug, &config)
        .await
        .map_err(|e| catalog_error(&e))?
        .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
    crate::catalog::audit::record(
        &**tx,
        actor,
        "tenant.set_config",
        Some(id),
        serde_json::json!({ "config": config }),
    )
    .await
    .map_err(|e| catalog_error(&e))?;
    let tenant = reload(tx, id, slug).await?;
    let announcement = Announcement::tenant(&tenant, Vec::new());
    Ok(Recorded { tenant, announcement })
}
