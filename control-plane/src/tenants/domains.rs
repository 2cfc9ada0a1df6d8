//! Custom domains: besides `<slug>.<TENANT_BASE_DOMAIN>`, a tenant may be reached at host names
//! of its own (`shop.acme.com`). Each is a validated host name, unique across tenants, and never
//! under the base domain (those names belong to slugs). Routers are told once a change commits.

use super::Announcement;
use crate::catalog::domains::{self, Claim, DomainKind};
use crate::catalog::tenants;
use crate::control_plane::ControlPlane;
use tenancy::domain::{normalize_host, HostError, Slug};
use tenancy::error::{ErrorKind, OperationError};

/// Why a domain change was refused. Nothing changes when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("invalid host name: {0}")]
    InvalidHost(#[from] HostError),
    #[error("{0} is under the base domain, where host names belong to tenant slugs")]
    UnderBaseDomain(String),
    #[error("no tenant {0}")]
    TenantNotFound(String),
    #[error("{0} already belongs to another tenant")]
    Taken(String),
    #[error("tenant {slug} has no custom domain {host}")]
    NoSuchDomain { slug: String, host: String },
    #[error("catalog unavailable: {0}")]
    Catalog(String),
}

impl OperationError for DomainError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidHost(_) | Self::UnderBaseDomain(_) => ErrorKind::Invalid,
            Self::TenantNotFound(_) | Self::NoSuchDomain { .. } => ErrorKind::NotFound,
            Self::Taken(_) => ErrorKind::Conflict,
            Self::Catalog(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidHost(_) | Self::UnderBaseDomain(_) => "invalid_host",
            Self::TenantNotFound(_) | Self::NoSuchDomain { .. } => "not_found",
            Self::Taken(_) => "duplicate_domain",
            Self::Catalog(_) => "catalog_unavailable",
        }
    }
}

/// One of a tenant's host names.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Domain {
    pub host: String,
    /// `subdomain` (from the slug) or `custom`.
    pub kind: String,
}

fn catalog_error(e: &tokio_postgres::Error) -> DomainError {
    DomainError::Catalog(tenancy::pg::describe_error(e))
}

/// A custom host name, validated.
fn custom_host(cp: &ControlPlane, raw: &str) -> Result<String, DomainError> {
    if raw.contains(':') {
        return Err(DomainError::InvalidHost(HostError::Port));
    }
    let host = normalize_host(raw)?;
    let base = cp.base_domain.as_str();
    if host == base || host.ends_with(&format!(".{base}")) {
        return Err(DomainError::UnderBaseDomain(host));
    }
    Ok(host)
}

/// Adds `raw_host` to the live tenant `slug` (adding it again is a no-op); returns the host.
pub async fn add(cp: &ControlPlane, slug: &Slug, raw_host: &str, actor: &str) -> Result<String, DomainError> {
    let host = custom_host(cp, raw_host)?;
    change(cp, slug, &host, actor, true).await?;
    Ok(host)
}

/// Removes the custom domain `raw_host` from the live tenant `slug`.
pub async fn remove(cp: &ControlPlane, slug: &Slug, raw_host: &str, actor: &str) -> Result<(), DomainError> {
    let host = normalize_host(raw_host)?;
    change(cp, slug, &host, actor, false).await
}

/// Adds or removes `host` in a transaction of its own (see [`change_in`]); routers are told once
/// it has committed.
async fn change(
    cp: &ControlPlane,
    slug: &Slug,
    host: &str,
    actor: &str,
    adding: bool,
) -> Result<(), DomainError> {
    super::in_transaction(cp, DomainError::Catalog, async |tx| {
        change_in(tx, slug, host, actor, adding).await.map(|announcement| ((), announcement))
    })
    .await
}

/// Adds (`adding`) or removes the custom domain `host` of the live tenant `slug` within `tx`
/// (the tenant's row is locked until it ends), bumping the tenant's generation; nothing to
/// announce when the tenant has the host already. The caller commits, then sends the
/// announcement.
async fn change_in(
    tx: &deadpool_postgres::Transaction<'_>,
    slug: &Slug,
    host: &str,
    actor: &str,
    adding: bool,
) -> Result<Announcement, DomainError> {
    let id = tenants::lock_live(&**tx, slug)
        .await
        .map_err(|e| catalog_error(&e))?
        .ok_or_else(|| DomainError::TenantNotFound(slug.to_string()))?;
    if adding {
        match domains::claim(&**tx, host, id, DomainKind::Custom).await.map_err(|e| catalog_error(&e))? {
            Claim::Recorded => {}
            Claim::Taken { by_this_tenant: true } => return Ok(Announcement::none()),
            Claim::Taken { by_this_tenant: false } => return Err(DomainError::Taken(host.to_owned())),
        }
    } else if !domains::delete_custom(&**tx, host, id).await.map_err(|e| catalog_error(&e))? {
        return Err(DomainError::NoSuchDomain { slug: slug.to_string(), host: host.to_owned() });
    }
    tenants::bump_generation(&**tx, id).await.map_err(|e| catalog_error(&e))?;
    let action = if adding { "domain.add" } else { "domain.remove" };
    crate::catalog::audit::record(&**tx, actor, action, Some(id), serde_json::json!({ "host": host }))
        .await
        .map_err(|e| catalog_error(&e))?;
    let tenant = tenancy::catalog::tenant_by_id(&**tx, id)
        .await
        .map_err(|e| DomainError::Catalog(e.to_string()))?
        .ok_or_else(|| DomainError::TenantNotFound(slug.to_string()))?;
    Ok(Announcement::tenant(&tenant, vec![host.to_owned()]))
}

/// The host names of the live tenant `slug`.
pub async fn list(cp: &ControlPlane, slug: &Slug) -> Result<Vec<Domain>, DomainError> {
    let client = cp.catalog.get().await.map_err(|e| DomainError::Catalog(e.to_string()))?;
    let rows = domains::of_live_tenant(&**client, slug).await.map_err(|e| catalog_error(&e))?;
    // A live tenant always has its subdomain; none means no such tenant (or not yet
    // provisioned, which has no domains to show either).
    if rows.is_empty() && !tenants::live_exists(&**client, slug).await.map_err(|e| catalog_error(&e))? {
        return Err(DomainError::TenantNotFound(slug.to_string()));
    }
    Ok(rows.into_iter().map(|(host, kind)| Domain { host, kind }).collect())
}

#[cfg(test)]
mod tests {
    use super::DomainError;
    use tenancy::error::{ErrorKind, OperationError};

    #[test]
    fn error_codes() {
        assert_eq!(DomainError::Taken("x".into()).code(), "duplicate_domain");
        assert_eq!(DomainError::UnderBaseDomain("x".into()).code(), "invalid_host");
        assert_eq!(DomainError::Taken("x".into()).kind(), ErrorKind::Conflict);
    }
}
