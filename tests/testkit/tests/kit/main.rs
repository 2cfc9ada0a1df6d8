//! Tests of the kit itself, against the PostgreSQL of `scripts/services.sh`: test databases are
//! named after their test, and the sweep drops what dead test runs left, never what a live
//! process holds.

// A failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod naming;
mod sweep;

use testkit::services;
use tokio::sync::{Mutex, MutexGuard};

/// Held by every test here for its whole length: a sweep (each process's first database
/// starts one) must not take another test's leftovers before that test looks.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// A superuser session on the admin database.
async fn admin() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&services().database_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Whether the database exists.
async fn database_exists(name: &str) -> bool {
    let row = admin().await.query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&name]).await;
    row.unwrap().get::<_, i64>(0) == 1
}

/// Whether the role exists.
async fn role_exists(name: &str) -> bool {
    let row = admin().await.query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&name]).await;
    row.unwrap().get::<_, i64>(0) == 1
}
