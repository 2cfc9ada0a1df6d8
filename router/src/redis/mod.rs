//! The router's use of Redis, which is an optimisation and never a dependency: every call has a
//! short timeout, and after a failure Redis is left alone for a moment, so a Redis that is away
//! costs requests nothing.
//!
//! - [`routes`]: routing records shared by every router (the second cache layer);
//! - plan rate limits that hold across routers ([`crate::rate_limit`]) keep their state here.

pub mod routes;

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Longest a call waits for Redis before the router does without it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);

/// How long Redis is left alone after a call failed or timed out.
const COOL_DOWN: Duration = Duration::from_secs(1);

/// One connection to Redis shared by the router's uses of it, made on first use (Redis may be
/// down when the router starts). While one request makes it, the others do without Redis
/// rather than queue behind it.
pub struct RedisLink {
    client: redis::Client,
    connection: RwLock<Option<redis::aio::ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    /// Until when Redis is not tried (after a failure).
    resting_until: Mutex<Option<Instant>>,
}

impl RedisLink {
    pub fn new(client: redis::Client) -> Self {
        Self {
            client,
            connection: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            resting_until: Mutex::new(None),
        }
    }

    fn resting(&self) -> bool {
        let until = self.resting_until.lock().unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    /// After a failure: no call for [`COOL_DOWN`] (the connection reconnects by itself).
    fn failed(&self) {
        *self.resting_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + COOL_DOWN);
    }

    /// A connection, unless Redis is resting, being connected to by another request, or cannot
    /// be reached in time.
    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        if self.resting() {
            return None;
        }
        if let Some(connection) = self.connection.read().unwrap_or_else(PoisonError::into_inner).clone() {
            return Some(connection);
        }
        let _connecting = self.connecting.try_lock().ok()?;
        if self.resting() {
            return None;
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(0);
        let made = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            redis::aio::ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await;
        if let Ok(Ok(connection)) = made {
            *self.connection.write().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
            Some(connection)
        } else {
            self.failed();
            None
        }
    }

    /// Runs `command`, or `None` when Redis is resting, away, or late.
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let mut connection = self.connection().await?;
        self.settle(command.query_async(&mut connection)).await
    }

    /// Runs `script` with its keys and arguments (EVALSHA, loading it when Redis lacks it).
    pub async fn run<T: redis::FromRedisValue>(&self, script: &redis::ScriptInvocation<'_>) -> Option<T> {
        let mut connection = self.connection().await?;
        self.settle(script.invoke_async(&mut connection)).await
    }

    /// The answer of `call` within [`REDIS_TIMEOUT`]; a failure or a late answer rests Redis.
    async fn settle<T>(&self, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        if let Ok(Ok(value)) = tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Some(value)
        } else {
            self.failed();
            None
        }
    }
}
