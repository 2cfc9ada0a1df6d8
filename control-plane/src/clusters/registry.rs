//! Registering clusters (`tenantctl clusters add|list`). A cluster's admin connection is checked,
//! then kept in the secret store (`<prefix>/clusters/<name>/admin`); the catalog keeps its name,
//! capacity and secret reference.

use crate::catalog::clusters::{self as catalog, ClusterInfo};
use crate::control_plane::ControlPlane;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tenancy::domain::ClusterName;
use tenancy::error::{ErrorKind, OperationError};
use tenancy::secret::Secret;
use tenancy::secrets::{DbCredentials, SecretName};

/// Why a cluster could not be registered. Nothing is registered when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum AddClusterError {
    #[error(transparent)]
    InvalidName(#[from] tenancy::domain::ClusterNameError),
    #[error("capacity must be at least 1, got {0}")]
    InvalidCapacity(i32),
    #[error("invalid admin URL: {0}")]
    InvalidUrl(String),
    #[error("cannot reach the cluster with that admin URL: {0}")]
    Unreachable(String),
    #[error("a cluster named {0} is already registered")]
    Duplicate(String),
    #[error("secret store: {0}")]
    Secrets(String),
    #[error("catalog unavailable: {0}")]
    Catalog(String),
}

impl OperationError for AddClusterError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidName(_) | Self::InvalidCapacity(_) | Self::InvalidUrl(_) => ErrorKind::Invalid,
            Self::Duplicate(_) => ErrorKind::Conflict,
            Self::Unreachable(_) | Self::Secrets(_) | Self::Catalog(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidCapacity(_) => "invalid_capacity",
            Self::InvalidUrl(_) => "invalid_url",
            Self::Unreachable(_) => "unreachable",
            Self::Duplicate(_) => "duplicate_cluster",
            Self::Secrets(_) => "secrets_unavailable",
            Self::Catalog(_) => "catalog_unavailable",
        }
    }
}

/// The admin credentials in an admin URL: host, user, password and database are required.
fn credentials_of(
    url: &Secret,
    bundle: &tenancy::pg::CaBundle,
) -> Result<(tenancy::pg::PgConfig, DbCredentials), AddClusterError> {
    let config = tenancy::pg::parse_config(url.expose(), bundle)
        .map_err(|e| AddClusterError::InvalidUrl(e.to_string()))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => return Err(AddClusterError::InvalidUrl("a TCP host is required".into())),
    };
    let missing = |what: &str| AddClusterError::InvalidUrl(format!("{what} is required"));
    let credentials = DbCredentials {
        engine: "postgres".into(),
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        username: config.get_user().ok_or_else(|| missing("a user"))?.to_owned(),
        password: String::from_utf8(config.get_password().ok_or_else(|| missing("a password"))?.to_vec())
            .map_err(|_| AddClusterError::InvalidUrl("the password is not UTF-8".into()))?,
        dbname: config.get_dbname().ok_or_else(|| missing("a database name"))?.to_owned(),
        schema: "public".into(),
        reader_username: None,
        reader_password: None,
        sslmode: Some(config.sslmode()),
    };
    Ok((config, credentials))
}

/// Checks the admin connection, stores it in the secret store and registers the cluster.
pub async fn add(
    cp: &ControlPlane,
    name: &str,
    admin_url: &Secret,
    capacity: i32,
    actor: &str,
) -> Result<ClusterInfo, AddClusterError> {
    let name = ClusterName::parse(name)?;
    if capacity < 1 {
        return Err(AddClusterError::InvalidCapacity(capacity));
    }
    let (config, credentials) = credentials_of(admin_url, &cp.ca_bundle)?;
    let catalog_error = |e: tokio_postgres::Error| AddClusterError::Catalog(tenancy::pg::describe_error(&e));
    let client = cp.catalog.get().await.map_err(|e| AddClusterError::Catalog(e.to_string()))?;
    if catalog::exists(&**client, name.as_str()).await.map_err(catalog_error)? {
        return Err(AddClusterError::Duplicate(name.to_string()));
    }
    let probe = tenancy::pg::pool(&config, 1).map_err(|e| AddClusterError::InvalidUrl(e.to_string()))?;
    let reachable = tokio::time::timeout(Duration::from_secs(10), async {
        let conn = probe.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(pg) => tenancy::pg::describe_error(&pg),
            other => other.to_string(),
        })?;
        conn.simple_query("SELECT 1").await.map(|_| ()).map_err(|e| tenancy::pg::describe_error(&e))
    })
    .await
    .unwrap_or_else(|_| Err("timed out".into()));
    probe.close();
    reachable.map_err(AddClusterError::Unreachable)?;

    let secret = SecretName::for_cluster(&cp.secrets_prefix, &name);
    let token = hex::encode(&Sha256::digest(format!("{name}\n{}", admin_url.expose()).as_bytes())[..20]);
    cp.secrets
        .put(&secret, &credentials, &token)
        .await
        .map_err(|e| AddClusterError::Secrets(e.to_string()))?;
    if !catalog::insert(&**client, name.as_str(), secret.as_str(), capacity).await.map_err(catalog_error)? {
        return Err(AddClusterError::Duplicate(name.to_string()));
    }
    crate::catalog::audit::record(
        &**client,
        actor,
        "cluster.add",
        None,
        serde_json::json!({ "cluster": name, "capacity": capacity, "host": credentials.host }),
    )
    .await
    .map_err(catalog_error)?;
    Ok(ClusterInfo {
        name: name.to_string(),
        capacity,
        tenants: 0,
        admin_secret: Some(secret.to_string()),
        draining: false,
    })
}

/// Every registered cluster with its load.
pub async fn list(cp: &ControlPlane) -> Result<Vec<ClusterInfo>, tenancy::catalog::CatalogError> {
    let client = cp.catalog.get().await?;
    Ok(catalog::list(&**client).await?)
}
