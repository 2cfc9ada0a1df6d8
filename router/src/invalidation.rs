//! Listens on Redis for tenant invalidations (published by the control plane on every change)
//! and evicts the tenant from the in-process cache, so a suspension is refused by every router
//! within moments. After any disconnect the whole cache is treated as suspect and forgotten:
//! messages may have been missed. Redis being down never stops the router; it reconnects in the
//! background.

use crate::resolve::Resolver;
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tenancy::invalidation::{Invalidation, RedisNames};
use tokio_util::sync::CancellationToken;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the listener; it runs until `shutdown`.
pub fn spawn(
    client: redis::Client,
    names: RedisNames,
    resolver: Arc<Resolver>,
    metrics: Arc<crate::metrics::RouterMetrics>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen(&client, &names, &resolver, &metrics, &shutdown).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "invalidation listener disconnected");
                }
            }
            metrics.redis_connected.set(0);
            resolver.evict_all();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// One subscription, until the connection ends (an error) or shutdown (`Ok`).
async fn listen(
    client: &redis::Client,
    names: &RedisNames,
    resolver: &Resolver,
    metrics: &crate::metrics::RouterMetrics,
    shutdown: &CancellationToken,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(names.invalidation_channel()).await?;
    // Anything cached before this subscription may have missed messages.
    resolver.evict_all();
    metrics.redis_connected.set(1);
    tracing::info!(channel = %names.invalidation_channel(), "listening for tenant invalidations");
    let mut messages = pubsub.into_on_message();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")));
        };
        let payload: String = message.get_payload()?;
        match serde_json::from_str::<Invalidation>(&payload) {
            Ok(invalidation) => {
                tracing::debug!(tenant = %invalidation.slug, generation = invalidation.generation, "tenant invalidated");
                metrics.invalidations.inc();
                resolver.evict_tenant(&invalidation).await;
            }
            Err(err) => tracing::warn!(error = %err, "ignoring a malformed invalidation message"),
        }
    }
}
