//! A Rust service that embeds tenant resolution and per-tenant pools instead of running
//! `tenant-router` in front of it.
//!
//! Run (with the settings `tenant-router` takes, e.g. after `make demo`):
//!
//! ```sh
//! set -a; . .local/demo/env; set +a
//! cargo run -p tenant-router --example embedded -- --listen 127.0.0.1:8090 --admin-listen 127.0.0.1:9092
//! curl -s http://127.0.0.1:8090/users -H 'Host: acme.app.localhost'
//! ```

use axum::routing::get;
use clap::Parser as _;
use tenant_router::embed::TenantConnection;
use tenant_router::error::RouterError;
use tenant_router::settings::RouterSettings;

/// `GET /users`: the users of the tenant of the request's host, read on the tenant's own role.
async fn users(TenantConnection { tenant, client }: TenantConnection) -> Result<String, RouterError> {
    let rows = client
        .query("SELECT name, email FROM users ORDER BY id", &[])
        .await
        .map_err(|e| RouterError::from_pg(&e))?;
    let names: Vec<String> =
        rows.iter().map(|r| format!("{} <{}>", r.get::<_, String>(0), r.get::<_, String>(1))).collect();
    Ok(format!("{} ({}): {}\n", tenant.display_name, tenant.slug, names.join(", ")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = RouterSettings::parse();
    tenancy::telemetry::init(settings.common.log_format, tenancy::telemetry::SERVER_LOG_FILTER);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = tenant_router::embed::start(&settings, &shutdown).await?;
    let app = axum::Router::new().route("/users", get(users)).with_state(state);
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "embedded example listening");
    axum::serve(listener, app).with_graceful_shutdown(tenancy::shutdown::wait_for_shutdown()).await?;
    shutdown.cancel();
    Ok(())
}
