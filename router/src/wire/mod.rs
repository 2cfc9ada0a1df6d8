//! The PostgreSQL-protocol door: psql, drivers and ORMs connect to the router as they would to
//! PostgreSQL (`ROUTER_PG_LISTEN`), name their tenant, log in as its role, and are served on
//! the tenant's pool under the same budget, limits and statement rules as the HTTP doors.
//!
//! - [`startup`]: TLS, the startup packet, which tenant, SCRAM-SHA-256 ([`scram`]);
//! - [`tls`]: the listener's certificate (PEM files, or PEM text from the environment);
//! - [`relay`]: transaction pooling, refusals, limits;
//! - [`settings`]: the settings carried per client;
//! - [`statements`]: named prepared statements, carried from connection to connection;
//! - [`cancel`]: cancel requests, routed to whatever server connection the client holds;
//! - [`server`]: the router's own conversations with a server connection (reset, settings);
//! - [`frame`]: the protocol's messages.

mod cancel;
pub(crate) mod frame;
mod relay;
mod scram;
pub(crate) mod server;
mod settings;
mod startup;
mod statements;
mod tls;

pub(crate) use scram::ServerKeys;
pub use tls::{listener_tls, tls_acceptor, TlsError};

use crate::failed_attempts::ClientAddress;
use crate::state::AppState;
use bytes::BytesMut;
use frame::Notice;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to open its session: TLS, startup and authentication, each.
const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a client connection ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(#[from] frame::FrameError),
    /// Refused with this error, sent to the client before closing.
    #[error("refused: {}", .0.message)]
    Refused(Notice),
}

/// How the listener is set up.
pub struct WireListener {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub allow_plaintext: bool,
    /// A client idle this long inside a transaction is disconnected (its connection freed).
    pub idle_transaction_timeout: std::time::Duration,
    /// Most clients connected at once; past it a client is refused at once.
    pub max_clients: usize,
    /// The router's own host name (`ROUTER_PG_HOST`): an SNI naming it names no tenant.
    pub router_host: Option<String>,
}

/// Serves PostgreSQL clients on `listener` until `shutdown`; then stops accepting, lets each
/// client finish the transaction it is in, and returns once all are gone.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    setup: WireListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let setup = Arc::new(setup);
    let cancels = Arc::new(cancel::CancelKeys::default());
    let clients = TaskTracker::new();
    let room = Arc::new(tokio::sync::Semaphore::new(setup.max_clients));
    loop {
        let (tcp, peer) = tokio::select! {
            // Once shutdown has begun nobody new is let in, even one already waiting.
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "PostgreSQL listener: accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let Ok(place) = room.clone().try_acquire_owned() else {
            state.metrics.wire_refused_full.inc();
            tokio::spawn(refuse_full(tcp));
            continue;
        };
        let (state, setup, cancels, shutdown) =
            (state.clone(), setup.clone(), cancels.clone(), shutdown.clone());
        clients.spawn(async move {
            let _place = place;
            state.metrics.wire_clients.inc();
            let result = Box::pin(client(tcp, peer, &state, &setup, &cancels, shutdown)).await;
            state.metrics.wire_clients.dec();
            match result {
                Ok(()) | Err(WireError::Closed) => {}
                Err(err) => tracing::debug!(%peer, error = %err, "PostgreSQL client ended"),
            }
        });
    }
    // New clients are refused from now on; those connected finish their transaction.
    drop(listener);
    clients.close();
    clients.wait().await;
    Ok(())
}

/// Refuses a client past `ROUTER_PG_MAX_CLIENTS` (53300, as PostgreSQL refuses one past
/// `max_connections`), without reading what it sent.
async fn refuse_full(tcp: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let mut tcp = tcp;
    let mut out = BytesMut::new();
    Notice::fatal("53300", "sorry, too many clients already").put(&mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tcp.write_all(&out)).await;
}

/// One client connection, from its first byte to its last.
async fn client(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    state: &AppState,
    setup: &WireListener,
    cancels: &Arc<cancel::CancelKeys>,
    shutdown: CancellationToken,
) -> Result<(), WireError> {
    let opening =
        tokio::time::timeout(STARTUP_TIMEOUT, startup::open(tcp, setup.tls.as_ref(), setup.allow_plaintext))
            .await
            .map_err(|_| WireError::Closed)??;
    let (mut conn, parameters) = match opening {
        startup::Opening::Cancel { process_id, secret_key } => {
            cancels.cancel(process_id, secret_key).await;
            return Ok(());
        }
        startup::Opening::Startup(conn, parameters) => (conn, parameters),
    };
    let admitted =
        tokio::time::timeout(STARTUP_TIMEOUT, begin(state, setup, &mut conn, peer, parameters, cancels))
            .await
            .unwrap_or_else(|_| Err(WireError::Refused(Notice::fatal("08006", "authentication timed out"))));
    match admitted {
        Ok(admitted) => {
            relay::Session::new(conn, state.clone(), admitted, shutdown, setup.idle_transaction_timeout)
                .run()
                .await
        }
        Err(WireError::Refused(notice)) => {
            conn.refuse(&notice).await;
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Admission for a client: its tenant, its role and password, and a first server connection
/// with its settings (whose parameters it is told).
async fn begin(
    state: &AppState,
    setup: &WireListener,
    conn: &mut startup::ClientConn,
    peer: SocketAddr,
    parameters: Vec<(String, String)>,
    cancels: &Arc<cancel::CancelKeys>,
) -> Result<relay::Admitted, WireError> {
    let client = ClientAddress(Some(peer.ip()));
    let request = startup::Request::parse(parameters).map_err(WireError::Refused)?;
    let sni = startup::tenant_sni(conn.sni.as_deref(), setup.router_host.as_deref());
    let tenant = startup::tenant(state, client, sni, &request).await.map_err(WireError::Refused)?;
    let authenticated = startup::authenticate(state, conn, client, &tenant, &request.user).await?;
    let settings = settings::ClientSettings::from_startup(&request.settings);
    if let Some(not_allowed) = settings.not_allowed(&state.classifier) {
        return Err(WireError::Refused(Notice::fatal("42501", not_allowed.message())));
    }
    // A first connection: it checks the settings, and tells what the client is to be told.
    let mut checkout = state
        .pools
        .checkout(&authenticated.pool)
        .await
        .map_err(|e| WireError::Refused(startup::pool_notice(&e)))?;
    if let Some(error) = settings::apply_settings(&mut checkout, &settings).await? {
        // The server's own error (an unknown setting, a bad value) ends the startup, as it
        // would on PostgreSQL.
        conn.send(&error.bytes).await?;
        return Err(WireError::Closed);
    }
    let mut out = BytesMut::new();
    if let Some(socket) = checkout.socket() {
        let mut parameters: Vec<_> = socket.parameters.iter().collect();
        parameters.sort();
        for (name, value) in parameters {
            frame::parameter_status(&mut out, name, value);
        }
    }
    checkout.clean = true;
    // In session pooling the client keeps this connection; otherwise it goes back to the pool.
    let kept = (tenant.pool_mode == tenancy::domain::PoolMode::Session).then_some(checkout);
    let cancel = cancels.register();
    frame::backend_key_data(&mut out, cancel.process_id, cancel.secret_key);
    frame::ready_for_query(&mut out, b'I');
    conn.send(&out).await?;
    tracing::debug!(tenant = %tenant.slug, user = %request.user, "PostgreSQL client admitted");
    let host = state.resolver.base_domain().host_for(&tenant.slug);
    Ok(relay::Admitted { tenant, host, pool: authenticated.pool, settings, cancel, kept })
}
