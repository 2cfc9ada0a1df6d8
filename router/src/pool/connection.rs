//! A server connection of a tenant pool, and what it carries between requests.
//!
//! A connection is opened for one of the router's two kinds of door ([`Door`]): the HTTP doors
//! run queries on it through tokio-postgres; the PostgreSQL-protocol door ([`crate::wire`])
//! relays its clients' messages over its socket ([`ServerSocket`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// Which door a pool's connections serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Door {
    /// `POST /sql`, the reverse proxy and the embedded library: queries through tokio-postgres.
    #[serde(rename = "http")]
    Http,
    /// The PostgreSQL protocol: the client's own messages, relayed on the socket.
    #[serde(rename = "postgres")]
    Wire,
}

/// The socket of a connection opened for the PostgreSQL-protocol door, after startup.
pub struct ServerSocket {
    pub(crate) stream: tokio_postgres::MaybeTlsStream<
        tokio_postgres::Socket,
        tenancy::pg::PgTlsStream<tokio_postgres::Socket>,
    >,
    /// Bytes read from the server and not yet relayed.
    pub(crate) read_buf: bytes::BytesMut,
    /// The server parameters as reported at startup (`server_version`, `TimeZone`, ...).
    pub(crate) parameters: HashMap<String, String>,
    /// Set once reading or writing failed: the connection is closed, not reused.
    pub(crate) broken: bool,
    /// The client settings applied to the session since its last reset (see
    /// [`crate::wire`]), as the fingerprint of their SQL.
    pub(crate) applied_settings: Option<u64>,
    /// The statements prepared on it under server names (see [`crate::wire`]).
    pub(crate) prepared: std::collections::HashSet<Arc<str>>,
    /// Gives the budget unit back when the socket is dropped.
    _unit: SocketUnit,
}

/// A server connection, logged in as its tenant's role, and what it keeps between requests
/// (see [`crate::session`]).
pub struct Connection {
    /// For a [`Door::Wire`] connection, only its cancel token is used: its socket is `wire`.
    client: tokio_postgres::Client,
    /// Boxed: a connection moves (into the pool, out to a client) far more often than one is
    /// opened, and a client's future keeps room for it.
    wire: Option<Box<ServerSocket>>,
    /// What cancels its queries (over the TLS it was opened with), made once: a client of the
    /// PostgreSQL door is handed it with each transaction.
    canceller: Canceller,
    /// Statements prepared on this connection, by SQL text.
    pub statements: crate::session::StatementCache,
    /// Whether the session is known to be as fresh as a new one. Every checkout hands out a
    /// connection with this `false`; whoever resets it afterwards (or knows that its request
    /// could not change the session) sets it, and otherwise the next checkout resets it first.
    pub(crate) clean: bool,
    /// Must not be reused (its session could not be reset): closed instead of given back.
    pub(crate) retire: bool,
    /// Who gives this connection's budget unit back (see the `unit` states below).
    unit: Arc<AtomicU8>,
    /// For an HTTP door's connection: fires once its tokio-postgres connection has ended.
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Whether a reset ran on it yet (the first prepares the reset's check).
    reset_before: AtomicBool,
}

/// The owner of a connection's budget unit, decided once (compare-and-swap), so a unit is
/// never given back twice: while [`HELD`], the socket gives it back when it closes; a
/// connection closed to make room hands it over to another (only if its socket has not given
/// it back already, which a connection PostgreSQL closed while idle has).
mod unit {
    pub(super) const HELD: u8 = 0;
    pub(super) const RELEASED: u8 = 1;
    pub(super) const HANDED_OVER: u8 = 2;
}
use unit::{HANDED_OVER, HELD, RELEASED};

/// Cancels the query running on a connection (a cancel request on a connection of its own).
#[derive(Clone)]
pub(crate) struct Canceller(Arc<(tokio_postgres::CancelToken, tenancy::pg::Tls)>);

impl Canceller {
    pub(crate) async fn cancel(self) {
        let (token, tls) = &*self.0;
        let _ = token.cancel_query(tls.clone()).await;
    }
}

/// Gives a connection's budget unit back when its socket closes (dropped with it), unless the
/// unit was handed over meanwhile.
struct SocketUnit {
    unit: Arc<AtomicU8>,
    on_closed: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for SocketUnit {
    fn drop(&mut self) {
        if self.unit.compare_exchange(HELD, RELEASED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            if let Some(on_closed) = self.on_closed.take() {
                on_closed();
            }
        }
    }
}

impl Connection {
    /// Whether the connection can no longer be used: its socket is closed, or (for the
    /// PostgreSQL-protocol door) relaying on it failed.
    pub fn is_closed(&self) -> bool {
        match &self.wire {
            Some(socket) => socket.broken,
            None => self.client.is_closed(),
        }
    }

    /// The socket of a [`Door::Wire`] connection (`None` for an HTTP door's).
    pub(crate) fn socket(&mut self) -> Option<&mut ServerSocket> {
        self.wire.as_deref_mut()
    }

    /// The client and the statement cache, borrowed apart (a transaction holds the client
    /// mutably while its queries use the cache).
    pub fn parts(&mut self) -> (&mut tokio_postgres::Client, &mut crate::session::StatementCache) {
        (&mut self.client, &mut self.statements)
    }

    /// Resets the session (see [`crate::session::reset`]).
    ///
    /// # Errors
    /// When the connection must be closed instead of reused.
    pub(crate) async fn reset(&self) -> Result<(), crate::session::ResetError> {
        crate::session::reset(&self.client, self.reset_before.load(Ordering::Acquire)).await?;
        self.reset_before.store(true, Ordering::Release);
        Ok(())
    }

    /// Resets the session between uses, as its door does it.
    pub(crate) async fn reset_session(&mut self) -> Result<(), crate::session::ResetError> {
        match &mut self.wire {
            Some(socket) => crate::wire::server::reset(socket).await,
            None => self.reset().await,
        }
    }

    /// A request to cancel the query running now on this connection (over TLS, as the
    /// connection is), for the caller to await or spawn.
    pub(crate) fn cancel_query(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.canceller().cancel()
    }

    /// What cancels the query running on this connection, whenever that is.
    pub(crate) fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// Takes this connection's budget unit for another connection; the caller closes this one.
    /// `false` when its socket has closed and given the unit back already.
    #[must_use]
    pub(crate) fn hand_over_unit(&self) -> bool {
        self.unit.compare_exchange(HELD, HANDED_OVER, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

impl std::ops::Deref for Connection {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
    }
}

/// Opens a connection with `config` for `door`. `on_socket_closed` runs once its socket is
/// closed (when PostgreSQL has let go of it: a connection dropped mid-query counts until then),
/// unless the connection's unit was handed over meanwhile.
pub(crate) async fn open(
    config: &tenancy::pg::PgConfig,
    door: Door,
    on_socket_closed: impl FnOnce() + Send + Sync + 'static,
) -> Result<Connection, tokio_postgres::Error> {
    let (client, connection) = config.connect().await?;
    let unit = Arc::new(AtomicU8::new(HELD));
    let socket_unit = SocketUnit { unit: unit.clone(), on_closed: Some(Box::new(on_socket_closed)) };
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    let wire = match door {
        Door::Http => {
            tokio::spawn(async move {
                let _ = connection.await;
                drop(socket_unit);
                let _ = ended_tx.send(());
            });
            None
        }
        Door::Wire => {
            let raw = connection.into_raw();
            Some(Box::new(ServerSocket {
                stream: raw.stream,
                read_buf: raw.read_buf,
                parameters: raw.parameters,
                broken: false,
                applied_settings: None,
                prepared: std::collections::HashSet::new(),
                _unit: socket_unit,
            }))
        }
    };
    let canceller = Canceller(Arc::new((client.cancel_token(), config.tls())));
    Ok(Connection {
        client,
        wire,
        canceller,
        statements: Default::default(),
        clean: true,
        retire: false,
        unit,
        ended: (door == Door::Http).then_some(ended),
        reset_before: AtomicBool::new(false),
    })
}

/// How long closing a connection waits for PostgreSQL to let go of it.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl ServerSocket {
    /// Ends the session (`Terminate`) and waits, a little, until PostgreSQL closes its end: the
    /// backend is gone (out of `pg_stat_activity`) when the budget unit is given back.
    async fn close(mut self) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            self.stream.write_all(&[b'X', 0, 0, 0, 4]).await?;
            let mut sink = vec![0u8; 4096];
            while self.stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    }
}

impl Connection {
    /// Closes the connection, and returns once PostgreSQL has let go of it (or a short while
    /// has passed).
    pub(crate) async fn close(mut self) {
        let socket = self.wire.take();
        let ended = self.ended.take();
        drop(self);
        if let Some(socket) = socket {
            socket.close().await;
        }
        if let Some(ended) = ended {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ended).await;
        }
    }
}

impl Drop for Connection {
    /// A PostgreSQL-door connection dropped is closed politely in the background, its unit
    /// given back once the server has let go (see [`ServerSocket::close`]).
    fn drop(&mut self) {
        if let Some(socket) = self.wire.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(socket.close());
            }
        }
    }
}
