//! The implementations of the `tenantctl` commands, and how their errors become exit codes.

mod billing;
mod contexts;
mod deadline;
mod doctor;
mod migrate;
mod moves;
mod remote;
mod remote_tenants;
mod routers;
mod templates;
mod tokens;

use crate::cli::{
    AddClusterArgs, AuditArgs, BillingCommand, CatalogArgs, Cli, ClustersCommand, Command, ConfigCommand,
    ConnectionStringArgs, CreateArgs, DeleteArgs, DomainArgs, EventsArgs, ListArgs, MigrateCommand,
    OperationArgs, RoutersCommand, SendArgs, ServeArgs, ShowArgs, TemplatesCommand, TenantsCommand,
    TokensCommand, WebhookCommand,
};
use crate::control_plane::ControlPlane;
use crate::output;
use crate::tenants::{self, Operation, TenantRequest};
use deadline::Deadline;
use std::process::ExitCode;
use std::sync::Arc;
use tenancy::catalog::CatalogError;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{Slug, TenantStatus};
use tenancy::error::{ErrorKind, OperationError};

/// A command's failure: its kind (which decides the exit code), a stable code and a message.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) kind: ErrorKind,
    pub(crate) code: std::borrow::Cow<'static, str>,
    pub(crate) message: String,
}

/// The exit code of each kind of failure (the README's table; the only mapping).
pub(crate) fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Failed => 1,
        ErrorKind::Invalid | ErrorKind::Misconfigured => 3,
        ErrorKind::NotFound => 4,
        ErrorKind::Conflict | ErrorKind::WrongState => 5,
        ErrorKind::Unavailable => 6,
        ErrorKind::TimedOut => 7,
    }
}

impl CliError {
    pub(crate) fn new(
        kind: ErrorKind,
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self { kind, code: code.into(), message: message.into() }
    }

    /// Bad input on the command line, found before anything ran.
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub(crate) fn exit(&self) -> u8 {
        exit_code(self.kind)
    }
}

impl<E: OperationError> From<E> for CliError {
    fn from(err: E) -> Self {
        Self::new(err.kind(), err.code(), err.to_string())
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let format = cli.format();
    output::set_format(format);
    let json = format.structured();
    let result = match contexts::remote_for(&cli) {
        // doctor checks what it can without the contexts it cannot read.
        Err(err) if matches!(cli.command, Command::Doctor(_)) => {
            output::note(&format!("contexts not read ({}): checking the catalog's settings", err.message));
            Box::pin(local(cli, json)).await
        }
        Err(err) => Err(err),
        Ok(Some(remote)) => match remote::run(&remote, cli.command, json).await {
            Some(result) => result,
            None => Err(CliError::new(
                ErrorKind::Invalid,
                "catalog_only",
                format!(
                    "this command works on the catalog itself, not through the operator API (context {}): \
                     set DATABASE_URL. Through a context: tenants (but connection-string), migrate, \
                     tokens, audit, clusters list, billing events and doctor",
                    remote.name
                ),
            )),
        },
        // Boxed: the catalog commands' futures together are larger than a stack frame should hold.
        Ok(None) => Box::pin(local(cli, json)).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::error(&err.code, &err.message, json);
            ExitCode::from(err.exit())
        }
    }
}

/// Runs a command on the catalog (or one that needs neither catalog nor API).
async fn local(cli: Cli, json: bool) -> Result<ExitCode, CliError> {
    let context = cli.context;
    match cli.command {
        Command::Login(args) => contexts::login(args, context, json).await,
        Command::Logout => contexts::logout(context, json),
        Command::Config(command) => contexts::config(command, json),
        Command::Serve(args) => serve(args).await,
        Command::Tenants(TenantsCommand::Create(args)) => create(args, json).await,
        Command::Tenants(TenantsCommand::List(args)) => list(args, json).await,
        Command::Tenants(TenantsCommand::Show(args)) => show(args, json).await,
        Command::Tenants(TenantsCommand::ConnectionString(args)) => connection_string(args, json).await,
        Command::Tenants(TenantsCommand::Suspend(args)) => operate(args, Operation::Suspend, json).await,
        Command::Tenants(TenantsCommand::Resume(args)) => operate(args, Operation::Resume, json).await,
        Command::Tenants(TenantsCommand::RotateCredentials(args)) => {
            operate(args, Operation::RotateCredentials, json).await
        }
        Command::Tenants(TenantsCommand::Retry(args)) => operate(args, Operation::Retry, json).await,
        Command::Tenants(TenantsCommand::Restore(args)) => operate(args, Operation::Restore, json).await,
        Command::Tenants(TenantsCommand::SetPlan(args)) => {
            operate(args.operation, Operation::ChangePlan(args.plan), json).await
        }
        Command::Tenants(TenantsCommand::Delete(args)) => delete(args, json).await,
        Command::Tenants(TenantsCommand::Domains(args)) => list_domains(args, json).await,
        Command::Tenants(TenantsCommand::AddDomain(args)) => change_domain(args, true).await,
        Command::Tenants(TenantsCommand::RemoveDomain(args)) => change_domain(args, false).await,
        Command::Tenants(TenantsCommand::Move(args)) => moves::move_tenant(args, json).await,
        Command::Tenants(TenantsCommand::Moves(args)) => moves::list(args, json).await,
        Command::Migrate(MigrateCommand::Plan(args)) => migrate::plan(args, json).await,
        Command::Migrate(MigrateCommand::Apply(args)) => migrate::apply(args, json).await,
        Command::Migrate(MigrateCommand::Resume(args)) => migrate::resume(args, json).await,
        Command::Migrate(MigrateCommand::Status(args)) => migrate::status(args, json).await,
        Command::Migrate(MigrateCommand::Halt(args)) => migrate::halt(args, json).await,
        Command::Webhook(WebhookCommand::Send(args)) => webhook_send(args, json).await,
        Command::Billing(BillingCommand::Events(args)) => billing_events(args, json).await,
        Command::Tokens(TokensCommand::Create(args)) => tokens::create(args, json).await,
        Command::Tokens(TokensCommand::List(args)) => tokens::list(args, json).await,
        Command::Tokens(TokensCommand::Revoke(args)) => tokens::revoke(args, json).await,
        Command::Clusters(ClustersCommand::Add(args)) => add_cluster(args, json).await,
        Command::Clusters(ClustersCommand::List(args)) => list_clusters(args, json).await,
        Command::Clusters(ClustersCommand::Drain(args)) => moves::drain_cluster(args, json).await,
        Command::Clusters(ClustersCommand::Remove(args)) => moves::remove_cluster(args, json).await,
        Command::Clusters(ClustersCommand::Undrain(args)) => moves::undrain_cluster(args, json).await,
        Command::Routers(RoutersCommand::Credentials(args)) => router_credentials(*args, json).await,
        Command::Routers(RoutersCommand::Pools(args)) => routers::pools(args, json).await,
        Command::Routers(RoutersCommand::Stats(args)) => routers::stats(args, json).await,
        Command::Audit(args) => audit(args, json).await,
        Command::Doctor(args) => doctor::doctor(args, json).await,
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "tenantctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Templates(TemplatesCommand::Upgrade(args)) => templates::upgrade_templates(args, json).await,
        Command::Tenants(TenantsCommand::TemplateUpgrades(args)) => {
            templates::template_upgrades(args, json).await
        }
        Command::Tenants(TenantsCommand::Config(ConfigCommand::Get(args))) => {
            templates::config_get(args, json).await
        }
        Command::Tenants(TenantsCommand::Config(ConfigCommand::Set(args))) => {
            templates::config_set(args, json).await
        }
        Command::Tenants(TenantsCommand::Config(ConfigCommand::Edit(args))) => {
            templates::config_edit(args, json).await
        }
    }
}

pub(crate) async fn start(catalog: &CatalogArgs) -> Result<Arc<ControlPlane>, CliError> {
    tenancy::telemetry::init(catalog.common.log_format, tenancy::telemetry::CLI_LOG_FILTER);
    if catalog.common.database_url().is_err() {
        return Err(CliError::new(
            ErrorKind::Misconfigured,
            "invalid_configuration",
            "DATABASE_URL is not set: give the catalog's URL (--database-url), or log in to an operator API \
             with a token (tenantctl login --api-url …)",
        ));
    }
    Ok(ControlPlane::start(&catalog.common, &catalog.provisioning).await?)
}

async fn serve(args: ServeArgs) -> Result<ExitCode, CliError> {
    tenancy::telemetry::init(args.common.log_format, tenancy::telemetry::SERVER_LOG_FILTER);
    let cp = ControlPlane::start_for_workers(&args.common, &args.provisioning, args.serve.worker_concurrency)
        .await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = crate::http::spawn(cp, &args.serve, shutdown.clone()).await.map_err(|e| {
        CliError::new(
            ErrorKind::Unavailable,
            "unavailable",
            format!("cannot listen on {}: {e}", args.serve.listen),
        )
    })?;
    tenancy::shutdown::wait_for_shutdown().await;
    tracing::info!("shutting down: draining requests and running jobs");
    match tokio::time::timeout(args.serve.shutdown_grace, server.stop()).await {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => Err(CliError::new(ErrorKind::Failed, "server_error", e.to_string())),
        Err(_) => Err(CliError::new(
            ErrorKind::Failed,
            "shutdown_timeout",
            "in-flight work did not finish within the grace period",
        )),
    }
}

async fn create(args: CreateArgs, json: bool) -> Result<ExitCode, CliError> {
    // Refuse bad input before touching the catalog: the answer must not depend on it being up.
    parse_slug(&args.slug)?;
    let plan = tenancy::domain::PlanName::parse(&args.plan)
        .map_err(|e| CliError::invalid("invalid_plan", e.to_string()))?;
    crate::plans::Templates::new(&args.catalog.provisioning.templates_dir)
        .load(&plan)
        .map_err(|e| CliError::invalid("invalid_plan", format!("invalid plan: {e}")))?;
    let cp = start(&args.catalog).await?;
    let request = TenantRequest {
        slug: args.slug,
        display_name: args.name,
        plan: args.plan,
        billing_customer_id: None,
        billing_subscription_id: None,
        isolation: args.isolation,
        cluster: args.cluster,
    };
    let deadline = Deadline::after(args.wait.timeout);
    let requested = async { Ok(tenants::create(&cp, &request, "cli").await?) };
    let mut tenant = deadline
        .run(requested, || {
            format!("tenant {} was not recorded (the catalog is busy); nothing changed", request.slug)
        })
        .await?;
    if !args.wait.no_wait {
        tenant = wait_for_jobs(&cp, tenant, &deadline).await?;
    }
    print_tenant(&cp, &tenant, json).await?;
    Ok(if tenant.status == TenantStatus::Failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Runs the tenant's due jobs (see [`crate::jobs::runner::drain`]) until `deadline`,
/// and returns the tenant as it ends up. A job cut short by the deadline is rolled back to the
/// queue, where a running `tenantctl serve` takes it (jobs are safe to repeat).
async fn wait_for_jobs(
    cp: &ControlPlane,
    tenant: TenantRecord,
    deadline: &Deadline,
) -> Result<TenantRecord, CliError> {
    let drained = async {
        crate::jobs::runner::drain(cp, tenant.id, crate::catalog::jobs::WAIT_HORIZON)
            .await
            .map_err(CliError::from)
    };
    deadline
        .run(drained, || {
            format!(
                "tenant {slug} still has work queued; it stays queued (a running `tenantctl serve` does it): \
                 see `tenantctl tenants show {slug}`",
                slug = tenant.slug
            )
        })
        .await?;
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    tenancy::catalog::tenant_by_id(&**client, tenant.id)
        .await
        .map_err(CliError::from)?
        .ok_or_else(|| CliError::new(ErrorKind::NotFound, "not_found", "tenant disappeared"))
}

/// A tenant after a change, as `tenants show` sees it (its schema version, when a deleted
/// one's data is dropped), as the API's answer is through a context.
async fn print_tenant(cp: &ControlPlane, tenant: &TenantRecord, json: bool) -> Result<(), CliError> {
    crate::tenants::view::print_one(&crate::tenants::view::shown(cp, tenant).await?, json);
    Ok(())
}

fn parse_slug(raw: &str) -> Result<Slug, CliError> {
    Slug::parse(raw).map_err(|e| CliError::invalid("invalid_slug", format!("invalid slug {raw:?}: {e}")))
}

async fn operate(args: OperationArgs, operation: Operation, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    operate_on(&cp, args, operation, json).await
}

async fn operate_on(
    cp: &ControlPlane,
    args: OperationArgs,
    operation: Operation,
    json: bool,
) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let deadline = Deadline::after(args.wait.timeout);
    let requested = async { Ok(crate::tenants::request(cp, &slug, &operation, "cli").await?) };
    let mut tenant = deadline
        .run(requested, || {
            format!(
                "the {} of tenant {slug} was not recorded (another transaction holds the tenant); nothing changed",
                operation.name()
            )
        })
        .await?;
    if !args.wait.no_wait {
        tenant = wait_for_jobs(cp, tenant, &deadline).await?;
    }
    print_tenant(cp, &tenant, json).await?;
    Ok(if tenant.status == TenantStatus::Failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Asks the person at a terminal to confirm `what` by typing `expected` (see
/// [`output::confirm`]); not confirmed: nothing is done, exit code 3.
pub(crate) fn confirmed(
    what: &str,
    expected: &str,
    confirm: crate::cli::ConfirmArgs,
) -> Result<(), CliError> {
    match output::confirm(what, expected, confirm.yes) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::invalid("not_confirmed", "not confirmed; nothing was changed")),
        Err(e) => Err(CliError::invalid("not_confirmed", format!("could not read the confirmation: {e}"))),
    }
}

/// The retention defaults to the control plane's (`DEPROVISION_RETENTION`).
async fn delete(args: DeleteArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.operation.slug)?;
    let cp = start(&args.operation.catalog).await?;
    let retention = args.retention.unwrap_or(cp.deprovision_retention);
    let when = if retention.is_zero() {
        "its data is dropped at once".to_owned()
    } else {
        format!(
            "its data is dropped after {} (tenants restore brings it back until then)",
            humantime::format_duration(retention)
        )
    };
    confirmed(
        &format!("Delete tenant {slug}: it stops answering at once; {when}."),
        slug.as_str(),
        args.confirm,
    )?;
    operate_on(&cp, args.operation, Operation::Deprovision { retention }, json).await
}

async fn list(args: ListArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    let filter =
        crate::catalog::tenants::TenantFilter { status: args.status, plan: args.plan, ..Default::default() };
    let tenants: Vec<crate::tenants::view::Tenant> = crate::catalog::tenants::list(&**client, &filter)
        .await
        .map_err(CliError::from)?
        .into_iter()
        .map(|(tenant, schema_version)| crate::tenants::view::Tenant {
            schema_version,
            ..crate::tenants::view::Tenant::from_record(&tenant, &cp.base_domain)
        })
        .collect();
    crate::tenants::view::print_list(&tenants, json);
    Ok(ExitCode::SUCCESS)
}

async fn find(cp: &ControlPlane, raw: &str) -> Result<TenantRecord, CliError> {
    let slug = Slug::parse(raw)
        .map_err(|e| CliError::invalid("invalid_slug", format!("invalid slug {raw:?}: {e}")))?;
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    tenancy::catalog::tenant_by_slug(&**client, &slug)
        .await
        .map_err(CliError::from)?
        .ok_or_else(|| CliError::new(ErrorKind::NotFound, "not_found", format!("no tenant {slug}")))
}

async fn show(args: crate::cli::WatchedArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let id = find(&cp, &args.slug).await?.id;
    // By id: a tenant watched until its data is dropped is still found, deleted.
    let look = async || {
        let client = cp.catalog.get().await.map_err(CatalogError::from)?;
        let tenant = tenancy::catalog::tenant_by_id(&**client, id)
            .await
            .map_err(CliError::from)?
            .ok_or_else(|| CliError::new(ErrorKind::NotFound, "not_found", "tenant disappeared"))?;
        drop(client);
        // Where its credentials are kept: the catalog knows, the API does not say.
        let secret = tenant.secret_ref.clone().unwrap_or_default();
        Ok::<_, CliError>((crate::tenants::view::shown(&cp, &tenant).await?, secret))
    };
    let print = |(view, secret): &(crate::tenants::view::Tenant, String)| {
        crate::tenants::view::print_details(view, &[("secret", secret.clone())], json);
    };
    match args.watching() {
        None => {
            print(&look().await?);
            Ok(ExitCode::SUCCESS)
        }
        Some(interval) => {
            output::Watch::until(interval, look, print, |(view, _)| crate::tenants::view::settled(view)).await
        }
    }
}

async fn connection_string(args: ConnectionStringArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.show.catalog).await?;
    let tenant = find(&cp, &args.show.slug).await?;
    let name = tenant.secret_name().ok_or_else(|| {
        CliError::new(
            ErrorKind::Failed,
            "not_provisioned",
            format!("tenant {} has no credentials yet", tenant.slug),
        )
    })?;
    let creds = cp.secrets.get(&name).await.map_err(CliError::from)?.ok_or_else(|| {
        CliError::new(
            ErrorKind::NotFound,
            "not_found",
            format!("the secret of tenant {} is missing", tenant.slug),
        )
    })?;
    let host = cp.base_domain.host_for(&tenant.slug);
    if args.psql {
        let command = psql_command(
            &creds,
            args.pg_host.as_deref().unwrap_or(&host),
            args.pg_port,
            tenant.slug.as_str(),
            &args.pg_sslmode,
        );
        if json {
            output::json(&serde_json::json!({ "slug": tenant.slug, "psql": command }));
        } else {
            output::line(&command);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let url = format!("postgresql://{}:{}@{host}/{}", creds.username, creds.password, creds.dbname);
    if json {
        output::json(&serde_json::json!({ "slug": tenant.slug, "connection_string": url }));
    } else {
        output::line(&url);
    }
    Ok(ExitCode::SUCCESS)
}

/// A psql command line reaching tenant `slug` through a router's PostgreSQL listener at
/// `host:port` (the database name `slug` names the tenant, whatever the host), quoted for a
/// POSIX shell. The password goes in `PGPASSWORD`, not on psql's command line, where every
/// user of the machine could read it (`ps`).
fn psql_command(
    creds: &tenancy::secrets::DbCredentials,
    host: &str,
    port: u16,
    slug: &str,
    sslmode: &str,
) -> String {
    // A shell word: single-quoted, each ' written as '\''.
    let word = |v: &str| format!("'{}'", v.replace('\'', "'\\''"));
    // libpq's key=value form: values in single quotes, with \ and \' escaped.
    let value = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let conninfo = format!(
        "host={} port={port} user={} dbname={} sslmode={sslmode}",
        value(host),
        value(&creds.username),
        value(slug)
    );
    format!("PGPASSWORD={} psql {}", word(&creds.password), word(&conninfo))
}

async fn webhook_send(args: SendArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let event = billing::test_event(&cp, &args).await?;
    let body = event.body(chrono::Utc::now().timestamp());
    let deadline = Deadline::after(args.wait.timeout);
    let sent = async {
        crate::billing::send::send(&args.url, args.secret.expose(), &body).await.map_err(CliError::from)
    };
    let delivery = deadline.run(sent, || format!("{} did not answer", args.url)).await?;
    let sent = format!("sent {} ({}) -> {}", delivery.event_id, event.kind, delivery.status);
    if args.wait.no_wait {
        if json {
            output::json(&delivery);
        } else {
            output::line(&sent);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let handled = crate::billing::events::wait(&cp, &delivery.event_id, deadline.remaining())
        .await
        .map_err(|e| billing::events_error(e, &deadline))?;
    if json {
        output::json(&serde_json::json!({ "delivery": delivery, "event": handled }));
    } else {
        output::line(&sent);
        output::line(&format!("{}: {}", handled.state, handled.detail.as_deref().unwrap_or_default()));
    }
    Ok(if handled.state == "failed" { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn audit(args: AuditArgs, json: bool) -> Result<ExitCode, CliError> {
    for tenant in &args.tenants {
        parse_slug(tenant)?;
    }
    let since = match args.since {
        None => None,
        Some(ago) => Some(
            chrono::Duration::from_std(ago)
                .ok()
                .and_then(|ago| chrono::Utc::now().checked_sub_signed(ago))
                .ok_or_else(|| CliError::invalid("invalid_since", "--since is too long ago"))?,
        ),
    };
    let cp = start(&args.catalog).await?;
    let filter = crate::catalog::audit::AuditFilter {
        tenants: args.tenants,
        actor: args.actor,
        action: args.action,
        since,
    };
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    let entries =
        crate::catalog::audit::recent(&**client, &filter, args.limit).await.map_err(CatalogError::from)?;
    if json {
        let entries: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id, "at": e.at.to_rfc3339(), "actor": e.actor, "action": e.action,
                    "tenant_id": e.tenant_id, "detail": e.detail,
                })
            })
            .collect();
        output::json(&entries);
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    e.actor.clone(),
                    e.action.clone(),
                    e.tenant_id.map(|id| id.to_string()).unwrap_or_default(),
                    e.detail.to_string(),
                ]
            })
            .collect();
        output::listing("audit entries", &["at", "actor", "action", "tenant", "detail"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn billing_events(args: EventsArgs, json: bool) -> Result<ExitCode, CliError> {
    for tenant in &args.tenants {
        parse_slug(tenant)?;
    }
    let cp = start(&args.catalog).await?;
    let filter =
        crate::billing::events::EventFilter { tenants: args.tenants, event_id: None, limit: args.limit };
    print_events(&crate::billing::events::list(&cp, &filter).await.map_err(CliError::from)?, json);
    Ok(ExitCode::SUCCESS)
}

/// Billing events as `billing events` prints them.
fn print_events(events: &[crate::billing::events::EventStatus], json: bool) {
    if json {
        output::json(&events);
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    e.received_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    e.event_id.clone(),
                    e.kind.clone(),
                    e.tenant.clone().or_else(|| e.subscription.clone()).unwrap_or_default(),
                    e.state.clone(),
                    e.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        output::listing("billing events", &["received", "event", "type", "tenant", "state", "detail"], &rows);
    }
}

async fn router_credentials(
    args: crate::cli::RouterCredentialsArgs,
    json: bool,
) -> Result<ExitCode, CliError> {
    confirmed(
        "Give the routers' catalog role a new password: routers still using the old one lose the catalog at once.",
        "yes",
        args.confirm,
    )?;
    let args = args.catalog;
    let cp = start(&args).await?;
    let credentials = crate::catalog::router_role::issue_credentials(&cp, args.common.database_url()?)
        .await
        .map_err(CliError::from)?;
    if json {
        output::json(&credentials);
    } else {
        output::line(credentials.database_url.expose());
        output::note(&format!(
            "role {} has a new password; give routers this DATABASE_URL",
            credentials.role
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn cluster_row(c: &crate::clusters::ClusterInfo, with_admin: bool) -> Vec<String> {
    let load = if c.capacity > 0 { c.tenants as f64 * 100.0 / f64::from(c.capacity) } else { 0.0 };
    let mut row = vec![
        c.name.clone(),
        c.tenants.to_string(),
        c.capacity.to_string(),
        format!("{load:.1}%"),
        if c.draining { "draining" } else { "open" }.to_owned(),
    ];
    if with_admin {
        row.push(c.admin_secret.clone().unwrap_or_else(|| "(the catalog's server)".into()));
    }
    row
}

const CLUSTER_HEADERS: &[&str] = &["cluster", "tenants", "capacity", "load", "state", "admin connection"];

/// Clusters as `clusters list` prints them; `with_admin`: where their admin connection is kept
/// (known to the catalog, not shown by the API).
fn print_clusters(clusters: &[crate::clusters::ClusterInfo], with_admin: bool, json: bool) {
    if json {
        output::json(&clusters);
    } else {
        let headers = if with_admin { CLUSTER_HEADERS } else { &CLUSTER_HEADERS[..5] };
        let rows: Vec<Vec<String>> = clusters.iter().map(|c| cluster_row(c, with_admin)).collect();
        output::listing("clusters", headers, &rows);
    }
}

async fn add_cluster(args: AddClusterArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let cluster = crate::clusters::add(&cp, &args.name, &args.url, args.capacity, "cli").await?;
    if json {
        output::json(&cluster);
    } else {
        output::table(CLUSTER_HEADERS, &[cluster_row(&cluster, true)]);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_clusters(args: CatalogArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args).await?;
    print_clusters(&crate::clusters::list(&cp).await.map_err(CliError::from)?, true, json);
    Ok(ExitCode::SUCCESS)
}

async fn list_domains(args: ShowArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    print_domains(&crate::tenants::domains::list(&cp, &slug).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// A tenant's host names as `tenants domains` prints them.
fn print_domains(domains: &[crate::tenants::domains::Domain], json: bool) {
    if json {
        output::json(&domains);
    } else {
        output::table(
            &["host", "kind"],
            &domains.iter().map(|d| vec![d.host.clone(), d.kind.clone()]).collect::<Vec<_>>(),
        );
    }
}

async fn change_domain(args: DomainArgs, adding: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    if adding {
        let host = crate::tenants::domains::add(&cp, &slug, &args.host, "cli").await?;
        print_domain_change(&slug, &host, true);
    } else {
        crate::tenants::domains::remove(&cp, &slug, &args.host, "cli").await?;
        print_domain_change(&slug, &args.host, false);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_domain_change(slug: &Slug, host: &str, added: bool) {
    if added {
        output::line(&format!("{host} -> {slug}"));
    } else {
        output::line(&format!("{host} removed from {slug}"));
    }
}

#[cfg(test)]
mod tests {
    use super::{exit_code, CliError};
    use tenancy::error::ErrorKind;

    /// The README's table: 1 ran and failed, 3 invalid input, 4 not found, 5 conflict,
    /// 6 unavailable, 7 timed out.
    #[test]
    fn exit_codes_follow_the_readme() {
        let codes: Vec<u8> = [
            ErrorKind::Failed,
            ErrorKind::Invalid,
            ErrorKind::Misconfigured,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::WrongState,
            ErrorKind::Unavailable,
            ErrorKind::TimedOut,
        ]
        .into_iter()
        .map(exit_code)
        .collect();
        assert_eq!(codes, [1, 3, 3, 4, 5, 5, 6, 7]);
    }

    #[test]
    fn a_fleet_error_is_the_same_kind_on_the_command_line_and_over_http() {
        let err = crate::fleet::FleetError::Migrations("V3 is missing".into());
        let api = crate::http::ApiError::from(crate::fleet::FleetError::Migrations("V3 is missing".into()));
        let cli = CliError::from(err);
        assert_eq!((cli.code.as_ref(), cli.exit()), ("invalid_migrations", 3));
        assert_eq!((api.code, api.status.as_u16()), ("invalid_migrations", 500));
    }
}
