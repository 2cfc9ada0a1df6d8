//! The switch: the only part of a move the tenant notices, as a pause of its new requests.
//!
//! First half ([`lock_source`], undone if it fails or takes longer than `MOVE_PAUSE_MAX`): the
//! tenant is paused (routers hold its new requests); its transactions running on the source
//! are given half the pause to finish; its roles there lose `LOGIN` and every session they
//! still have is ended, so nothing more can be written there; a change to the move's marker,
//! once applied on the target, says everything is (a move by dump copied everything under its
//! locks already: the writes still waiting for them are cancelled instead). Second half ([`switch_over`], only forward
//! from there): sequences carried over, the subscription dropped, the schema given its final
//! name, then one catalog transaction moves the tenant and lifts its pause.

use super::replication::{self, pg_step_error, step_error};
use super::{MoveError, MoveRecord};
use crate::catalog::{audit, moves};
use crate::control_plane::ControlPlane;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{MoveMethod, RoleName, TenantStatus};
use tenancy::error::ErrorKind;

const POLL: Duration = Duration::from_millis(10);

/// Switches tried and undone before a move gives up.
const MAX_SWITCH_ATTEMPTS: i32 = 10;

async fn load_tenant(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<TenantRecord, MoveError> {
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    tenancy::catalog::tenant_by_id(&**client, record.tenant_id)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .ok_or_else(|| {
            step_error(record, step)("the tenant is gone from the catalog".into(), ErrorKind::Failed)
        })
}

/// The source's login roles of the tenant (runtime and read-only).
fn source_roles(record: &MoveRecord) -> Vec<String> {
    vec![record.from.role.as_str().to_owned(), record.from.role.reader().as_str().to_owned()]
}

/// The first half of the switch. On failure (or past the pause's length), it is undone: the
/// source's roles log in again and the tenant's requests are released where it is.
pub(super) async fn lock_source(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let step = "locked";
    let tenant = load_tenant(cp, record, step).await?;
    if tenant.paused_until.is_some() {
        // An earlier attempt stopped half-way (a crash): undone first.
        reopen_source(cp, record).await?;
    }
    if tenant.status != TenantStatus::Active {
        return Err(step_error(record, step)(
            format!("the tenant is {} now; only an active tenant is switched", tenant.status),
            ErrorKind::Failed,
        ));
    }
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let version = crate::catalog::tenants::schema_version(&**client, tenant.id)
        .await
        .map_err(|e| MoveError::Catalog(tenancy::pg::describe_error(&e)))?;
    drop(client);
    if version != record.schema_version {
        // A fleet migration reached the source during the copy: the target was built at the
        // version before.
        return Err(step_error(record, step)(
            format!(
                "the tenant's schema changed during the move (version {:?}, the copy is at {:?}): move it again",
                version, record.schema_version
            ),
            ErrorKind::Failed,
        ));
    }
    let started = tokio::time::Instant::now();
    let deadline = started + cp.move_pause_max;
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let paused = moves::pause(&**client, tenant.id, cp.move_pause_max)
        .await
        .map_err(|e| MoveError::Catalog(tenancy::pg::describe_error(&e)))?;
    drop(client);
    if let Some(paused) = &paused {
        cp.publish_change(paused).await;
    }
    super::crash_point("paused");
    let locked = async {
        let admin = replication::source_cluster(cp, record, step)
            .await?
            .admin()
            .await
            .map_err(replication::cluster_step_error(record, step))?;
        let pg = pg_step_error(record, step);
        let roles = source_roles(record);
        let by_dump = record.method == MoveMethod::Dump;
        // The transactions running now finish (in half the pause at most). In a move by dump,
        // those waiting for a lock wait for the mover's own, which outlasts them: they are
        // cancelled once the routers have had the whole half to hear of the pause (routers do
        // not confirm it), so that what their clients send next is held there rather than
        // sent here, where it would wait on the locks and lose its connection.
        let grace = started + cp.move_pause_max / 2;
        if by_dump {
            tokio::time::sleep_until(grace).await;
        }
        while tokio::time::Instant::now() < grace {
            let busy: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1) AND xact_start IS NOT NULL",
                    &[&roles],
                )
                .await
                .map_err(&pg)?
                .get(0);
            if busy == 0 {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        if by_dump {
            // The writes waiting for the copy fail with an error (57014) rather than with
            // their connection; sent again, they wait in the routers for the target.
            admin
                .execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                      WHERE usename = ANY($1) AND wait_event_type = 'Lock'",
                    &[&roles],
                )
                .await
                .map_err(&pg)?;
        }
        // Nothing more is written on the source: its roles cannot log in, and their sessions end.
        let mut nologin = String::new();
        for role in [&record.from.role, &record.from.role.reader()] {
            nologin.push_str(&format!(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                   ALTER ROLE {quoted} NOLOGIN; END IF; END $$;",
                name = role.as_str(),
                quoted = role.quoted()
            ));
        }
        admin.batch_execute(&nologin).await.map_err(&pg)?;
        loop {
            let left: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = ANY($1)",
                    &[&roles],
                )
                .await
                .map_err(&pg)?
                .get(0);
            if left == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(step_error(record, step)(
                    "the tenant's sessions on the source did not end in time".into(),
                    ErrorKind::Unavailable,
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        drop(admin);
        super::crash_point("locked_out");
        if !by_dump {
            // Everything the source committed is applied on the target.
            let changes = replication::mark(cp, record, step).await?;
            replication::wait_for_mark(cp, record, changes, deadline, step).await?;
        }
        // A session that logged in just before `NOLOGIN` took effect may have started only now:
        // if one exists, what it writes would miss the target.
        let admin = replication::source_cluster(cp, record, step)
            .await?
            .admin()
            .await
            .map_err(replication::cluster_step_error(record, step))?;
        let late: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1)", &[&roles])
            .await
            .map_err(&pg)?
            .get(0);
        if late > 0 {
            return Err(step_error(record, step)(
                "a session of the tenant's started on the source during the switch".into(),
                ErrorKind::Unavailable,
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(step_error(record, step)(
                format!("the switch took longer than MOVE_PAUSE_MAX ({:?})", cp.move_pause_max),
                ErrorKind::Unavailable,
            ));
        }
        Ok(())
    }
    .await;
    if let Err(err) = locked {
        tracing::warn!(move_id = record.id, error = %err, "switch undone; the tenant stays where it was for now");
        reopen_source(cp, record).await?;
        return Err(attempt_failed(cp, record, err).await);
    }
    Ok(())
}

/// Counts a failed attempt at the switch (or, in a move by dump, at the copy that comes with
/// it), whose error `err` is: once there were too many, the error that rolls the move back.
/// Each attempt paused the tenant and ended its sessions (or held its writes for a copy): the
/// move gives up rather than do that forever.
pub(super) async fn attempt_failed(cp: &ControlPlane, record: &MoveRecord, err: MoveError) -> MoveError {
    let counted = async {
        let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
        moves::count_switch_attempt(&**client, record.id)
            .await
            .map_err(|e| MoveError::Catalog(tenancy::pg::describe_error(&e)))
    };
    match counted.await {
        Ok(attempts) if attempts >= MAX_SWITCH_ATTEMPTS => step_error(record, "locked")(
            format!("the switch failed {attempts} times, the last: {err}"),
            ErrorKind::Failed,
        ),
        Ok(_) => err,
        Err(catalog) => catalog,
    }
}

/// Undoes [`lock_source`]: the source's roles log in again (if the tenant is active) and the
/// tenant's requests are released where it is.
pub(super) async fn reopen_source(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let step = "locked";
    let tenant = load_tenant(cp, record, step).await?;
    if tenant.status == TenantStatus::Active {
        let admin = replication::source_cluster(cp, record, step)
            .await?
            .admin()
            .await
            .map_err(replication::cluster_step_error(record, step))?;
        let mut login = String::new();
        for role in [&record.from.role, &record.from.role.reader()] {
            login.push_str(&format!(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                   ALTER ROLE {quoted} LOGIN; END IF; END $$;",
                name = role.as_str(),
                quoted = role.quoted()
            ));
        }
        admin.batch_execute(&login).await.map_err(pg_step_error(record, step))?;
    }
    unpause(cp, tenant.id).await
}

/// The tenant's requests (and writes) released where it is, and routers told.
pub(super) async fn unpause(cp: &ControlPlane, tenant: tenancy::domain::TenantId) -> Result<(), MoveError> {
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let unpaused = moves::unpause(&**client, tenant)
        .await
        .map_err(|e| MoveError::Catalog(tenancy::pg::describe_error(&e)))?;
    if unpaused {
        if let Some(now) = tenancy::catalog::tenant_by_id(&**client, tenant)
            .await
            .map_err(|e| MoveError::Catalog(e.to_string()))?
        {
            cp.publish_change(&now).await;
        }
    }
    Ok(())
}

/// The second half of the switch, after [`lock_source`] (safe to run again after a crash: the
/// source stays locked, and each part checks what is done).
pub(super) async fn switch_over(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let step = "switched";
    let tenant = load_tenant(cp, record, step).await?;
    let retired_schema = super::run::retired_schema(record, &tenant);
    replication::copy_sequences(cp, record, &retired_schema, step).await?;
    super::crash_point("sequences");
    replication::drop_subscription(cp, record, step).await?;
    super::crash_point("unsubscribed");
    let copy_role = super::run::copy_role(cp, record, &tenant);
    if record.from.schema != record.to.schema {
        rename_schema(cp, record, &copy_role, step).await?;
    }
    swap_roles(cp, record, &copy_role, &super::run::retired_role(cp, record, &tenant), step).await?;
    retire_source_schema(cp, record, &tenant, step).await?;
    super::crash_point("roles_swapped");
    // How long the tenant's requests were held: since the pause began.
    let pause_ms = tenant
        .paused_until
        .map(|until| {
            let began = until - chrono::Duration::from_std(cp.move_pause_max).unwrap_or_default();
            (chrono::Utc::now() - began).num_milliseconds()
        })
        .and_then(|ms| i32::try_from(ms.max(0)).ok())
        .unwrap_or(0);
    let mut client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let catalog = |e: tokio_postgres::Error| MoveError::Catalog(tenancy::pg::describe_error(&e));
    let tx = client.transaction().await.map_err(catalog)?;
    if !moves::switch(&*tx, record, pause_ms).await.map_err(catalog)? {
        return Err(super::run::another_mover(record));
    }
    let detail = serde_json::json!({ "move": record.id, "to": &record.to, "pause_ms": pause_ms });
    audit::record(&*tx, "mover", "tenant.move.switched", Some(record.tenant_id), detail)
        .await
        .map_err(catalog)?;
    tx.commit().await.map_err(catalog)?;
    if let Some(now) = tenancy::catalog::tenant_by_id(&**client, record.tenant_id)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
    {
        cp.publish_change(&now).await;
    }
    tracing::info!(tenant = %tenant.slug, move_id = record.id, pause_ms, "tenant switched to its new placement");
    Ok(())
}

/// The tenant's names pass from its old roles (which get the move's retired names) to the
/// copy's, so its clients log in as before, there. On one cluster, in one transaction; on two,
/// the old roles first. Each rename is skipped once done, so a resumed switch finishes.
async fn swap_roles(
    cp: &ControlPlane,
    record: &MoveRecord,
    copy: &RoleName,
    retired: &RoleName,
    step: &'static str,
) -> Result<(), MoveError> {
    // `then`: what else runs once the rename is done (in its transaction).
    let rename = |from: &RoleName, to: &RoleName, then: &str| {
        format!(
            "DO $$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{from_name}')
                  AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{to_name}') THEN
                 ALTER ROLE {from_quoted} RENAME TO {to_quoted};
                 {then}
               END IF;
             END $$;",
            from_name = from.as_str(),
            to_name = to.as_str(),
            from_quoted = from.quoted(),
            to_quoted = to.quoted(),
        )
    };
    let tenant_role = &record.from.role;
    let retire = format!(
        "{}{}",
        rename(tenant_role, retired, ""),
        rename(&tenant_role.reader(), &retired.reader(), "")
    );
    // The copy's roles log in from now on (as the tenant's).
    let login = |role: &RoleName| format!("ALTER ROLE {} LOGIN;", role.quoted());
    let promote = format!(
        "{}{}",
        rename(copy, tenant_role, &login(tenant_role)),
        rename(&copy.reader(), &tenant_role.reader(), &login(&tenant_role.reader()))
    );
    let pg = pg_step_error(record, step);
    let source = replication::source_cluster(cp, record, step)
        .await?
        .admin()
        .await
        .map_err(replication::cluster_step_error(record, step))?;
    if record.from.cluster == record.to.cluster {
        return source.batch_execute(&format!("BEGIN; {retire} {promote} COMMIT;")).await.map_err(&pg);
    }
    source.batch_execute(&format!("BEGIN; {retire} COMMIT;")).await.map_err(&pg)?;
    let target = replication::target_cluster(cp, record, step)
        .await?
        .admin()
        .await
        .map_err(replication::cluster_step_error(record, step))?;
    target.batch_execute(&format!("BEGIN; {promote} COMMIT;")).await.map_err(&pg)
}

/// The old schema, where it is in a shared database, gets the move's retired name (a database
/// of the tenant's own keeps its name, which no one else has): the tenant may come back to that
/// database before the old copy is dropped.
async fn retire_source_schema(
    cp: &ControlPlane,
    record: &MoveRecord,
    tenant: &TenantRecord,
    step: &'static str,
) -> Result<(), MoveError> {
    if record.from.database.is_some() {
        return Ok(());
    }
    let retired = super::run::retired_schema(record, tenant);
    let db = replication::source(cp, record, step).await?;
    db.batch_execute(&format!(
        "DO $$ BEGIN {} END $$;",
        replication::rename_schema_once(&record.from.schema, &retired)
    ))
    .await
    .map_err(pg_step_error(record, step))
}

/// The copy's schema (named as on the source) gets its final name, and the copy's roles their
/// search path with it, in one transaction; what is done already is skipped (a resumed switch
/// may have renamed the schema, and the roles). Nobody uses them yet: the catalog still points
/// at the source.
async fn rename_schema(
    cp: &ControlPlane,
    record: &MoveRecord,
    copy_role: &RoleName,
    step: &'static str,
) -> Result<(), MoveError> {
    let db = replication::target(cp, record, step).await?;
    let (from, to) = (&record.from.schema, &record.to.schema);
    let search_path = |role: &RoleName| {
        format!(
            "IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
               ALTER ROLE {quoted} SET search_path = {schema};
             END IF;",
            name = role.as_str(),
            quoted = role.quoted(),
            schema = to.quoted(),
        )
    };
    db.batch_execute(&format!(
        "DO $$ BEGIN
           {rename}
           {runtime}
           {reader}
         END $$;",
        rename = replication::rename_schema_once(from, to),
        runtime = search_path(copy_role),
        reader = search_path(&copy_role.reader()),
    ))
    .await
    .map_err(pg_step_error(record, step))
}
