//! The catalog database: its embedded migrations and the control plane's writes.

pub(crate) mod audit;
pub(crate) mod billing_events;
pub(crate) mod clusters;
pub(crate) mod domains;
pub mod fleet_runs;
pub(crate) mod fleet_summary;
pub(crate) mod jobs;
pub mod moves;
pub mod router_role;
pub(crate) mod tenants;
pub mod tokens;

use deadpool_postgres::Pool;

mod embedded {
    refinery::embed_migrations!("catalog-migrations");
}

/// The newest catalog migration this binary carries.
pub(crate) fn embedded_version() -> i64 {
    embedded::migrations::runner().get_migrations().iter().map(|m| i64::from(m.version())).max().unwrap_or(0)
}

/// Arbitrary constant key of the advisory lock that serialises catalog migrations between
/// control-plane replicas starting at the same time.
pub const MIGRATION_LOCK_KEY: i64 = 0x7465_6e61_6e63_7901;

#[derive(Debug, thiserror::Error)]
pub enum CatalogMigrateError {
    #[error("cannot connect to the catalog: {0}")]
    Connect(String),
    #[error("catalog migration failed: {0}")]
    Migrate(String),
}

/// Brings the catalog schema (`control`) to the version this binary embeds. Safe to call from
/// several processes at once: they take turns under an advisory lock.
///
/// The catalog's database is the control plane's own: `PUBLIC` may not connect to it (nor
/// create temporary objects), so no tenant role of a cluster on the same server can take, or
/// wait on, the control plane's locks, or lock a catalog row. Routers get a role of their own
/// (`<role_prefix>_router`, see [`router_role`]).
pub async fn migrate(pool: &Pool, role_prefix: &str) -> Result<(), CatalogMigrateError> {
    let mut client = pool.get().await.map_err(|e| CatalogMigrateError::Connect(e.to_string()))?;
    let pg = |e: tokio_postgres::Error| CatalogMigrateError::Migrate(tenancy::pg::describe_error(&e));
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(pg)?;
    let result = async {
        let database: String = client.query_one("SELECT current_database()", &[]).await.map_err(pg)?.get(0);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS control;
                 REVOKE ALL ON SCHEMA control FROM PUBLIC;
                 REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC;",
                tenancy::domain::quote_ident(&database)
            ))
            .await
            .map_err(pg)?;
        let mut runner = embedded::migrations::runner();
        runner.set_migration_table_name("control.refinery_schema_history");
        runner.run_async(&mut **client).await.map_err(|e| CatalogMigrateError::Migrate(e.to_string()))?;
        let router = tenancy::domain::RoleName::router(role_prefix);
        client.batch_execute(&router_role::grants_sql(&router, &database)).await.map_err(pg)?;
        Ok(())
    }
    .await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(pg)?;
    result
}
