//! The operator API's request and response bodies (its contract, kept apart from catalog rows).

use serde::{Deserialize, Serialize};
use tenancy::catalog::TenantRecord;
use utoipa::{IntoParams, ToSchema};

/// A tenant as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
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
            created_at: record.created_at.to_rfc3339(),
            updated_at: record.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenant {
    /// 3-63 characters of a-z, 0-9 and '-', starting with a letter; not reserved.
    pub(crate) slug: String,
    /// A plan template: starter, pro, enterprise, ...
    pub(crate) plan: String,
    /// Display name (default: the slug).
    pub(crate) name: Option<String>,
    /// `schema` or `database` (default: the plan's).
    pub(crate) isolation: Option<String>,
    /// The cluster to place it on (default: the least loaded with room).
    pub(crate) cluster: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantPage {
    pub(crate) tenants: Vec<Tenant>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub(crate) next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateUpgrades {
    /// Whether `tenantctl templates upgrade` upgrades the tenant's profile without it being
    /// named (true, the default) or leaves it as it is (false).
    pub(crate) enabled: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    pub(crate) status: Option<String>,
    pub(crate) plan: Option<String>,
    pub(crate) cluster: Option<String>,
    /// Only tenants whose slug or name contains this (case-insensitive).
    pub(crate) q: Option<String>,
    /// Only tenants at this schema version.
    pub(crate) schema_version: Option<i64>,
    /// Page size, 1 to 500 (default 50).
    pub(crate) limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPlan {
    pub(crate) plan: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetConfig {
    /// The tenant's whole new config (a JSON object).
    #[schema(value_type = Object)]
    pub(crate) config: serde_json::Value,
    /// The config this one was made from: when given, the change is made only if the config is
    /// still this (409 `changed_meanwhile` otherwise), as an editor saves.
    #[schema(value_type = Option<Object>)]
    pub(crate) expected: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// How long to keep the data before dropping it, e.g. `0s`, `7d` (default
    /// DEPROVISION_RETENTION).
    pub(crate) retention: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only this tenant (slug).
    pub(crate) tenant: Option<String>,
    /// Most recent first, 1 to 500 (default 100).
    pub(crate) limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BillingEventsQuery {
    /// Only events about this tenant's subscription (slug), or these (comma-separated slugs).
    pub(crate) tenant: Option<String>,
    /// Newest first, 1 to 500 (default 100).
    pub(crate) limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Job {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) tenant_id: Option<String>,
    pub(crate) state: String,
    pub(crate) attempts: i32,
    pub(crate) last_error: Option<String>,
    pub(crate) run_after: String,
    pub(crate) created_at: String,
    pub(crate) finished_at: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only entries about this tenant (slug), or these (comma-separated slugs).
    pub(crate) tenant: Option<String>,
    /// Only entries by this actor: an operator token's name, `billing`, or `user:<id>` for an
    /// internal user's access through a router.
    pub(crate) actor: Option<String>,
    /// Only this action, e.g. `tenant.access` (an internal user's access through a router) or
    /// `tenant.suspend`.
    pub(crate) action: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub(crate) since: Option<String>,
    /// Most recent first, 1 to 500 (default 100).
    pub(crate) limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEntry {
    pub(crate) id: i64,
    pub(crate) at: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) tenant_id: Option<String>,
    #[schema(value_type = Object)]
    pub(crate) detail: serde_json::Value,
}

/// Every error: `{"error":{"code","message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_slug`, `duplicate_slug`, `wrong_state`.
    pub(crate) code: String,
    pub(crate) message: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddDomain {
    /// A host name outside TENANT_BASE_DOMAIN, e.g. `shop.acme.com`.
    pub(crate) host: String,
}
