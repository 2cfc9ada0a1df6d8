//! Provisioning speed: one `schema` tenant with the sample migrations and its plan template,
//! end to end (request recorded, job run: role, schema, migrations, template, credentials,
//! domains, active), against the harness's PostgreSQL on this host.
//!
//! Run with `make bench` (starts the services). Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use futures::StreamExt as _;
use std::time::{Duration, Instant};
use tenancy_bench::Summary;

const SEQUENTIAL: usize = 100;
const CONCURRENT: usize = 200;
const IN_FLIGHT: usize = 4;

fn request(slug: String) -> TenantRequest {
    TenantRequest::new(slug, "starter")
}

async fn one(cp: &ControlPlane, slug: String) -> Duration {
    let started = Instant::now();
    let tenant = tenants::create(cp, &request(slug), "bench").await.unwrap();
    provision(cp, tenant.id).await.unwrap();
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let (_db, cp) = tenancy_bench::control_plane().await;
    for i in 0..5 {
        one(&cp, format!("warm-{i}")).await;
    }

    let mut sequential = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        sequential.push(one(&cp, format!("seq-{i}")).await);
    }
    let sequential = Summary::of(&mut sequential);

    let started = Instant::now();
    let mut concurrent: Vec<Duration> = futures::stream::iter(0..CONCURRENT)
        .map(|i| one(&cp, format!("par-{i}")))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let concurrent = Summary::of(&mut concurrent);
    let throughput = CONCURRENT as f64 / elapsed.as_secs_f64();

    println!("| provisioning, 1 at a time (p50 / p95 / p99 / max) | {} | p50 ≤ 100 ms |", sequential.row());
    println!("| provisioning, {IN_FLIGHT} in flight (latency) | {} | |", concurrent.row());
    println!("| provisioning throughput, {IN_FLIGHT} in flight | {throughput:.1} tenants/s ({CONCURRENT} in {:.1} s) | ≥ 20 tenants/s |", elapsed.as_secs_f64());
}
