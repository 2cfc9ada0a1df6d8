//! The control-plane HTTP server (`tenantctl serve`): the operator API under `/v1` (tenants,
//! fleet migration runs, jobs and audit; bearer
//! tokens; OpenAPI at `/v1/openapi.json`), the web console at `/console`, the billing webhook,
//! `/healthz`, `/readyz` and `/metrics`. Jobs run in workers beside it; SIGTERM/Ctrl-C drains requests and lets running
//! jobs finish.

pub(crate) mod api;
mod auth;
mod console;
mod error;
mod fleet;
mod health;
mod history;
mod migrations;
mod moves;
pub(crate) mod openapi;
mod tenants;
mod tokens;
mod webhook;

pub(crate) use auth::Operator;
pub(crate) use error::{ApiError, ApiJson};
pub(crate) use migrations::PLAN_TIME_LIMIT;

use crate::control_plane::ControlPlane;
use crate::settings::ServeSettings;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest accepted request body (webhook events are a few KiB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub(crate) struct AppState {
    cp: Arc<ControlPlane>,
    webhook_secret: Option<Arc<str>>,
    /// The routers' admin listeners (for the console's router picture).
    routers: Arc<[String]>,
    /// One fleet migration plan computed at a time (it may read every tenant's history).
    plans: Arc<tokio::sync::Semaphore>,
}

/// The axum application (without workers), for embedding and tests.
pub(crate) fn app(cp: Arc<ControlPlane>, settings: &ServeSettings) -> axum::Router {
    let state = AppState {
        cp,
        webhook_secret: settings.billing_webhook_secret.as_ref().map(|s| Arc::from(s.expose())),
        routers: settings.routers.clone().into(),
        plans: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let operator_api = axum::Router::new()
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route("/v1/tenants/{slug}", get(tenants::show).delete(tenants::delete))
        .route("/v1/tenants/{slug}/suspend", post(tenants::suspend))
        .route("/v1/tenants/{slug}/resume", post(tenants::resume))
        .route("/v1/tenants/{slug}/rotate-credentials", post(tenants::rotate_credentials))
        .route("/v1/tenants/{slug}/retry", post(tenants::retry))
        .route("/v1/tenants/{slug}/restore", post(tenants::restore))
        .route("/v1/tenants/{slug}/plan", put(tenants::set_plan))
        .route(
            "/v1/tenants/{slug}/config",
            get(tenants::get_config).put(tenants::set_config).patch(tenants::patch_config),
        )
        .route("/v1/tenants/{slug}/template-upgrades", put(tenants::set_template_upgrades))
        .route("/v1/tenants/{slug}/domains", get(tenants::domains).post(tenants::add_domain))
        .route("/v1/tenants/{slug}/domains/{host}", axum::routing::delete(tenants::remove_domain))
        .route("/v1/tenants/{slug}/moves", post(moves::start).get(moves::list))
        .route("/v1/tenants/{slug}/moves/abort", post(moves::abort))
        .route("/v1/jobs", get(history::jobs))
        .route("/v1/audit", get(history::audit))
        .route("/v1/billing/events", get(history::billing_events))
        .route("/v1/migrations/plan", get(migrations::plan))
        .route("/v1/migrations/runs", post(migrations::start).get(migrations::list))
        .route("/v1/migrations/runs/{id}", get(migrations::show))
        .route("/v1/migrations/runs/{id}/resume", post(migrations::resume))
        .route("/v1/migrations/runs/{id}/halt", post(migrations::halt))
        .route("/v1/fleet", get(fleet::summary))
        .route("/v1/clusters", get(fleet::clusters))
        .route("/v1/routers/pools", get(fleet::router_pools))
        .route("/v1/whoami", get(tokens::whoami))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_operator));
    axum::Router::new()
        .merge(operator_api)
        .merge(console::routes())
        .route("/v1/openapi.json", get(|| async { axum::Json(openapi::document()) }))
        .route("/v1/webhooks/billing", post(webhook::receive))
        .merge(health_routes())
        .fallback(|| async {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Server errors are logged by `count_requests`, with their detail: not again here.
        .layer(tower_http::trace::TraceLayer::new_for_http().on_failure(()))
        .with_state(state)
}

/// `/healthz`, `/readyz` and `/metrics`.
fn health_routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
}

/// The admin listener's application (`TENANTCTL_ADMIN_LISTEN`): health and metrics only.
fn admin_app(cp: Arc<ControlPlane>) -> axum::Router {
    health_routes().with_state(AppState {
        cp,
        webhook_secret: None,
        routers: Arc::new([]),
        plans: Arc::new(tokio::sync::Semaphore::new(1)),
    })
}

/// Counts and times requests by route pattern and status class (never by concrete path or
/// tenant), and counts operation errors by kind; logs each server-side error once.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    // Methods the API has, by name; any other (clients may send any token) as `other`, so
    // nobody can grow the metrics by inventing methods.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    let labels = crate::metrics::HttpLabels { method, route, status };
    state.cp.metrics.http_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    state.cp.metrics.http_requests.get_or_create(&labels).inc();
    if let Some(kind) = error::logged_once(&response) {
        state.cp.metrics.error("http", kind);
    }
    response
}

/// A running server, as started by [`spawn`].
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The admin listener's address, when `admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
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

/// Binds `settings.listen` (and `settings.admin_listen`; port 0 picks a free port) and serves
/// the API with its workers until `shutdown` is cancelled.
pub async fn spawn(
    cp: Arc<ControlPlane>,
    settings: &ServeSettings,
    shutdown: CancellationToken,
) -> std::io::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let admin_listener = match settings.admin_listen {
        Some(admin) => Some(tokio::net::TcpListener::bind(admin).await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(tokio::net::TcpListener::local_addr).transpose()?;
    let admin = admin_listener.map(|listener| {
        let drain = shutdown.clone();
        tokio::spawn(tenancy::listener::serve(
            listener,
            admin_app(cp.clone()),
            settings.http.admin(),
            async move {
                drain.cancelled().await;
            },
        ))
    });
    let app = app(cp.clone(), settings);
    let snapshots = tokio::spawn(fleet::record_snapshots(cp.clone(), shutdown.clone()));
    let workers =
        tokio::spawn(crate::jobs::runner::run_workers(cp, settings.worker_concurrency, shutdown.clone()));
    let drain = shutdown.clone();
    let limits = settings.http.main();
    let task = tokio::spawn(async move {
        let served =
            tenancy::listener::serve(listener, app, limits, async move { drain.cancelled().await }).await;
        let _ = workers.await;
        let _ = snapshots.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        served
    });
    tracing::info!(%addr, ?admin_addr, "tenantctl serve listening");
    Ok(RunningServer { addr, admin_addr, shutdown, task })
}
