//! Embedding the router in a Rust service instead of running it in front: an axum extractor that
//! admits the request as the router's own doors do ([`crate::admission`]: the `Host`'s tenant
//! with the same caches, invalidations and status rules, the client's failed attempts, the
//! plan's rate limit and its metric, the tenant on the request span's `tenant` field when the
//! service's span has one) and checks out a connection from that tenant's pool, logged in as the
//! tenant's own role, under the same global connection budget. See `examples/embedded.rs`.
//!
//! ```ignore
//! async fn users(TenantConnection { tenant, client }: TenantConnection) -> String {
//!     let row = client.query_one("SELECT count(*) FROM users", &[]).await.unwrap();
//!     format!("{} has {} users", tenant.slug, row.get::<_, i64>(0))
//! }
//! let app = axum::Router::new().route("/users", axum::routing::get(users)).with_state(state);
//! ```
//!
//! The service authenticates its own users; the extractor only guarantees that whatever the
//! handler runs, PostgreSQL confines it to the tenant of the host it was called for.

use crate::admission::AdmittedTenant;
use crate::error::RouterError;
use crate::settings::RouterSettings;
use crate::state::{AppState, StartError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::sync::Arc;
use tenancy::catalog::TenantRecord;
use tokio_util::sync::CancellationToken;

/// The state an embedding service serves with: caches, pools under the connection budget, and
/// (with `REDIS_URL`) the invalidation listener, which runs until `shutdown`; with bearer
/// tokens, the identity provider's keys kept fresh.
pub async fn start(settings: &RouterSettings, shutdown: &CancellationToken) -> Result<AppState, StartError> {
    let state = AppState::new(settings).await?;
    crate::state::spawn_invalidation_listener(settings, &state, shutdown)?;
    if let Some(audit) = crate::state::spawn_identity_tasks(&state, shutdown) {
        // The embedding service's handlers may still be running when it cancels `shutdown`: an
        // access they record after the last write is refused (503), never left unwritten.
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            audit.finish().await;
        });
    }
    Ok(state)
}

/// The request's tenant and a connection on its role (returned to its pool when dropped, and
/// reset before reuse).
pub struct TenantConnection {
    pub tenant: Arc<TenantRecord>,
    pub client: crate::pool::Checkout,
}

impl FromRequestParts<AppState> for TenantConnection {
    type Rejection = RouterError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let AdmittedTenant { tenant } = AdmittedTenant::from_request_parts(parts, state).await?;
        let pool = state.pools.pool_for(&tenant).await?;
        let client = state.pools.checkout(&pool).await?;
        Ok(Self { tenant, client })
    }
}
