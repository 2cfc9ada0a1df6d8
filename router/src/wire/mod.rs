//! The PostgreSQL-protocol door: psql, drivers and ORMs connect to the router as they would to
//! PostgreSQL (`ROUTER_PG_LISTEN`), name their tenant, log in as its role, and are served on
//! the tenant's pool under the same budget, limits and statement rules as the HTTP doors.
//!
//! The same protocol also comes over WebSocket, as Neon's proxy offers it to Neon's serverless
//! driver ([`websocket`], `/v2` on the HTTP listener). Both transports share one [`Door`]: one
//! client limit (`ROUTER_PG_MAX_CLIENTS`), one set of cancel keys, one drain at shutdown, and
//! the same startup, admission and session; they differ in how the tenant is named and the
//! password is proved ([`startup::Transport`]).
//!
//! - [`startup`]: TLS, the startup packet, which tenant;
//! - [`tls`]: the listener's certificate (PEM files, or PEM text from the environment);
//! - [`auth`]: who the client is: SCRAM-SHA-256 ([`scram`]) over TCP, the password inside the
//!   WebSocket's TLS over WebSocket;
//! - [`websocket`]: the WebSocket transport;
//! - [`relay`]: transaction pooling, refusals, limits;
//! - [`settings`]: the settings carried per client;
//! - [`owed`]: what the server still owes a client, COPY and pipelines included;
//! - [`statements`]: named prepared statements, carried from connection to connection;
//! - [`cancel`]: cancel requests, routed to whatever server connection the client holds;
//! - [`server`]: the router's own conversations with a server connection (reset, settings);
//! - [`frame`]: the protocol's messages.

mod auth;
mod cancel;
pub(crate) mod frame;
mod held;
mod owed;
mod relay;
mod scram;
pub(crate) mod server;
mod settings;
mod startup;
mod statements;
mod tls;
pub(crate) mod websocket;

pub(crate) use scram::ServerKeys;
pub use tls::{listener_tls, tls_acceptor, TlsError};

use crate::failed_attempts::ClientAddress;
use crate::state::AppState;
use bytes::BytesMut;
use frame::Notice;
use startup::ClientConn;
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

/// What both transports share: the clients connected now (at most
/// `ROUTER_PG_MAX_CLIENTS`, over TCP and WebSocket together), their cancel keys, and the
/// shutdown they drain on.
pub struct Door {
    state: AppState,
    setup: WireListener,
    cancels: Arc<cancel::CancelKeys>,
    room: Arc<tokio::sync::Semaphore>,
    clients: TaskTracker,
    shutdown: CancellationToken,
}

/// A client's place among the `ROUTER_PG_MAX_CLIENTS`, and its part in the drain: taken
/// before its connection is handed over, so that a drain that starts meanwhile waits for it.
pub(crate) struct Place {
    room: Option<tokio::sync::OwnedSemaphorePermit>,
    _tracked: tokio_util::task::task_tracker::TaskTrackerToken,
}

impl Door {
    pub fn new(state: AppState, setup: WireListener, shutdown: CancellationToken) -> Arc<Self> {
        let room = Arc::new(tokio::sync::Semaphore::new(setup.max_clients));
        let cancels = Arc::new(cancel::CancelKeys::default());
        Arc::new(Self { state, setup, cancels, room, clients: TaskTracker::new(), shutdown })
    }

    /// A place for a new client (with no room left, a place that only refuses it).
    pub(crate) fn place(&self) -> Place {
        Place { room: self.room.clone().try_acquire_owned().ok(), _tracked: self.clients.token() }
    }

    /// Serves one client connection in `place`, from its first byte to its last: refused at
    /// once when the door is full (53300, as PostgreSQL refuses one past `max_connections`),
    /// else its startup, admission and session.
    pub(crate) async fn serve_client(
        &self,
        place: Place,
        mut conn: ClientConn,
        client: ClientAddress,
        encryption: startup::Encryption<'_>,
    ) {
        if place.room.is_none() {
            self.state.metrics.wire_refused_full.inc();
            // Without reading what it sent.
            let full = Notice::fatal("53300", "sorry, too many clients already");
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.refuse(&full)).await;
            return;
        }
        self.state.metrics.wire_clients.inc();
        let result = Box::pin(self.client(conn, client, encryption)).await;
        self.state.metrics.wire_clients.dec();
        match result {
            Ok(()) | Err(WireError::Closed) => {}
            Err(err) => tracing::debug!(client = ?client.0, error = %err, "PostgreSQL client ended"),
        }
        drop(place);
    }

    /// One client connection, from its first byte to its last.
    async fn client(
        &self,
        conn: ClientConn,
        client: ClientAddress,
        encryption: startup::Encryption<'_>,
    ) -> Result<(), WireError> {
        // Boxed, and freed once done: a session (idle most of its life) keeps no room for the
        // startup and authentication it went through.
        let Some((conn, admitted)) = Box::pin(self.open(conn, client, encryption)).await? else {
            return Ok(());
        };
        let (state, shutdown) = (self.state.clone(), self.shutdown.clone());
        relay::Session::new(conn, state, admitted, shutdown, self.setup.idle_transaction_timeout).run().await
    }

    /// A client's startup and admission: its session's start, or `None` when there is none to
    /// run (a cancel request, or a client refused, and told so).
    async fn open(
        &self,
        conn: ClientConn,
        client: ClientAddress,
        encryption: startup::Encryption<'_>,
    ) -> Result<Option<(ClientConn, relay::Admitted)>, WireError> {
        let opening = tokio::time::timeout(STARTUP_TIMEOUT, startup::open(conn, encryption))
            .await
            .map_err(|_| WireError::Closed)??;
        let (mut conn, parameters) = match opening {
            startup::Opening::Cancel { process_id, secret_key } => {
                self.cancels.cancel(process_id, secret_key).await;
                return Ok(None);
            }
            startup::Opening::Startup(conn, parameters) => (conn, parameters),
        };
        let admitted = tokio::time::timeout(
            STARTUP_TIMEOUT,
            begin(&self.state, &mut conn, client, parameters, &self.cancels),
        )
        .await
        .unwrap_or_else(|_| Err(WireError::Refused(Notice::fatal("08006", "authentication timed out"))));
        match admitted {
            Ok(admitted) => Ok(Some((conn, admitted))),
            Err(WireError::Refused(notice)) => {
                conn.refuse(&notice).await;
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Once no new client can come (the listeners have stopped): lets each client finish the
    /// transaction it is in, and returns once all are gone.
    pub async fn drain(&self) {
        self.clients.close();
        self.clients.wait().await;
    }
}

/// Serves PostgreSQL clients on `listener` until the door's shutdown; then stops accepting
/// (the clients connected are drained by [`Door::drain`]).
pub async fn serve(listener: tokio::net::TcpListener, door: Arc<Door>) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = tokio::select! {
            // Once shutdown has begun nobody new is let in, even one already waiting.
            biased;
            () = door.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "PostgreSQL listener: accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let place = door.place();
        let door = door.clone();
        tokio::spawn(async move {
            let conn = ClientConn::new(Box::new(tcp), startup::Transport::Tcp { sni: None });
            let encryption = startup::Encryption {
                tls: door.setup.tls.as_ref(),
                allow_plaintext: door.setup.allow_plaintext,
                router_host: door.setup.router_host.as_deref(),
            };
            door.serve_client(place, conn, ClientAddress(Some(peer.ip())), encryption).await;
        });
    }
    Ok(())
}

/// Admission for a client: its tenant, its role and password, and a first server connection
/// with its settings (whose parameters it is told).
async fn begin(
    state: &AppState,
    conn: &mut ClientConn,
    client: ClientAddress,
    parameters: Vec<(String, String)>,
    cancels: &Arc<cancel::CancelKeys>,
) -> Result<relay::Admitted, WireError> {
    let request = startup::Request::parse(parameters).map_err(WireError::Refused)?;
    let tenant =
        startup::tenant(state, client, &conn.transport, &request).await.map_err(WireError::Refused)?;
    let method = conn.transport.auth_method();
    let authenticated = auth::authenticate(state, conn, client, &tenant, &request.user, method).await?;
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
