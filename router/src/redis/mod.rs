//! The router's use of Redis, which is an optimisation and never a dependency: every call has a
//! short timeout, and after a failure Redis is left alone for a moment, so a Redis that is away
//! costs requests nothing.
//!
//! - [`routes`]: routing records shared by every router (the second cache layer);
//! - [`limits`]: plan rate limits that hold across routers.

pub mod limits;
pub mod routes;

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest a call waits for Redis before the router does without it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);

/// How long Redis is left alone after a call failed or timed out.
const COOL_DOWN: Duration = Duration::from_secs(1);

/// One connection to Redis shared by the router's uses of it, made on first use (Redis may be
/// down when the router starts) and remade after a failure.
pub struct RedisLink {
    client: redis::Client,
    state: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    /// Until when Redis is not tried (after a failure).
    resting_until: Mutex<Option<Instant>>,
}

impl RedisLink {
    pub fn new(client: redis::Client) -> Self {
        Self { client, state: tokio::sync::Mutex::new(None), resting_until: Mutex::new(None) }
    }

    fn resting(&self) -> bool {
        let until = self.resting_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    /// After a failure: no call for [`COOL_DOWN`], then a fresh connection.
    fn failed(&self) {
        *self.resting_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Instant::now() + COOL_DOWN);
    }

    /// A connection, unless Redis is resting or cannot be reached in time.
    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        if self.resting() {
            return None;
        }
        let mut state = self.state.lock().await;
        if state.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(0);
            let made = tokio::time::timeout(
                REDIS_TIMEOUT * 2,
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await;
            match made {
                Ok(Ok(connection)) => *state = Some(connection),
                _ => {
                    self.failed();
                    return None;
                }
            }
        }
        state.clone()
    }

    /// Runs `command`, or `None` when Redis is resting, away, or late.
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, command.query_async(&mut connection)).await {
            Ok(Ok(value)) => Some(value),
            _ => {
                self.failed();
                None
            }
        }
    }

    /// Runs `script` with its keys and arguments (EVALSHA, loading it when Redis lacks it).
    pub async fn run<T: redis::FromRedisValue>(&self, script: &redis::ScriptInvocation<'_>) -> Option<T> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, script.invoke_async(&mut connection)).await {
            Ok(Ok(value)) => Some(value),
            _ => {
                self.failed();
                None
            }
        }
    }
}
