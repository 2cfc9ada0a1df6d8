//! The router benchmark's baseline: the same `POST /sql` point query served by a minimal axum
//! handler on one fixed deadpool-postgres pool: no host resolution, no per-tenant pools, no
//! authentication, no session reset, statements prepared once per connection and cached.
//! Whatever the router costs beyond this is its overhead.
//!
//! With `BASELINE_RESET=1` it also resets each request's session exactly as the router does
//! (`tenant_router::session::reset`, pipelined behind the query): what is left between that
//! and the router is the cost of routing, not of the reset.
//!
//! With `BASELINE_TENANTS` (a file of `host database-url pool-size` lines) it serves each
//! `Host` from a pool of its own, logged in as that tenant's role (the same dedicated pools as
//! the router, without resolution, authentication, rate limits or a budget), and
//! `BASELINE_RESET=auto` resets only after a statement the router's classifier says can change
//! the session: the same work as the router's, minus the routing.
//!
//! Started by the `router-throughput` benchmark with `BASELINE_DATABASE_URL` (or
//! `BASELINE_TENANTS`), `BASELINE_LISTEN`, `BASELINE_POOL_SIZE` and `BASELINE_RESET`
//! (`0`, `1` = always, `auto`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::{json, Map, Value};
use tokio_postgres::types::{ToSql, Type};

#[derive(serde::Deserialize)]
struct Query {
    query: String,
    #[serde(default)]
    params: Vec<Value>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reset {
    Never,
    Always,
    /// When the router's classifier says the statement can change the session.
    Auto,
}

#[derive(Clone)]
struct Baseline {
    /// The one pool, or a pool per tenant by host.
    pools: std::sync::Arc<std::collections::HashMap<String, Pool>>,
    single: Option<Pool>,
    reset: Reset,
    classifier: tenant_router::statement::Classifier,
}

async fn sql(
    State(state): State<Baseline>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Query>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let fail = |e: &dyn std::fmt::Display| (StatusCode::BAD_REQUEST, e.to_string());
    let pool = match &state.single {
        Some(pool) => pool,
        None => {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
            state.pools.get(host).ok_or((StatusCode::NOT_FOUND, format!("no tenant {host}")))?
        }
    };
    let client = pool.get().await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let statement = client.prepare_cached(&body.query).await.map_err(|e| fail(&e))?;
    let params: Vec<i64> = body.params.iter().map(|p| p.as_i64().unwrap_or_default()).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let reset = match state.reset {
        Reset::Never => false,
        Reset::Always => true,
        Reset::Auto => state.classifier.classify(&body.query).needs_reset(),
    };
    let rows = if reset {
        let (rows, reset) =
            futures::join!(client.query(&statement, &refs), tenant_router::session::reset(&client, true));
        reset.map_err(|e| fail(&e))?;
        rows
    } else {
        client.query(&statement, &refs).await
    }
    .map_err(|e| fail(&e))?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut object = Map::new();
            for (i, column) in row.columns().iter().enumerate() {
                let value = match *column.type_() {
                    Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| json!(v.to_string())),
                    Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| json!(v)),
                    Type::TEXT | Type::VARCHAR => row.get::<_, Option<String>>(i).map(Value::String),
                    Type::TIMESTAMPTZ => {
                        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(i).map(|v| json!(v.to_rfc3339()))
                    }
                    _ => None,
                };
                object.insert(column.name().to_owned(), value.unwrap_or(Value::Null));
            }
            Value::Object(object)
        })
        .collect();
    Ok(Json(json!({ "rowCount": rows.len(), "rows": rows })))
}

fn pool(url: &str, size: usize, reset: Reset) -> Pool {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let mut builder = Pool::builder(manager).max_size(size);
    if reset != Reset::Never {
        builder = builder.post_create(Hook::async_fn(|client, _| {
            Box::pin(async move {
                client
                    .batch_execute(tenant_router::session::PREPARE_RESET_CHECK)
                    .await
                    .map_err(HookError::Backend)
            })
        }));
    }
    builder.build().unwrap()
}

#[tokio::main]
async fn main() {
    let listen = std::env::var("BASELINE_LISTEN").expect("BASELINE_LISTEN");
    let reset = match std::env::var("BASELINE_RESET").unwrap_or_default().as_str() {
        "1" | "always" => Reset::Always,
        "auto" => Reset::Auto,
        _ => Reset::Never,
    };
    let mut pools = std::collections::HashMap::new();
    let mut single = None;
    if let Ok(path) = std::env::var("BASELINE_TENANTS") {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let mut fields = line.split_whitespace();
            let (host, url, size) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
            pools.insert(host.to_owned(), pool(url, size.parse().unwrap(), reset));
        }
    } else {
        let url = std::env::var("BASELINE_DATABASE_URL").expect("BASELINE_DATABASE_URL");
        let size: usize = std::env::var("BASELINE_POOL_SIZE").expect("BASELINE_POOL_SIZE").parse().unwrap();
        single = Some(pool(&url, size, reset));
    }
    let app = axum::Router::new()
        .route("/sql", post(sql))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Baseline {
            pools: std::sync::Arc::new(pools),
            single,
            reset,
            classifier: tenant_router::statement::Classifier::default(),
        });
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
