//! The router's listeners: tenant traffic (`POST /sql`, the PostgreSQL protocol over WebSocket
//! on `/v2`, the reverse proxy), the admin listener (`/healthz`, `/readyz`, `/metrics`,
//! `/pools`, `/stats`) and the PostgreSQL listener. All drain on shutdown.

use crate::settings::RouterSettings;
use crate::state::{spawn_invalidation_listener, AppState, StartError};
use axum::routing::{any, get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The tenant-facing application; with the PostgreSQL door, its WebSocket transport on `/v2`.
pub fn app(state: AppState, max_body_bytes: usize, postgres: Option<Arc<crate::wire::Door>>) -> axum::Router {
    let sql =
        post(crate::sql::handle).layer(axum::middleware::from_fn_with_state(max_body_bytes, drain_oversized));
    let mut app = axum::Router::new().route("/sql", sql);
    if let Some(door) = postgres {
        app = app.route("/v2", any(crate::wire::websocket::handle).layer(axum::Extension(door)));
    }
    app.fallback(crate::proxy::forward)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::access_log::observe))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), tenant = tracing::field::Empty)
            }),
        )
        .with_state(state)
}

/// Most of an oversized request's body read (and discarded) before it is refused, and for how
/// long at most.
const DRAIN_MAX_BYTES: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// A `POST /sql` whose declared body is over `max_body_bytes` is refused (413) only after its
/// body is read and discarded (within [`DRAIN_MAX_BYTES`] and
/// [`DRAIN_TIME`]): answered and closed while the client is still sending, the connection would
/// be reset under it, and the client would see a broken pipe instead of the 413.
async fn drain_oversized(
    axum::extract::State(max_body_bytes): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures::StreamExt as _;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_none_or(|length| length <= max_body_bytes) {
        return next.run(request).await;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut stream = request.into_body().into_data_stream();
        let mut read = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
    let message =
        format!("the request body is larger than the {max_body_bytes}-byte limit (ROUTER_MAX_BODY_BYTES)");
    axum::response::IntoResponse::into_response((axum::http::StatusCode::PAYLOAD_TOO_LARGE, message))
}

/// The admin application.
pub fn admin_app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::admin::readyz))
        .route("/metrics", get(crate::admin::metrics))
        .route("/pools", get(crate::admin::pools))
        .route("/stats", get(crate::admin::stats))
        .with_state(state)
}

/// Both listeners of a running router.
pub struct RunningRouter {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The PostgreSQL-protocol listener's address (`None` when it is off).
    pub pg_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The PostgreSQL door's clients (over TCP and WebSocket), drained once the listeners stop.
    postgres: Option<Arc<crate::wire::Door>>,
    /// The audit log's writer, finished last: requests still draining may queue entries.
    audit: Option<crate::identity::audit::AuditWriter>,
}

impl RunningRouter {
    /// Stops accepting, lets in-flight requests and PostgreSQL clients' transactions finish,
    /// and returns once all are done.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.unwrap_or(Ok(()))?;
        }
        if let Some(door) = self.postgres {
            door.drain().await;
        }
        if let Some(audit) = self.audit {
            audit.finish().await;
        }
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })
}

/// Starts both listeners (port 0 picks free ports) until `shutdown` is cancelled.
pub async fn spawn(
    settings: &RouterSettings,
    shutdown: CancellationToken,
) -> Result<RunningRouter, StartError> {
    let state = AppState::new(settings).await?;
    let listener = bind(settings.listen).await?;
    let admin_listener = bind(settings.admin_listen).await?;
    let addr =
        listener.local_addr().map_err(|source| StartError::Listen { addr: settings.listen, source })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr: settings.admin_listen, source })?;
    let postgres = match settings.postgres.pg_listen.0 {
        Some(pg_listen) => {
            let listener = bind(pg_listen).await?;
            let pg_addr =
                listener.local_addr().map_err(|source| StartError::Listen { addr: pg_listen, source })?;
            let door =
                crate::wire::Door::new(state.clone(), wire_listener(&settings.postgres)?, shutdown.clone());
            Some((listener, pg_addr, door))
        }
        None => None,
    };
    let door = postgres.as_ref().map(|(_, _, door)| door.clone());
    let mut tasks = Vec::new();
    if let Some(listener) = spawn_invalidation_listener(settings, &state, &shutdown)? {
        tasks.push(tokio::spawn(async move {
            let _ = listener.await;
            Ok(())
        }));
    }
    let audit = crate::state::spawn_identity_tasks(&state, &shutdown);
    // Each listener has its own connection budget: a flood of tenant traffic leaves health
    // checks answering.
    for (listener, app, limits) in [
        (listener, app(state.clone(), settings.max_body_bytes, door.clone()), settings.http.main()),
        (admin_listener, admin_app(state.clone()), settings.http.admin()),
    ] {
        let drain = shutdown.clone();
        tasks.push(tokio::spawn(tenancy::listener::serve(listener, app, limits, async move {
            drain.cancelled().await;
        })));
    }
    let pg_addr = postgres.map(|(listener, pg_addr, door)| {
        tasks.push(tokio::spawn(crate::wire::serve(listener, door)));
        pg_addr
    });
    tracing::info!(%addr, %admin_addr, pg_addr = ?pg_addr, "tenant-router listening");
    Ok(RunningRouter { addr, admin_addr, pg_addr, shutdown, tasks, postgres: door, audit })
}

fn wire_listener(
    settings: &crate::settings::PostgresSettings,
) -> Result<crate::wire::WireListener, StartError> {
    let tls = crate::wire::listener_tls(settings)?;
    if tls.is_none() && !settings.allow_plaintext {
        tracing::warn!(
            "the PostgreSQL listener has no certificate (ROUTER_TLS_CERT_FILE or ROUTER_TLS_CERT) and plaintext is not allowed \
             (ROUTER_PG_ALLOW_PLAINTEXT): it will refuse every client"
        );
    }
    Ok(crate::wire::WireListener {
        tls,
        allow_plaintext: settings.allow_plaintext,
        idle_transaction_timeout: settings.idle_transaction_timeout,
        max_clients: settings.max_clients,
        router_host: settings.pg_host.clone(),
    })
}
