//! The move job: the steps in turn from the last one recorded, a rollback when the move is
//! aborted or fails for good before the switch, and, after the retention period, the source's
//! removal.

use super::replication::{self, cluster_step_error, step_error};
use super::{switch, MoveError, MoveMethod, MoveRecord, MoveState};
use crate::catalog::{audit, jobs, moves};
use crate::control_plane::ControlPlane;
use crate::jobs::provision;
use crate::jobs::JobKind;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{Isolation, RoleName};
use tenancy::error::{ErrorKind, OperationError as _};
use tenancy::secrets::{DbCredentials, SecretName};

const TARGET: &str = "target";
const PUBLISHED: &str = "published";
const SUBSCRIBED: &str = "subscribed";
const COPIED: &str = "copied";
const LOCKED: &str = "locked";
const SWITCHED: &str = "switched";

/// Whether the move is past the point where it can be undone: the source is locked (or the
/// tenant switched), so it only goes forward.
pub(crate) fn past_return(record: &MoveRecord) -> bool {
    matches!(record.step.as_deref(), Some(LOCKED | SWITCHED))
}

/// Runs move `move_id` from where it is. An error that trying again may mend is returned (the
/// job is retried); an abort, or any other failure before the point of no return, rolls the
/// move back and leaves the tenant where it was.
pub(crate) async fn run(cp: &ControlPlane, move_id: i64) -> Result<(), MoveError> {
    let record = super::load(cp, move_id).await?;
    if record.state != MoveState::Running {
        return Ok(());
    }
    let Err(err) = advance(cp, record).await else { return Ok(()) };
    let record = super::load(cp, move_id).await?;
    let aborted = matches!(err, MoveError::Aborted { .. }) && !past_return(&record);
    if !aborted && (err.kind().is_retryable() || past_return(&record)) {
        let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
        let _ = moves::set_error(&**client, move_id, &err.to_string()).await;
        if past_return(&record) && !err.kind().is_retryable() {
            tracing::error!(move_id, error = %err, "a move past its point of no return failed; it is tried again");
            return Err(MoveError::Step {
                id: move_id,
                step: "switched",
                message: err.to_string(),
                kind: ErrorKind::Unavailable,
            });
        }
        return Err(err);
    }
    if !aborted {
        // Recorded first: a rollback cut short (a crash, the target away) goes on rolling back
        // when the job runs again, rather than forward.
        let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
        let catalog = |e: tokio_postgres::Error| MoveError::Catalog(tenancy::pg::describe_error(&e));
        moves::set_error(&**client, move_id, &err.to_string()).await.map_err(catalog)?;
        if !moves::request_abort(&**client, move_id).await.map_err(catalog)? {
            // Past the point of no return since it was read (another mover): forward only.
            return Err(another_mover(&record));
        }
    }
    roll_back(cp, &record).await?;
    let (state, message) =
        if aborted { (MoveState::Aborted, None) } else { (MoveState::Failed, Some(err.to_string())) };
    finish(cp, &record, state, message.as_deref()).await?;
    if aborted {
        Ok(())
    } else {
        Err(err)
    }
}

async fn advance(cp: &ControlPlane, mut record: MoveRecord) -> Result<(), MoveError> {
    loop {
        if record.abort_requested && !past_return(&record) {
            return Err(MoveError::Aborted { id: record.id });
        }
        let done = match record.step.as_deref() {
            None => {
                build_target(cp, &record).await?;
                TARGET
            }
            Some(TARGET) if record.method == MoveMethod::Dump => {
                // Boxed: its future (two programs and a watch) would make every job's larger.
                Box::pin(super::dump::copy_and_lock(cp, &record)).await?;
                LOCKED
            }
            Some(TARGET) => {
                replication::publish(cp, &record).await?;
                PUBLISHED
            }
            Some(PUBLISHED) => {
                replication::subscribe(cp, &record).await?;
                SUBSCRIBED
            }
            Some(SUBSCRIBED) => {
                replication::wait_copied(cp, &record).await?;
                COPIED
            }
            Some(COPIED) => {
                switch::lock_source(cp, &record).await?;
                LOCKED
            }
            Some(LOCKED) => {
                // Records `switched` itself, with the switch.
                switch::switch_over(cp, &record).await?;
                super::crash_point(SWITCHED);
                record = super::load(cp, record.id).await?;
                continue;
            }
            Some(SWITCHED) => {
                replication::tear_down(cp, &record, "done").await?;
                return finish(cp, &record, MoveState::Done, None).await;
            }
            Some(other) => {
                return Err(step_error(&record, "resume")(
                    format!("unknown step {other:?}"),
                    ErrorKind::Failed,
                ));
            }
        };
        let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
        let went_on = moves::set_step(&**client, record.id, record.step.as_deref(), done)
            .await
            .map_err(|e| MoveError::Catalog(e.to_string()))?;
        drop(client);
        if !went_on {
            // Asked to abort while the source was being locked: the next turn undoes the lock
            // and rolls back. Anything else: another mover went on.
            let now = super::load(cp, record.id).await?;
            if now.abort_requested && !past_return(&now) {
                record = now;
                continue;
            }
            return Err(another_mover(&record));
        }
        tracing::info!(move_id = record.id, step = done, "move step done");
        super::crash_point(done);
        record = super::load(cp, record.id).await?;
    }
}

/// The move's row changed under this mover (another one runs it): this one stops, retried.
pub(super) fn another_mover(record: &MoveRecord) -> MoveError {
    step_error(record, "resume")(
        "the move went on elsewhere meanwhile; looking again".into(),
        ErrorKind::Unavailable,
    )
}

async fn load_tenant(cp: &ControlPlane, record: &MoveRecord) -> Result<TenantRecord, MoveError> {
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    tenancy::catalog::tenant_by_id(&**client, record.tenant_id)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .ok_or_else(|| {
            step_error(record, "resume")("the tenant is gone from the catalog".into(), ErrorKind::Failed)
        })
}

/// The name the tenant's runtime role has where it goes until the switch (its read-only role's
/// is derived from it).
pub(super) fn copy_role(cp: &ControlPlane, record: &MoveRecord, tenant: &TenantRecord) -> RoleName {
    RoleName::for_move(&cp.role_prefix, &tenant.slug, record.id)
}

/// The name the tenant's old runtime role gets at the switch.
pub(super) fn retired_role(cp: &ControlPlane, record: &MoveRecord, tenant: &TenantRecord) -> RoleName {
    RoleName::retired(&cp.role_prefix, &tenant.slug, record.id)
}

/// The name the tenant's old schema gets at the switch, where it is in a shared database.
pub(super) fn retired_schema(record: &MoveRecord, tenant: &TenantRecord) -> tenancy::domain::SchemaName {
    tenancy::domain::SchemaName::retired(&tenant.slug, record.id)
}

/// The tenant where it goes, as it is while its tables are copied: the schema named as on the
/// source (logical replication matches tables by name), the roles under the move's names.
fn copy_of(cp: &ControlPlane, record: &MoveRecord, tenant: &TenantRecord) -> TenantRecord {
    let mut copy = record.to.apply(tenant);
    copy.schema_name = record.from.schema.clone();
    copy.role_name = copy_role(cp, record, tenant);
    copy
}

/// The target: the roles, the schema or database (with the tenant's tables, empty, at its
/// schema version) and the credentials, under the move's names.
async fn build_target(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let step = TARGET;
    let tenant = load_tenant(cp, record).await?;
    let copy = copy_of(cp, record, &tenant);
    let provisioning = |err: provision::ProvisionError| MoveError::Step {
        id: record.id,
        step,
        kind: err.kind(),
        message: err.to_string(),
    };
    let template = cp
        .templates
        .load(&tenant.plan)
        .map_err(|e| step_error(record, step)(e.to_string(), ErrorKind::Failed))?;
    let cluster = replication::target_cluster(cp, record, step).await?;
    match (&record.to.isolation, &record.to.database) {
        (Isolation::Database, Some(database)) => {
            // A clone of the cluster's template, whose schema is renamed to the source's.
            let migrations = cp
                .migrations()
                .map_err(|e| step_error(record, step)(e.to_string(), ErrorKind::Misconfigured))?;
            cluster
                .create_tenant_database(database, &migrations)
                .await
                .map_err(cluster_step_error(record, step))?;
            let cloned = tenancy::domain::SchemaName::database_tenant();
            if copy.schema_name != cloned {
                let db =
                    cluster.migrator_for(Some(database)).await.map_err(cluster_step_error(record, step))?;
                db.batch_execute(&format!(
                    "DO $$ BEGIN {} END $$;",
                    replication::rename_schema_once(&cloned, &copy.schema_name)
                ))
                .await
                .map_err(replication::pg_step_error(record, step))?;
            }
        }
        _ => claim_schema(record, &cluster).await?,
    }
    provision::ensure_role(cp, &copy, &template).await.map_err(provisioning)?;
    provision::ensure_schema(cp, &copy).await.map_err(provisioning)?;
    provision::migrate(cp, &copy).await.map_err(provisioning)?;
    target_credentials(cp, record, &tenant, &copy).await
}

/// The tenant's credentials where it goes (the move's secret): the same user names and
/// passwords, the target's host and database. The copy's roles get those passwords now (a
/// SCRAM verifier does not depend on the role's name: it survives the renaming at the switch).
async fn target_credentials(
    cp: &ControlPlane,
    record: &MoveRecord,
    tenant: &TenantRecord,
    copy: &TenantRecord,
) -> Result<(), MoveError> {
    let step = TARGET;
    let failed = |message: &str| step_error(record, step)(message.to_owned(), ErrorKind::Failed);
    let secret_error = |e: tenancy::secrets::SecretError| step_error(record, step)(e.to_string(), e.kind());
    let name = SecretName::from_catalog(
        record.to.secret_ref.clone().ok_or_else(|| failed("the move names no secret"))?,
    );
    let credentials = match cp.secrets.get(&name).await.map_err(secret_error)? {
        Some(kept) => kept,
        None => {
            let current_name = tenant.secret_name().ok_or_else(|| failed("the tenant has no secret"))?;
            let current = cp
                .secrets
                .get(&current_name)
                .await
                .map_err(secret_error)?
                .ok_or_else(|| failed("the tenant's secret is missing"))?;
            let cluster = replication::target_cluster(cp, record, step).await?;
            let endpoint = &cluster.endpoint;
            let moved = DbCredentials {
                host: endpoint.host.clone(),
                port: endpoint.port,
                dbname: record
                    .to
                    .database
                    .as_ref()
                    .map_or_else(|| endpoint.dbname.clone(), |db| db.as_str().to_owned()),
                schema: record.to.schema.as_str().to_owned(),
                sslmode: Some(endpoint.sslmode),
                ..current
            };
            cp.secrets
                .put(&name, &moved, &format!("{}-m{}", tenant.id, record.id))
                .await
                .map_err(secret_error)?;
            moved
        }
    };
    let mut sql = String::new();
    let logins = [
        (copy.role_name.clone(), Some(&credentials.password)),
        (copy.role_name.reader(), credentials.reader_password.as_ref()),
    ];
    for (role, password) in logins {
        let Some(password) = password else { continue };
        let verifier = provision::verifier::scram_sha_256(password);
        if verifier.contains('\'') {
            return Err(failed("unexpected character in the password verifier"));
        }
        // Unable to log in until the switch gives it the tenant's name.
        sql.push_str(&format!("ALTER ROLE {} NOLOGIN PASSWORD '{verifier}';", role.quoted()));
    }
    let cluster = replication::target_cluster(cp, record, step).await?;
    let admin = cluster.admin().await.map_err(cluster_step_error(record, step))?;
    admin.batch_execute(&sql).await.map_err(replication::pg_step_error(record, step))
}

/// In the target cluster's shared database, the schema the copy goes into, created and marked
/// as this move's in one transaction: one that exists and is not this move's (a copy another
/// move is making, or one kept after an earlier move) is never taken.
async fn claim_schema(record: &MoveRecord, cluster: &crate::clusters::Cluster) -> Result<(), MoveError> {
    let step = TARGET;
    let pg = replication::pg_step_error(record, step);
    let db = cluster.migrator().await.map_err(cluster_step_error(record, step))?;
    let marker = format!("tenancy move {}", record.id);
    let schema = &record.from.schema;
    let found = db
        .query_opt(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
            &[&schema.as_str()],
        )
        .await
        .map_err(&pg)?;
    match found {
        Some(row) if row.get::<_, Option<String>>(0).as_deref() == Some(marker.as_str()) => Ok(()),
        Some(_) => Err(step_error(record, step)(
            format!(
                "schema {schema} exists on cluster {} already (another tenant's copy in progress, or a copy kept after an earlier move): the tenant cannot be copied there now",
                record.to.cluster
            ),
            ErrorKind::Unavailable,
        )),
        None => db
            .batch_execute(&format!(
                "BEGIN; CREATE SCHEMA {quoted} AUTHORIZATION {owner}; COMMENT ON SCHEMA {quoted} IS '{marker}'; COMMIT;",
                quoted = schema.quoted(),
                owner = cluster.owner.quoted(),
            ))
            .await
            .map_err(&pg),
    }
}

/// Removes everything the move made (it has not switched the tenant): the pause if any, the
/// replication objects, the target's schema or database, roles and secret.
async fn roll_back(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let step = "rollback";
    if past_return(record) {
        // Never rolled back from there: the job goes on, forward.
        return Err(another_mover(record));
    }
    switch::reopen_source(cp, record).await?;
    replication::tear_down(cp, record, step).await?;
    let tenant = load_tenant(cp, record).await?;
    let mut copy = copy_of(cp, record, &tenant);
    let cluster = replication::target_cluster(cp, record, step).await?;
    if copy.database_name.is_none() && !schema_is_ours(record, &cluster).await? {
        // Not this move's schema (another move's, or a kept copy): left alone, roles only.
        copy.schema_name = tenancy::domain::SchemaName::for_move(&tenant.slug, record.id);
    }
    crate::jobs::lifecycle::drop_placement(&cluster, &copy)
        .await
        .map_err(|e| step_error(record, step)(e.message, e.kind))?;
    if let Some(secret) = &record.to.secret_ref {
        cp.secrets
            .delete(&SecretName::from_catalog(secret.clone()))
            .await
            .map_err(|e| step_error(record, step)(e.to_string(), e.kind()))?;
    }
    Ok(())
}

/// Whether the copy's schema in the target's shared database is this move's (or gone).
async fn schema_is_ours(record: &MoveRecord, cluster: &crate::clusters::Cluster) -> Result<bool, MoveError> {
    let db = cluster.migrator().await.map_err(cluster_step_error(record, "rollback"))?;
    let row = db
        .query_opt(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
            &[&record.from.schema.as_str()],
        )
        .await
        .map_err(replication::pg_step_error(record, "rollback"))?;
    Ok(match row {
        None => true,
        Some(row) => row.get::<_, Option<String>>(0) == Some(format!("tenancy move {}", record.id)),
    })
}

/// Ends the move as `state`, in one catalog transaction with its audit record and, for a move
/// that is done, the queued drop of the old copy: at once with `--drop-source`, else after the
/// retention period. Not a job of the tenant's (those run in order: it would hold up every
/// later one).
async fn finish(
    cp: &ControlPlane,
    record: &MoveRecord,
    state: MoveState,
    error: Option<&str>,
) -> Result<(), MoveError> {
    let mut client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let catalog = |e: tokio_postgres::Error| MoveError::Catalog(tenancy::pg::describe_error(&e));
    let tx = client.transaction().await.map_err(catalog)?;
    moves::finish(&*tx, record.id, state, error).await.map_err(catalog)?;
    if state == MoveState::Done {
        let delay = if record.drop_source { std::time::Duration::ZERO } else { cp.move_source_retention };
        let payload = serde_json::json!({ "move": record.id });
        jobs::enqueue_after(&*tx, JobKind::DropMoveSource, None, &payload, delay).await.map_err(catalog)?;
    }
    let action = format!("tenant.move.{}", state.as_str());
    let detail = serde_json::json!({ "move": record.id, "error": error });
    audit::record(&*tx, "mover", &action, Some(record.tenant_id), detail).await.map_err(catalog)?;
    tx.commit().await.map_err(catalog)?;
    cp.jobs_enqueued.notify_waiters();
    tracing::info!(move_id = record.id, state = state.as_str(), "move finished");
    Ok(())
}

/// Drops a moved tenant's old copy: its schema or database and its roles where it was, and its
/// old secret. Never where the tenant is now.
pub(crate) async fn drop_source(cp: &ControlPlane, move_id: i64) -> Result<(), MoveError> {
    let step = "drop_source";
    let record = super::load(cp, move_id).await?;
    if record.state != MoveState::Done || record.source_dropped_at.is_some() {
        return Ok(());
    }
    let tenant = load_tenant(cp, &record).await?;
    let mut source = record.from.apply(&tenant);
    // Its roles, and its schema in a shared database, have the names the switch gave them.
    source.role_name = retired_role(cp, &record, &tenant);
    if source.database_name.is_none() {
        source.schema_name = retired_schema(&record, &tenant);
    }
    // Never where the tenant is now: its schema there has the move's retired name (which no
    // placement takes), and a database of its own keeps its name.
    let here_now = super::Placement::of(&tenant);
    let dropping_here_now = here_now.cluster == record.from.cluster
        && match (&source.database_name, &here_now.database) {
            (Some(old), Some(now)) => old == now,
            (None, None) => here_now.schema == source.schema_name,
            _ => false,
        };
    if dropping_here_now {
        return Err(step_error(&record, step)(
            "the tenant is where the move's old copy is: nothing is dropped".into(),
            ErrorKind::Failed,
        ));
    }
    let cluster = replication::source_cluster(cp, &record, step).await?;
    crate::jobs::lifecycle::drop_placement(&cluster, &source)
        .await
        .map_err(|e| step_error(&record, step)(e.message, e.kind))?;
    if let Some(secret) = &record.from.secret_ref {
        cp.secrets
            .delete(&SecretName::from_catalog(secret.clone()))
            .await
            .map_err(|e| step_error(&record, step)(e.to_string(), e.kind()))?;
    }
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    moves::set_source_dropped(&**client, move_id).await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    tracing::info!(tenant = %tenant.slug, move_id, "moved tenant's old copy dropped");
    Ok(())
}
