//! Tenant schema migrations: refinery files read at run time from the migrations directory
//! (`TENANT_MIGRATIONS_DIR`), applied inside one tenant's schema with the history table
//! (`refinery_schema_history`) in that schema too.
//!
//! Migrations run on a migrator connection as the schema owner role with `search_path` set to
//! the tenant's schema, never as the tenant's runtime role.

use refinery::{Migration, Runner};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tenancy::domain::{RoleName, SchemaName};

/// The history table's name inside each tenant schema.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Why the migrations directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadMigrationsError {
    #[error("cannot read migrations from {dir}: {message}")]
    Read { dir: String, message: String },
    #[error("no migrations found in {0}")]
    Empty(String),
}

/// The tenant migrations of one directory, loaded once.
#[derive(Debug, Clone)]
pub struct TenantMigrations {
    dir: PathBuf,
    migrations: Arc<Vec<Migration>>,
}

impl TenantMigrations {
    pub fn load(dir: &Path) -> Result<Self, LoadMigrationsError> {
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
        Ok(Self { dir: dir.to_owned(), migrations: Arc::new(migrations) })
    }

    /// The newest version: where every tenant ends up.
    pub fn target_version(&self) -> i64 {
        self.migrations.last().map_or(0, |m| i64::from(m.version()))
    }

    /// Every version in the directory, ascending.
    pub fn versions(&self) -> Vec<i64> {
        self.migrations.iter().map(|m| i64::from(m.version())).collect()
    }

    /// Each version's name and checksum as the history table records them.
    pub fn checksums(&self) -> Vec<(i64, (String, String))> {
        self.migrations
            .iter()
            .map(|m| (i64::from(m.version()), (m.name().to_owned(), m.checksum().to_string())))
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn runner(&self, schema: &SchemaName) -> Runner {
        let mut runner = Runner::new(&self.migrations);
        runner.set_migration_table_name(format!("{}.{HISTORY_TABLE}", schema.quoted()));
        runner.set_abort_divergent(true).set_abort_missing(true)
    }
}

/// How one tenant is migrated.
#[derive(Debug, Clone, Copy, Default)]
pub struct MigrateSettings {
    /// `lock_timeout` of the migration's session: waiting longer for a lock (another session's on
    /// a table, or another migration or provisioning of the same tenant) fails with
    /// [`MigrateTenantError::Locked`] instead of queueing every later query of the table behind it.
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` of the migration's session.
    pub statement_timeout: Option<Duration>,
    /// All pending migrations in one transaction instead of one transaction each.
    pub grouped: bool,
}

/// Why migrating one tenant failed. Nothing of a failed migration stays applied (each
/// migration, or with `grouped` all of them, is one transaction).
#[derive(Debug, thiserror::Error)]
pub enum MigrateTenantError {
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
}

impl MigrateTenantError {
    /// Whether trying again later may succeed without anyone fixing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Session(_) | Self::Locked(_))
    }
}

/// The outcome of migrating one tenant schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub applied: Vec<i64>,
}

/// The advisory lock (two-key form, a key space of its own) that one tenant's migrations hold:
/// provisioning and a fleet run never migrate the same tenant at the same time.
fn tenant_lock_keys(schema: &SchemaName) -> String {
    format!("{TENANT_LOCK_CLASS}, hashtext('{}')", schema.as_str())
}

/// First key of [`tenant_lock_keys`].
const TENANT_LOCK_CLASS: i32 = 0x7465_6e05;

fn interval(d: Duration) -> String {
    format!("'{}ms'", d.as_millis())
}

/// Applies pending migrations to `schema` on `client` (a migrator connection; the session is
/// set back to its defaults afterwards, so the connection can migrate another tenant).
/// `runtime_role` loses any privilege on the history table, which default privileges would
/// otherwise have granted it.
pub async fn migrate_schema(
    client: &mut tokio_postgres::Client,
    migrations: &TenantMigrations,
    schema: &SchemaName,
    owner: &RoleName,
    runtime_role: Option<&RoleName>,
    settings: MigrateSettings,
) -> Result<Migrated, MigrateTenantError> {
    let lock = tenant_lock_keys(schema);
    // Timeouts first: waiting for the tenant lock obeys the lock timeout too. One implicit
    // transaction: if the lock is not granted, none of the settings stays.
    let mut setup = String::new();
    if let Some(timeout) = settings.lock_timeout {
        setup.push_str(&format!("SET lock_timeout = {};", interval(timeout)));
    }
    if let Some(timeout) = settings.statement_timeout {
        setup.push_str(&format!("SET statement_timeout = {};", interval(timeout)));
    }
    setup.push_str(&format!(
        "SELECT pg_advisory_lock({lock}); SET ROLE {}; SET search_path TO {}",
        owner.quoted(),
        schema.quoted()
    ));
    client.batch_execute(&setup).await.map_err(|e| classify_pg(&e, MigrateTenantError::Session))?;
    let runner = migrations.runner(schema).set_grouped(settings.grouped);
    let report = runner.run_async(client).await;
    // The history table exists once the runner succeeded: take it from the runtime role (still
    // as the owner) in the same round trip that unlocks and resets the session.
    let revoke = match (&report, runtime_role) {
        (Ok(_), Some(role)) => {
            format!("REVOKE ALL ON {}.{HISTORY_TABLE} FROM {};", schema.quoted(), role.quoted())
        }
        _ => String::new(),
    };
    let reset = client
        .batch_execute(&format!(
            "{revoke} SELECT pg_advisory_unlock({lock}); RESET ROLE; RESET search_path; \
             RESET lock_timeout; RESET statement_timeout"
        ))
        .await;
    let report = report.map_err(|e| classify_refinery(&e))?;
    reset.map_err(|e| MigrateTenantError::Session(tenancy::pg::describe_error(&e)))?;
    Ok(Migrated { applied: report.applied_migrations().iter().map(|m| i64::from(m.version())).collect() })
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

/// refinery's error, with the PostgreSQL error (message, SQLSTATE) it wraps when there is one.
fn classify_refinery(err: &refinery::Error) -> MigrateTenantError {
    use refinery::error::Kind;
    if matches!(err.kind(), Kind::DivergentVersion(..) | Kind::MissingVersion(..)) {
        return MigrateTenantError::Drift(err.to_string());
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(pg) = inner.downcast_ref::<tokio_postgres::Error>() {
            return classify_pg(pg, MigrateTenantError::Migration)
                .map_message(|message| format!("{err}: {message}"));
        }
        source = inner.source();
    }
    MigrateTenantError::Migration(err.to_string())
}

impl MigrateTenantError {
    fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Session(m) => Self::Session(f(m)),
            Self::Locked(m) => Self::Locked(f(m)),
            Self::Drift(m) => Self::Drift(f(m)),
            Self::Migration(m) => Self::Migration(f(m)),
        }
    }
}
