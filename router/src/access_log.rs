//! What each tenant request did, for operators: a latency histogram by route and status class
//! (`tenant_router_request_duration_seconds`, every request), and an access log line (tenant,
//! method, route, status, duration, bytes) for a sample of requests and for every server
//! error. The line is a `tracing` event (target `tenant_router::access`): a JSON object per line
//! with `LOG_FORMAT=json`, filtered like any other with `RUST_LOG`.
//!
//! Sampled, because a line per request is a write to stderr per request: at thousands of
//! requests a second that costs more than the router's own work on them.
//! `ROUTER_ACCESS_LOG_SAMPLE=1` logs every request; `0` only server errors.
//!
//! A PostgreSQL session (over TCP, or over WebSocket at `/v2`) gets a line of its own when it
//! ends, every one of them, as PgBouncer logs each disconnection: tenant, route, how long it
//! lasted, the transactions it ran, and how it ended. (Its `/v2` upgrade request is an HTTP
//! request like any other, answered 101.)

use crate::metrics::{RequestLabels, StatusLabels};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

tokio::task_local! {
    /// The tenant of the request being served (set by admission once it is known).
    static TENANT: RefCell<Option<Arc<str>>>;
}

/// Notes the tenant of the request being served, for its access log line.
pub(crate) fn note_tenant(slug: &str) {
    let _ = TENANT.try_with(|tenant| *tenant.borrow_mut() = Some(Arc::from(slug)));
}

/// Which requests get a line: `fraction` of them, spread evenly (the n-th request is logged
/// when `floor(n × fraction)` moves on), and every server error.
#[derive(Debug)]
pub struct Sampler {
    fraction: f64,
    seen: AtomicU64,
}

impl Sampler {
    /// `fraction` (0 to 1) of requests.
    pub fn new(fraction: f64) -> Self {
        Self { fraction: fraction.clamp(0.0, 1.0), seen: AtomicU64::new(0) }
    }

    fn pick(&self, status: u16) -> bool {
        if status >= 500 {
            return true;
        }
        if self.fraction <= 0.0 {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.fraction).floor() > (n * self.fraction).floor()
    }
}

/// A fraction of requests, 0 to 1 (a clap value parser for `ROUTER_ACCESS_LOG_SAMPLE`).
pub fn parse_fraction(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a fraction from 0 to 1 (e.g. 0.01), got {raw:?}")),
    }
}

/// The route a request took: `/sql`, `/v2` (PostgreSQL over WebSocket) or `proxy` (any other
/// path: the reverse proxy). Never the concrete path.
fn route(request: &Request) -> &'static str {
    match request.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some("/sql") => "sql",
        Some("/v2") => "v2",
        _ => "proxy",
    }
}

/// Times a tenant request, counts it by status class and route, and logs it when sampled.
pub(crate) async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route(&request);
    let method = request.method().clone();
    let bytes_in = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let cell = RefCell::new(None);
    let (response, tenant) = TENANT
        .scope(cell, async {
            let response = next.run(request).await;
            (response, TENANT.with(|tenant| tenant.borrow_mut().take()))
        })
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let class = StatusLabels::of(status).status;
    state.metrics.requests.get_or_create(&StatusLabels { status: class }).inc();
    state
        .metrics
        .request_duration
        .get_or_create(&RequestLabels { route, status: class })
        .observe(elapsed.as_secs_f64());
    if state.access_log.pick(status) {
        let bytes_out = axum::body::HttpBody::size_hint(response.body()).exact();
        tracing::info!(
            target: "tenant_router::access",
            tenant = tenant.as_deref().unwrap_or("-"),
            method = %method,
            route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            bytes_in,
            bytes_out,
            "request"
        );
    }
    response
}

/// What a PostgreSQL session's access log line says: how long it lasted (from its login),
/// the transactions it ran, how it ended.
#[derive(Debug)]
pub(crate) struct SessionLog {
    started: Instant,
    pub(crate) transactions: u64,
    /// The SQLSTATE the router ended the session with (told the client), if it did.
    pub(crate) ended_by: Option<&'static str>,
}

impl Default for SessionLog {
    fn default() -> Self {
        Self { started: Instant::now(), transactions: 0, ended_by: None }
    }
}

impl SessionLog {
    /// Logs the end of `tenant`'s session (every one), over WebSocket (`v2`) or the PostgreSQL
    /// listener (`postgres`), which ended with `result`. `ended`: `closed` (by the client),
    /// `ended_by_router` (told why: `error`, e.g. 57P01 at shutdown or its tenant gone, 25P03
    /// idle in a transaction too long), `broken` (the connection failed) or
    /// `protocol_violation` (08P01).
    pub(crate) fn ended(&self, tenant: &str, websocket: bool, result: &Result<(), crate::wire::WireError>) {
        use crate::wire::WireError;
        let ended = match result {
            Ok(()) | Err(WireError::Closed) if self.ended_by.is_none() => "closed",
            Ok(()) | Err(WireError::Closed | WireError::Refused(_)) => "ended_by_router",
            Err(WireError::Io(_)) => "broken",
            Err(WireError::Protocol(_)) => "protocol_violation",
        };
        tracing::info!(
            target: "tenant_router::access",
            tenant,
            route = if websocket { "v2" } else { "postgres" },
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            transactions = self.transactions,
            ended,
            error = self.ended_by,
            "session"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_takes_one_request_in_n_and_every_server_error() {
        let all = Sampler::new(1.0);
        assert!((0..10).all(|_| all.pick(200)));
        let tenth = Sampler::new(0.1);
        assert_eq!((0..100).filter(|_| tenth.pick(200)).count(), 10);
        let two_thirds = Sampler::new(0.67);
        assert_eq!((0..300).filter(|_| two_thirds.pick(200)).count(), 201);
        let hundredth = Sampler::new(0.01);
        assert_eq!((0..150).filter(|_| hundredth.pick(200)).count(), 1);
        let none = Sampler::new(0.0);
        assert!(!none.pick(404) && none.pick(500) && none.pick(503));
        assert_eq!(parse_fraction("0.01"), Ok(0.01));
        assert!(
            parse_fraction("2").is_err() && parse_fraction("-0.1").is_err() && parse_fraction("x").is_err()
        );
    }
}
