//! The router's global connection budget (`ROUTER_MAX_CONNECTIONS`): every server connection,
//! whatever its tenant, holds one permit of a single semaphore from the moment it is opened to
//! the moment it is closed, so the router never has more connections to PostgreSQL than the
//! budget, however many tenants it serves. A connection that cannot get a permit within the
//! checkout timeout is not opened (the request gets 503 `pool_exhausted`).

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::NoTls;

/// A server connection and what it keeps between requests (see [`crate::session`]). Its
/// budget permit is held by the task that drives its socket, so it is given back only when
/// the socket is closed: a connection dropped while PostgreSQL is still sending it a result
/// (its query being cancelled) counts against the budget until then.
pub struct Connection {
    client: tokio_postgres::Client,
    /// Statements prepared on this connection, by SQL text.
    pub statements: crate::session::StatementCache,
    /// Whether the session was reset after its last use. Every checkout hands out a connection
    /// with this `false`; whoever resets it afterwards (as `/sql` does, pipelined behind its
    /// last statement) sets it, and otherwise the next checkout resets it first.
    pub clean: bool,
    /// Must not be reused (its session could not be reset): closed instead of returned.
    pub retire: bool,
}

impl Connection {
    /// The client and the statement cache, borrowed apart (a transaction holds the client
    /// mutably while its queries use the cache).
    pub fn parts(&mut self) -> (&mut tokio_postgres::Client, &mut crate::session::StatementCache) {
        (&mut self.client, &mut self.statements)
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

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// No permit within the checkout timeout: the budget is in use.
    Budget,
    Postgres(tokio_postgres::Error),
}

/// Opens tenant connections within the budget and resets them between requests.
pub struct BudgetedManager {
    config: tokio_postgres::Config,
    budget: Arc<Semaphore>,
    wait: Duration,
    opened: Counter,
}

impl BudgetedManager {
    /// `opened` counts the connections it opens.
    pub fn new(
        config: tokio_postgres::Config,
        budget: Arc<Semaphore>,
        wait: Duration,
        opened: Counter,
    ) -> Self {
        Self { config, budget, wait, opened }
    }
}

impl deadpool::managed::Manager for BudgetedManager {
    type Type = Connection;
    type Error = ConnectError;

    async fn create(&self) -> Result<Connection, ConnectError> {
        let permit = tokio::time::timeout(self.wait, self.budget.clone().acquire_owned())
            .await
            .map_err(|_| ConnectError::Budget)?
            .map_err(|_| ConnectError::Budget)?;
        let (client, connection) = self.config.connect(NoTls).await.map_err(ConnectError::Postgres)?;
        self.opened.inc();
        tokio::spawn(async move {
            let _permit: OwnedSemaphorePermit = permit;
            let _ = connection.await;
        });
        client.batch_execute(crate::session::PREPARE_RESET_CHECK).await.map_err(ConnectError::Postgres)?;
        Ok(Connection { client, statements: Default::default(), clean: false, retire: false })
    }

    async fn recycle(&self, connection: &mut Connection, _: &Metrics) -> RecycleResult<ConnectError> {
        if connection.client.is_closed() || connection.retire {
            return Err(RecycleError::message("connection closed or retired"));
        }
        if !connection.clean {
            crate::session::reset(&connection.client).await.map_err(|e| match e {
                crate::session::ResetError::Postgres(pg) => RecycleError::Backend(ConnectError::Postgres(pg)),
                other => RecycleError::message(other.to_string()),
            })?;
        }
        // Handed out now: whatever the next request does makes it unclean.
        connection.clean = false;
        Ok(())
    }
}

pub type Pool = deadpool::managed::Pool<BudgetedManager>;
pub type Object = deadpool::managed::Object<BudgetedManager>;
