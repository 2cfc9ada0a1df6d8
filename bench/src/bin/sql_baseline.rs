//! The router benchmark's baseline: the same `POST /sql` point query served by a minimal axum
//! handler on one fixed deadpool-postgres pool: no host resolution, no per-tenant pools, no
//! authentication, no session reset, statements prepared once per connection and cached.
//! Whatever the router costs beyond this is its overhead.
//!
//! With `BASELINE_RESET=1` it also resets each request's session exactly as the router does
//! (`tenant_router::session::reset`, pipelined behind the query): what is left between that
//! and the router is the cost of routing, not of the reset.
//!
//! Started by the `router-throughput` benchmark with `BASELINE_DATABASE_URL`,
//! `BASELINE_LISTEN`, `BASELINE_POOL_SIZE` and `BASELINE_RESET`.

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

#[derive(Clone)]
struct Baseline {
    pool: Pool,
    reset: bool,
}

async fn sql(
    State(state): State<Baseline>,
    Json(body): Json<Query>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let fail = |e: &dyn std::fmt::Display| (StatusCode::BAD_REQUEST, e.to_string());
    let client = state.pool.get().await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let statement = client.prepare_cached(&body.query).await.map_err(|e| fail(&e))?;
    let params: Vec<i64> = body.params.iter().map(|p| p.as_i64().unwrap_or_default()).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = if state.reset {
        let (rows, reset) =
            futures::join!(client.query(&statement, &refs), tenant_router::session::reset(&client));
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

#[tokio::main]
async fn main() {
    let url = std::env::var("BASELINE_DATABASE_URL").expect("BASELINE_DATABASE_URL");
    let listen = std::env::var("BASELINE_LISTEN").expect("BASELINE_LISTEN");
    let size: usize = std::env::var("BASELINE_POOL_SIZE").expect("BASELINE_POOL_SIZE").parse().unwrap();
    let reset = std::env::var("BASELINE_RESET").is_ok_and(|v| v == "1");
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let mut builder = Pool::builder(manager).max_size(size);
    if reset {
        builder = builder.post_create(Hook::async_fn(|client, _| {
            Box::pin(async move {
                client
                    .batch_execute(tenant_router::session::PREPARE_RESET_CHECK)
                    .await
                    .map_err(HookError::Backend)
            })
        }));
    }
    let pool = builder.build().unwrap();
    let app = axum::Router::new()
        .route("/sql", post(sql))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Baseline { pool, reset });
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
