//! PostgreSQL connection helpers shared by both binaries.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Why a connection pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("could not build the connection pool: {0}")]
    Build(String),
}

/// Parses a `postgres://` URL (or key=value string) without ever echoing it back: the error
/// names what is wrong but not the URL, which may hold a password.
pub fn parse_config(url: &str) -> Result<tokio_postgres::Config, PoolError> {
    let mut config =
        url.parse::<tokio_postgres::Config>().map_err(|e| PoolError::InvalidUrl(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// How long to wait for a new connection, or for a free one from a full pool: a dependency that
/// does not answer becomes an error (503, a retried job), never a hang.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const CHECKOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A pool of connections to the catalog (or a cluster's admin connection).
pub fn pool(config: tokio_postgres::Config, max_size: usize) -> Result<Pool, PoolError> {
    let manager =
        Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(max_size)
        .timeouts(deadpool_postgres::Timeouts {
            wait: Some(CHECKOUT_TIMEOUT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        })
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| PoolError::Build(e.to_string()))
}

/// A one-line, password-free description of a PostgreSQL error: the server's message and
/// SQLSTATE when there is one, else the client-side error.
pub fn describe_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

/// `host:port/dbname` of a config, for logs (never the user's password).
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("{host}:{port}/{db}")
}

/// Whether the database behind `pool` answers a trivial query.
pub async fn is_reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// The `/readyz` answer of both binaries: ready when the catalog answers; `details` are added
/// to the JSON body.
pub async fn readiness(catalog: &Pool, details: serde_json::Value) -> (bool, serde_json::Value) {
    let ready = is_reachable(catalog).await;
    let mut body = serde_json::json!({ "catalog": if ready { "ok" } else { "unreachable" } });
    if let (Some(body), serde_json::Value::Object(details)) = (body.as_object_mut(), details) {
        body.extend(details);
    }
    (ready, body)
}
