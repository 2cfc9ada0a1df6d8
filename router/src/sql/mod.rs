//! `POST /sql`: SQL over HTTP, compatible with the HTTP mode of `@neondatabase/serverless`.
//! The query runs on a connection of the tenant's own pool, logged in as the tenant's role, so
//! PostgreSQL itself keeps it inside the tenant's schema. A request that may only read (a token
//! with a viewer role, see [`crate::identity`]) runs on the pool of the tenant's read-only role,
//! which may only `SELECT`: PostgreSQL refuses its writes whatever statements it sends. An
//! internal user's request is written to the audit log before it runs.

pub mod auth;
pub mod request;
pub mod response;
pub mod values;

use crate::admission::{AdmittedTenant, ResolvedTenant};
use crate::error::RouterError;
use crate::identity::audit::{Access, Door};
use crate::session;
use crate::state::AppState;
use crate::statement::Classification;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use futures::future::Either;
use futures::{pin_mut, TryStreamExt as _};
use request::{to_text_param, Payload, QueryData, TextParam};
use response::{Body, Output};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Statement};

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn flag(headers: &HeaderMap, name: &str) -> bool {
    header(headers, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

pub async fn handle(
    State(state): State<AppState>,
    client: crate::failed_attempts::ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RouterError> {
    let resolved = ResolvedTenant::resolve(&state, client, &headers).await?;
    let pool = state.pools.pool_for(&resolved.tenant).await?;
    let identity = auth::authenticate(&state, client, &headers, &resolved, &pool).await?;
    let read_only = identity.as_ref().is_some_and(|identity| identity.role.read_only());
    let pool = match read_only {
        true => state.pools.pool(&resolved.tenant, crate::pool::Access::ReadOnly).await?,
        false => pool,
    };
    // Only now: an unauthenticated request must not spend the tenant's limit.
    let AdmittedTenant { tenant } = resolved.admit(&state).await?;
    let payload = Payload::parse(&body)?;
    let internal = identity.as_ref().filter(|identity| identity.role.internal());
    let writes = (internal.is_some() || tenant.writes_paused())
        && !read_only
        && may_write(&payload, &state.classifier);
    if let Some(identity) = internal {
        let access = Access::new(identity, &tenant, Door::Sql, writes, "POST /sql".to_owned());
        state.audit.record(access)?;
    }
    // While a move copies the tenant by dump, its writes wait here, without a connection.
    let (tenant, pool) = if tenant.writes_paused() && writes {
        let tenant = state.resolver.hold_writes(crate::resolve::host_of(&headers)?).await?;
        let pool = state.pools.pool_for(&tenant).await?;
        (tenant, pool)
    } else {
        (tenant, pool)
    };
    let output = Output {
        array_mode: flag(&headers, "neon-array-mode"),
        raw_text: flag(&headers, "neon-raw-text-output"),
        max_bytes: state.max_response_bytes,
    };
    let waited = std::time::Instant::now();
    let client = match state.pools.checkout(&pool).await {
        // PostgreSQL refused the pool's password: rotated, and the invalidation is late.
        Err(crate::pool::PoolCheckoutError::AuthFailed) => match state.pools.rebuild(&tenant, &pool).await {
            Some(rebuilt) => state.pools.checkout(&rebuilt).await?,
            None => return Err(crate::pool::PoolCheckoutError::AuthFailed.into()),
        },
        other => other?,
    };
    state.metrics.checkout_wait.observe(waited.elapsed().as_secs_f64());
    // If the client goes away, axum drops this future mid-query: the guard then takes the
    // connection out of the pool (it is never reused) and cancels its query on the server.
    let mut guard = InFlight { client: Some(client), armed: true };
    let deadline = request_deadline(&tenant);
    let mut late = false;
    let result = match guard.client.as_mut() {
        Some(client) => {
            let policy = Policy { reset: state.session_reset, classifier: &state.classifier };
            let run = run_payload(client, payload, read_only, &headers, output, policy);
            match deadline {
                Some(deadline) => tokio::time::timeout(deadline, run).await.unwrap_or_else(|_| {
                    late = true;
                    Err(RouterError::deadline_exceeded(deadline))
                }),
                None => run.await,
            }
        }
        None => Err(RouterError::BadRequest("no connection".into())),
    };
    // A result over the response limit is still being produced and sent, and a request past its
    // deadline is still running: cancel it and close its connection (when the guard drops), as
    // for a client that went away.
    guard.armed = late || matches!(result, Err(RouterError::ResponseTooLarge(_)));
    let body = result?.into_bytes();
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Whether a request's statements may write (not all known to only read).
fn may_write(payload: &Payload, classifier: &crate::statement::Classifier) -> bool {
    !payload.queries().iter().all(|query| classifier.classify(&query.query).read_only)
}

/// How long a request of `tenant` may run once it has its connection: its plan's statement
/// timeout (and a little more, so that PostgreSQL's own timeout of a single statement answers
/// first), whatever the request set its session's `statement_timeout` to. `None` when the plan
/// has none.
fn request_deadline(tenant: &tenancy::catalog::TenantRecord) -> Option<std::time::Duration> {
    let ms = u64::try_from(tenant.statement_timeout_ms?).ok().filter(|ms| *ms > 0)?;
    Some(std::time::Duration::from_millis(ms) + DEADLINE_MARGIN)
}

/// What a request may run past its plan's statement timeout before the router cancels it.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// How a request's session is looked after: when it is reset, and the classifier that tells.
#[derive(Clone, Copy)]
struct Policy<'a> {
    reset: session::ResetPolicy,
    classifier: &'a crate::statement::Classifier,
}

/// Runs the request, then resets the session when the policy says its statements may have
/// changed it: behind a single query's statement in the same round trip, after a
/// transaction's `COMMIT` otherwise. A connection whose reset succeeded (or that needed none)
/// goes back to the pool clean; one whose reset failed is retired.
async fn run_payload(
    client: &mut crate::pool::Checkout,
    payload: Payload,
    read_only: bool,
    headers: &HeaderMap,
    output: Output,
    policy: Policy<'_>,
) -> Result<Body, RouterError> {
    let connection: &mut crate::pool::Connection = client;
    let mut body = Body::new(output.max_bytes);
    let classification = payload
        .queries()
        .iter()
        .map(|query| policy.classifier.classify(&query.query))
        .reduce(Classification::then)
        .unwrap_or(Classification::UNKNOWN);
    if let Some(refused) = classification.not_allowed {
        // Nothing has run (see the statement policy).
        return Err(RouterError::StatementNotAllowed(refused.message()));
    }
    if let Payload::Single(query) = &payload {
        if !read_only {
            return run_single(connection, query, output, policy, &mut body).await.map(|()| body);
        }
    }
    if classification.transaction_control {
        // Nothing has run: a COMMIT would end the router's transaction (and its read-only
        // mode) half-way through.
        return Err(RouterError::StatementNotAllowed(
            "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …) is not allowed in a batch or a \
             read-only request: the router runs these in a transaction of its own",
        ));
    }
    discard_sequence_cache(connection, classification).await?;
    let (isolation, deferrable, batch_read_only) = match &payload {
        Payload::Single(_) => (tokio_postgres::IsolationLevel::ReadCommitted, false, false),
        Payload::Batch { .. } => (
            batch_isolation(header(headers, "neon-batch-isolation-level"))?,
            flag(headers, "neon-batch-deferrable"),
            flag(headers, "neon-batch-read-only"),
        ),
    };
    let (pg, cache) = connection.parts();
    let tx = pg
        .build_transaction()
        .read_only(read_only || batch_read_only)
        .deferrable(deferrable)
        .isolation_level(isolation)
        .start()
        .await
        .map_err(|e| RouterError::from_pg(&e))?;
    let batch = matches!(payload, Payload::Batch { .. });
    if batch {
        body.raw(b"{\"results\":[");
    }
    for (i, query) in payload.queries().iter().enumerate() {
        if i > 0 {
            body.raw(b",");
        }
        run_query(&tx, cache, policy, query, output, &mut body).await?;
    }
    if batch {
        body.raw(b"]}");
    }
    tx.commit().await.map_err(|e| RouterError::from_pg(&e))?;
    let reset = if policy.reset.resets_after(&classification) { connection.reset().await } else { Ok(()) };
    settle(connection, reset, classification.discards_statements);
    Ok(body)
}

/// One statement outside a transaction block. When it may change the session, the reset is
/// pipelined right behind it, so the request still costs one round trip when its statement is
/// cached; otherwise it runs alone.
async fn run_single(
    connection: &mut crate::pool::Connection,
    query: &QueryData,
    output: Output,
    policy: Policy<'_>,
    body: &mut Body,
) -> Result<(), RouterError> {
    let mut retried = false;
    loop {
        let (pg, cache) = connection.parts();
        let (statement, classification) = prepare_cached(&*pg, cache, policy, query).await?;
        discard_sequence_cache(connection, classification).await?;
        let (result, reset) = if policy.reset.resets_after(&classification) {
            let execute = execute(&**connection, &statement, query, classification, output, body);
            let reset = connection.reset();
            pin_mut!(execute, reset);
            // Polled together, so the reset is sent right behind the statement; but a result
            // over the response limit is not waited for to its end (the reset comes after it).
            match futures::future::select(execute, reset).await {
                Either::Left((Err(QueryError::Router(err @ RouterError::ResponseTooLarge(_))), _)) => {
                    return Err(err)
                }
                Either::Left((result, reset)) => (result, reset.await),
                Either::Right((reset, execute)) => (execute.await, reset),
            }
        } else {
            (execute(&**connection, &statement, query, classification, output, body).await, Ok(()))
        };
        match result {
            Err(QueryError::Stale(_)) if !retried => {
                connection.statements.remove(&query.query);
                retried = true;
            }
            Err(QueryError::Stale(err) | QueryError::Router(err)) => {
                settle(connection, reset, classification.discards_statements);
                return Err(err);
            }
            Ok(()) => {
                settle(connection, reset, classification.discards_statements);
                return Ok(());
            }
        }
    }
}

/// Before a request that reads the session's sequence cache (`currval`, `lastval`): discards
/// it, since an earlier request that needed no reset (an `INSERT` filling an identity column)
/// may have filled it.
async fn discard_sequence_cache(
    connection: &crate::pool::Connection,
    classification: Classification,
) -> Result<(), RouterError> {
    if classification.reads_sequence_cache {
        connection.batch_execute(session::DISCARD_SEQUENCES).await.map_err(|e| RouterError::from_pg(&e))?;
    }
    Ok(())
}

/// Marks the connection clean when its reset succeeded, or to be retired: when the reset
/// failed, or the request ran `DEALLOCATE` / `DISCARD` (which drop the connection's cached
/// statements behind the client's back).
fn settle(connection: &mut crate::pool::Connection, reset: Result<(), session::ResetError>, discards: bool) {
    match reset {
        Ok(()) if !discards => connection.clean = true,
        Ok(()) => connection.retire = true,
        Err(err) => {
            tracing::debug!(error = %err, "retiring a connection whose session could not be reset");
            connection.retire = true;
        }
    }
}

/// A checked-out connection while its request runs. Dropped while still armed (the client went
/// away and axum dropped the request, or the result passed the response limit), it leaves the
/// pool for good and its query is cancelled,
/// so a late cancel can never hit another request's query on a reused connection. A connection
/// marked to be retired leaves the pool too.
struct InFlight {
    client: Option<crate::pool::Checkout>,
    armed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if self.armed {
            let cancel = client.cancel_query();
            client.close();
            tracing::debug!(
                "request ended early (client gone, result over the limit, or past its deadline); cancelling its query"
            );
            tokio::spawn(cancel);
        } else if client.retire {
            client.close();
        }
    }
}

fn batch_isolation(raw: Option<&str>) -> Result<tokio_postgres::IsolationLevel, RouterError> {
    use tokio_postgres::IsolationLevel as L;
    Ok(match raw {
        None | Some("ReadCommitted") => L::ReadCommitted,
        Some("Serializable") => L::Serializable,
        Some("RepeatableRead") => L::RepeatableRead,
        Some("ReadUncommitted") => L::ReadUncommitted,
        Some(other) => {
            return Err(RouterError::BadRequest(format!(
                "unknown Neon-Batch-Isolation-Level {other:?} (Serializable, RepeatableRead, ReadCommitted, ReadUncommitted)"
            )))
        }
    })
}

/// The command word of a statement (`SELECT`, `INSERT`, …), as node-postgres reports it.
fn command_of(query: &str) -> String {
    let mut rest = query.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_uppercase()
}

/// Why a statement did not run.
enum QueryError {
    /// The cached statement no longer fits its tables (or is gone): nothing ran; prepare again.
    Stale(RouterError),
    Router(RouterError),
}

impl From<RouterError> for QueryError {
    fn from(err: RouterError) -> Self {
        Self::Router(err)
    }
}

/// The connection's statement for `query` and its classification, prepared (and classified)
/// now if it has none.
async fn prepare_cached(
    client: &impl GenericClient,
    cache: &mut session::StatementCache,
    policy: Policy<'_>,
    query: &QueryData,
) -> Result<(Statement, Classification), RouterError> {
    if let Some(cached) = cache.get(&query.query) {
        return Ok(cached);
    }
    let classification = policy.classifier.classify(&query.query);
    let statement = client.prepare(&query.query).await.map_err(|e| RouterError::from_pg(&e))?;
    cache.insert(&query.query, statement.clone(), classification);
    Ok((statement, classification))
}

/// One statement of a transaction, on the connection's cached statement (prepared again once
/// if the cached one went stale).
async fn run_query(
    client: &impl GenericClient,
    cache: &mut session::StatementCache,
    policy: Policy<'_>,
    query: &QueryData,
    output: Output,
    body: &mut Body,
) -> Result<(), RouterError> {
    let (statement, classification) = prepare_cached(client, cache, policy, query).await?;
    match execute(client, &statement, query, classification, output, body).await {
        Ok(()) => Ok(()),
        Err(QueryError::Router(err)) => Err(err),
        Err(QueryError::Stale(_)) => {
            cache.remove(&query.query);
            let (statement, classification) = prepare_cached(client, cache, policy, query).await?;
            execute(client, &statement, query, classification, output, body).await.map_err(|e| match e {
                QueryError::Router(err) | QueryError::Stale(err) => err,
            })
        }
    }
}

/// Binds and executes a prepared statement (results in text format), writing its result into
/// `body` as Neon's driver expects it. Nothing is written unless the statement started (a stale
/// one can be retried).
async fn execute(
    client: &impl GenericClient,
    statement: &Statement,
    query: &QueryData,
    classification: Classification,
    output: Output,
    body: &mut Body,
) -> Result<(), QueryError> {
    if statement.params().len() != query.params.len() {
        return Err(QueryError::Router(RouterError::BadRequest(format!(
            "bind message supplies {} parameters, but prepared statement requires {}",
            query.params.len(),
            statement.params().len()
        ))));
    }
    let pg_error = |e: tokio_postgres::Error| {
        if session::is_stale_statement(&e) {
            QueryError::Stale(RouterError::from_pg(&e))
        } else {
            QueryError::Router(RouterError::from_pg(&e))
        }
    };
    let params: Vec<TextParam> = query.params.iter().map(to_text_param).collect();
    // Results in text format: every value is PostgreSQL's own text output (see `values`).
    let stream = client
        .query_raw_text(statement, params.iter().map(|p| p as &(dyn ToSql + Sync)))
        .await
        .map_err(pg_error)?;
    pin_mut!(stream);
    let array_mode = query.array_mode.unwrap_or(output.array_mode);
    let columns = statement.columns();
    match classification.command {
        Some(command) => body.begin_result(command),
        None => body.begin_result(&command_of(&query.query)),
    }
    let mut rows = 0usize;
    while let Some(row) = stream.try_next().await.map_err(|e| QueryError::Router(RouterError::from_pg(&e)))? {
        body.begin_row(rows, array_mode);
        for (i, column) in columns.iter().enumerate() {
            body.begin_cell(i, column, array_mode);
            let raw: Option<values::Raw<'_>> = row.try_get(i).map_err(|e| RouterError::from_pg(&e))?;
            match raw {
                None => body.raw(b"null"),
                Some(text) => body
                    .text_value(column.type_(), text.0, output.raw_text)
                    .map_err(|e| RouterError::BadRequest(format!("column {:?}: {e}", column.name())))?,
            }
        }
        body.end_row(array_mode)?;
        rows += 1;
    }
    let row_count = stream.rows_affected().unwrap_or(rows as u64);
    body.end_result(columns, row_count, array_mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::command_of;

    #[test]
    fn command_words() {
        assert_eq!(command_of("select 1"), "SELECT");
        assert_eq!(command_of("  -- note\n/* x */ insert into t values (1)"), "INSERT");
        assert_eq!(command_of("WITH x AS (select 1) select * from x"), "WITH");
    }
}
