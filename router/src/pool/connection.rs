//! A server connection of a tenant pool, and what it carries between requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_postgres::NoTls;

/// A server connection, logged in as its tenant's role, and what it keeps between requests
/// (see [`crate::session`]).
pub struct Connection {
    client: tokio_postgres::Client,
    /// Statements prepared on this connection, by SQL text.
    pub statements: crate::session::StatementCache,
    /// Whether the session is known to be as fresh as a new one. Every checkout hands out a
    /// connection with this `false`; whoever resets it afterwards (or knows that its request
    /// could not change the session) sets it, and otherwise the next checkout resets it first.
    pub clean: bool,
    /// Must not be reused (its session could not be reset): closed instead of given back.
    pub retire: bool,
    /// Set when this connection's budget unit was handed to another connection: its socket
    /// then closes without giving the unit back.
    handed_over: Arc<AtomicBool>,
}

impl Connection {
    /// The client and the statement cache, borrowed apart (a transaction holds the client
    /// mutably while its queries use the cache).
    pub fn parts(&mut self) -> (&mut tokio_postgres::Client, &mut crate::session::StatementCache) {
        (&mut self.client, &mut self.statements)
    }

    /// Marks this connection's budget unit as taken over by another; the caller closes it.
    pub(crate) fn hand_over_unit(&self) {
        self.handed_over.store(true, Ordering::Release);
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
    config: &tokio_postgres::Config,
    on_socket_closed: impl FnOnce() + Send + 'static,
) -> Result<Connection, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let handed_over = Arc::new(AtomicBool::new(false));
    let unit = handed_over.clone();
    tokio::spawn(async move {
        let _ = connection.await;
        if !unit.load(Ordering::Acquire) {
            on_socket_closed();
        }
    });
    if let Err(err) = client.batch_execute(crate::session::PREPARE_RESET_CHECK).await {
        // The caller gives the unit back for a connection that failed to open.
        handed_over.store(true, Ordering::Release);
        return Err(err);
    }
    Ok(Connection { client, statements: Default::default(), clean: true, retire: false, handed_over })
}
