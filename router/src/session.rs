//! What a pooled tenant connection carries between requests, and what it must not.
//!
//! - **Session state must not leak** from one request to the next: [`RESET_SESSION`] runs after
//!   a request that may have changed the session (pipelined behind `/sql`'s last statement, so
//!   it costs no extra round trip) or, when a request could not run it, before the connection
//!   is used again. Which requests may have changed it is the [`ResetPolicy`]'s call.
//! - **Prepared statements are kept**, per connection, keyed by SQL text ([`StatementCache`]):
//!   a repeated query is bound and executed in one round trip on a cached plan. They are
//!   protocol-level statements, which the reset leaves in place; statements a request creates
//!   with SQL `PREPARE` are not, and a connection that has any is retired instead of reused.

use crate::statement::Classification;
use std::collections::HashMap;
use tokio_postgres::{Client, SimpleQueryMessage, Statement};

/// `DISCARD ALL` without `DEALLOCATE ALL` and `DISCARD PLANS` (which would drop the router's
/// own cached statements and tokio-postgres's type lookups), as one multi-statement query:
/// - `BEGIN; ROLLBACK` ends a transaction a request left open, and costs nothing when there is
///   none (a bare `ROLLBACK` would raise a warning, written to the server log, every time);
/// - last, [`PREPARE_RESET_CHECK`]: advisory locks released, and whether the session holds statements
///   prepared with SQL `PREPARE` (the connection is reused only when it does not).
///
/// Its price per request was measured (`bench/RESULTS.md`): utility statements cost PostgreSQL
/// little; a `SELECT` parsed, analysed and planned on every request cost more than all of them
/// together, which is why the check is a statement prepared once per connection.
pub const RESET_SESSION: &str = "BEGIN; ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES; EXECUTE tenancy_reset_check";

/// Prepared (with SQL `PREPARE`, so that a multi-statement query can `EXECUTE` it) in a
/// connection's first reset: releases the session's advisory locks and says whether
/// any other SQL-prepared statement exists (`count(*)`: measured cheaper than `EXISTS`). If a request deallocates it, or prepared a statement of
/// the same name before the first reset, the reset fails and the connection is closed; a
/// request cannot make the router skip it. (A tenant's own code that replaced it with a
/// statement of the same name could only fool the resets of that tenant's own connections.)
pub const PREPARE_RESET_CHECK: &str = "PREPARE tenancy_reset_check AS \
     SELECT pg_advisory_unlock_all(), (SELECT count(*) FROM pg_prepared_statement() s \
     WHERE s.from_sql AND s.name <> 'tenancy_reset_check')";

/// When a connection's session is reset between requests (`ROUTER_SESSION_RESET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ResetPolicy {
    /// After a request one of whose statements can change the session, as the statement
    /// classifier ([`crate::statement`]) judges it from PostgreSQL's own grammar: `SET`,
    /// `PREPARE`, `LISTEN`, cursors, temporary objects, advisory locks, transaction control,
    /// functions not known to be free of such effects, anything it does not recognise. A
    /// plain `SELECT`, `INSERT`, `UPDATE` or `DELETE` costs no reset.
    #[default]
    Auto,
    /// After every request: a second query cycle on PostgreSQL for each one (measured at
    /// 30–55% of the throughput of a point query).
    Always,
}

impl ResetPolicy {
    /// Whether a request classified as `classification` must be followed by a reset.
    pub fn resets_after(self, classification: &crate::statement::Classification) -> bool {
        self == Self::Always || classification.needs_reset()
    }
}

/// Discards the session's sequence cache, which `currval` and `lastval` read: run before a
/// request that reads it, on a connection whose earlier requests (an `INSERT` filling a
/// `serial` column, say) may have filled it without a reset.
pub const DISCARD_SEQUENCES: &str = "DISCARD SEQUENCES";

/// Why a connection cannot be reused.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("session reset failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the session holds statements prepared with SQL PREPARE")]
    SqlPrepared,
    #[error("session reset failed: {0}")]
    Wire(String),
}

/// Runs [`RESET_SESSION`] on `client`, preparing [`PREPARE_RESET_CHECK`] first in the same
/// query unless `check_prepared` (the session's first reset: a connection that never needs
/// one never pays for preparing it).
///
/// # Errors
/// When the reset fails or the session still holds SQL-level prepared statements: the
/// connection must then be closed, not reused.
pub async fn reset(client: &Client, check_prepared: bool) -> Result<(), ResetError> {
    let messages = if check_prepared {
        client.simple_query(RESET_SESSION).await?
    } else {
        client.simple_query(&format!("{PREPARE_RESET_CHECK}; {RESET_SESSION}")).await?
    };
    let sql_prepared = messages.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(1).map(|count| count != "0"),
        _ => None,
    });
    match sql_prepared {
        Some(false) => Ok(()),
        _ => Err(ResetError::SqlPrepared),
    }
}

/// Statements kept per connection; beyond this the least recently used is closed. Every reset
/// lists the session's prepared statements ([`PREPARE_RESET_CHECK`]), at about 0.3 µs each.
pub const STATEMENTS_PER_CONNECTION: usize = 64;

/// A connection's prepared statements by SQL text, each with its classification (so a cached
/// statement costs no classifier lookup), least recently used evicted (dropping a
/// [`Statement`] closes it on the server).
#[derive(Default)]
pub struct StatementCache {
    statements: HashMap<String, (Statement, Classification, u64)>,
    clock: u64,
}

impl StatementCache {
    /// The cached statement for `sql` and its classification, marked as just used.
    pub fn get(&mut self, sql: &str) -> Option<(Statement, Classification)> {
        self.clock += 1;
        let clock = self.clock;
        self.statements.get_mut(sql).map(|(statement, classification, used)| {
            *used = clock;
            (statement.clone(), *classification)
        })
    }

    /// Keeps `statement` for `sql`, evicting the least recently used beyond the limit.
    pub fn insert(&mut self, sql: &str, statement: Statement, classification: Classification) {
        if self.statements.len() >= STATEMENTS_PER_CONNECTION && !self.statements.contains_key(sql) {
            let oldest = self.statements.iter().min_by_key(|(_, (_, _, used))| *used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.statements.remove(&oldest);
            }
        }
        self.clock += 1;
        self.statements.insert(sql.to_owned(), (statement, classification, self.clock));
    }

    /// Forgets `sql` (its table changed shape: PostgreSQL refuses the old plan).
    pub fn remove(&mut self, sql: &str) {
        self.statements.remove(sql);
    }
}

/// Whether `err` says a cached statement no longer fits its tables (a column was added to a
/// `SELECT *` table, say) or is gone: nothing ran, and preparing it again fixes it.
pub fn is_stale_statement(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    err.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::INVALID_SQL_STATEMENT_NAME
            || (db.code() == &SqlState::FEATURE_NOT_SUPPORTED
                && db.message().starts_with("cached plan must not change result type"))
    })
}
