//! Everything a control-plane operation needs, built once from the settings and shared
//! (`Arc<ControlPlane>`) by the API, the workers and the CLI.

use crate::clusters::{Cluster, ClusterError, Clusters};
use crate::plans::Templates;
use crate::settings::ProvisioningSettings;
use crate::tenant_migrations::{LoadMigrationsError, TenantMigrations};
use deadpool_postgres::Pool;
use std::sync::Arc;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{BaseDomain, ClusterName};
use tenancy::invalidation::{Invalidation, RedisNames};
use tenancy::secrets::{SecretError, SecretsPrefix, SharedSecretStore};
use tenancy::settings::CommonSettings;
use tokio::sync::{Mutex, Notify};

/// Catalog connections of a control plane that runs no more than a few workers.
const DEFAULT_CATALOG_CONNECTIONS: usize = 16;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL: {0}")]
    Database(#[from] tenancy::pg::PoolError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogMigrateError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("secret store: {0}")]
    Secrets(#[from] SecretError),
    #[error(transparent)]
    Migrations(#[from] LoadMigrationsError),
    #[error("REDIS_URL: {0}")]
    Redis(String),
}

impl tenancy::error::OperationError for StartError {
    fn kind(&self) -> tenancy::error::ErrorKind {
        use tenancy::error::ErrorKind;
        match self {
            Self::Database(e) => e.kind(),
            Self::Secrets(e) => e.kind(),
            Self::Migrations(_) => ErrorKind::Misconfigured,
            Self::Catalog(_) | Self::Cluster(_) | Self::Redis(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Database(e) => e.code(),
            Self::Secrets(e) => e.code(),
            Self::Migrations(_) => "invalid_configuration",
            Self::Catalog(_) | Self::Cluster(_) | Self::Redis(_) => "unavailable",
        }
    }
}

pub struct ControlPlane {
    pub catalog: Pool,
    /// What `verify-ca` and `verify-full` connections to clusters trust (`PG_SSL_ROOT_CERT`).
    pub(crate) ca_bundle: tenancy::pg::CaBundle,
    pub secrets: SharedSecretStore,
    pub(crate) secrets_prefix: SecretsPrefix,
    /// The clusters' handles (the catalog's own server is `default`).
    pub(crate) clusters: Clusters,
    pub(crate) templates: Templates,
    migrations_dir: std::path::PathBuf,
    pub(crate) base_domain: BaseDomain,
    pub(crate) role_prefix: String,
    /// Default retention of deprovisioned tenants.
    pub(crate) deprovision_retention: std::time::Duration,
    /// Where tenant archives go before their data is dropped (none when unset).
    pub(crate) archive_dir: Option<std::path::PathBuf>,
    pub(crate) pg_dump: std::path::PathBuf,
    pub(crate) pg_restore: std::path::PathBuf,
    /// Longest a move's switch holds a tenant's requests.
    pub(crate) move_pause_max: std::time::Duration,
    /// How long a moved tenant's old copy is kept.
    pub(crate) move_source_retention: std::time::Duration,
    redis: Option<RedisPublisher>,
    /// Woken whenever a job is enqueued in this process.
    pub(crate) jobs_enqueued: Notify,
    pub(crate) metrics: crate::metrics::Metrics,
}

impl ControlPlane {
    /// Connects to the catalog (migrating it), the secret store and Redis.
    pub async fn start(
        common: &CommonSettings,
        provisioning: &ProvisioningSettings,
    ) -> Result<Arc<Self>, StartError> {
        Self::start_with(common, provisioning, DEFAULT_CATALOG_CONNECTIONS).await
    }

    /// [`ControlPlane::start`] with a catalog pool sized for `workers` job workers: each holds
    /// one connection for its claim and uses at most two more at a time.
    pub(crate) async fn start_for_workers(
        common: &CommonSettings,
        provisioning: &ProvisioningSettings,
        workers: usize,
    ) -> Result<Arc<Self>, StartError> {
        Self::start_with(common, provisioning, DEFAULT_CATALOG_CONNECTIONS.max(3 * workers + 8)).await
    }

    async fn start_with(
        common: &CommonSettings,
        provisioning: &ProvisioningSettings,
        catalog_connections: usize,
    ) -> Result<Arc<Self>, StartError> {
        let ca_bundle = common.ca_bundle().map_err(tenancy::pg::PoolError::from)?;
        let mut config = tenancy::pg::parse_config(common.database_url()?.expose(), &ca_bundle)?;
        if config.get_application_name().is_none() {
            // What operators see in pg_stat_activity next to the control plane's sessions.
            config.application_name("tenantctl");
        }
        let catalog = tenancy::pg::pool(&config, catalog_connections)?;
        crate::catalog::migrate(&catalog, &provisioning.role_prefix).await?;
        let secrets = common.secrets.build(catalog.clone()).await?;
        let default_cluster = Cluster::new(ClusterName::DEFAULT, &config, &provisioning.role_prefix)?;
        // Fail fast on a bad directory; jobs read it again so new files apply without a restart.
        TenantMigrations::load(&provisioning.migrations_dir)?;
        let redis = common
            .redis_url
            .as_ref()
            .map(|url| RedisPublisher::new(url.expose(), &common.redis_key_prefix))
            .transpose()?;
        let clusters = Clusters::new(
            default_cluster,
            catalog.clone(),
            secrets.clone(),
            ca_bundle.clone(),
            &provisioning.role_prefix,
        );
        Ok(Arc::new(Self {
            catalog,
            ca_bundle,
            clusters,
            secrets,
            secrets_prefix: common.secrets.secrets_prefix.clone(),
            templates: Templates::new(&provisioning.templates_dir),
            migrations_dir: provisioning.migrations_dir.clone(),
            base_domain: common.tenant_base_domain.clone(),
            role_prefix: provisioning.role_prefix.clone(),
            deprovision_retention: provisioning.deprovision_retention,
            archive_dir: provisioning.archive_dir.clone(),
            pg_dump: provisioning.pg_dump.clone(),
            pg_restore: provisioning.pg_restore.clone(),
            move_pause_max: provisioning.move_pause_max,
            move_source_retention: provisioning.move_source_retention,
            redis,
            jobs_enqueued: Notify::new(),
            metrics: crate::metrics::Metrics::default(),
        }))
    }

    /// The handle of cluster `name` (the catalog's own server for `default`).
    pub(crate) async fn cluster(&self, name: &str) -> Result<Arc<Cluster>, ClusterError> {
        self.clusters.get(name).await
    }

    /// The tenant migrations as the directory holds them now: adding a file needs no restart.
    pub(crate) fn migrations(&self) -> Result<TenantMigrations, LoadMigrationsError> {
        TenantMigrations::load(&self.migrations_dir)
    }

    /// Tells routers the tenant changed. Best effort: Redis being down is logged, and routers
    /// fall back to their cache TTL and the catalog.
    pub(crate) async fn publish_change(&self, tenant: &TenantRecord) {
        self.publish_change_with_hosts(tenant, Vec::new()).await;
    }

    /// [`ControlPlane::publish_change`], also making routers forget `hosts`.
    pub(crate) async fn publish_change_with_hosts(&self, tenant: &TenantRecord, hosts: Vec<String>) {
        let Some(redis) = &self.redis else { return };
        let message = Invalidation {
            tenant_id: tenant.id,
            slug: tenant.slug.clone(),
            generation: tenant.generation,
            status: tenant.status,
            hosts,
        };
        if let Err(err) = redis.publish(&message).await {
            tracing::warn!(tenant = %tenant.slug, error = %err, "could not publish tenant invalidation");
        }
    }
}

/// A lazily connected Redis publisher: Redis may be down when the control plane starts.
struct RedisPublisher {
    client: redis::Client,
    names: RedisNames,
    connection: Mutex<Option<redis::aio::ConnectionManager>>,
}

impl RedisPublisher {
    fn new(url: &str, prefix: &str) -> Result<Self, StartError> {
        let client =
            tenancy::invalidation::redis_client(url).map_err(|e| StartError::Redis(e.to_string()))?;
        Ok(Self { client, names: RedisNames::new(prefix), connection: Mutex::new(None) })
    }

    async fn publish(&self, message: &Invalidation) -> redis::RedisResult<()> {
        // The lock only guards connecting once; publishes share the (cloneable, multiplexed)
        // connection concurrently.
        let mut connection = {
            let mut guard = self.connection.lock().await;
            match guard.as_ref() {
                Some(connection) => connection.clone(),
                None => {
                    let connection = redis::aio::ConnectionManager::new(self.client.clone()).await?;
                    *guard = Some(connection.clone());
                    connection
                }
            }
        };
        tenancy::invalidation::publish(&mut connection, &self.names, message).await
    }
}
