//! The second cache layer: routing records in Redis (`<REDIS_KEY_PREFIX>route:<slug>`), shared by
//! every router, written on a catalog hit and deleted by the control plane on every change.
//! Redis is an optimisation, never a dependency: every call has a short timeout and any failure
//! falls through to the catalog.

use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::Slug;
use tenancy::invalidation::RedisNames;
use tokio::sync::Mutex;

/// Longest a routing lookup waits for Redis before asking the catalog.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);

pub struct SharedCache {
    client: redis::Client,
    connection: Mutex<Option<redis::aio::ConnectionManager>>,
    names: RedisNames,
    ttl: Duration,
}

impl SharedCache {
    pub fn new(client: redis::Client, names: RedisNames, ttl: Duration) -> Self {
        Self { client, connection: Mutex::new(None), names, ttl }
    }

    /// A connection (made on first use: Redis may be down when the router starts).
    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let mut guard = self.connection.lock().await;
        if guard.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(0);
            *guard = tokio::time::timeout(
                REDIS_TIMEOUT * 2,
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await
            .ok()
            .and_then(Result::ok);
        }
        guard.clone()
    }

    /// The routing record of `slug`, if Redis has one and answers in time.
    pub async fn get(&self, slug: &Slug) -> Option<TenantRecord> {
        let mut connection = self.connection().await?;
        let key = self.names.route_key(slug);
        let raw: Option<String> =
            tokio::time::timeout(REDIS_TIMEOUT, redis::cmd("GET").arg(&key).query_async(&mut connection))
                .await
                .ok()?
                .ok()?;
        serde_json::from_str(&raw?).ok()
    }

    /// Stores `tenant`'s routing record (best effort).
    pub async fn put(&self, tenant: &Arc<TenantRecord>) {
        let Some(mut connection) = self.connection().await else { return };
        let Ok(json) = serde_json::to_string(&**tenant) else { return };
        let seconds = self.ttl.as_secs().max(1);
        let _ = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("SET")
                .arg(self.names.route_key(&tenant.slug))
                .arg(json)
                .arg("EX")
                .arg(seconds)
                .query_async::<()>(&mut connection),
        )
        .await;
    }
}
