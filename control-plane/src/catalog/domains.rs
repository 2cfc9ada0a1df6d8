//! `control.domains`: a tenant's host names, its subdomain (`<slug>.<base domain>`) and custom
//! ones; a host belongs to one tenant at most.

use tenancy::domain::{Slug, TenantId};
use tokio_postgres::GenericClient;

/// Which of a tenant's host names a domain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainKind {
    /// `<slug>.<base domain>`, added by provisioning.
    Subdomain,
    /// One an operator added.
    Custom,
}

impl DomainKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Subdomain => "subdomain",
            Self::Custom => "custom",
        }
    }
}

/// What [`claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The host is the tenant's now.
    Recorded,
    /// The host was recorded already, for this tenant (`true`) or another one.
    Taken { by_this_tenant: bool },
}

/// Records `host` as `tenant`'s, unless some tenant has it already.
pub(crate) async fn claim(
    client: &impl GenericClient,
    host: &str,
    tenant: TenantId,
    kind: DomainKind,
) -> Result<Claim, tokio_postgres::Error> {
    let sql = "INSERT INTO control.domains (host, tenant_id, kind) VALUES ($1, $2, $3)
               ON CONFLICT (host) DO NOTHING";
    if client.execute(sql, &[&host, &tenant.0, &kind.as_str()]).await? == 1 {
        return Ok(Claim::Recorded);
    }
    let row = client.query_one("SELECT tenant_id FROM control.domains WHERE host = $1", &[&host]).await?;
    Ok(Claim::Taken { by_this_tenant: row.get::<_, uuid::Uuid>(0) == tenant.0 })
}

/// Removes the tenant's custom domain `host`; `false` when it has no such custom domain.
pub(crate) async fn delete_custom(
    client: &impl GenericClient,
    host: &str,
    tenant: TenantId,
) -> Result<bool, tokio_postgres::Error> {
    let deleted = client
        .execute(
            "DELETE FROM control.domains WHERE host = $1 AND tenant_id = $2 AND kind = 'custom'",
            &[&host, &tenant.0],
        )
        .await?;
    Ok(deleted > 0)
}

/// Removes every host name of the tenant (when it is deleted).
pub(crate) async fn delete_all(
    client: &impl GenericClient,
    tenant: TenantId,
) -> Result<(), tokio_postgres::Error> {
    client.execute("DELETE FROM control.domains WHERE tenant_id = $1", &[&tenant.0]).await.map(|_| ())
}

/// The host names of the live tenant `slug` and their kinds (`subdomain`, `custom`): its
/// subdomain first, then custom ones by name. Empty when there is no such live tenant.
pub(crate) async fn of_live_tenant(
    client: &impl GenericClient,
    slug: &Slug,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT d.host, d.kind FROM control.domains d
               JOIN control.tenants t ON t.id = d.tenant_id
              WHERE t.slug = $1 AND t.status <> 'deleted'
              ORDER BY d.kind DESC, d.host",
            &[&slug.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
