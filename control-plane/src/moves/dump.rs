//! A move by `pg_dump` and `pg_restore` ([`MoveMethod::Dump`](super::MoveMethod::Dump)), for a
//! source without logical replication (`wal_level` below `logical`, or a managed server that
//! does not offer it). It replaces the replication steps (published, subscribed, copied) and
//! the first half of the switch with one step, done again from its beginning whenever it is
//! cut short (a crash, a failure, a switch that took too long):
//!
//! 1. on the source, in a session of the mover's own, every table of the tenant is locked in
//!    `EXCLUSIVE` mode (once the writes running have ended; a lock that does not come within
//!    `MOVE_PAUSE_MAX` is given up and tried again later): the tenant's reads go on, its
//!    writes wait. A snapshot is exported from there;
//! 2. on the target, the copy's tables are emptied (an earlier attempt may have filled them);
//! 3. `pg_dump --data-only` of the tenant's schema in that snapshot, piped into `pg_restore
//!    --single-transaction` on the target, whose triggers and foreign keys do not fire (rows
//!    are applied as logical replication applies them: `session_replication_role = replica`);
//! 4. with the tables still locked, the switch's first half ([`super::switch::lock_source`]):
//!    the tenant's new requests held, the writes still waiting cancelled (they fail with
//!    57014; sent again, they wait in the routers and reach the target), its roles unable to
//!    log in and their sessions ended. Only then are the locks let go.

use super::replication::{self, cluster_step_error, pg_step_error, step_error};
use super::{MoveError, MoveRecord};
use crate::control_plane::ControlPlane;
use crate::tenant_migrations::HISTORY_TABLE;
use std::process::Stdio;
use tenancy::domain::{quote_ident, SchemaName};
use tenancy::error::ErrorKind;

/// The step's name in errors (the move's record goes from `target` to `locked` when it ends).
const STEP: &str = "copied";

/// Most of a tool's error output kept in the move's error.
const MAX_TOOL_OUTPUT: usize = 2_000;

/// Whether this control plane can run `pg_dump` and `pg_restore`; checked before a move by
/// dump is recorded.
pub(super) async fn check_tools(cp: &ControlPlane) -> Result<(), MoveError> {
    for (setting, program) in [("PG_DUMP", &cp.pg_dump), ("PG_RESTORE", &cp.pg_restore)] {
        let ran = tokio::process::Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if !ran.is_ok_and(|status| status.success()) {
            return Err(MoveError::DumpTools(format!(
                "{} ({setting}), which cannot be run here: install the PostgreSQL client programs \
                 (at least the servers' major version) or point {setting} at them",
                program.display()
            )));
        }
    }
    Ok(())
}

/// The tables of `schema` where `db` is (the migration history aside: the target has its
/// own), schema-qualified and quoted; a partitioned table stands for its partitions.
async fn tables(
    db: &tokio_postgres::Client,
    schema: &SchemaName,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
                AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $2
              ORDER BY 1",
            &[&schema.as_str(), &HISTORY_TABLE],
        )
        .await?;
    Ok(rows.iter().map(|row| format!("{}.{}", schema.quoted(), quote_ident(row.get::<_, &str>(0)))).collect())
}

/// The whole step: the copy under the source's locks, then the switch's first half.
pub(super) async fn copy_and_lock(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    // An earlier attempt cut short after pausing the tenant or locking its roles out: undone
    // first (its writes must reach the source's locks, and wait there).
    super::switch::reopen_source(cp, record).await?;
    let source_cluster = replication::source_cluster(cp, record, STEP).await?;
    let source = source_cluster
        .migrator_session(record.from.database.as_ref())
        .await
        .map_err(cluster_step_error(record, STEP))?;
    let pg = pg_step_error(record, STEP);
    let locked = tables(&source, &record.from.schema).await.map_err(&pg)?;
    let lock_timeout = cp.move_pause_max.as_millis().max(1);
    // Held while the copy runs, however long: a server's idle-in-transaction timeout must not
    // end it.
    // It is named in `pg_stat_activity` for whoever looks for what holds the tenant's writes.
    let mut begin = format!(
        "SET application_name = 'tenancy move {id}: copying (writes wait)';
         BEGIN; SET LOCAL lock_timeout = {lock_timeout}; SET LOCAL idle_in_transaction_session_timeout = 0;",
        id = record.id
    );
    if !locked.is_empty() {
        begin.push_str(&format!("LOCK TABLE {} IN EXCLUSIVE MODE;", locked.join(", ")));
    }
    source.batch_execute(&begin).await.map_err(|err| {
        if err.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            step_error(record, STEP)(
                format!(
                    "the tenant's tables could not be locked within {:?} (a long transaction holds one): tried again later",
                    cp.move_pause_max
                ),
                ErrorKind::Unavailable,
            )
        } else {
            pg(err)
        }
    })?;
    let snapshot: String = source.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(&pg)?.get(0);
    empty_target(cp, record).await?;
    if let Err(err) = restore(cp, record, &snapshot).await {
        // Without its snapshot (the session that exported it gone) the dump fails: that is
        // tried again; anything else is the dump's own failure.
        lock_held(&source, record).await?;
        return Err(err);
    }
    super::crash_point("restored");
    // The locks are held through the switch's first half: no write reaches the source after
    // the snapshot. Let go when `source` is dropped (its transaction wrote nothing).
    super::switch::lock_source(cp, record).await?;
    if let Err(err) = lock_held(&source, record).await {
        // Writes may have reached the source after the snapshot: undone, copied again.
        super::switch::reopen_source(cp, record).await?;
        return Err(err);
    }
    drop(source);
    Ok(())
}

/// Whether the session holding the tenant's tables locked still does (it is one transaction: if
/// it answers, it held them throughout); if not, an error that has the copy done again.
async fn lock_held(source: &tokio_postgres::Client, record: &MoveRecord) -> Result<(), MoveError> {
    source.simple_query("SELECT 1").await.map(|_| ()).map_err(|err| {
        step_error(record, STEP)(
            format!(
                "the session holding the tenant's tables locked ended during the copy ({}): copied again",
                tenancy::pg::describe_error(&err)
            ),
            ErrorKind::Unavailable,
        )
    })
}

/// Empties the copy's tables on the target (one statement: their foreign keys allow no less).
async fn empty_target(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let cluster = replication::target_cluster(cp, record, STEP).await?;
    let target = cluster
        .migrator_session(record.to.database.as_ref())
        .await
        .map_err(cluster_step_error(record, STEP))?;
    let pg = pg_step_error(record, STEP);
    let copied = tables(&target, &record.from.schema).await.map_err(&pg)?;
    if copied.is_empty() {
        return Ok(());
    }
    target.batch_execute(&format!("TRUNCATE {}", copied.join(", "))).await.map_err(&pg)
}

/// `pg_dump` of the tenant's rows in `snapshot`, piped into `pg_restore` on the target, in one
/// transaction there.
async fn restore(cp: &ControlPlane, record: &MoveRecord, snapshot: &str) -> Result<(), MoveError> {
    let failed = |message: String| step_error(record, STEP)(message, ErrorKind::Failed);
    let source_cluster = replication::source_cluster(cp, record, STEP).await?;
    let target_cluster = replication::target_cluster(cp, record, STEP).await?;
    let database = |placement: &super::Placement, cluster: &crate::clusters::Cluster| {
        placement
            .database
            .as_ref()
            .map_or_else(|| cluster.endpoint.dbname.clone(), |db| db.as_str().to_owned())
    };
    let schema = record.from.schema.quoted();
    let mut dump = source_cluster
        .libpq_command(&cp.pg_dump, &database(&record.from, &source_cluster))
        .args(["--data-only", "--format=custom", "--no-sync"])
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--schema={schema}"))
        .arg(format!("--exclude-table-data={schema}.{}", quote_ident(HISTORY_TABLE)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", cp.pg_dump.display())))?;
    let archive: Stdio = dump
        .stdout
        .take()
        .ok_or_else(|| failed("pg_dump has no output".into()))?
        .try_into()
        .map_err(|e| failed(format!("piping pg_dump into pg_restore: {e}")))?;
    let target_database = database(&record.to, &target_cluster);
    let restore = target_cluster
        .libpq_command(&cp.pg_restore, &target_database)
        .args(["--data-only", "--single-transaction", "--exit-on-error"])
        .arg(format!("--dbname={target_database}"))
        .env("PGOPTIONS", "-c session_replication_role=replica")
        .stdin(archive)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", cp.pg_restore.display())))?;
    let (dumped, restored) = tokio::join!(dump.wait_with_output(), restore.wait_with_output());
    let dumped = dumped.map_err(|e| failed(format!("pg_dump: {e}")))?;
    let restored = restored.map_err(|e| failed(format!("pg_restore: {e}")))?;
    let said = |output: &std::process::Output| {
        let text = String::from_utf8_lossy(&output.stderr);
        let text = text.trim();
        match text.char_indices().nth(MAX_TOOL_OUTPUT) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    };
    if !dumped.status.success() {
        return Err(failed(format!("pg_dump failed: {}", said(&dumped))));
    }
    if !restored.status.success() {
        return Err(failed(format!("pg_restore failed: {}", said(&restored))));
    }
    Ok(())
}
