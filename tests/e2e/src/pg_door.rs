//! Clients of the router's PostgreSQL-protocol door, as applications are: tokio-postgres over
//! plaintext, naming their tenant with `options`, logging in as its role with SCRAM.

use std::net::SocketAddr;
use tenancy::secrets::DbCredentials;
use tokio::task::JoinHandle;

/// A client connected through the door at `addr`, and the task that runs its connection: it
/// ends when the connection does, with the error that ended it (such as the router's `FATAL`).
pub struct DoorClient {
    pub client: tokio_postgres::Client,
    pub connection: JoinHandle<Result<(), tokio_postgres::Error>>,
}

/// Connects to the door at `addr` as `credentials`' role, naming tenant `slug`.
///
/// # Errors
/// When the router (or PostgreSQL behind it) refuses the client.
pub async fn connect_client(
    addr: SocketAddr,
    slug: &str,
    credentials: &DbCredentials,
) -> Result<DoorClient, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(&credentials.username)
        .password(&credentials.password)
        .dbname(&credentials.dbname)
        .options(format!("-c tenant={slug}"))
        .application_name("e2e");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    Ok(DoorClient { client, connection: tokio::spawn(connection) })
}

/// [`connect_client`], for a test that does not watch how the connection ends.
///
/// # Errors
/// When the router (or PostgreSQL behind it) refuses the client.
pub async fn connect(
    addr: SocketAddr,
    slug: &str,
    credentials: &DbCredentials,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_client(addr, slug, credentials).await.map(|door| door.client)
}

/// The first value of the first row `sql` returns (simple protocol), or "" when none.
///
/// # Panics
/// When the query fails.
pub async fn first(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}
