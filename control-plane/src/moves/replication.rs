//! PostgreSQL's logical replication, as a move uses it: on the source, a publication of the
//! tenant's tables and a replication slot (created first, so that a subscription on the same
//! server as its source does not wait on itself); on the target, a subscription that copies the
//! tables, then streams what is committed after.
//!
//! Each name is the move's: `<prefix>_move_<id>` for the publication, slot and subscription,
//! so a resumed step finds what an earlier attempt made. Both sides also get a one-row table of
//! the move's own (`<prefix>_moves.m<id>`, in a schema no tenant may use), published with the
//! tenant's: a change to it on the source, once seen on the target, says that everything
//! committed on the source before it has been applied (changes are applied in commit order).

use super::{MoveError, MoveRecord};
use crate::clusters::{AdminSession, Cluster};
use crate::control_plane::ControlPlane;
use std::sync::Arc;
use std::time::Duration;
use tenancy::domain::quote_ident;
use tenancy::error::ErrorKind;

/// How often a wait (for the copy, for the marker) looks again.
const POLL: Duration = Duration::from_millis(20);

/// The move's side of a step's error.
pub(super) fn step_error(record: &MoveRecord, step: &'static str) -> impl Fn(String, ErrorKind) -> MoveError {
    let id = record.id;
    move |message, kind| MoveError::Step { id, step, message, kind }
}

pub(super) fn pg_step_error(
    record: &MoveRecord,
    step: &'static str,
) -> impl Fn(tokio_postgres::Error) -> MoveError {
    let id = record.id;
    move |err| MoveError::Step {
        id,
        step,
        kind: tenancy::error::pg_error_kind(&err),
        message: tenancy::pg::describe_error(&err),
    }
}

pub(super) fn cluster_step_error(
    record: &MoveRecord,
    step: &'static str,
) -> impl Fn(crate::clusters::ClusterError) -> MoveError {
    use tenancy::error::OperationError as _;
    let id = record.id;
    move |err| MoveError::Step { id, step, kind: err.kind(), message: err.to_string() }
}

/// PL/pgSQL that renames schema `from` to `to` unless that is done (`from` gone, or `to`
/// there already): a resumed step runs it again harmlessly.
pub(super) fn rename_schema_once(
    from: &tenancy::domain::SchemaName,
    to: &tenancy::domain::SchemaName,
) -> String {
    format!(
        "IF to_regnamespace('{from_name}') IS NOT NULL AND to_regnamespace('{to_name}') IS NULL THEN
           ALTER SCHEMA {from_quoted} RENAME TO {to_quoted};
         END IF;",
        from_name = from.as_str(),
        to_name = to.as_str(),
        from_quoted = from.quoted(),
        to_quoted = to.quoted(),
    )
}

/// Whether cluster `name` can be the source of a move by logical replication (`wal_level =
/// logical`); checked before the move is recorded, so that one that cannot work never starts.
pub(super) async fn check_available(cp: &ControlPlane, name: &str) -> Result<(), MoveError> {
    let unavailable =
        |message: String| MoveError::Step { id: 0, step: "start", message, kind: ErrorKind::Unavailable };
    let cluster = cp.cluster(name).await.map_err(|e| unavailable(e.to_string()))?;
    let admin = cluster.admin().await.map_err(|e| unavailable(e.to_string()))?;
    let wal_level: String = admin
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(|e| unavailable(tenancy::pg::describe_error(&e)))?
        .get(0);
    if wal_level == "logical" {
        Ok(())
    } else {
        Err(MoveError::NoLogicalReplication { cluster: name.to_owned(), wal_level })
    }
}

/// The publication's, slot's and subscription's name.
pub(super) fn object_name(cp: &ControlPlane, record: &MoveRecord) -> String {
    format!("{}_move_{}", cp.role_prefix, record.id)
}

/// The marker table, schema-qualified and quoted.
fn marker_table(cp: &ControlPlane, record: &MoveRecord) -> String {
    format!("{}.{}", quote_ident(&marker_schema(cp)), quote_ident(&format!("m{}", record.id)))
}

fn marker_schema(cp: &ControlPlane) -> String {
    format!("{}_moves", cp.role_prefix)
}

/// Creates the marker table (and its schema, which `PUBLIC` may not use) where `db` is. Moves
/// running at once take turns (`CREATE SCHEMA IF NOT EXISTS` in two sessions at once can fail
/// with a unique violation: seen with moves of several tenants of one database together).
async fn ensure_marker(
    db: &AdminSession,
    cp: &ControlPlane,
    record: &MoveRecord,
) -> Result<(), tokio_postgres::Error> {
    // One statement string: one implicit transaction, which the lock lasts for.
    db.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({lock});
         CREATE SCHEMA IF NOT EXISTS {schema};
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
         CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY, changes bigint NOT NULL);",
        lock = crate::clusters::CLUSTER_DDL_LOCK,
        schema = quote_ident(&marker_schema(cp)),
        table = marker_table(cp, record),
    ))
    .await
}

pub(super) async fn source_cluster(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<Arc<Cluster>, MoveError> {
    cp.cluster(&record.from.cluster).await.map_err(cluster_step_error(record, step))
}

pub(super) async fn target_cluster(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<Arc<Cluster>, MoveError> {
    cp.cluster(&record.to.cluster).await.map_err(cluster_step_error(record, step))
}

/// An admin session on the database the tenant's data is in, at the source.
pub(super) async fn source(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<AdminSession, MoveError> {
    let cluster = source_cluster(cp, record, step).await?;
    cluster.migrator_for(record.from.database.as_ref()).await.map_err(cluster_step_error(record, step))
}

/// An admin session on the database the tenant's data goes to.
pub(super) async fn target(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<AdminSession, MoveError> {
    let cluster = target_cluster(cp, record, step).await?;
    cluster.migrator_for(record.to.database.as_ref()).await.map_err(cluster_step_error(record, step))
}

/// The tenant's tables on the source, quoted. A table logical replication cannot carry updates
/// of (no primary key, no replica identity) fails the move before anything is copied.
async fn tenant_tables(db: &AdminSession, record: &MoveRecord) -> Result<Vec<String>, MoveError> {
    let step = "published";
    let tables = super::tables_of(db, &record.from.schema).await.map_err(pg_step_error(record, step))?;
    let mut quoted = Vec::new();
    for table in tables {
        if !table.identified {
            return Err(step_error(record, step)(
                format!(
                    "table {} has no primary key (nor replica identity): logical replication cannot carry its updates and deletes",
                    table.name
                ),
                ErrorKind::Failed,
            ));
        }
        quoted.push(table.quoted);
    }
    Ok(quoted)
}

/// The source's side: the marker table, the publication, then the slot.
pub(super) async fn publish(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let step = "published";
    let db = source(cp, record, step).await?;
    let pg = pg_step_error(record, step);
    ensure_marker(&db, cp, record).await.map_err(&pg)?;
    let name = object_name(cp, record);
    let exists =
        db.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name]).await.map_err(&pg)?;
    if exists.is_none() {
        let mut tables = tenant_tables(&db, record).await?;
        tables.push(marker_table(cp, record));
        db.batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
            quote_ident(&name),
            tables.join(", ")
        ))
        .await
        .map_err(&pg)?;
    }
    let slot = db
        .query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&name])
        .await
        .map_err(&pg)?;
    if slot.is_none() {
        // Creating a slot waits for every transaction holding a transaction id on the server
        // to end (any tenant's): bounded, then tried again later.
        db.batch_execute("SET statement_timeout = '60s'").await.map_err(&pg)?;
        let created = db.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&name]).await;
        db.batch_execute("RESET statement_timeout").await.map_err(&pg)?;
        created.map_err(|err| {
            let timed_out = err.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED);
            let kind = if timed_out { ErrorKind::Unavailable } else { tenancy::error::pg_error_kind(&err) };
            step_error(record, step)(
                format!("creating the replication slot: {}", tenancy::pg::describe_error(&err)),
                kind,
            )
        })?;
    }
    Ok(())
}

/// Whether the move's subscription exists on the target.
async fn has_subscription(db: &AdminSession, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = db
        .query_opt(
            "SELECT 1 FROM pg_subscription
              WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&name],
        )
        .await?;
    Ok(row.is_some())
}

/// The target's side: the marker table, and the subscription (which starts copying).
pub(super) async fn subscribe(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let step = "subscribed";
    let db = target(cp, record, step).await?;
    let pg = pg_step_error(record, step);
    ensure_marker(&db, cp, record).await.map_err(&pg)?;
    let name = object_name(cp, record);
    if !has_subscription(&db, &name).await.map_err(&pg)? {
        // The copy starts empty: rows the migrations themselves inserted would clash with the
        // source's.
        let tables: Vec<String> = db
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> $2",
                &[&record.from.schema.as_str(), &crate::tenant_migrations::HISTORY_TABLE],
            )
            .await
            .map_err(&pg)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if !tables.is_empty() {
            db.batch_execute(&format!("TRUNCATE {}", tables.join(", "))).await.map_err(&pg)?;
        }
        let source = source_cluster(cp, record, step).await?;
        let dbname = record.from.database.as_ref().map_or(source.endpoint.dbname.as_str(), |db| db.as_str());
        // The connection string holds the source's admin password: it goes into the statement
        // only, never into a log or an error of ours.
        let conninfo = source.conninfo(dbname).replace('\\', "\\\\").replace('\'', "\\'");
        let sql = format!(
            "CREATE SUBSCRIPTION {quoted} CONNECTION E'{conninfo}' PUBLICATION {quoted}
               WITH (create_slot = false, slot_name = '{name}', copy_data = true)",
            quoted = quote_ident(&name),
        );
        db.batch_execute(&sql).await.map_err(|err| MoveError::Step {
            id: record.id,
            step,
            kind: tenancy::error::pg_error_kind(&err),
            message: format!(
                "creating the subscription: {}",
                err.as_db_error().map_or_else(|| "connection lost".to_owned(), |db| db.message().to_owned())
            ),
        })?;
    }
    Ok(())
}

/// Waits until the subscription has copied every table (then it streams); between looks, an
/// abort asked meanwhile stops the wait. Copies that keep failing fail the move.
pub(super) async fn wait_copied(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    const MAX_SYNC_ERRORS: i64 = 5;
    let step = "copied";
    let db = target(cp, record, step).await?;
    let pg = pg_step_error(record, step);
    let name = object_name(cp, record);
    let mut looks = 0u32;
    loop {
        let row = db
            .query_opt(
                "SELECT count(*) FILTER (WHERE r.srsubstate <> 'r'), count(*),
                        coalesce((SELECT st.sync_error_count FROM pg_stat_subscription_stats st
                                   WHERE st.subid = s.oid), 0)
                   FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
                  WHERE s.subname = $1
                    AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                  GROUP BY s.oid",
                &[&name],
            )
            .await
            .map_err(&pg)?
            .ok_or_else(|| {
                step_error(record, step)("the move's subscription is gone".into(), ErrorKind::Failed)
            })?;
        let (copying, tables, errors): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if tables > 0 && copying == 0 {
            return Ok(());
        }
        if errors >= MAX_SYNC_ERRORS {
            return Err(step_error(record, step)(
                format!("copying the tables failed {errors} times (the target server's log says why)"),
                ErrorKind::Failed,
            ));
        }
        looks += 1;
        if looks % 50 == 0 && super::load(cp, record.id).await?.abort_requested {
            return Err(MoveError::Aborted { id: record.id });
        }
        tokio::time::sleep(POLL * 5).await;
    }
}

/// Changes the marker on the source; returns its count of changes, which the target has once
/// it has applied everything committed on the source before.
pub(super) async fn mark(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<i64, MoveError> {
    let pg = pg_step_error(record, step);
    let mut db = source(cp, record, step).await?;
    // Committed with its WAL flushed at once: the sender sends only flushed WAL, and with
    // `synchronous_commit = off` the flush would wait for the WAL writer (up to
    // `wal_writer_delay`, 200 ms by default), all of it paused time.
    let tx = db.transaction().await.map_err(&pg)?;
    tx.batch_execute("SET LOCAL synchronous_commit = on").await.map_err(&pg)?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO {table} AS m VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET changes = m.changes + 1
                 RETURNING changes",
                table = marker_table(cp, record)
            ),
            &[],
        )
        .await
        .map_err(&pg)?;
    tx.commit().await.map_err(&pg)?;
    Ok(row.get(0))
}

/// Waits until the target has applied the marker's `changes`th change, or `deadline`.
pub(super) async fn wait_for_mark(
    cp: &ControlPlane,
    record: &MoveRecord,
    changes: i64,
    deadline: tokio::time::Instant,
    step: &'static str,
) -> Result<(), MoveError> {
    let db = target(cp, record, step).await?;
    let sql = format!("SELECT coalesce(max(changes), 0) FROM {}", marker_table(cp, record));
    loop {
        let seen: i64 = db.query_one(&sql, &[]).await.map_err(pg_step_error(record, step))?.get(0);
        if seen >= changes {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(step_error(record, step)(
                "the target did not catch up with the source in time".into(),
                ErrorKind::Unavailable,
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sets each of the tenant's sequences on the target to where the source's is (logical
/// replication does not carry them). The source's roles cannot write any more by now. Each
/// side's schema is looked up under both of its names (a resumed switch may have renamed it).
pub(super) async fn copy_sequences(
    cp: &ControlPlane,
    record: &MoveRecord,
    retired: &tenancy::domain::SchemaName,
    step: &'static str,
) -> Result<(), MoveError> {
    const ONE_OF: &str = "SELECT CASE WHEN to_regnamespace($1) IS NOT NULL THEN $1 ELSE $2 END";
    let pg = pg_step_error(record, step);
    let source = source(cp, record, step).await?;
    let source_schema: String = source
        .query_one(ONE_OF, &[&record.from.schema.as_str(), &retired.as_str()])
        .await
        .map_err(&pg)?
        .get(0);
    let rows = source
        .query(
            "SELECT sequencename::text, last_value FROM pg_sequences
              WHERE schemaname = $1 AND last_value IS NOT NULL",
            &[&source_schema],
        )
        .await
        .map_err(&pg)?;
    drop(source);
    if rows.is_empty() {
        return Ok(());
    }
    let target = target(cp, record, step).await?;
    let target_schema: String = target
        .query_one(ONE_OF, &[&record.from.schema.as_str(), &record.to.schema.as_str()])
        .await
        .map_err(&pg)?
        .get(0);
    for row in rows {
        let (sequence, value): (String, i64) = (row.get(0), row.get(1));
        target
            .execute(
                "SELECT setval(format('%I.%I', $1::text, $2::text)::regclass, $3, true)",
                &[&target_schema, &sequence, &value],
            )
            .await
            .map_err(&pg)?;
    }
    Ok(())
}

/// Whether the database the tenant's data goes to exists (a database of the move's own is
/// created by its first step, and dropped by a rollback).
async fn target_exists(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<bool, MoveError> {
    let Some(database) = &record.to.database else { return Ok(true) };
    let admin =
        target_cluster(cp, record, step).await?.admin().await.map_err(cluster_step_error(record, step))?;
    let row = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database.as_str()])
        .await
        .map_err(pg_step_error(record, step))?;
    Ok(row.is_some())
}

/// Drops the subscription on the target, leaving the slot on the source to
/// [`drop_source_side`] (dropping it from here would need the source to answer).
pub(super) async fn drop_subscription(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<(), MoveError> {
    if !target_exists(cp, record, step).await? {
        return Ok(());
    }
    let db = target(cp, record, step).await?;
    let pg = pg_step_error(record, step);
    let name = object_name(cp, record);
    if has_subscription(&db, &name).await.map_err(&pg)? {
        let quoted = quote_ident(&name);
        db.batch_execute(&format!("ALTER SUBSCRIPTION {quoted} DISABLE")).await.map_err(&pg)?;
        db.batch_execute(&format!("ALTER SUBSCRIPTION {quoted} SET (slot_name = NONE)"))
            .await
            .map_err(&pg)?;
        db.batch_execute(&format!("DROP SUBSCRIPTION {quoted}")).await.map_err(&pg)?;
    }
    Ok(())
}

/// Removes the replication slot, the publication and the marker table from the source. A
/// slot still in use (its sender stopping) is waited for a few seconds.
async fn drop_source_side(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<(), MoveError> {
    let db = source(cp, record, step).await?;
    let pg = pg_step_error(record, step);
    let name = object_name(cp, record);
    let started = tokio::time::Instant::now();
    loop {
        let slot = db
            .query_opt("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", &[&name])
            .await
            .map_err(&pg)?;
        match slot {
            None => break,
            Some(row) => match row.get::<_, Option<i32>>(0) {
                // Its sender is stopping (the subscription was just dropped): given a moment.
                Some(_) if started.elapsed() < Duration::from_secs(5) => tokio::time::sleep(POLL * 5).await,
                Some(_) if started.elapsed() > Duration::from_secs(30) => {
                    return Err(step_error(record, step)(
                        format!("replication slot {name} stays in use"),
                        ErrorKind::Unavailable,
                    ));
                }
                Some(pid) => {
                    db.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.map_err(&pg)?;
                    tokio::time::sleep(POLL * 5).await;
                }
                None => {
                    db.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                          WHERE slot_name = $1 AND active_pid IS NULL",
                        &[&name],
                    )
                    .await
                    .map_err(&pg)?;
                }
            },
        }
    }
    db.batch_execute(&format!(
        "DROP PUBLICATION IF EXISTS {}; DROP TABLE IF EXISTS {};",
        quote_ident(&name),
        marker_table(cp, record)
    ))
    .await
    .map_err(&pg)
}

/// Removes every replication object of the move from both sides (what is gone already is
/// skipped).
pub(super) async fn tear_down(
    cp: &ControlPlane,
    record: &MoveRecord,
    step: &'static str,
) -> Result<(), MoveError> {
    drop_subscription(cp, record, step).await?;
    drop_source_side(cp, record, step).await?;
    if target_exists(cp, record, step).await? {
        let db = target(cp, record, step).await?;
        db.batch_execute(&format!("DROP TABLE IF EXISTS {}", marker_table(cp, record)))
            .await
            .map_err(pg_step_error(record, step))?;
    }
    Ok(())
}
