//! The operator API's request and response bodies (its contract, kept apart from catalog rows).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub(crate) use crate::tenants::view::Tenant;

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
    /// Queued, and able to run within a minute (not behind a job of its tenant due later): what
    /// `tenantctl` waits for after a change (a drop after a retention period is not waited for).
    pub(crate) due: bool,
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
