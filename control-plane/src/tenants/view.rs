//! A tenant as the operator API answers it and `tenantctl tenants` prints it, from the catalog
//! or through the API: one view, one rendering (kept apart from the catalog's row).

use crate::output;
use serde::{Deserialize, Serialize};
use tenancy::catalog::TenantRecord;
use utoipa::ToSchema;

/// A tenant as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) plan: String,
    /// provisioning, active, suspended, deprovisioning, deleted or failed.
    pub(crate) status: String,
    pub(crate) isolation: String,
    pub(crate) cluster: String,
    pub(crate) schema: String,
    /// The tenant's own database, with `database` isolation.
    #[serde(default)]
    pub(crate) database: Option<String>,
    /// Its PostgreSQL role (its password is in the secret store, never shown).
    #[serde(default)]
    pub(crate) role: String,
    /// The last tenant migration applied to it, as the catalog records it (absent before its
    /// first migration, and in answers to changes).
    pub(crate) schema_version: Option<i64>,
    /// `<slug>.<TENANT_BASE_DOMAIN>`.
    pub(crate) host: String,
    pub(crate) pool_size: i32,
    /// How the router's PostgreSQL door lends connections: `transaction` or `session`.
    pub(crate) pool_mode: String,
    pub(crate) rate_limit_per_second: Option<i32>,
    pub(crate) statement_timeout_ms: Option<i32>,
    /// Enabled modules, module settings and theme.
    #[schema(value_type = Object)]
    pub(crate) config: serde_json::Value,
    /// The provisioning step that failed, for `failed` tenants.
    pub(crate) failed_step: Option<String>,
    pub(crate) last_error: Option<String>,
    /// Bumped on every change; routers drop older cached copies.
    pub(crate) generation: i64,
    /// For a `deprovisioning` tenant in `GET /v1/tenants/{slug}`: when its data is dropped
    /// (restoring it before then keeps it); absent when no drop is scheduled.
    #[serde(default)]
    pub(crate) drop_after: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl Tenant {
    pub(crate) fn from_record(record: &TenantRecord, base_domain: &tenancy::domain::BaseDomain) -> Self {
        Self {
            id: record.id.to_string(),
            slug: record.slug.to_string(),
            name: record.display_name.clone(),
            plan: record.plan.to_string(),
            status: record.status.to_string(),
            isolation: record.isolation.to_string(),
            cluster: record.cluster.clone(),
            schema: record.schema_name.to_string(),
            database: record.database_name.as_ref().map(ToString::to_string),
            role: record.role_name.to_string(),
            schema_version: None,
            host: base_domain.host_for(&record.slug),
            pool_size: record.pool_size,
            pool_mode: record.pool_mode.to_string(),
            rate_limit_per_second: record.rate_limit_per_second,
            statement_timeout_ms: record.statement_timeout_ms,
            config: record.config.clone(),
            failed_step: record.failed_step.clone(),
            last_error: record.last_error.clone(),
            generation: record.generation,
            drop_after: None,
            created_at: record.created_at.to_rfc3339(),
            updated_at: record.updated_at.to_rfc3339(),
        }
    }

    /// The schema, in its own database with `database` isolation.
    fn place(&self) -> String {
        match &self.database {
            Some(database) => format!("{database}.{}", self.schema),
            None => self.schema.clone(),
        }
    }

    fn row(&self) -> Vec<String> {
        let mut row = vec![
            self.slug.clone(),
            self.name.clone(),
            self.plan.clone(),
            self.status.clone(),
            self.place(),
            self.id.clone(),
        ];
        if output::wide() {
            row.extend([
                self.isolation.clone(),
                self.cluster.clone(),
                self.role.clone(),
                self.schema_version.map_or_else(|| "-".to_owned(), |v| format!("V{v}")),
                format!("{} ({})", self.pool_size, self.pool_mode),
                chrono::DateTime::parse_from_rfc3339(&self.created_at)
                    .map_or_else(|_| self.created_at.clone(), |at| at.format("%Y-%m-%d %H:%M").to_string()),
            ]);
        }
        row
    }
}

/// The tenant table's headers (more with `-o wide`).
fn headers() -> &'static [&'static str] {
    if output::wide() {
        &[
            "slug",
            "name",
            "plan",
            "status",
            "schema",
            "id",
            "isolation",
            "cluster",
            "role",
            "version",
            "pool",
            "created",
        ]
    } else {
        &["slug", "name", "plan", "status", "schema", "id"]
    }
}

/// `tenants list`: JSON, or a table ("No tenants found." for none).
pub(crate) fn print_list(tenants: &[Tenant], json: bool) {
    if json {
        output::json(&tenants);
    } else {
        output::listing("tenants", headers(), &tenants.iter().map(Tenant::row).collect::<Vec<_>>());
    }
}

/// A tenant after a change: JSON, or its row (and why it failed, if it did).
pub(crate) fn print_one(tenant: &Tenant, json: bool) {
    if json {
        output::json(tenant);
        return;
    }
    output::table(headers(), &[tenant.row()]);
    if let (true, Some(step), Some(error)) =
        (tenant.status == "failed", &tenant.failed_step, &tenant.last_error)
    {
        output::note(&format!("provisioning failed at step {step}: {error}"));
    }
}

/// `tenants show`: JSON, or a line per fact (`extra` ones after the others).
pub(crate) fn print_details(tenant: &Tenant, extra: &[(&str, String)], json: bool) {
    if json {
        output::json(tenant);
        return;
    }
    let mut facts = vec![
        ("slug", tenant.slug.clone()),
        ("name", tenant.name.clone()),
        ("id", tenant.id.clone()),
        ("plan", tenant.plan.clone()),
        ("status", tenant.status.clone()),
        ("host", tenant.host.clone()),
        ("cluster", tenant.cluster.clone()),
        ("schema", tenant.place()),
        ("role", tenant.role.clone()),
        ("version", tenant.schema_version.map_or_else(|| "-".to_owned(), |v| format!("V{v}"))),
        ("pool size", tenant.pool_size.to_string()),
        ("pool mode", tenant.pool_mode.clone()),
        ("generation", tenant.generation.to_string()),
        ("last error", tenant.last_error.clone().unwrap_or_default()),
    ];
    facts.extend(extra.iter().cloned());
    for (key, value) in facts {
        output::line(&format!("{key:<12}{value}"));
    }
    match &tenant.drop_after {
        Some(at) => output::line(&format!(
            "{:<12}{at} (`tenantctl tenants restore {}` before then keeps it)",
            "drop after", tenant.slug
        )),
        None if tenant.status == "deprovisioning" => output::line(&format!(
            "{:<12}not scheduled (its drop failed); `tenantctl tenants delete {}` tries again",
            "drop after", tenant.slug
        )),
        None => {}
    }
}

/// Tenant `record` as `show` gives it: with its schema version and, while it is being
/// deprovisioned, when its data is dropped.
pub(crate) async fn shown(
    cp: &crate::control_plane::ControlPlane,
    record: &TenantRecord,
) -> Result<Tenant, tenancy::catalog::CatalogError> {
    use tenancy::catalog::CatalogError;
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    let schema_version =
        crate::catalog::tenants::schema_version(&**client, record.id).await.map_err(CatalogError::from)?;
    let drop_after = if record.status == tenancy::domain::TenantStatus::Deprovisioning {
        crate::catalog::jobs::scheduled(&**client, crate::jobs::JobKind::Deprovision, record.id)
            .await
            .map_err(CatalogError::from)?
    } else {
        None
    };
    Ok(Tenant {
        schema_version,
        drop_after: drop_after.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ..Tenant::from_record(record, &cp.base_domain)
    })
}

/// `tenants show --watch`'s end: once the tenant is no longer being provisioned, nor being
/// deleted with its drop due within the horizon commands wait for (a drop days away, or one
/// that failed, is not waited for); exit code 1 if it failed.
pub(crate) fn settled(tenant: &Tenant) -> Option<std::process::ExitCode> {
    let drop_due = || {
        tenant.drop_after.as_deref().and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok()).is_some_and(
            |at| {
                at <= chrono::Utc::now()
                    + chrono::Duration::from_std(crate::catalog::jobs::WAIT_HORIZON).unwrap_or_default()
            },
        )
    };
    match tenant.status.as_str() {
        "provisioning" => None,
        "deprovisioning" if drop_due() => None,
        "failed" => Some(std::process::ExitCode::from(1)),
        _ => Some(std::process::ExitCode::SUCCESS),
    }
}
