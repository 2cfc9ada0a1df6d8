//! A server connection of a tenant pool, and what it carries between requests.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// A server connection, logged in as its tenant's role, and what it keeps between requests
/// (see [`crate::session`]).
pub struct Connection {
    client: tokio_postgres::Client,
    /// The TLS it was opened with, which its cancel requests use too.
    tls: tenancy::pg::Tls,
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

impl Connection {
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

    /// A request to cancel the query running now on this connection (over TLS, as the
    /// connection is), for the caller to await or spawn.
    pub(crate) fn cancel_query(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (token, tls) = (self.client.cancel_token(), self.tls.clone());
        async move {
            let _ = token.cancel_query(tls).await;
        }
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

/// Opens a connection with `config`. `on_socket_closed` runs once its socket is closed (when
/// PostgreSQL has let go of it: a connection dropped mid-query counts until then), unless the
/// connection's unit was handed over meanwhile.
pub(crate) async fn open(
    config: &tenancy::pg::PgConfig,
    on_socket_closed: impl FnOnce() + Send + 'static,
) -> Result<Connection, tokio_postgres::Error> {
    let (client, connection) = config.connect().await?;
    let unit = Arc::new(AtomicU8::new(HELD));
    let socket_unit = unit.clone();
    tokio::spawn(async move {
        let _ = connection.await;
        if socket_unit.compare_exchange(HELD, RELEASED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            on_socket_closed();
        }
    });
    Ok(Connection {
        client,
        tls: config.tls(),
        statements: Default::default(),
        clean: true,
        retire: false,
        unit,
        reset_before: AtomicBool::new(false),
    })
}
