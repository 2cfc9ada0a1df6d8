//! A move by `pg_dump` and `pg_restore` ([`MoveMethod::Dump`](super::MoveMethod::Dump)), for a
//! source without logical replication (`wal_level` below `logical`, or a managed server that
//! does not offer it). It replaces the replication steps (published, subscribed, copied) and
//! the first half of the switch with one step, done again from its beginning whenever it is
//! cut short (a crash, a lost connection, a switch that took too long):
//!
//! 1. what an earlier attempt left running (its sessions and tools, named for the move) is
//!    ended, and the copy's tables on the target are emptied;
//! 2. routers hold the tenant's writes (not its reads), and are given half of `MOVE_PAUSE_MAX`
//!    to hear of it; then, on the source, in a session of the mover's own, every table of the
//!    tenant is locked in `EXCLUSIVE` mode (a lock that does not come within `MOVE_PAUSE_MAX`
//!    is given up, and tried again later): the tenant's plain reads go on, and a write that
//!    reaches the source all the same waits there. A snapshot is exported from there;
//! 3. `pg_dump --data-only` of the tenant's schema in that snapshot, piped into `pg_restore
//!    --single-transaction` on the target, whose triggers and foreign keys do not fire (rows
//!    are applied as logical replication applies them: `session_replication_role = replica`).
//!    Meanwhile the lock session is looked at every second (it must hold the locks throughout)
//!    and so is the move (an abort stops the copy at once);
//! 4. with the tables still locked, the switch's first half ([`super::switch::lock_source`]):
//!    the tenant's new requests held, the writes still waiting cancelled (they fail with
//!    57014; sent again, they wait in the routers and reach the target), its roles unable to
//!    log in and their sessions ended; then a last look for a session that logged in just
//!    before, and the locks are let go.
//!
//! A failure that trying again may mend (a connection, a lock that did not come) is tried
//! again, at most as many times as a switch; one of the data's own (a row the target refuses)
//! rolls the move back.

use super::replication::{self, cluster_step_error, pg_step_error, step_error};
use super::{MoveError, MoveRecord};
use crate::control_plane::ControlPlane;
use crate::tenant_migrations::HISTORY_TABLE;
use std::process::Stdio;
use std::time::Duration;
use tenancy::domain::{quote_ident, SchemaName};
use tenancy::error::{ErrorKind, OperationError as _};

/// The step's name in errors (the move's record goes from `target` to `locked` when it ends).
const STEP: &str = "copied";

/// Most of a tool's error output kept in the move's error (its last lines).
const MAX_TOOL_OUTPUT: usize = 1_000;

/// How often the copy looks at its lock session and at the move (for an abort).
const WATCH: Duration = Duration::from_secs(1);

/// How long after the tenant's roles are locked out a session that logged in just before is
/// given to show itself.
const SETTLE: Duration = Duration::from_millis(100);

/// How long routers hold the tenant's writes unless the mover renews it (a mover gone holds
/// them no longer), and how often the copy renews it.
const WRITES_LEASE: Duration = Duration::from_secs(30);
const RENEW_AFTER: Duration = Duration::from_secs(10);

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

/// The `application_name` of the move's sessions (`what`: which one), by which what an
/// earlier attempt left is found.
fn session_name(record: &MoveRecord, what: &str) -> String {
    format!("tenancy move {}: {what}", record.id)
}

/// The tables of `schema` where `db` is, schema-qualified and quoted.
async fn tables(
    db: &tokio_postgres::Client,
    schema: &SchemaName,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(super::tables_of(db, schema).await?.into_iter().map(|table| table.quoted).collect())
}

/// The whole step: the copy under the source's locks, then the switch's first half.
pub(super) async fn copy_and_lock(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    // An earlier attempt cut short after pausing the tenant or locking its roles out: undone
    // first.
    super::switch::reopen_source(cp, record).await?;
    end_leftovers(cp, record).await?;
    empty_target(cp, record).await?;
    hold_writes(cp, record).await?;
    let (source, snapshot) = match lock_tables(cp, record).await {
        Ok(locked) => locked,
        Err(err) => return Err(release(cp, record, err, false).await),
    };
    if let Err(err) = copy(cp, record, &source, &snapshot).await {
        drop(source);
        return Err(release(cp, record, err, false).await);
    }
    super::crash_point("restored");
    // The locks are held through the switch's first half: no write reaches the source after
    // the snapshot. Let go when `source` is dropped (its transaction wrote nothing).
    if let Err(err) = super::switch::lock_source(cp, record).await {
        // A switch that failed was undone (and counted) by `lock_source`, but not every early
        // return of it: the writes are let go again here in any case.
        drop(source);
        super::switch::reopen_source(cp, record).await?;
        return Err(err);
    }
    if let Err(err) = fence(cp, record, &source).await {
        drop(source);
        return Err(release(cp, record, err, true).await);
    }
    drop(source);
    Ok(())
}

/// Routers hold the tenant's writes from now on, and serve its reads: a write sent to the
/// source would wait on the copy's locks holding one of the tenant's server connections, and
/// enough of them would hold all of them, reads' included. The routers are given half of
/// `MOVE_PAUSE_MAX` to hear of it (they do not confirm it); a write that reaches the source
/// anyway waits on the locks.
async fn hold_writes(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    renew_writes_hold(cp, record).await?;
    tokio::time::sleep(cp.move_pause_max / 2).await;
    Ok(())
}

/// Holds the tenant's writes in the routers for [`WRITES_LEASE`] from now.
async fn renew_writes_hold(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let held = crate::catalog::moves::pause_writes(&**client, record.tenant_id, WRITES_LEASE)
        .await
        .map_err(|e| MoveError::Catalog(tenancy::pg::describe_error(&e)))?;
    drop(client);
    if let Some(held) = &held {
        cp.publish_change(held).await;
    }
    Ok(())
}

/// After a copy that did not end in a switch: the tenant's writes go again where it is, and
/// the error to return (counted as an attempt when trying again may mend it). Before its roles
/// were locked out (`locked_out`: after), the catalog is first: the writes go again even
/// while the source cannot be reached.
async fn release(cp: &ControlPlane, record: &MoveRecord, err: MoveError, locked_out: bool) -> MoveError {
    if !locked_out {
        if let Err(unpause) = super::switch::unpause(cp, record.tenant_id).await {
            return unpause;
        }
    }
    if let Err(reopen) = super::switch::reopen_source(cp, record).await {
        return reopen;
    }
    match err {
        MoveError::Aborted { .. } => err,
        err if err.kind().is_retryable() => super::switch::attempt_failed(cp, record, err).await,
        err => err,
    }
}

/// Ends what an earlier attempt of the move left running: its lock session, and its tools'
/// sessions (a `pg_restore` still writing into the target, say), on both sides.
async fn end_leftovers(cp: &ControlPlane, record: &MoveRecord) -> Result<(), MoveError> {
    let pattern = format!("{}%", session_name(record, ""));
    for cluster in [
        replication::source_cluster(cp, record, STEP).await?,
        replication::target_cluster(cp, record, STEP).await?,
    ] {
        let admin = cluster.admin().await.map_err(cluster_step_error(record, STEP))?;
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
                &[&pattern],
            )
            .await
            .map_err(pg_step_error(record, STEP))?;
    }
    Ok(())
}

/// Empties the copy's tables on the target (one statement: their foreign keys allow no less),
/// before the source is locked.
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
    let lock_timeout = cp.move_pause_max.as_millis().max(1);
    target
        .batch_execute(&format!("SET lock_timeout = {lock_timeout}; TRUNCATE {}", copied.join(", ")))
        .await
        .map_err(&pg)
}

/// A session of the mover's own on the source holding every table of the tenant locked in
/// `EXCLUSIVE` mode, and the snapshot it exported.
async fn lock_tables(
    cp: &ControlPlane,
    record: &MoveRecord,
) -> Result<(tokio_postgres::Client, String), MoveError> {
    let cluster = replication::source_cluster(cp, record, STEP).await?;
    let source = cluster
        .migrator_session(record.from.database.as_ref())
        .await
        .map_err(cluster_step_error(record, STEP))?;
    let pg = pg_step_error(record, STEP);
    let locked = tables(&source, &record.from.schema).await.map_err(&pg)?;
    let wait = cp.move_pause_max.as_millis().max(1);
    // Named in `pg_stat_activity` (for whoever looks for what holds the tenant's writes, and
    // for the next attempt); held as long as the copy takes, whatever the server's timeouts;
    // and, should the mover vanish, ended by the server within a minute (TCP keepalives).
    let mut begin = format!(
        "SET application_name = '{name}';
         SET tcp_keepalives_idle = 15; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 6;
         BEGIN;
         SELECT set_config(name, '0', true) FROM pg_settings
          WHERE name IN ('idle_in_transaction_session_timeout', 'transaction_timeout');
         SET LOCAL lock_timeout = {wait}; SET LOCAL statement_timeout = {wait};",
        name = session_name(record, "copying (writes wait)")
    );
    if !locked.is_empty() {
        begin.push_str(&format!("LOCK TABLE {} IN EXCLUSIVE MODE;", locked.join(", ")));
    }
    begin.push_str("SET LOCAL statement_timeout = 0;");
    source.batch_execute(&begin).await.map_err(|err| {
        use tokio_postgres::error::SqlState;
        let code = err.code();
        if [&SqlState::LOCK_NOT_AVAILABLE, &SqlState::QUERY_CANCELED, &SqlState::T_R_DEADLOCK_DETECTED]
            .iter()
            .any(|c| code == Some(*c))
        {
            step_error(record, STEP)(
                format!(
                    "the tenant's tables could not be locked within {:?} (a transaction holds one): tried again later",
                    cp.move_pause_max
                ),
                ErrorKind::Unavailable,
            )
        } else {
            pg(err)
        }
    })?;
    let snapshot: String = source.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(&pg)?.get(0);
    Ok((source, snapshot))
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

/// `pg_dump` of the tenant's rows in `snapshot`, piped into `pg_restore` on the target, in one
/// transaction there; stopped (its programs killed) when the lock session is lost or the move
/// is aborted.
async fn copy(
    cp: &ControlPlane,
    record: &MoveRecord,
    source: &tokio_postgres::Client,
    snapshot: &str,
) -> Result<(), MoveError> {
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
        .env("PGAPPNAME", session_name(record, "pg_dump"))
        .args(["--data-only", "--format=custom", "--no-sync"])
        .arg(format!("--lock-wait-timeout={}", cp.move_pause_max.as_millis().max(1)))
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
        .env("PGAPPNAME", session_name(record, "pg_restore"))
        .env("PGOPTIONS", "-c session_replication_role=replica")
        .args(["--data-only", "--single-transaction", "--exit-on-error"])
        .arg(format!("--dbname={target_database}"))
        .stdin(archive)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", cp.pg_restore.display())))?;
    // Dropped (and with it both programs, killed) if the watch below ends the copy.
    let tools = async { tokio::join!(dump.wait_with_output(), restore.wait_with_output()) };
    tokio::pin!(tools);
    let mut watch = tokio::time::interval(WATCH);
    watch.tick().await;
    let mut renewed = tokio::time::Instant::now();
    let (dumped, restored) = loop {
        tokio::select! {
            outputs = &mut tools => break outputs,
            _ = watch.tick() => {
                lock_held(source, record).await?;
                if super::load(cp, record.id).await?.abort_requested {
                    return Err(MoveError::Aborted { id: record.id });
                }
                if renewed.elapsed() >= RENEW_AFTER {
                    renew_writes_hold(cp, record).await?;
                    renewed = tokio::time::Instant::now();
                }
            }
        }
    };
    // The switch that follows starts well within the lease.
    renew_writes_hold(cp, record).await?;
    let dumped = dumped.map_err(|e| failed(format!("pg_dump: {e}")))?;
    let restored = restored.map_err(|e| failed(format!("pg_restore: {e}")))?;
    if dumped.status.success() && restored.status.success() {
        return lock_held(source, record).await;
    }
    // Without its snapshot (the session that exported it gone) the dump fails: tried again.
    lock_held(source, record).await?;
    // What pg_restore says first: when it fails, pg_dump only says its pipe broke.
    let (tool, output) =
        if restored.status.success() { ("pg_dump", &dumped) } else { ("pg_restore", &restored) };
    let said = tool_errors(&output.stderr);
    let kind = if is_transient(&said) { ErrorKind::Unavailable } else { ErrorKind::Failed };
    Err(step_error(record, STEP)(format!("{tool} failed: {said}"), kind))
}

/// A tool's error lines, without their details (a `DETAIL` or `CONTEXT` line may quote a row
/// of the tenant's), the last ones if there are many.
fn tool_errors(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let errors: Vec<&str> = text.lines().filter(|line| line.contains("error:")).map(str::trim).collect();
    let joined = if errors.is_empty() { "(no error message)".to_owned() } else { errors.join("; ") };
    match joined
        .char_indices()
        .rev()
        .nth(MAX_TOOL_OUTPUT - 1)
        .filter(|_| joined.chars().count() > MAX_TOOL_OUTPUT)
    {
        Some((cut, _)) => format!("…{}", &joined[cut..]),
        None => joined,
    }
}

/// Whether a tool failed for a reason that trying again may mend (a connection, a lock, the
/// server's limits) rather than because of the data.
fn is_transient(errors: &str) -> bool {
    const TRANSIENT: [&str; 9] = [
        "could not connect",
        "connection to server",
        "server closed the connection",
        "terminating connection",
        "could not obtain lock",
        "lock timeout",
        "invalid snapshot identifier",
        "too many connections",
        "the database system is",
    ];
    TRANSIENT.iter().any(|pattern| errors.contains(pattern))
}

/// The last look before the source's locks are let go: a session of the tenant's that logged
/// in just before its roles lost `LOGIN` (and so was not seen to end) is given a moment to show
/// itself, then ended with whatever waits on the move's locks (none of it committed); the roles
/// still cannot log in, the tenant is still paused (no other mover reopened the source
/// meanwhile), and the lock session still holds the tables.
async fn fence(
    cp: &ControlPlane,
    record: &MoveRecord,
    source: &tokio_postgres::Client,
) -> Result<(), MoveError> {
    tokio::time::sleep(SETTLE).await;
    let pg = pg_step_error(record, STEP);
    let roles = vec![record.from.role.as_str().to_owned(), record.from.role.reader().as_str().to_owned()];
    source
        .execute(
            "SELECT pg_terminate_backend(pid) FROM (
               SELECT pid FROM pg_stat_activity WHERE usename = ANY($1)
               UNION
               SELECT l.pid FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE NOT l.granted AND l.pid <> pg_backend_pid()
                  AND l.relation IN (SELECT oid FROM pg_class WHERE relnamespace = to_regnamespace($2))
                  AND (a.usename IS NULL OR a.usename = ANY($1))
             ) late",
            &[&roles, &record.from.schema.quoted()],
        )
        .await
        .map_err(&pg)?;
    let can_login: bool = source
        .query_one(
            "SELECT coalesce(bool_or(rolcanlogin), false) FROM pg_roles WHERE rolname = ANY($1)",
            &[&roles],
        )
        .await
        .map_err(&pg)?
        .get(0);
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let paused = tenancy::catalog::tenant_by_id(&**client, record.tenant_id)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .is_some_and(|tenant| tenant.paused_until.is_some());
    if can_login || !paused {
        return Err(step_error(record, STEP)(
            "the source was reopened during the switch (another mover?): copied again".into(),
            ErrorKind::Unavailable,
        ));
    }
    lock_held(source, record).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_error_keeps_its_error_lines_and_not_the_rows_its_details_quote() {
        let stderr = b"pg_restore: warning: circular foreign-key constraints\n\
            pg_restore: error: COPY failed for table \"users\": ERROR:  duplicate key value violates unique constraint \"users_pkey\"\n\
            DETAIL:  Key (email)=(alice@example.test) already exists.\n\
            CONTEXT:  COPY users, line 1: \"1\talice@example.test\tAlice\"\n";
        let said = tool_errors(stderr);
        assert!(said.contains("duplicate key value violates unique constraint"), "{said}");
        assert!(!said.contains("alice"), "{said}");
        assert!(!is_transient(&said));
        let lost = tool_errors(
            b"pg_dump: error: query failed: ERROR:  invalid snapshot identifier: \"00000003-1\"\n",
        );
        assert!(is_transient(&lost), "{lost}");
        let long = "pg_dump: error: x\n".repeat(500);
        let kept = tool_errors(long.as_bytes());
        assert!(kept.starts_with('…') && kept.chars().count() <= MAX_TOOL_OUTPUT + 1, "{}", kept.len());
    }
}
