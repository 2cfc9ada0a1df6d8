//! Tenant schema migrations: refinery files read at run time from the migrations directory
//! (`TENANT_MIGRATIONS_DIR`), applied inside one tenant's schema with the history table
//! (`refinery_schema_history`, in refinery's format) in that schema too.
//!
//! Migrations run on a migrator connection as the schema owner role with `search_path` set to
//! the tenant's schema, never as the tenant's runtime role. The runner here is built for fleets
//! of thousands of schemas: one round trip prepares the session and reads the history, one per
//! pending migration applies it with its history row (or one for all with `grouped`), one
//! resets the session — where refinery's runner needs about ten per tenant — and a history that
//! differs from the files is reported as drift, never applied over.

use refinery::Migration;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tenancy::domain::{RoleName, SchemaName};

/// The history table's name inside each tenant schema.
pub(crate) const HISTORY_TABLE: &str = "refinery_schema_history";

/// Why the migrations directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadMigrationsError {
    #[error("cannot read migrations from {dir}: {message}")]
    Read { dir: String, message: String },
    #[error("no migrations found in {0}")]
    Empty(String),
    #[error("two migrations in {dir} have version {version}: {first} and {second}")]
    DuplicateVersion { dir: String, version: i32, first: String, second: String },
}

/// The tenant migrations of one directory, loaded once.
#[derive(Debug, Clone)]
pub(crate) struct TenantMigrations {
    migrations: Arc<Vec<Migration>>,
}

impl TenantMigrations {
    pub(crate) fn load(dir: &Path) -> Result<Self, LoadMigrationsError> {
        let read_error =
            |message: String| LoadMigrationsError::Read { dir: dir.display().to_string(), message };
        if !dir.is_dir() {
            return Err(read_error("not a directory".into()));
        }
        let mut migrations = refinery::load_sql_migrations(dir).map_err(|e| read_error(e.to_string()))?;
        if migrations.is_empty() {
            return Err(LoadMigrationsError::Empty(dir.display().to_string()));
        }
        migrations.sort_by_key(Migration::version);
        if let Some(pair) = migrations.windows(2).find(|pair| pair[0].version() == pair[1].version()) {
            return Err(LoadMigrationsError::DuplicateVersion {
                dir: dir.display().to_string(),
                version: pair[0].version(),
                first: pair[0].name().to_owned(),
                second: pair[1].name().to_owned(),
            });
        }
        Ok(Self { migrations: Arc::new(migrations) })
    }

    /// The newest version: where every tenant ends up.
    pub(crate) fn target_version(&self) -> i64 {
        self.migrations.last().map_or(0, |m| i64::from(m.version()))
    }

    /// Every version in the directory, ascending.
    pub(crate) fn versions(&self) -> Vec<i64> {
        self.migrations.iter().map(|m| i64::from(m.version())).collect()
    }

    /// What `applied` (a tenant's history) leaves to do: the pending migrations, in order, or
    /// why the history and the files disagree (drift: nothing may be applied).
    pub(crate) fn pending(&self, applied: &[Applied]) -> Result<Vec<&Migration>, String> {
        let mut problems = Vec::new();
        for row in applied {
            match self.migrations.iter().find(|m| i64::from(m.version()) == row.version) {
                None => problems.push(format!(
                    "V{} ({}) is applied but not in the migrations directory",
                    row.version, row.name
                )),
                Some(file) if file.name() != row.name || file.checksum().to_string() != row.checksum => {
                    problems.push(format!(
                        "V{} ({}) was applied with a different checksum than the file's",
                        row.version, row.name
                    ));
                }
                Some(_) => {}
            }
        }
        let newest = applied.iter().map(|a| a.version).max().unwrap_or(0);
        let (older, pending): (Vec<&Migration>, Vec<&Migration>) = self
            .migrations
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == i64::from(m.version())))
            .partition(|m| i64::from(m.version()) < newest);
        for skipped in older {
            problems.push(format!(
                "V{} ({}) is not applied but V{newest} is (added out of order)",
                skipped.version(),
                skipped.name()
            ));
        }
        if problems.is_empty() {
            Ok(pending)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// One row of a tenant's history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) version: i64,
    pub(crate) name: String,
    pub(crate) checksum: String,
}

impl Applied {
    /// The history's columns, as [`Applied::from_row`] reads them after any leading columns.
    pub(crate) const COLUMNS: &'static str = "version::int8, name::text, checksum::text";

    /// Reads the three [`Applied::COLUMNS`] starting at column `first`.
    pub(crate) fn from_row(row: &tokio_postgres::Row, first: usize) -> Self {
        Self {
            version: row.get(first),
            name: row.get::<_, Option<String>>(first + 1).unwrap_or_default(),
            checksum: row.get::<_, Option<String>>(first + 2).unwrap_or_default(),
        }
    }
}

/// How one tenant is migrated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MigrateSettings {
    /// `lock_timeout` of the migration's session: waiting longer for a lock (another session's on
    /// a table, or another migration or provisioning of the same tenant) fails with
    /// [`MigrateTenantError::Locked`] instead of queueing every later query of the table behind it.
    pub(crate) lock_timeout: Option<Duration>,
    /// `statement_timeout` of the migration's session.
    pub(crate) statement_timeout: Option<Duration>,
    /// All pending migrations in one transaction instead of one transaction each.
    pub(crate) grouped: bool,
}

/// Why migrating one tenant failed. Nothing of a failed migration stays applied (each
/// migration, or with `grouped` all of them, is one transaction).
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateTenantError {
    /// The session could not be prepared, or the connection failed: worth another attempt.
    #[error("could not prepare the migrator session: {0}")]
    Session(String),
    /// A lock was not granted within the lock timeout: worth another attempt later.
    #[error("lock timeout: {0}")]
    Locked(String),
    /// The tenant's applied migrations differ from the files (a changed checksum, a version
    /// missing from the directory): it was not touched.
    #[error("drift: {0}")]
    Drift(String),
    /// A migration failed (the PostgreSQL error, with its SQLSTATE, is in the message).
    #[error("{0}")]
    Migration(String),
    /// The tenant is being moved, or was moved elsewhere since the run was planned: it was not
    /// touched (its old place is not migrated; run the migration again once it is done).
    #[error("{0}")]
    Moved(String),
}

impl tenancy::error::OperationError for MigrateTenantError {
    /// A session or a lock may be had later; drift and a failed migration need someone to fix
    /// something.
    fn kind(&self) -> tenancy::error::ErrorKind {
        match self {
            Self::Session(_) | Self::Locked(_) => tenancy::error::ErrorKind::Unavailable,
            Self::Drift(_) | Self::Migration(_) | Self::Moved(_) => tenancy::error::ErrorKind::Failed,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Session(_) => "migration_session",
            Self::Locked(_) => "lock_timeout",
            Self::Drift(_) => "drift",
            Self::Migration(_) => "migration_failed",
            Self::Moved(_) => "tenant_moved",
        }
    }
}

/// The outcome of migrating one tenant schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Migrated {
    /// The newest version in the history before this call (`None`: no history).
    pub(crate) from: Option<i64>,
    pub(crate) applied: Vec<i64>,
    /// Whether the session was set back to its defaults; when not (the reset failed after the
    /// migrations committed), it must not be used for another tenant.
    pub(crate) session_clean: bool,
}

/// The advisory lock (two-key form, a key space of its own) that one tenant's migrations hold,
/// so that provisioning and a fleet run never migrate the same tenant at the same time: the
/// tenant's database and schema (every tenant database has the same schema name).
fn tenant_lock_keys(database: &str, schema: &SchemaName) -> String {
    format!("{TENANT_LOCK_CLASS}, hashtext({})", literal(&format!("{database}.{}", schema.as_str())))
}

/// First key of [`tenant_lock_keys`].
pub const TENANT_LOCK_CLASS: i32 = 0x7465_6e05;

/// The session on which tenants' migration locks are taken: a connection to the cluster's
/// control database ([`crate::clusters::Cluster::lock_session`]), where no tenant role can
/// connect, so no tenant can hold its own lock or another tenant's. A fleet worker keeps one
/// for all its tenants; provisioning takes one for a migration.
pub(crate) struct MigrationLocks {
    session: Option<deadpool_postgres::Object>,
    /// A lock may be held: set before asking for one, cleared once it is released. A session
    /// dropped while it is set is closed rather than pooled (which releases the lock).
    holding: bool,
}

impl MigrationLocks {
    pub(crate) fn new(session: deadpool_postgres::Object) -> Self {
        Self { session: Some(session), holding: false }
    }

    fn client(&self) -> Result<&tokio_postgres::Client, MigrateTenantError> {
        self.session
            .as_deref()
            .map(|wrapper| &**wrapper)
            .ok_or_else(|| MigrateTenantError::Session("lock session closed".into()))
    }

    /// Waits for the tenant's lock (at most `timeout`; `None`: as long as it takes).
    async fn lock(&mut self, keys: &str, timeout: Option<Duration>) -> Result<(), MigrateTenantError> {
        // A migration that was cancelled may have left its lock: this session holds one at most.
        let leftover = if self.holding { "SELECT pg_advisory_unlock_all();" } else { "" };
        let timeout = interval(timeout.unwrap_or_default());
        self.holding = true;
        let sql = format!(
            "{leftover} SET lock_timeout = {timeout}; SELECT pg_advisory_lock({keys}); RESET lock_timeout"
        );
        let locked = self.client()?.batch_execute(&sql).await;
        if let Err(e) = locked {
            let _ = self.client()?.batch_execute("SELECT pg_advisory_unlock_all(); RESET lock_timeout").await;
            self.holding = false;
            return Err(classify_pg(&e, MigrateTenantError::Session));
        }
        Ok(())
    }

    async fn unlock(&mut self, keys: &str) {
        let client = match self.client() {
            Ok(client) => client,
            Err(_) => return,
        };
        if client.batch_execute(&format!("SELECT pg_advisory_unlock({keys})")).await.is_ok() {
            self.holding = false;
        }
    }
}

impl Drop for MigrationLocks {
    fn drop(&mut self) {
        if let (true, Some(session)) = (self.holding, self.session.take()) {
            // Out of the pool: the connection closes, and PostgreSQL releases the lock.
            drop(deadpool_postgres::Object::take(session));
        }
    }
}

fn interval(d: Duration) -> String {
    format!("'{}ms'", d.as_millis())
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Applies pending migrations to `schema` on `client` (a migrator connection to `database`;
/// the session is set back to its defaults afterwards, so the connection can migrate another
/// tenant), holding the tenant's migration lock on `locks` (`None`: the caller serialises
/// migrations of this schema itself, as the template's lock does).
/// When the history table is new (or empty), `runtime_role` and its read-only role lose the
/// privileges on it that default privileges granted them (a history copied with a cloned database is taken care of by
/// provisioning).
pub(crate) async fn migrate_schema(
    client: &mut tokio_postgres::Client,
    locks: Option<(&mut MigrationLocks, &str)>,
    migrations: &TenantMigrations,
    schema: &SchemaName,
    owner: &RoleName,
    runtime_role: Option<&RoleName>,
    settings: MigrateSettings,
) -> Result<Migrated, MigrateTenantError> {
    let Some((locks, database)) = locks else {
        return migrate_locked(client, migrations, schema, owner, runtime_role, settings).await;
    };
    let keys = tenant_lock_keys(database, schema);
    locks.lock(&keys, settings.lock_timeout).await?;
    let migrated = migrate_locked(client, migrations, schema, owner, runtime_role, settings).await;
    locks.unlock(&keys).await;
    migrated
}

/// [`migrate_schema`] once the tenant's lock is held.
async fn migrate_locked(
    client: &mut tokio_postgres::Client,
    migrations: &TenantMigrations,
    schema: &SchemaName,
    owner: &RoleName,
    runtime_role: Option<&RoleName>,
    settings: MigrateSettings,
) -> Result<Migrated, MigrateTenantError> {
    let history = format!("{}.{HISTORY_TABLE}", schema.quoted());
    // One round trip, one implicit transaction: timeouts first, the owner role and
    // search_path, the history table (refinery's layout) if missing, and its rows.
    let mut setup = String::new();
    if let Some(timeout) = settings.lock_timeout {
        setup.push_str(&format!("SET lock_timeout = {};", interval(timeout)));
    }
    if let Some(timeout) = settings.statement_timeout {
        setup.push_str(&format!("SET statement_timeout = {};", interval(timeout)));
    }
    setup.push_str(&format!(
        "SET ROLE {owner};
         SET search_path TO {schema};
         SET LOCAL client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS {history} (
             version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255), checksum varchar(255));
         SELECT {columns} FROM {history} ORDER BY version",
        owner = owner.quoted(),
        schema = schema.quoted(),
        columns = Applied::COLUMNS,
    ));
    let applied_rows = match client.simple_query(&setup).await {
        Ok(messages) => history_rows(&messages),
        Err(e) => {
            let _ = client.batch_execute(&reset_sql(false, "")).await;
            // Connection failures and lock timeouts are worth another attempt; an SQL error
            // here (a schema that is gone, a missing privilege) is not.
            return Err(classify_pg(&e, MigrateTenantError::Migration));
        }
    };
    let outcome = match migrations.pending(&applied_rows) {
        Ok(pending) => apply_pending(client, &pending, &history, settings.grouped).await,
        Err(drift) => Err((MigrateTenantError::Drift(drift), false)),
    };
    let revoke = match (&outcome, runtime_role) {
        (Ok(_), Some(role)) if applied_rows.is_empty() => {
            // The read-only role too, when it exists (it does once provisioning's role step ran).
            let reader = role.reader();
            format!(
                "REVOKE ALL ON {history} FROM {role};
                 DO $$ BEGIN
                   IF to_regrole('{reader_name}') IS NOT NULL THEN
                     EXECUTE 'REVOKE ALL ON {history} FROM {reader}';
                   END IF;
                 END $$;",
                role = role.quoted(),
                reader_name = reader.as_str(),
                reader = reader.quoted(),
            )
        }
        _ => String::new(),
    };
    let aborted = matches!(outcome, Err((_, true)));
    let reset = client.batch_execute(&reset_sql(aborted, &revoke)).await;
    let applied = outcome.map_err(|(error, _)| error)?;
    if let Err(e) = &reset {
        // What committed stays committed and is reported; only the session is done for.
        tracing::warn!(schema = %schema, error = %tenancy::pg::describe_error(e), "migrator session reset failed");
    }
    let from = applied_before(&applied_rows);
    Ok(Migrated { from, applied, session_clean: reset.is_ok() })
}

/// The newest version of a history.
fn applied_before(rows: &[Applied]) -> Option<i64> {
    rows.iter().map(|row| row.version).max()
}

/// The history rows of the setup's last statement (the only one with three columns).
fn history_rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Applied> {
    messages
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) if row.len() == 3 => Some(Applied {
                version: row.get(0).and_then(|v| v.parse().ok()).unwrap_or_default(),
                name: row.get(1).unwrap_or_default().to_owned(),
                checksum: row.get(2).unwrap_or_default().to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// Ends a tenant's migration on its session, so that nothing of it reaches the next tenant: a
/// failed migration's transaction rolled back, `revoke` run (still as the owner), every
/// advisory lock released (the tenant's, and any a migration took), role, settings, cursors,
/// listens and temporary tables (`pg_temp` is searched before the next tenant's schema) gone.
fn reset_sql(failed: bool, revoke: &str) -> String {
    format!(
        "{rollback}{revoke} SELECT pg_advisory_unlock_all(); SET SESSION AUTHORIZATION DEFAULT; \
         RESET ROLE; RESET ALL; CLOSE ALL; UNLISTEN *; DISCARD TEMP",
        rollback = if failed { "ROLLBACK;" } else { "" },
    )
}

/// Applies `pending`, each migration with its history row in one transaction (all of them in
/// one with `grouped`), one round trip each. On failure, also whether the session was left in
/// the failed transaction (to be rolled back).
async fn apply_pending(
    client: &tokio_postgres::Client,
    pending: &[&Migration],
    history: &str,
    grouped: bool,
) -> Result<Vec<i64>, (MigrateTenantError, bool)> {
    let statements: Vec<(i64, String)> = pending
        .iter()
        .map(|m| {
            let sql = format!(
                "{body}\n;INSERT INTO {history} (version, name, applied_on, checksum) VALUES \
                 ({version}, {name}, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), {checksum});",
                body = m.sql().unwrap_or_default(),
                version = m.version(),
                name = literal(m.name()),
                checksum = literal(&m.checksum().to_string()),
            );
            (i64::from(m.version()), sql)
        })
        .collect();
    let batches: Vec<(Vec<i64>, String)> = if grouped {
        let (versions, sql): (Vec<i64>, Vec<String>) = statements.into_iter().unzip();
        if versions.is_empty() {
            Vec::new()
        } else {
            vec![(versions, sql.concat())]
        }
    } else {
        statements.into_iter().map(|(version, sql)| (vec![version], sql)).collect()
    };
    let mut done = Vec::new();
    for (versions, sql) in batches {
        client.batch_execute(&format!("BEGIN;\n{sql}\nCOMMIT;")).await.map_err(|e| {
            let what = versions.iter().map(|v| format!("V{v}")).collect::<Vec<_>>().join(", ");
            let error = classify_pg(&e, MigrateTenantError::Migration)
                .map_message(|m| format!("applying {what}: {m}"));
            (error, true)
        })?;
        done.extend(versions);
    }
    Ok(done)
}

/// A PostgreSQL error: lock timeouts (55P03) and deadlocks (40P01) are [`MigrateTenantError::Locked`],
/// connection failures `otherwise` of the description.
fn classify_pg(
    err: &tokio_postgres::Error,
    otherwise: fn(String) -> MigrateTenantError,
) -> MigrateTenantError {
    let description = tenancy::pg::describe_error(err);
    match err.code().map(tokio_postgres::error::SqlState::code) {
        Some("55P03" | "40P01") => MigrateTenantError::Locked(description),
        Some(code) if !code.starts_with("08") && !code.starts_with("57P") => otherwise(description),
        _ => MigrateTenantError::Session(description),
    }
}

impl MigrateTenantError {
    fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Session(m) => Self::Session(f(m)),
            Self::Locked(m) => Self::Locked(f(m)),
            Self::Drift(m) => Self::Drift(f(m)),
            Self::Migration(m) => Self::Migration(f(m)),
            Self::Moved(m) => Self::Moved(f(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, sql) in files {
            std::fs::write(dir.path().join(name), sql).unwrap();
        }
        dir
    }

    #[test]
    fn two_files_with_one_version_are_refused() {
        let dir =
            dir_with(&[("V1__a.sql", "SELECT 1;"), ("V2__b.sql", "SELECT 2;"), ("V2__c.sql", "SELECT 3;")]);
        let err = TenantMigrations::load(dir.path()).unwrap_err();
        assert!(matches!(err, LoadMigrationsError::DuplicateVersion { version: 2, .. }), "{err}");
    }

    #[test]
    fn pending_follows_the_history_and_refuses_drift() {
        let dir =
            dir_with(&[("V1__a.sql", "SELECT 1;"), ("V2__b.sql", "SELECT 2;"), ("V3__c.sql", "SELECT 3;")]);
        let migrations = TenantMigrations::load(dir.path()).unwrap();
        let row = |version: i64| {
            let m = migrations.migrations.iter().find(|m| i64::from(m.version()) == version).unwrap();
            Applied { version, name: m.name().to_owned(), checksum: m.checksum().to_string() }
        };
        let versions = |pending: Vec<&Migration>| pending.iter().map(|m| m.version()).collect::<Vec<_>>();
        assert_eq!(versions(migrations.pending(&[]).unwrap()), [1, 2, 3]);
        assert_eq!(versions(migrations.pending(&[row(1)]).unwrap()), [2, 3]);
        assert_eq!(versions(migrations.pending(&[row(1), row(2), row(3)]).unwrap()), Vec::<i32>::new());
        let mut changed = row(1);
        changed.checksum = "12345".into();
        assert!(migrations.pending(&[changed]).unwrap_err().contains("different checksum"));
        let unknown = Applied { version: 9, name: "gone".into(), checksum: "1".into() };
        assert!(migrations
            .pending(&[row(1), unknown])
            .unwrap_err()
            .contains("not in the migrations directory"));
        assert!(migrations.pending(&[row(1), row(3)]).unwrap_err().contains("out of order"));
    }
}
