//! The OpenAPI document of the operator API, served at `/v1/openapi.json`.

use super::{api, fleet, history, migrations, moves, tenants, tokens};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "tenantctl operator API", description = "Tenants of schema-per-tenant PostgreSQL: create, inspect, suspend, resume, change plan, rotate credentials, deprovision, move; fleet migration runs."),
    paths(
        tenants::create, tenants::list, tenants::show, tenants::suspend, tenants::resume,
        tenants::rotate_credentials, tenants::retry, tenants::restore, tenants::set_plan, tenants::delete, tenants::set_config, tenants::patch_config, tenants::set_template_upgrades,
        tenants::domains, tenants::add_domain, tenants::remove_domain,
        moves::start, moves::list, moves::abort,
        history::jobs, history::audit,
        migrations::start, migrations::list, migrations::show, migrations::resume, migrations::halt,
        tokens::whoami, tokens::list, tokens::create, tokens::revoke,
        fleet::summary, fleet::clusters, fleet::router_pools,
    ),
    components(schemas(
        api::Tenant, api::CreateTenant, api::TenantPage, api::SetPlan, api::SetConfig, api::TemplateUpgrades, api::Job,
        api::AuditEntry, api::ErrorBody, api::ErrorDetail, api::AddDomain, crate::tenants::domains::Domain,
        migrations::StartRun, migrations::MigrationRun, migrations::MigrationItem,
        moves::StartMove, moves::Move, moves::MovePlacement,
        fleet::FleetSummary, fleet::Cluster, crate::catalog::fleet_summary::Count, crate::catalog::fleet_summary::Snapshot, crate::catalog::fleet_summary::VersionCount,
        tokens::WhoAmI, tokens::CreateToken, tokens::CreatedToken, crate::catalog::tokens::TokenInfo, crate::catalog::tokens::Scope,
    )),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags((name = "tenants", description = "Tenant lifecycle"), (name = "history", description = "Jobs and audit log"), (name = "migrations", description = "Fleet migration runs"), (name = "moves", description = "Moving a tenant to another cluster or isolation while it is in use"), (name = "fleet", description = "The fleet at a glance: tenants by status, plan and schema version, clusters' load, routers' pools"), (name = "tokens", description = "Operator tokens and their scopes: read_only reads, operator changes, admin also manages tokens")),
)]
pub(crate) struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
