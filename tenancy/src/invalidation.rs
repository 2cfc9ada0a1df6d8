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

    /// Where the routers keep a tenant's rate-limit state (its GCRA "theoretical arrival time").
    pub fn rate_limit_key(&self, tenant: &crate::domain::TenantId) -> String {
        format!("{}ratelimit:{tenant}", self.prefix)
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

/// A Redis client for `url` (`redis://`, or `rediss://` for TLS as managed services require).
/// Installs the process's TLS crypto provider first: two are compiled in (the AWS SDK's and
/// the HTTP client's), so rustls would otherwise refuse to pick one when the first TLS
/// connection is made.
///
/// # Errors
/// An invalid URL.
pub fn redis_client(url: &str) -> redis::RedisResult<redis::Client> {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Err only when another provider was installed first, which is just as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
    redis::Client::open(url)
}

#[cfg(test)]
mod tls_tests {
    /// A `rediss://` URL is accepted (managed Redis requires TLS) and a TLS handshake is really
    /// attempted: against a server that closes the connection, connecting fails with an error.
    #[tokio::test]
    async fn a_tls_redis_url_connects_over_tls_and_fails_cleanly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
        });
        let client = super::redis_client(&format!("rediss://127.0.0.1:{port}/")).unwrap();
        let connected = client.get_multiplexed_async_connection().await;
        assert!(connected.is_err(), "a closed socket cannot complete a TLS handshake");
        server.await.unwrap();
    }
}
