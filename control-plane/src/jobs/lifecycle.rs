//! The jobs behind lifecycle operations (`SyncAccess`, `ApplyPlan`, `RotateCredentials`,
//! `Deprovision`). Each reads the tenant's current state from the catalog
//! and makes the database match it, so running one twice, or after a crash half-way, is safe.

use super::provision::{self, Step};
use super::JobError;
use crate::catalog::{audit, domains, tenants};
use crate::control_plane::ControlPlane;
use sha2::{Digest, Sha256};
use tenancy::catalog::TenantRecord;
use tenancy::domain::{RoleName, TenantId, TenantStatus};
use tenancy::error::ErrorKind;
use tenancy::secrets::DbCredentials;

fn pg(err: &tokio_postgres::Error) -> JobError {
    JobError {
        kind: tenancy::error::pg_error_kind(err),
        message: tenancy::pg::describe_error(err),
        step: None,
    }
}

async fn catalog(cp: &ControlPlane) -> Result<deadpool_postgres::Object, JobError> {
    cp.catalog.get().await.map_err(|e| JobError {
        message: format!("catalog: {e}"),
        kind: ErrorKind::Unavailable,
        step: None,
    })
}

async fn load(cp: &ControlPlane, id: TenantId) -> Result<TenantRecord, JobError> {
    let client = catalog(cp).await?;
    tenancy::catalog::tenant_by_id(&**client, id)
        .await
        .map_err(|e| JobError::of(&e))?
        .ok_or_else(|| JobError::permanent(format!("tenant {id} does not exist")))
}

/// The tenant's cluster.
async fn cluster(
    cp: &ControlPlane,
    tenant: &TenantRecord,
) -> Result<std::sync::Arc<crate::clusters::Cluster>, JobError> {
    cp.cluster(&tenant.cluster).await.map_err(|e| JobError::of(&e))
}

/// An admin connection to the tenant's cluster.
async fn admin(cp: &ControlPlane, tenant: &TenantRecord) -> Result<deadpool_postgres::Object, JobError> {
    cluster(cp, tenant).await?.admin().await.map_err(|e| JobError::of(&e))
}

/// Bumps the generation (keeping the status) and tells routers, after a change they must see.
async fn announce(cp: &ControlPlane, id: TenantId, action: &str) -> Result<(), JobError> {
    let mut client = catalog(cp).await?;
    let tx = client.transaction().await.map_err(|e| pg(&e))?;
    let tenant = tenancy::catalog::tenant_by_id(&*tx, id)
        .await
        .map_err(|e| JobError::of(&e))?
        .ok_or_else(|| JobError::permanent(format!("tenant {id} does not exist")))?;
    tenants::set_status(&*tx, id, tenant.status).await.map_err(|e| pg(&e))?;
    audit::record(&*tx, "worker", action, Some(id), serde_json::json!({})).await.map_err(|e| pg(&e))?;
    tx.commit().await.map_err(|e| pg(&e))?;
    cp.publish_change(&load(cp, id).await?).await;
    Ok(())
}

/// The tenant's login roles that exist: its runtime role, and its read-only role unless the
/// tenant predates reader roles (and has not been given one yet).
async fn login_roles(
    admin: &tokio_postgres::Client,
    tenant: &TenantRecord,
) -> Result<Vec<RoleName>, JobError> {
    let reader = provision::existing_reader(admin, tenant).await.map_err(|e| pg(&e))?;
    Ok(std::iter::once(tenant.role_name.clone()).chain(reader).collect())
}

/// Ends every open session of `roles` (the tenant's, from [`login_roles`]).
async fn end_sessions(admin: &tokio_postgres::Client, roles: &[RoleName]) -> Result<(), JobError> {
    let roles: Vec<&str> = roles.iter().map(RoleName::as_str).collect();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1)",
            &[&&roles[..]],
        )
        .await
        .map(|_| ())
        .map_err(|e| pg(&e))
}

/// LOGIN for active tenants; NOLOGIN and no open sessions for every other status (on both of
/// the tenant's roles).
pub(crate) async fn sync_access(cp: &ControlPlane, id: TenantId) -> Result<(), JobError> {
    let tenant = load(cp, id).await?;
    let admin = admin(cp, &tenant).await?;
    let login = if tenant.status == TenantStatus::Active { "LOGIN" } else { "NOLOGIN" };
    let roles = login_roles(&admin, &tenant).await?;
    let sql: String = roles.iter().map(|role| format!("ALTER ROLE {} {login};", role.quoted())).collect();
    admin.batch_execute(&sql).await.map_err(|e| pg(&e))?;
    if tenant.status != TenantStatus::Active {
        end_sessions(&admin, &roles).await?;
    }
    Ok(())
}

/// Applies the tenant's current plan: template settings and seed, the roles' connection limit
/// and settings.
pub(crate) async fn apply_plan(cp: &ControlPlane, id: TenantId) -> Result<(), JobError> {
    let tenant = load(cp, id).await?;
    let template = cp.templates.load(&tenant.plan).map_err(|e| JobError::permanent(e.to_string()))?;
    provision::apply_template(cp, &tenant, &template).await?;
    let admin = admin(cp, &tenant).await?;
    let sql: String = login_roles(&admin, &tenant)
        .await?
        .iter()
        .map(|role| provision::role_limits_sql(role, &template.limits))
        .collect();
    admin.batch_execute(&sql).await.map_err(|e| pg(&e))?;
    announce(cp, id, "tenant.plan_applied").await?;
    if template.isolation != tenant.isolation && tenant.status == TenantStatus::Active {
        move_to_plan_isolation(cp, &tenant, template.isolation).await?;
    }
    Ok(())
}

/// A plan whose template isolates tenants otherwise (pro's schema, enterprise's own database)
/// moves the tenant there: a move of its own, queued after this job. One running already (the
/// plan changed back and forth) is left to finish; a tenant with migrations pending is not
/// moved (the operator moves it once they are applied).
async fn move_to_plan_isolation(
    cp: &ControlPlane,
    tenant: &TenantRecord,
    isolation: tenancy::domain::Isolation,
) -> Result<(), JobError> {
    use crate::moves::{Destination, MoveError};
    let destination = Destination { isolation: Some(isolation), ..Destination::default() };
    match crate::moves::start(cp, &tenant.slug, &destination, "plan").await {
        Ok(started) => {
            tracing::info!(tenant = %tenant.slug, move_id = started.id, "the plan's isolation differs: tenant move started");
            Ok(())
        }
        Err(
            err @ (MoveError::Running { .. }
            | MoveError::PendingMigrations { .. }
            | MoveError::NoLogicalReplication { .. }),
        ) => {
            tracing::warn!(tenant = %tenant.slug, error = %err, "the plan's isolation differs, but the tenant is not moved now");
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

/// New passwords for both of the tenant's roles: stored in the secret first, then set on the
/// roles; routers are told, so they rebuild the tenant's pools (connections already open keep
/// working meanwhile). Each job rotates once; a job resumed after a crash between the two
/// writes rotates again, which is harmless. The secret store's idempotency token is derived
/// from the password being replaced.
///
/// A tenant provisioned before there were reader roles gets its read-only role here: the
/// provisioning steps that create roles and grant privileges run again first (they are
/// idempotent), its LOGIN follows the tenant's status, and the secret gets the reader's login.
pub(crate) async fn rotate_credentials(cp: &ControlPlane, id: TenantId) -> Result<(), JobError> {
    let tenant = load(cp, id).await?;
    let name = tenant.secret_name().ok_or_else(|| JobError::permanent("tenant has no secret"))?;
    let current =
        cp.secrets.get(&name).await?.ok_or_else(|| JobError::permanent("tenant secret is missing"))?;
    if !provision::has_reader(&current, &tenant) {
        let template = cp.templates.load(&tenant.plan).map_err(|e| JobError::permanent(e.to_string()))?;
        provision::ensure_role(cp, &tenant, &template).await?;
        provision::ensure_schema(cp, &tenant).await?;
        sync_access(cp, id).await?;
    }
    let replaces = hex::encode(Sha256::digest(current.password.as_bytes()));
    let rotated = provision::with_new_reader(
        DbCredentials { password: provision::generate_password(), ..current },
        &tenant,
    );
    cp.secrets.put(&name, &rotated, &format!("{id}-r{}", &replaces[..16])).await?;
    provision::set_role_passwords(cp, &tenant, &rotated, Step::Credentials).await?;
    announce(cp, id, "tenant.credentials_rotated").await
}

/// Archives (when configured), then drops the tenant's schema, role, secret and domains, and
/// leaves a `deleted` tombstone.
pub(crate) async fn deprovision(cp: &ControlPlane, id: TenantId) -> Result<(), JobError> {
    let tenant = load(cp, id).await?;
    if tenant.status != TenantStatus::Deprovisioning {
        // Deleted already (a repeated job), or no longer meant to be deleted.
        return Ok(());
    }
    let cluster = cluster(cp, &tenant).await?;
    // The database its data is in: the tenants database for a schema tenant (where its schema,
    // and its privileges, are dropped), the control database for one with its own database.
    let admin = match &tenant.database_name {
        Some(_) => cluster.admin().await,
        None => cluster.migrator().await,
    }
    .map_err(|e| JobError::of(&e))?;
    // Is the data still there? (A resumed job may have dropped it already.)
    let data_exists = match &tenant.database_name {
        Some(database) => {
            admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database.as_str()]).await
        }
        None => {
            admin
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&tenant.schema_name.as_str()])
                .await
        }
    }
    .map_err(|e| pg(&e))?
    .is_some();
    let mut archive_path = None;
    if let (Some(dir), true) = (&cp.archive_dir, data_exists) {
        std::fs::create_dir_all(dir)
            .map_err(|e| JobError::permanent(format!("archive dir {}: {e}", dir.display())))?;
        let file = dir.join(format!("{}-{}.dump", tenant.slug, tenant.id));
        cluster.dump_tenant(&cp.pg_dump, &tenant, &file).await.map_err(JobError::permanent)?;
        archive_path = Some(file.display().to_string());
    }
    drop(admin);
    drop_placement(&cluster, &tenant).await?;
    // By its conventional name too: a tenant that failed after its secret was written but
    // before the catalog recorded it must not leave the secret behind.
    let conventional = tenancy::secrets::SecretName::for_tenant(&cp.secrets_prefix, tenant.id);
    cp.secrets.delete(&conventional).await?;
    if let Some(name) = tenant.secret_name().filter(|name| *name != conventional) {
        cp.secrets.delete(&name).await?;
    }
    let mut client = catalog(cp).await?;
    let tx = client.transaction().await.map_err(|e| pg(&e))?;
    domains::delete_all(&*tx, id).await.map_err(|e| pg(&e))?;
    tenants::mark_deleted(&*tx, id, archive_path.as_deref()).await.map_err(|e| pg(&e))?;
    tenants::set_status(&*tx, id, TenantStatus::Deleted).await.map_err(|e| pg(&e))?;
    audit::record(&*tx, "worker", "tenant.deleted", Some(id), serde_json::json!({ "archive": archive_path }))
        .await
        .map_err(|e| pg(&e))?;
    tx.commit().await.map_err(|e| pg(&e))?;
    cp.publish_change(&load(cp, id).await?).await;
    tracing::info!(tenant = %tenant.slug, tenant_id = %id, "tenant deleted");
    Ok(())
}

/// Drops the data and the roles where `tenant` places them: its schema (if the owner role owns
/// it) or its own database, and its runtime and read-only roles (if they are the tenant's),
/// their sessions ended first. What is gone already is skipped, so a resumed job finishes.
pub(crate) async fn drop_placement(
    cluster: &crate::clusters::Cluster,
    tenant: &tenancy::catalog::TenantRecord,
) -> Result<(), JobError> {
    // The database its data is in: the tenants database for a schema tenant (where its schema,
    // and its privileges, are dropped), the control database for one with its own database.
    let admin = match &tenant.database_name {
        Some(_) => cluster.admin().await,
        None => cluster.migrator().await,
    }
    .map_err(|e| JobError::of(&e))?;
    // Both of the tenant's roles, those that are still there (a resumed job may have dropped
    // them already; the read-only one only if it is the tenant's).
    let role_exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&tenant.role_name.as_str()])
        .await
        .map_err(|e| pg(&e))?
        .is_some();
    let reader = provision::existing_reader(&admin, tenant).await.map_err(|e| pg(&e))?;
    let roles: Vec<RoleName> =
        role_exists.then(|| tenant.role_name.clone()).into_iter().chain(reader).collect();
    let drop_role: String = roles
        .iter()
        .map(|role| format!("DROP OWNED BY {role}; DROP ROLE {role};", role = role.quoted()))
        .collect();
    end_sessions(&admin, &roles).await?;
    let drop_schema = match &tenant.database_name {
        Some(database) => {
            cluster.drop_database(database).await.map_err(|e| JobError::of(&e))?;
            String::new()
        }
        // Only a schema the owner role owns is ours to drop.
        None => format!(
            "DO $$ BEGIN
               IF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = '{schema_name}') = '{owner}' THEN
                 EXECUTE 'DROP SCHEMA {schema} CASCADE';
               END IF;
             END $$;",
            schema_name = tenant.schema_name.as_str(),
            schema = tenant.schema_name.quoted(),
            owner = cluster.owner.as_str(),
        ),
    };
    admin.batch_execute(&format!("BEGIN; {drop_schema} {drop_role} COMMIT;")).await.map_err(|e| pg(&e))
}
