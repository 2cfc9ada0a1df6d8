//! Tenant schema migrations: refinery files read at run time from the migrations directory
//! (`TENANT_MIGRATIONS_DIR`), applied inside one tenant's schema with the history table
//! (`refinery_schema_history`) in that schema too.
//!
//! Migrations run on a migrator connection as the schema owner role with `search_path` set to
//! the tenant's schema, never as the tenant's runtime role.

use refinery::{Migration, Runner};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn runner(&self, schema: &SchemaName) -> Runner {
        let mut runner = Runner::new(&self.migrations);
        runner.set_migration_table_name(format!("{}.{HISTORY_TABLE}", schema.quoted()));
        runner.set_abort_divergent(true).set_abort_missing(true)
    }
}

/// Why migrating one tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateTenantError {
    #[error("could not prepare the migrator session: {0}")]
    Session(String),
    #[error("{0}")]
    Migration(String),
}

/// The outcome of migrating one tenant schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub applied: Vec<i64>,
}

/// Applies pending migrations to `schema` on `client` (a connection of the cluster's migrator
/// pool, whose recycling resets role and search_path). `runtime_role` loses any privilege on
/// the history table, which default privileges would otherwise have granted it.
pub async fn migrate_schema(
    client: &mut tokio_postgres::Client,
    migrations: &TenantMigrations,
    schema: &SchemaName,
    owner: &RoleName,
    runtime_role: Option<&RoleName>,
) -> Result<Migrated, MigrateTenantError> {
    let session = |e: tokio_postgres::Error| MigrateTenantError::Session(tenancy::pg::describe_error(&e));
    client
        .batch_execute(&format!("SET ROLE {}; SET search_path TO {}", owner.quoted(), schema.quoted()))
        .await
        .map_err(session)?;
    let report = migrations.runner(schema).run_async(client).await;
    let reset = client.batch_execute("RESET ROLE; RESET search_path").await;
    let report = report.map_err(|e| MigrateTenantError::Migration(describe_refinery_error(&e)))?;
    reset.map_err(session)?;
    if let Some(runtime_role) = runtime_role {
        client
            .batch_execute(&format!(
                "REVOKE ALL ON {}.{HISTORY_TABLE} FROM {}",
                schema.quoted(),
                runtime_role.quoted()
            ))
            .await
            .map_err(session)?;
    }
    Ok(Migrated { applied: report.applied_migrations().iter().map(|m| i64::from(m.version())).collect() })
}

/// refinery's error, with the PostgreSQL error (message, SQLSTATE) it wraps when there is one.
fn describe_refinery_error(err: &refinery::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(pg) = inner.downcast_ref::<tokio_postgres::Error>() {
            text = format!("{text}: {}", tenancy::pg::describe_error(pg));
            break;
        }
        source = inner.source();
    }
    text
}
