//! The operator API's request and response bodies (its contract, kept apart from catalog rows).

use serde::{Deserialize, Serialize};
use tenancy::catalog::TenantRecord;
use utoipa::{IntoParams, ToSchema};

/// A tenant as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub plan: String,
    /// provisioning, active, suspended, deprovisioning, deleted or failed.
    pub status: String,
    pub isolation: String,
    pub cluster: String,
    pub schema: String,
    /// `<slug>.<TENANT_BASE_DOMAIN>`.
    pub host: String,
    pub pool_size: i32,
    pub rate_limit_per_second: Option<i32>,
    pub statement_timeout_ms: Option<i32>,
    /// Enabled modules, module settings and theme.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// The provisioning step that failed, for `failed` tenants.
    pub failed_step: Option<String>,
    pub last_error: Option<String>,
    /// Bumped on every change; routers drop older cached copies.
    pub generation: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Tenant {
    pub fn from_record(record: &TenantRecord, base_domain: &tenancy::domain::BaseDomain) -> Self {
        Self {
            id: record.id.to_string(),
            slug: record.slug.to_string(),
            name: record.display_name.clone(),
            plan: record.plan.to_string(),
            status: record.status.to_string(),
            isolation: record.isolation.to_string(),
            cluster: record.cluster.clone(),
            schema: record.schema_name.to_string(),
            host: base_domain.host_for(&record.slug),
            pool_size: record.pool_size,
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
pub struct CreateTenant {
    /// 3-63 characters of a-z, 0-9 and '-', starting with a letter; not reserved.
    pub slug: String,
    /// A plan template: starter, pro, enterprise, ...
    pub plan: String,
    /// Display name (default: the slug).
    pub name: Option<String>,
    /// `schema` or `database` (default: the plan's).
    pub isolation: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub status: Option<String>,
    pub plan: Option<String>,
    pub cluster: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlan {
    pub plan: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// The tenant's whole new config (a JSON object).
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// How long to keep the data before dropping it, e.g. `0s`, `7d` (default
    /// DEPROVISION_RETENTION).
    pub retention: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this tenant (slug).
    pub tenant: Option<String>,
    /// Most recent first, 1 to 500 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub tenant_id: Option<String>,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub run_after: String,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub tenant_id: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Every error: `{"error":{"code","message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_slug`, `duplicate_slug`, `wrong_state`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// A host name outside TENANT_BASE_DOMAIN, e.g. `shop.acme.com`.
    pub host: String,
}
