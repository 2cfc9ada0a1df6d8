//! Where a cold tenant's first request spends its time: the router opening a connection for a
//! tenant it holds none for, step by step, as the router does it (tokio-postgres, the tenant's
//! own role, its verifier), against 100 freshly provisioned tenants:
//! - connect: TCP, startup, the backend's fork and the SCRAM exchange, with the verifier at
//!   PostgreSQL's default 4,096 PBKDF2 iterations and at the one iteration tenant roles now get
//!   (the router's side of SCRAM runs that many HMACs);
//! - `PREPARE tenancy_reset_check`, which the router ran on every new connection until it
//!   learned to prepare it in the connection's first reset (a connection that never needs a
//!   reset, with `ROUTER_SESSION_RESET=auto`, never pays it);
//! - preparing the point query on the fresh backend (its catalog caches are cold), then
//!   executing it, and the same two on a warm backend for comparison.
//!
//! Run with `BENCHES=cold-open make bench`. Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::{Duration, Instant};
use tenancy_bench::fleet::{provision_fleet, POINT_QUERY};
use tenancy_bench::Summary;

const TENANTS: usize = 100;

fn row(label: &str, samples: &mut [Duration]) {
    println!("| {label} | {} |", Summary::of(samples).row());
}

#[tokio::main]
async fn main() {
    let (db, _common, cp) = tenancy_bench::control_plane_with_settings().await;
    let tenants = provision_fleet(&db, &cp, "co", "starter", TENANTS, 4, 1_000).await;
    let admin = db.client().await;
    let mut steps: [Vec<Duration>; 7] = Default::default();
    for (iterations, tenant) in
        tenants.iter().enumerate().map(|(i, t)| (if i % 2 == 0 { 4096 } else { 1 }, t))
    {
        let config: tokio_postgres::Config = tenant.database_url.parse().unwrap();
        if iterations == 4096 {
            // PostgreSQL's own default verifier for the same password.
            let password = std::str::from_utf8(config.get_password().unwrap()).unwrap();
            let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
            admin
                .batch_execute(&format!(
                    "ALTER ROLE \"{}\" PASSWORD '{verifier}'",
                    config.get_user().unwrap()
                ))
                .await
                .unwrap();
        }
        let started = Instant::now();
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        let connected = started.elapsed();
        tokio::spawn(connection);
        steps[usize::from(iterations == 1)].push(connected);
        let timed = Instant::now();
        client.batch_execute(tenant_router::session::PREPARE_RESET_CHECK).await.unwrap();
        steps[2].push(timed.elapsed());
        let timed = Instant::now();
        let statement = client.prepare(POINT_QUERY).await.unwrap();
        steps[3].push(timed.elapsed());
        let timed = Instant::now();
        client.query(&statement, &[&1i64]).await.unwrap();
        steps[4].push(timed.elapsed());
        let timed = Instant::now();
        let again = client.prepare(POINT_QUERY).await.unwrap();
        steps[5].push(timed.elapsed());
        let timed = Instant::now();
        client.query(&again, &[&2i64]).await.unwrap();
        steps[6].push(timed.elapsed());
    }
    let [v4096, v1, reset_check, cold_prepare, cold_execute, warm_prepare, warm_execute] = &mut steps;
    println!("| step (p50 / p95 / p99 / max) | measured |");
    println!("|---|---|");
    row("connect, verifier with 4,096 iterations (PostgreSQL's default)", v4096);
    row("connect, verifier with 1 iteration (what tenant roles get)", v1);
    row("`PREPARE tenancy_reset_check` on the new connection (now deferred to the first reset)", reset_check);
    row("prepare the point query, fresh backend", cold_prepare);
    row("execute it, fresh backend", cold_execute);
    row("prepare it again, warm backend", warm_prepare);
    row("execute it again, warm backend", warm_execute);
}
