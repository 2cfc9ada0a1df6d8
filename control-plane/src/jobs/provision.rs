//! The provisioning steps. Each one checks what already exists and does only what is missing,
//! so running the whole sequence again after a crash at any point converges on one complete
//! tenant.

pub(crate) mod verifier;

use crate::catalog::domains::{self, Claim, DomainKind};
use crate::catalog::{audit, tenants};
use crate::clusters::ClusterError;
use crate::control_plane::ControlPlane;
use crate::plans::Template;
use crate::profile::merge::Prefer;
use crate::tenant_migrations::MigrationLocks;
use base64::Engine as _;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{Isolation, RoleName, TenantId, TenantStatus};
use tenancy::error::{ErrorKind, OperationError};
use tenancy::secrets::{DbCredentials, SecretName};

/// One step of provisioning, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Role,
    Schema,
    Migrations,
    Template,
    Credentials,
    Domains,
    Activate,
}

impl Step {
    pub const ALL: [Self; 7] = [
        Self::Role,
        Self::Schema,
        Self::Migrations,
        Self::Template,
        Self::Credentials,
        Self::Domains,
        Self::Activate,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::Schema => "schema",
            Self::Migrations => "migrations",
            Self::Template => "template",
            Self::Credentials => "credentials",
            Self::Domains => "domains",
            Self::Activate => "activate",
        }
    }
}

/// Why provisioning stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("tenant {0} does not exist")]
    NotFound(TenantId),
    #[error("tenant is {0}; only provisioning or failed tenants can be provisioned")]
    WrongState(TenantStatus),
    #[error("step {step}: {message}", step = step.as_str())]
    Step { step: Step, message: String, kind: ErrorKind },
}

impl OperationError for ProvisionError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::WrongState(_) => ErrorKind::WrongState,
            Self::Step { kind, .. } => *kind,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::WrongState(_) => "wrong_state",
            Self::Step { .. } => "provisioning_failed",
        }
    }
}

impl ProvisionError {
    pub(crate) fn step(&self) -> Option<Step> {
        match self {
            Self::Step { step, .. } => Some(*step),
            _ => None,
        }
    }
}

/// Builds step errors, of the kind of the PostgreSQL error ([`tenancy::error::pg_error_kind`]).
fn pg_error(step: Step) -> impl Fn(tokio_postgres::Error) -> ProvisionError {
    move |err| ProvisionError::Step {
        step,
        kind: tenancy::error::pg_error_kind(&err),
        message: tenancy::pg::describe_error(&err),
    }
}

fn cluster_error(step: Step) -> impl Fn(ClusterError) -> ProvisionError {
    move |err| ProvisionError::Step { step, kind: err.kind(), message: err.to_string() }
}

fn permanent(step: Step, message: String) -> ProvisionError {
    ProvisionError::Step { step, message, kind: ErrorKind::Failed }
}

async fn catalog(cp: &ControlPlane, step: Step) -> Result<deadpool_postgres::Object, ProvisionError> {
    cp.catalog.get().await.map_err(|e| ProvisionError::Step {
        step,
        message: format!("catalog: {e}"),
        kind: ErrorKind::Unavailable,
    })
}

/// Runs every step for `tenant` and leaves it `active`.
pub async fn provision(cp: &ControlPlane, id: TenantId) -> Result<TenantRecord, ProvisionError> {
    provision_through(cp, id, Step::Activate).await
}

/// Runs the steps up to and including `last`, as a worker that dies right after `last` would
/// (used to test that a crash at any point is finished by the next attempt).
pub async fn provision_through(
    cp: &ControlPlane,
    id: TenantId,
    last: Step,
) -> Result<TenantRecord, ProvisionError> {
    let tenant = load(cp, id, Step::Role).await?;
    match tenant.status {
        TenantStatus::Active => return Ok(tenant),
        TenantStatus::Provisioning | TenantStatus::Failed => {}
        other => return Err(ProvisionError::WrongState(other)),
    }
    let template = cp.templates.load(&tenant.plan).map_err(|e| permanent(Step::Template, e.to_string()))?;
    for step in Step::ALL.into_iter().take_while(|step| *step <= last) {
        run_step(cp, &tenant, &template, step).await?;
        if step != Step::Activate {
            let client = catalog(cp, step).await?;
            tenants::set_provision_step(&**client, id, step.as_str()).await.map_err(pg_error(step))?;
        }
        tracing::debug!(tenant = %tenant.slug, step = step.as_str(), "provisioning step done");
    }
    let tenant = load(cp, id, last).await?;
    if last == Step::Activate {
        cp.publish_change(&tenant).await;
        tracing::info!(tenant = %tenant.slug, tenant_id = %tenant.id, "tenant active");
    }
    Ok(tenant)
}

async fn load(cp: &ControlPlane, id: TenantId, step: Step) -> Result<TenantRecord, ProvisionError> {
    let client = catalog(cp, step).await?;
    tenancy::catalog::tenant_by_id(&**client, id)
        .await
        .map_err(|e| ProvisionError::Step { step, message: e.to_string(), kind: e.kind() })?
        .ok_or(ProvisionError::NotFound(id))
}

async fn run_step(
    cp: &ControlPlane,
    tenant: &TenantRecord,
    template: &Template,
    step: Step,
) -> Result<(), ProvisionError> {
    match step {
        Step::Role => ensure_role(cp, tenant, template).await,
        Step::Schema => ensure_schema(cp, tenant).await,
        Step::Migrations => ensure_migrated(cp, tenant).await,
        Step::Template => apply_template(cp, tenant, template).await,
        Step::Credentials => ensure_credentials(cp, tenant).await,
        Step::Domains => ensure_domains(cp, tenant).await,
        Step::Activate => activate(cp, tenant).await,
    }
}

/// The comment that marks a role as belonging to one tenant, so a role of the same name that is
/// someone else's is never adopted.
fn role_marker(tenant: &TenantRecord) -> String {
    format!("tenancy tenant {}", tenant.id)
}

/// The comment that marks a tenant's read-only role (another than its runtime role's, so neither
/// role can ever be taken for the other).
fn reader_marker(tenant: &TenantRecord) -> String {
    format!("tenancy tenant {} reader", tenant.id)
}

/// The tenant's login roles: its runtime role, and its read-only role (`SELECT` only, for
/// requests that may only read: see [`ensure_schema`]).
pub(crate) async fn ensure_role(
    cp: &ControlPlane,
    tenant: &TenantRecord,
    template: &Template,
) -> Result<(), ProvisionError> {
    let step = Step::Role;
    let cluster = cp.cluster(&tenant.cluster).await.map_err(cluster_error(step))?;
    let admin = cluster.admin().await.map_err(cluster_error(step))?;
    let roles =
        [(tenant.role_name.clone(), role_marker(tenant)), (tenant.role_name.reader(), reader_marker(tenant))];
    for (role, marker) in roles {
        ensure_login_role(&admin, &cluster, tenant, &role, &marker, template).await?;
    }
    Ok(())
}

/// Creates `role` as a login role of `tenant`, marked with `marker`, unless it exists with
/// that marker already.
async fn ensure_login_role(
    admin: &tokio_postgres::Client,
    cluster: &crate::clusters::Cluster,
    tenant: &TenantRecord,
    role: &RoleName,
    marker: &str,
    template: &Template,
) -> Result<(), ProvisionError> {
    let step = Step::Role;
    let existing = admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role.as_str()],
        )
        .await
        .map_err(pg_error(step))?;
    match existing {
        Some(row) if row.get::<_, Option<String>>(0).as_deref() == Some(marker) => Ok(()),
        Some(_) => {
            Err(permanent(step, format!("role {role} already exists and does not belong to this tenant")))
        }
        None => {
            // One implicit transaction: the role never exists without its marker.
            // A tenant with its own database may connect to that one only (granted once it
            // exists) and inherits nothing; a schema tenant may connect to the shared database
            // as a member of the tenants' group, the one role it inherits from (a grant per
            // tenant would grow the database's ACL, and slow every grant, with each tenant).
            let quoted = role.quoted();
            let (inherit, connect) = match tenant.isolation {
                Isolation::Schema => {
                    ("INHERIT", format!("GRANT {} TO {quoted};", cluster.tenants_group.quoted()))
                }
                Isolation::Database => ("NOINHERIT", String::new()),
            };
            let sql = format!(
                "CREATE ROLE {quoted} LOGIN {inherit};
                 COMMENT ON ROLE {quoted} IS '{marker}';
                 {connect}
                 {limits}",
                limits = role_limits_sql(role, &template.limits),
            );
            admin.batch_execute(&sql).await.map_err(pg_error(step))
        }
    }
}

/// The tenant's read-only role, if it exists and is the tenant's (tenants provisioned before
/// there were reader roles have none until their provisioning steps run again: see
/// [`crate::jobs::lifecycle::rotate_credentials`]).
pub(crate) async fn existing_reader(
    admin: &tokio_postgres::Client,
    tenant: &TenantRecord,
) -> Result<Option<RoleName>, tokio_postgres::Error> {
    let reader = tenant.role_name.reader();
    let row = admin
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1 AND shobj_description(oid, 'pg_authid') = $2",
            &[&reader.as_str(), &reader_marker(tenant)],
        )
        .await?;
    Ok(row.map(|_| reader))
}

/// The tenant's schema with its privileges: in the shared database (`schema` isolation), or in
/// its own database, cloned from the cluster's migrated template (`database` isolation). The
/// runtime role may read and write its tables; the read-only role may only read them
/// (`SELECT`, nothing on sequences, nothing on the migration history), and its sessions start
/// read-only (a default it could change: what it may do is bounded by its privileges).
pub(crate) async fn ensure_schema(cp: &ControlPlane, tenant: &TenantRecord) -> Result<(), ProvisionError> {
    let step = Step::Schema;
    let cluster = cp.cluster(&tenant.cluster).await.map_err(cluster_error(step))?;
    let (schema, role, owner) =
        (tenant.schema_name.quoted(), tenant.role_name.quoted(), cluster.owner.quoted());
    let reader = tenant.role_name.reader().quoted();
    if let Some(database) = &tenant.database_name {
        let migrations = cp.migrations().map_err(|e| permanent(step, e.to_string()))?;
        cluster.create_tenant_database(database, &migrations).await.map_err(cluster_error(step))?;
        let admin = cluster.admin().await.map_err(cluster_error(step))?;
        admin
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({lock}); GRANT CONNECT ON DATABASE {db} TO {role}, {reader};",
                lock = crate::clusters::CLUSTER_DDL_LOCK,
                db = database.quoted(),
            ))
            .await
            .map_err(pg_error(step))?;
    }
    let admin = cluster.migrator_for(tenant.database_name.as_ref()).await.map_err(cluster_error(step))?;
    // Tables that already exist (a cloned database, a resumed run) get their grants directly;
    // later ones through the default privileges. The ownership check runs inside the same
    // transaction, before any grant: a schema that exists and is not ours is never adopted.
    let sql = format!(
        "BEGIN;
         CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};
         DO $$ BEGIN
           IF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = '{schema_name}')
              <> '{owner_name}' THEN
             RAISE EXCEPTION 'schema {schema_name} exists and is not owned by {owner_name}';
           END IF;
         END $$;
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
         GRANT USAGE ON SCHEMA {schema} TO {role}, {reader};
         DO $$ BEGIN
           -- `ON ALL TABLES IN SCHEMA` reads all of pg_class (no index leads with the
           -- schema): with thousands of tenants that made every provisioning slower. Only a
           -- schema that already has relations needs it; pg_depend finds out by index.
           IF EXISTS (SELECT FROM pg_depend
                       WHERE refclassid = 'pg_namespace'::regclass
                         AND refobjid = '{schema_name}'::regnamespace
                         AND classid = 'pg_class'::regclass) THEN
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
             GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader};
           END IF;
         END $$;
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}
           GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}
           GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role};
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}
           GRANT SELECT ON TABLES TO {reader};
         ALTER ROLE {role} SET search_path = {schema};
         ALTER ROLE {reader} SET search_path = {schema};
         ALTER ROLE {reader} SET default_transaction_read_only = on;
         DO $$ BEGIN
           -- A history that already exists (a cloned database, a resumed run) got the grant
           -- above: the tenant may not read or edit its migration history.
           IF to_regclass('{schema_name}.{history}') IS NOT NULL THEN
             EXECUTE 'REVOKE ALL ON {schema}.{history} FROM {role}, {reader}';
           END IF;
         END $$;
         COMMIT;",
        history = crate::tenant_migrations::HISTORY_TABLE,
        schema_name = tenant.schema_name.as_str(),
        owner_name = cluster.owner.as_str(),
    );
    admin.batch_execute(&sql).await.map_err(pg_error(step))
}

async fn ensure_migrated(cp: &ControlPlane, tenant: &TenantRecord) -> Result<(), ProvisionError> {
    let version = migrate(cp, tenant).await?;
    let client = catalog(cp, Step::Migrations).await?;
    tenants::set_schema_version(&**client, tenant.id, version).await.map_err(pg_error(Step::Migrations))
}

/// Brings the tenant's schema, where `tenant` places it, to the current migrations; returns
/// the version it is at.
pub(crate) async fn migrate(cp: &ControlPlane, tenant: &TenantRecord) -> Result<i64, ProvisionError> {
    let step = Step::Migrations;
    let cluster = cp.cluster(&tenant.cluster).await.map_err(cluster_error(step))?;
    let migrations = cp.migrations().map_err(|e| permanent(step, e.to_string()))?;
    let mut migrator =
        cluster.migrator_for(tenant.database_name.as_ref()).await.map_err(cluster_error(step))?;
    let mut locks = MigrationLocks::new(cluster.lock_session().await.map_err(cluster_error(step))?);
    let database = tenant.database_name.as_ref().unwrap_or(&cluster.tenants);
    crate::tenant_migrations::migrate_schema(
        &mut migrator,
        Some((&mut locks, database.as_str())),
        &migrations,
        &tenant.schema_name,
        &cluster.owner,
        Some(&tenant.role_name),
        crate::tenant_migrations::MigrateSettings::default(),
    )
    .await
    .map_err(|e| ProvisionError::Step { step, kind: e.kind(), message: e.to_string() })?;
    Ok(migrations.target_version())
}

pub(crate) async fn apply_template(
    cp: &ControlPlane,
    tenant: &TenantRecord,
    template: &Template,
) -> Result<(), ProvisionError> {
    let step = Step::Template;
    let cluster = cp.cluster(&tenant.cluster).await.map_err(cluster_error(step))?;
    if let Some(seed) = &template.seed_sql {
        let migrator =
            cluster.migrator_for(tenant.database_name.as_ref()).await.map_err(cluster_error(step))?;
        let sql = format!(
            "BEGIN;
             SET LOCAL ROLE {owner};
             SET LOCAL search_path TO {schema};
             {seed}
             ;COMMIT;",
            owner = cluster.owner.quoted(),
            schema = tenant.schema_name.quoted(),
        );
        migrator.batch_execute(&sql).await.map_err(pg_error(step))?;
    }
    let mut client = catalog(cp, step).await?;
    let tx = client.transaction().await.map_err(pg_error(step))?;
    let profile = tenants::profile_for_update(&*tx, tenant.id)
        .await
        .map_err(pg_error(step))?
        .ok_or_else(|| permanent(step, "the tenant is gone from the catalog".to_owned()))?;
    // The template's config merged into the tenant's own edits (a plan change used to replace
    // them): a key both changed takes the plan's value (the plan decides what the tenant is
    // entitled to), and the conflict, with the tenant's value, is in the audit log.
    let base = crate::profile::base_of(&profile, &cp.templates);
    let merged = crate::profile::merge::merge(&base, &template.config, &profile.config, Prefer::Template);
    if !merged.conflicts.is_empty() {
        tracing::warn!(tenant = %tenant.slug, conflicts = merged.conflicts.len(), "the plan template's config conflicts with the tenant's own edits: the plan's values are taken (the tenant's are in the audit log)");
        let detail = serde_json::json!({ "template": template.plan.as_str(), "version": template.version, "taken": "template", "conflicts": merged.conflicts });
        audit::record(&*tx, "plan", "tenant.template_conflicts", Some(tenant.id), detail)
            .await
            .map_err(pg_error(step))?;
    }
    if let Err(why) = template.check_profile(&merged.profile) {
        // A plan change is not refused for it (billing makes it): recorded for the operator.
        tracing::warn!(tenant = %tenant.slug, %why, "the tenant's merged config does not match its new template's schema");
        let detail = serde_json::json!({ "template": template.plan.as_str(), "version": template.version, "why": why });
        audit::record(&*tx, "plan", "tenant.profile_invalid", Some(tenant.id), detail)
            .await
            .map_err(pg_error(step))?;
    }
    let settings = tenants::TemplateSettings {
        template: template.plan.as_str(),
        template_version: template.version,
        config: merged.profile,
        template_config: &template.config,
        pool_size: i32::try_from(template.limits.pool_size).unwrap_or(i32::MAX),
        pool_mode: template.limits.pool_mode,
        rate_limit_per_second: template
            .limits
            .rate_limit_per_second
            .map(|r| i32::try_from(r).unwrap_or(i32::MAX)),
        statement_timeout_ms: template
            .limits
            .statement_timeout
            .map(|d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX)),
    };
    tenants::apply_template_settings(&*tx, tenant.id, &settings).await.map_err(pg_error(step))?;
    tx.commit().await.map_err(pg_error(step))
}

/// A new password: 32 random bytes, URL-safe base64 (safe inside connection strings).
pub(crate) fn generate_password() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The secret is the source of truth: an existing secret's passwords are (re)applied to the
/// roles; otherwise new passwords are stored first, then applied. A secret written before there
/// were reader roles gets the reader's login added (stored first too). The roles get SCRAM
/// verifiers, so the plain passwords never reach the server (or its logs).
async fn ensure_credentials(cp: &ControlPlane, tenant: &TenantRecord) -> Result<(), ProvisionError> {
    let step = Step::Credentials;
    let name = SecretName::for_tenant(&cp.secrets_prefix, tenant.id);
    store_credentials(cp, tenant, &name).await?;
    let client = catalog(cp, step).await?;
    tenants::set_secret_ref(&**client, tenant.id, name.as_str()).await.map_err(pg_error(step))
}

/// The credentials of the roles `tenant` names, kept in secret `name` (created with new
/// passwords unless it exists) and set on those roles where `tenant` places them.
pub(crate) async fn store_credentials(
    cp: &ControlPlane,
    tenant: &TenantRecord,
    name: &SecretName,
) -> Result<(), ProvisionError> {
    let step = Step::Credentials;
    let cluster = cp.cluster(&tenant.cluster).await.map_err(cluster_error(step))?;
    let secret_error = |e: tenancy::secrets::SecretError| ProvisionError::Step {
        step,
        kind: e.kind(),
        message: e.to_string(),
    };
    let endpoint = &cluster.endpoint;
    let credentials = match cp.secrets.get(name).await.map_err(secret_error)? {
        Some(existing) if existing.username == tenant.role_name.as_str() => {
            if has_reader(&existing, tenant) {
                existing
            } else {
                let upgraded = with_new_reader(existing, tenant);
                let token = format!("{}-reader-v0001", tenant.id);
                cp.secrets.put(name, &upgraded, &token).await.map_err(secret_error)?;
                upgraded
            }
        }
        _ => {
            let fresh = with_new_reader(
                DbCredentials {
                    engine: "postgres".into(),
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    username: tenant.role_name.as_str().to_owned(),
                    password: generate_password(),
                    dbname: tenant
                        .database_name
                        .as_ref()
                        .map_or_else(|| endpoint.dbname.clone(), |db| db.as_str().to_owned()),
                    schema: tenant.schema_name.as_str().to_owned(),
                    reader_username: None,
                    reader_password: None,
                    sslmode: Some(endpoint.sslmode),
                },
                tenant,
            );
            let token = format!("{}-v0001", tenant.id);
            cp.secrets.put(name, &fresh, &token).await.map_err(secret_error)?;
            fresh
        }
    };
    set_role_passwords(cp, tenant, &credentials, step).await
}

/// Whether `credentials` hold the login of the tenant's read-only role.
pub(crate) fn has_reader(credentials: &DbCredentials, tenant: &TenantRecord) -> bool {
    credentials.reader_username.as_deref() == Some(tenant.role_name.reader().as_str())
        && credentials.reader_password.is_some()
}

/// `credentials` with a new login for the tenant's read-only role.
pub(crate) fn with_new_reader(credentials: DbCredentials, tenant: &TenantRecord) -> DbCredentials {
    DbCredentials {
        reader_username: Some(tenant.role_name.reader().as_str().to_owned()),
        reader_password: Some(generate_password()),
        ..credentials
    }
}

/// The plan's limits on the tenant's role: its connection limit, and the settings that bound
/// what one of its sessions may hold (set on the role, so every session starts with them;
/// `temp_file_limit` only a superuser may change). A limit the plan does not set is reset.
pub(crate) fn role_limits_sql(role: &tenancy::domain::RoleName, limits: &crate::plans::Limits) -> String {
    let role = role.quoted();
    let idle = match limits.idle_in_transaction_timeout {
        Some(timeout) => format!("SET idle_in_transaction_session_timeout = '{}ms'", timeout.as_millis()),
        None => "RESET idle_in_transaction_session_timeout".into(),
    };
    let temp = match &limits.temp_file_limit {
        // Validated when the template was loaded: digits and a unit.
        Some(size) => format!("SET temp_file_limit = '{size}'"),
        None => "RESET temp_file_limit".into(),
    };
    format!(
        "ALTER ROLE {role} CONNECTION LIMIT {limit}; ALTER ROLE {role} {idle}; ALTER ROLE {role} {temp};",
        limit = limits.connection_limit
    )
}

/// Sets the passwords of `credentials` on the tenant's roles (the runtime role's, and the
/// read-only role's when the secret holds it) as SCRAM verifiers computed here (one PBKDF2
/// iteration: see [`verifier`]), so the plain passwords never reach the server (or its
/// logs). Only the tenant's own roles: a secret naming another role is refused.
pub(crate) async fn set_role_passwords(
    cp: &ControlPlane,
    tenant: &TenantRecord,
    credentials: &DbCredentials,
    step: Step,
) -> Result<(), ProvisionError> {
    if credentials.username != tenant.role_name.as_str()
        || credentials.reader_username.as_ref().is_some_and(|_| !has_reader(credentials, tenant))
    {
        return Err(permanent(step, "the tenant's secret names roles that are not the tenant's".into()));
    }
    let mut logins = vec![(tenant.role_name.clone(), credentials.password.as_str())];
    if let Some(password) = credentials.reader_password.as_deref() {
        logins.push((tenant.role_name.reader(), password));
    }
    let mut sql = String::new();
    for (role, password) in logins {
        let verifier = verifier::scram_sha_256(password);
        if verifier.contains('\'') {
            return Err(permanent(step, "unexpected character in the password verifier".into()));
        }
        sql.push_str(&format!("ALTER ROLE {} PASSWORD '{verifier}';", role.quoted()));
    }
    let cluster = cp.cluster(&tenant.cluster).await.map_err(cluster_error(step))?;
    let admin = cluster.admin().await.map_err(cluster_error(step))?;
    admin.batch_execute(&sql).await.map_err(pg_error(step))
}

async fn ensure_domains(cp: &ControlPlane, tenant: &TenantRecord) -> Result<(), ProvisionError> {
    let step = Step::Domains;
    let host = cp.base_domain.host_for(&tenant.slug);
    let client = catalog(cp, step).await?;
    let claim =
        domains::claim(&**client, &host, tenant.id, DomainKind::Subdomain).await.map_err(pg_error(step))?;
    if claim == (Claim::Taken { by_this_tenant: false }) {
        return Err(permanent(step, format!("domain {host} belongs to another tenant")));
    }
    Ok(())
}

async fn activate(cp: &ControlPlane, tenant: &TenantRecord) -> Result<(), ProvisionError> {
    let step = Step::Activate;
    let mut client = catalog(cp, step).await?;
    let tx = client.transaction().await.map_err(pg_error(step))?;
    tenants::set_status(&*tx, tenant.id, TenantStatus::Active).await.map_err(pg_error(step))?;
    tenants::set_provision_step(&*tx, tenant.id, step.as_str()).await.map_err(pg_error(step))?;
    audit::record(&*tx, "provisioner", "tenant.activate", Some(tenant.id), serde_json::json!({}))
        .await
        .map_err(pg_error(step))?;
    tx.commit().await.map_err(pg_error(step))
}
