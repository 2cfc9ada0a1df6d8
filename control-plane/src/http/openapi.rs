//! The OpenAPI document of the operator API, served at `/v1/openapi.json`.

use super::{api, fleet, history, migrations, moves, tenants, tokens, webhook};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "tenantctl operator API", description = "Tenants of schema-per-tenant PostgreSQL: create, inspect, suspend, resume, change plan, rotate credentials, deprovision, move; fleet migration runs."),
    paths(
        tenants::create, tenants::list, tenants::show, tenants::suspend, tenants::resume,
        tenants::rotate_credentials, tenants::retry, tenants::restore, tenants::set_plan, tenants::delete, tenants::get_config, tenants::set_config, tenants::patch_config, tenants::set_template_upgrades,
        tenants::domains, tenants::add_domain, tenants::remove_domain,
        moves::start, moves::list, moves::abort,
        history::jobs, history::audit, history::billing_events,
        migrations::plan, migrations::start, migrations::list, migrations::show, migrations::resume, migrations::halt,
        tokens::whoami, tokens::list, tokens::create, tokens::revoke,
        fleet::summary, fleet::clusters, fleet::router_pools,
        webhook::receive,
    ),
    components(schemas(
        api::Tenant, api::CreateTenant, api::TenantPage, api::SetPlan, api::SetConfig, crate::tenants::TenantProfile, crate::tenants::DataSource, api::TemplateUpgrades, api::Job,
        api::AuditEntry, crate::billing::events::EventStatus, api::ErrorBody, api::ErrorDetail, api::AddDomain, crate::tenants::domains::Domain,
        migrations::StartRun, migrations::MigrationRun, migrations::MigrationItem,
        crate::fleet::plan::Plan, crate::fleet::plan::VersionCount, crate::fleet::plan::PendingTenant, crate::fleet::plan::Drift, crate::fleet::plan::Headroom, crate::fleet::templates::TemplatePlan,
        moves::StartMove, crate::moves::view::Move, crate::moves::view::MovePlacement,
        fleet::FleetSummary, fleet::Cluster, crate::catalog::fleet_summary::Count, crate::catalog::fleet_summary::Snapshot, crate::catalog::fleet_summary::VersionCount,
        webhook::BillingEvent, webhook::Received,
        tokens::WhoAmI, tokens::CreateToken, tokens::CreatedToken, crate::catalog::tokens::TokenInfo, crate::catalog::tokens::Scope,
    )),
    modifiers(&BearerToken, &OperationIds, &PathParameters, &AuthErrors),
    security(("bearer" = [])),
    tags((name = "tenants", description = "Tenant lifecycle"), (name = "history", description = "Jobs and audit log"), (name = "migrations", description = "Fleet migration runs"), (name = "moves", description = "Moving a tenant to another cluster or isolation while it is in use"), (name = "billing", description = "The billing webhook (signed events, no token) and what became of the events it received"), (name = "fleet", description = "The fleet at a glance: tenants by status, plan and schema version, clusters' load, routers' pools"), (name = "tokens", description = "Operator tokens and their scopes: read_only reads, operator changes, admin also manages tokens")),
)]
pub(crate) struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Operation ids unique across the document, as the specification requires: the handler's
/// name after its tag (`tenants_list`, `tokens_list`, `migrations_list`).
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let tag = operation.tags.as_ref().and_then(|tags| tags.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

/// Every `{name}` of a path declared as a path parameter of each of its operations (the
/// specification requires it; handlers that take the path raw do not declare it themselves).
struct PathParameters;

impl Modify for PathParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        for (path, item) in &mut openapi.paths.paths {
            let names: Vec<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
                .collect();
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                for name in &names {
                    if parameters.iter().any(|p| p.name == *name && p.parameter_in == ParameterIn::Path) {
                        continue;
                    }
                    let description = match *name {
                        "slug" => "The tenant's slug.",
                        "host" => "A domain of the tenant.",
                        _ => "Identifies the resource.",
                    };
                    parameters.push(
                        ParameterBuilder::new()
                            .name(*name)
                            .parameter_in(ParameterIn::Path)
                            .required(Required::True)
                            .description(Some(description))
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .build(),
                    );
                }
            }
        }
    }
}

/// The answers every operation behind a token may give: 401 (no token, or an unknown, revoked
/// or expired one) and 403 (its scope does not cover the operation).
struct AuthErrors;

impl Modify for AuthErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                // Operations that need no token say so with an empty security requirement.
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("No token, or an unknown, revoked or expired one.").into());
                responses
                    .entry("403".into())
                    .or_insert_with(|| error("The token's scope does not cover this operation.").into());
            }
        }
    }
}

pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
