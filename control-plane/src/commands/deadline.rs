//! Bounded waits of the CLI: a command that waits (for a lock, its jobs, a webhook's answer, an
//! event's processing) does so until one deadline, its `--timeout`, and then exits with code 7
//! saying what it was waiting for.

use super::CliError;
use std::future::Future;
use std::time::Duration;
use tenancy::error::ErrorKind;
use tokio::time::Instant;

pub(super) struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    pub(super) fn after(timeout: Duration) -> Self {
        Self { at: Instant::now() + timeout, timeout }
    }

    /// What is left of the time.
    pub(super) fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Runs `work` until the deadline (it is dropped then: a transaction of its rolls back).
    /// `waiting_for` says what did not happen in time.
    pub(super) async fn run<T>(
        &self,
        work: impl Future<Output = Result<T, CliError>>,
        waiting_for: impl FnOnce() -> String,
    ) -> Result<T, CliError> {
        tokio::time::timeout_at(self.at, work).await.unwrap_or_else(|_| Err(self.expired(&waiting_for())))
    }

    pub(super) fn expired(&self, waiting_for: &str) -> CliError {
        CliError::new(
            ErrorKind::TimedOut,
            "timeout",
            format!(
                "timed out after {} (--timeout): {waiting_for}",
                humantime::format_duration(self.timeout)
            ),
        )
    }
}
