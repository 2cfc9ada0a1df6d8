//! The second cache layer: routing records in Redis (`<REDIS_KEY_PREFIX>route:<slug>`), shared by
//! every router, written on a catalog hit and deleted by the control plane on every change.
//! Any failure falls through to the catalog.

use super::RedisLink;
use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::Slug;
use tenancy::invalidation::RedisNames;

pub struct SharedRoutes {
    redis: Arc<RedisLink>,
    names: RedisNames,
    ttl: Duration,
}

impl SharedRoutes {
    pub fn new(redis: Arc<RedisLink>, names: RedisNames, ttl: Duration) -> Self {
        Self { redis, names, ttl }
    }

    /// The routing record of `slug`, if Redis has one and answers in time.
    pub async fn get(&self, slug: &Slug) -> Option<TenantRecord> {
        let raw: Option<String> = self.redis.query(redis::cmd("GET").arg(self.names.route_key(slug))).await?;
        serde_json::from_str(&raw?).ok()
    }

    /// Stores `tenant`'s routing record (best effort).
    pub async fn put(&self, tenant: &Arc<TenantRecord>) {
        let Ok(json) = serde_json::to_string(&**tenant) else { return };
        let seconds = self.ttl.as_secs().max(1);
        let _: Option<()> = self
            .redis
            .query(redis::cmd("SET").arg(self.names.route_key(&tenant.slug)).arg(json).arg("EX").arg(seconds))
            .await;
    }
}
