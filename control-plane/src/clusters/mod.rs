//! The PostgreSQL clusters that hold tenants: the registry (`tenantctl clusters add|list`),
//! draining and removing one ([`drain()`]), the
//! handle of each cluster (its databases, roles and pools; [`Cluster`]) and where handles are
//! kept ([`Clusters`]). The catalog's own server is the `default` cluster; every other one is
//! registered with an admin connection kept in the secret store. New tenants go to the least
//! loaded cluster with room (`placement`).

mod drain;
mod handle;
pub mod placement;
mod registry;

pub use crate::catalog::clusters::ClusterInfo;
pub use drain::{drain, remove, undrain, ClusterChangeError, DrainSettings, Drained};
pub use handle::*;
pub use placement::PLACEMENT_LOCK;
pub use registry::{add, list, AddClusterError};

use deadpool_postgres::Pool;
use std::collections::HashMap;
use std::sync::Arc;
use tenancy::secrets::{SecretName, SharedSecretStore};
use tokio::sync::Mutex;

/// The handles of the clusters: the default one, and registered ones, built on first use from
/// their admin secret and kept.
pub(crate) struct Clusters {
    default: Arc<Cluster>,
    registered: Mutex<HashMap<String, Arc<Cluster>>>,
    catalog: Pool,
    secrets: SharedSecretStore,
    ca_bundle: tenancy::pg::CaBundle,
    role_prefix: String,
}

impl Clusters {
    pub(crate) fn new(
        default: Cluster,
        catalog: Pool,
        secrets: SharedSecretStore,
        ca_bundle: tenancy::pg::CaBundle,
        role_prefix: &str,
    ) -> Self {
        Self {
            default: Arc::new(default),
            registered: Mutex::new(HashMap::new()),
            catalog,
            secrets,
            ca_bundle,
            role_prefix: role_prefix.to_owned(),
        }
    }

    /// The handle of cluster `name`.
    pub(crate) async fn get(&self, name: &str) -> Result<Arc<Cluster>, ClusterError> {
        if name == self.default.name {
            return Ok(self.default.clone());
        }
        if let Some(cluster) = self.registered.lock().await.get(name) {
            return Ok(cluster.clone());
        }
        let unavailable = |message: String| ClusterError::Connect { cluster: name.to_owned(), message };
        let client = self.catalog.get().await.map_err(|e| unavailable(format!("catalog: {e}")))?;
        let secret_ref = crate::catalog::clusters::admin_secret_ref(&**client, name)
            .await
            .map_err(|e| unavailable(tenancy::pg::describe_error(&e)))?
            .ok_or_else(|| ClusterError::Unknown(name.to_owned()))?;
        drop(client);
        let admin = self
            .secrets
            .get(&SecretName::from_catalog(secret_ref))
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| unavailable("its admin secret is missing".into()))?;
        let cluster =
            Arc::new(Cluster::new(name, &admin_config(&admin, &self.ca_bundle), &self.role_prefix)?);
        self.registered.lock().await.insert(name.to_owned(), cluster.clone());
        Ok(cluster)
    }
}
