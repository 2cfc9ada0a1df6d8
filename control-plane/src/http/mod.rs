//! The control-plane HTTP server (`tenantctl serve`): billing webhook, health and readiness.
//! Jobs run in workers beside it; SIGTERM/Ctrl-C drains requests and lets running jobs finish.

mod error;
mod health;
mod webhook;

pub use error::ApiError;

use crate::context::ControlPlane;
use crate::settings::ServeSettings;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest accepted request body (webhook events are a few KiB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub(crate) struct AppState {
    cp: Arc<ControlPlane>,
    webhook_secret: Option<Arc<str>>,
}

/// The axum application (without workers), for embedding and tests.
pub fn app(cp: Arc<ControlPlane>, settings: &ServeSettings) -> axum::Router {
    let state = AppState {
        cp,
        webhook_secret: settings.billing_webhook_secret.as_ref().map(|s| Arc::from(s.expose())),
    };
    axum::Router::new()
        .route("/v1/webhooks/billing", post(webhook::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// A running server, as started by [`spawn`].
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, drains requests and running jobs, and waits for the end.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Binds `settings.listen` (port 0 picks a free port) and serves the API with its workers until
/// `shutdown` is cancelled.
pub async fn spawn(
    cp: Arc<ControlPlane>,
    settings: &ServeSettings,
    shutdown: CancellationToken,
) -> std::io::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let app = app(cp.clone(), settings);
    let workers = tokio::spawn(crate::provisioning::worker::run_workers(
        cp,
        settings.worker_concurrency,
        shutdown.clone(),
    ));
    let drain = shutdown.clone();
    let task = tokio::spawn(async move {
        let served =
            axum::serve(listener, app).with_graceful_shutdown(async move { drain.cancelled().await }).await;
        let _ = workers.await;
        served
    });
    tracing::info!(%addr, "tenantctl serve listening");
    Ok(RunningServer { addr, shutdown, task })
}
