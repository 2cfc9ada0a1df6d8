//! The audit log: who did what to which tenant.

use tenancy::domain::TenantId;
use tokio_postgres::GenericClient;

pub(crate) async fn record(
    client: &impl GenericClient,
    actor: &str,
    action: &str,
    tenant: Option<TenantId>,
    detail: serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO control.audit_log (actor, action, tenant_id, detail) VALUES ($1, $2, $3, $4)",
            &[&actor, &action, &tenant.map(|t| t.0), &detail],
        )
        .await
        .map(|_| ())
}

/// The status a tenant had when it was last deleted (the `from` of its newest
/// `tenant.deprovision` entry that did not find it deprovisioning already), if the log says.
pub(crate) async fn status_before_delete(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT detail->>'from' FROM control.audit_log
              WHERE tenant_id = $1 AND action = 'tenant.deprovision' AND detail->>'from' <> 'deprovisioning'
              ORDER BY id DESC LIMIT 1",
            &[&id.0],
        )
        .await?;
    Ok(row.and_then(|row| row.get(0)))
}

/// An entry of the audit log.
pub(crate) struct Entry {
    pub(crate) id: i64,
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) tenant_id: Option<uuid::Uuid>,
    pub(crate) detail: serde_json::Value,
}

/// Which entries of the audit log to read.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditFilter {
    /// About the tenants with these slugs (live or deleted); empty: any.
    pub(crate) tenants: Vec<String>,
    /// By this actor (an operator token's name, `billing`, `user:<id>` for an internal user).
    pub(crate) actor: Option<String>,
    /// Of this action (`tenant.access`, `tenant.suspend`, …).
    pub(crate) action: Option<String>,
    /// At or after this time.
    pub(crate) since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The newest `limit` entries `filter` keeps, newest first.
pub(crate) async fn recent(
    client: &impl GenericClient,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<Entry>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.id, a.at, a.actor, a.action, a.tenant_id, a.detail
               FROM control.audit_log a
              WHERE (cardinality($1::text[]) = 0
                     OR a.tenant_id IN (SELECT id FROM control.tenants WHERE slug = ANY($1)))
                AND ($2::text IS NULL OR a.actor = $2)
                AND ($3::text IS NULL OR a.action = $3)
                AND ($4::timestamptz IS NULL OR a.at >= $4)
              ORDER BY a.id DESC LIMIT $5",
            &[&filter.tenants, &filter.actor, &filter.action, &filter.since, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            id: r.get("id"),
            at: r.get("at"),
            actor: r.get("actor"),
            action: r.get("action"),
            tenant_id: r.get("tenant_id"),
            detail: r.get("detail"),
        })
        .collect())
}
