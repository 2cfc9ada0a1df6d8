//! tenant-router: resolves a request's host to its tenant and serves the request on that
//! tenant's own connection pool.
//!
//! - [`admission`]: the tenant a request may be served for, the same for every door;
//! - [`resolve`]: host normalisation and tenant lookup (in-process cache, catalog);
//! - [`pool`]: per-tenant connection pools logged in as each tenant's own role;
//! - [`identity`]: bearer tokens (JWKS), roles, and the audit of internal users' accesses;
//! - [`sql`]: `POST /sql`, compatible with Neon's serverless driver;
//! - [`statement`]: the statement classifier (can this SQL change the session? is it read-only?);
//! - [`state`]: what every door serves with ([`state::AppState`]), built from the settings;
//! - [`wire`]: the PostgreSQL protocol (psql, drivers, ORMs), in transaction pooling;
//! - [`http`]: the listeners, for the binary and for tests (port 0).

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod embed;
pub mod error;
pub mod failed_attempts;
pub mod http;
pub mod identity;
pub mod invalidation;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod rate_limit;
pub mod redis;
pub mod resolve;
pub mod session;
pub mod settings;
pub mod sql;
pub mod state;
pub mod statement;
pub mod upstream;
pub mod wire;

use std::process::ExitCode;

/// Runs the router until SIGTERM or Ctrl-C, then drains.
pub async fn run(settings: settings::RouterSettings) -> ExitCode {
    tenancy::telemetry::init(settings.common.log_format, tenancy::telemetry::SERVER_LOG_FILTER);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let router = match http::spawn(&settings, shutdown.clone()).await {
        Ok(router) => router,
        Err(err) => {
            tracing::error!(error = %err, "tenant-router could not start");
            return ExitCode::from(6);
        }
    };
    tenancy::shutdown::wait_for_shutdown().await;
    tracing::info!("shutting down: draining in-flight requests");
    match tokio::time::timeout(settings.shutdown_grace, router.stop()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
