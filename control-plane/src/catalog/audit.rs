//! The audit log: who did what to which tenant.

use tenancy::domain::TenantId;
use tokio_postgres::GenericClient;

pub async fn record(
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
