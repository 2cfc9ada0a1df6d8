//! The invalidation protocol: every change to a tenant bumps its generation and publishes one
//! message on a Redis channel; routers evict the tenant from their in-process cache and drop any
//! cache fill older than the newest generation they have seen.

use crate::domain::{Slug, TenantId, TenantStatus};

/// One tenant changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invalidation {
    pub tenant_id: TenantId,
    pub slug: Slug,
    pub generation: i64,
    pub status: TenantStatus,
    /// Host names to forget besides the tenant's own entries (a custom domain just added or
    /// removed, which a router may have cached as "no such tenant").
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// Redis names, all under one deployment prefix (`REDIS_KEY_PREFIX`).
#[derive(Debug, Clone)]
pub struct RedisNames {
    prefix: String,
}

impl RedisNames {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The channel invalidations are published on.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidations", self.prefix)
    }

    /// The key of a tenant's routing record, by slug.
    pub fn route_key(&self, slug: &Slug) -> String {
        format!("{}route:{slug}", self.prefix)
    }
}

/// Publishes an invalidation. Failures are returned for the caller to log and count: the
/// catalog is the source of truth and caches also expire by TTL.
pub async fn publish(
    redis: &mut redis::aio::ConnectionManager,
    names: &RedisNames,
    message: &Invalidation,
) -> redis::RedisResult<()> {
    // The stale routing record goes first, so a router reacting to the message cannot refill
    // its cache from it.
    let _: i64 = redis::cmd("DEL").arg(names.route_key(&message.slug)).query_async(redis).await?;
    let payload = serde_json::to_string(message).unwrap_or_default();
    let _: i64 =
        redis::cmd("PUBLISH").arg(names.invalidation_channel()).arg(payload).query_async(redis).await?;
    Ok(())
}
