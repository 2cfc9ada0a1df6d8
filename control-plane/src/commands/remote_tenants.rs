//! Through the operator API with a saved context: a tenant's domains, moves and profile, the
//! clusters and the billing events, printed as the catalog's commands print them (the API's
//! answers are read into the same types).

use super::deadline::Deadline;
use super::remote::{urlencode, Remote};
use super::templates::{config_change, print_profile, print_template_upgrades, Edit};
use super::{parse_slug, CliError};
use crate::cli::{
    BillingCommand, ClustersCommand, Command, ConfigCommand, ConfigSetArgs, EventsArgs, MigrateCommand,
    MoveArgs, PlanArgs, TenantsCommand,
};
use crate::moves::view::Move;
use crate::output;
use crate::tenants::{ConfigChange, TenantProfile};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;
use tenancy::error::ErrorKind;

/// Runs `command` through `remote`; `None` when it is not one of these.
pub(super) async fn run(remote: &Remote, command: Command, json: bool) -> Option<Result<ExitCode, CliError>> {
    Some(match command {
        Command::Tenants(TenantsCommand::Domains(args)) => domains(remote, &args.slug, json).await,
        Command::Tenants(TenantsCommand::AddDomain(args)) => {
            change_domain(remote, &args.slug, &args.host, true).await
        }
        Command::Tenants(TenantsCommand::RemoveDomain(args)) => {
            change_domain(remote, &args.slug, &args.host, false).await
        }
        Command::Tenants(TenantsCommand::Moves(args)) => moves(remote, &args, json).await,
        Command::Tenants(TenantsCommand::Move(args)) => move_tenant(remote, args, json).await,
        Command::Tenants(TenantsCommand::TemplateUpgrades(args)) => {
            template_upgrades(remote, &args.slug, args.state == "on", json).await
        }
        Command::Tenants(TenantsCommand::Config(ConfigCommand::Get(args))) => {
            profile(remote, &args.slug).await.map(|p| {
                print_profile(&p, json);
                ExitCode::SUCCESS
            })
        }
        Command::Tenants(TenantsCommand::Config(ConfigCommand::Set(args))) => {
            config_set(remote, &args, json).await
        }
        Command::Tenants(TenantsCommand::Config(ConfigCommand::Edit(args))) => {
            config_edit(remote, &args.slug, json).await
        }
        Command::Clusters(ClustersCommand::List(_)) => clusters(remote, json).await,
        Command::Migrate(MigrateCommand::Plan(args)) => migrate_plan(remote, &args, json).await,
        Command::Doctor(_) => super::doctor::through_api(remote, json).await,
        Command::Billing(BillingCommand::Events(args)) => billing_events(remote, &args, json).await,
        _ => return None,
    })
}

/// `value` read as a `T` (the API answered something this version cannot read otherwise).
pub(super) fn typed<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| {
        CliError::new(
            ErrorKind::Failed,
            "api_error",
            format!("the operator API's {what} could not be read: {e}"),
        )
    })
}

async fn domains(remote: &Remote, raw: &str, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(raw)?;
    let answer = remote.call(Method::GET, &format!("/v1/tenants/{slug}/domains"), None).await?;
    super::print_domains(&typed::<Vec<crate::tenants::domains::Domain>>(answer, "domains")?, json);
    Ok(ExitCode::SUCCESS)
}

async fn change_domain(remote: &Remote, raw: &str, host: &str, adding: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(raw)?;
    if adding {
        let path = format!("/v1/tenants/{slug}/domains");
        let added = remote.call(Method::POST, &path, Some(json!({ "host": host }))).await?;
        let added: crate::tenants::domains::Domain = typed(added, "domain")?;
        super::print_domain_change(&slug, &added.host, true);
    } else {
        let path = format!("/v1/tenants/{slug}/domains/{}", urlencode(host));
        remote.call(Method::DELETE, &path, None).await?;
        super::print_domain_change(&slug, host, false);
    }
    Ok(ExitCode::SUCCESS)
}

async fn moves(remote: &Remote, args: &crate::cli::WatchedArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let path = format!("/v1/tenants/{slug}/moves");
    let look = async || typed::<Vec<Move>>(remote.call(Method::GET, &path, None).await?, "moves");
    match args.watching() {
        None => {
            crate::moves::view::print(&look().await?, json);
            Ok(ExitCode::SUCCESS)
        }
        Some(interval) => {
            output::Watch::until(
                interval,
                look,
                |seen| crate::moves::view::print(seen, json),
                |seen| crate::moves::view::settled(seen),
            )
            .await
        }
    }
}

/// Starts (or aborts) a move in the control plane and, unless `--no-wait`, follows it to its
/// end as `tenants move` does on the catalog: exit code 1 when it failed, 7 past `--timeout`
/// (the move goes on).
async fn move_tenant(remote: &Remote, args: MoveArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let path = format!("/v1/tenants/{slug}/moves");
    let deadline = Deadline::after(args.wait.timeout);
    let started = if args.abort {
        remote.call(Method::POST, &format!("{path}/abort"), None).await?
    } else {
        let body = json!({ "to_cluster": args.to_cluster, "isolation": args.isolation,
                           "method": args.method, "drop_source": args.drop_source });
        remote.call(Method::POST, &path, Some(super::remote::without_nulls(body))).await?
    };
    let mut view: Move = typed(started, "move")?;
    if !args.wait.no_wait {
        let id = view.id;
        let finished = async {
            loop {
                let answer = remote.call(Method::GET, &path, None).await?;
                let latest = typed::<Vec<Move>>(answer, "moves")?.into_iter().find(|m| m.id == id);
                match latest {
                    Some(latest) if latest.state == "running" => {}
                    Some(latest) => return Ok(latest),
                    None => {
                        return Err(CliError::new(
                            ErrorKind::Failed,
                            "api_error",
                            format!("move {id} is no longer among tenant {slug}'s moves"),
                        ))
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        view = deadline
            .run(finished, || {
                format!("move {id} of tenant {slug} is still running (the control plane goes on with it): see `tenantctl tenants moves {slug}`")
            })
            .await?;
    }
    let failed = view.state == "failed";
    crate::moves::view::print(std::slice::from_ref(&view), json);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn template_upgrades(
    remote: &Remote,
    raw: &str,
    enabled: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    let slug = parse_slug(raw)?;
    let path = format!("/v1/tenants/{slug}/template-upgrades");
    remote.call(Method::PUT, &path, Some(json!({ "enabled": enabled }))).await?;
    print_template_upgrades(&slug, enabled, json);
    Ok(ExitCode::SUCCESS)
}

async fn profile(remote: &Remote, raw: &str) -> Result<TenantProfile, CliError> {
    let slug = parse_slug(raw)?;
    typed(remote.call(Method::GET, &format!("/v1/tenants/{slug}/config"), None).await?, "profile")
}

/// The change as the API takes it: a merge patch (`PATCH`) or a whole config (`PUT`, with the
/// config it was made from when an editor made it).
async fn change_config(
    remote: &Remote,
    slug: &tenancy::domain::Slug,
    change: ConfigChange,
) -> Result<(), CliError> {
    let path = format!("/v1/tenants/{slug}/config");
    let (method, body) = match change {
        ConfigChange::Patch(patch) => (Method::PATCH, patch),
        ConfigChange::Replace(config) => (Method::PUT, json!({ "config": config })),
        ConfigChange::ReplaceIf { expected, config } => {
            (Method::PUT, json!({ "config": config, "expected": expected }))
        }
    };
    remote.call(method, &path, Some(body)).await.map(drop)
}

async fn config_set(remote: &Remote, args: &ConfigSetArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    change_config(remote, &slug, config_change(args)?).await?;
    print_profile(&profile(remote, slug.as_str()).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// As on the catalog: saved only if no one changed the config meanwhile (409 otherwise, the
/// edit kept in its file).
async fn config_edit(remote: &Remote, raw: &str, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(raw)?;
    let before = profile(remote, slug.as_str()).await?.config;
    let Some(edit) = Edit::start(&slug, &before)? else { return Ok(ExitCode::SUCCESS) };
    let change = ConfigChange::ReplaceIf { expected: before, config: edit.config.clone() };
    change_config(remote, &slug, change).await.map_err(|e| edit.kept(e))?;
    edit.saved(&slug, &profile(remote, slug.as_str()).await?, json);
    Ok(ExitCode::SUCCESS)
}

async fn clusters(remote: &Remote, json: bool) -> Result<ExitCode, CliError> {
    let answer = remote.call(Method::GET, "/v1/clusters", None).await?;
    if json {
        // As the API says it: without where admin connections are kept (which the catalog's
        // listing has, null for its own server).
        output::json(&answer);
    } else {
        super::print_clusters(&typed::<Vec<crate::clusters::ClusterInfo>>(answer, "clusters")?, false, false);
    }
    Ok(ExitCode::SUCCESS)
}

/// `migrate plan` through the API: the same plan, computed by the control plane.
async fn migrate_plan(remote: &Remote, args: &PlanArgs, json: bool) -> Result<ExitCode, CliError> {
    let selection = &args.selection;
    let mut query = vec![format!("concurrency={}", args.concurrency), format!("drift={}", !args.no_drift)];
    if !selection.tenants.is_empty() {
        let tenants: Vec<String> = selection.tenants.iter().map(ToString::to_string).collect();
        query.push(format!("tenant={}", urlencode(&tenants.join(","))));
    }
    query.extend(selection.plan.as_ref().map(|p| format!("plan={}", urlencode(&p.to_string()))));
    query.extend(selection.cluster.as_ref().map(|c| format!("cluster={}", urlencode(&c.to_string()))));
    if selection.include_templates {
        query.push("include_templates=true".to_owned());
    }
    // The control plane computes it for at most 5 minutes (a drift check reads every tenant's
    // history): waited for a little longer.
    let path = format!("/v1/migrations/plan?{}", query.join("&"));
    let limit = crate::http::PLAN_TIME_LIMIT + Duration::from_secs(30);
    let answer = remote.call_within(Method::GET, &path, None, Some(limit)).await?;
    super::migrate::print_plan(&typed(answer, "plan")?, json);
    Ok(ExitCode::SUCCESS)
}

async fn billing_events(remote: &Remote, args: &EventsArgs, json: bool) -> Result<ExitCode, CliError> {
    let query = super::remote::history_query(args.limit, &args.tenants)?;
    let answer = remote.call(Method::GET, &format!("/v1/billing/events?{}", query.join("&")), None).await?;
    super::print_events(&typed::<Vec<crate::billing::events::EventStatus>>(answer, "billing events")?, json);
    Ok(ExitCode::SUCCESS)
}
