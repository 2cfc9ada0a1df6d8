//! A plan's rate limit across two routers: one `pro` tenant (100 requests/s) loaded through two
//! `tenant-router` processes sharing Redis, 16 client connections each, closed loop, 10 s after
//! a 2 s warm-up (which spends the burst). The rate the two allow together, against the plan's.
//!
//! Run with `BENCHES=router-rate-limit make bench`. Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::Duration;
use tenancy_bench::fleet::{point_query_body, provision_fleet};
use tenancy_bench::load::{run, Load, SqlRequest};
use tenancy_bench::process::start_router;

const CONNECTIONS: usize = 16;
const DURATION: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    let (db, common, cp) = tenancy_bench::control_plane_with_settings().await;
    assert!(common.redis_url.is_some(), "the routers share their limits through Redis: REDIS_URL");
    let tenant = provision_fleet(&db, &cp, "rl", "pro", 1, 1, 100).await.remove(0);
    let plan_rate: i32 = db
        .client()
        .await
        .query_one("SELECT rate_limit_per_second FROM control.tenants WHERE slug = 'rl-0'", &[])
        .await
        .unwrap()
        .get(0);
    let routers = [start_router(&common, &[]).await, start_router(&common, &[]).await];
    let loads = routers.iter().map(|router| {
        let tenant = tenant.clone();
        run(router.addr, CONNECTIONS, Load::Closed, Duration::from_secs(2), DURATION, move |i| SqlRequest {
            host: tenant.host.clone(),
            connection_string: Some(tenant.connection_string.clone()),
            body: point_query_body((i % 100) as i64 + 1),
        })
    });
    let reports = futures::future::join_all(loads).await;
    let allowed: u64 = reports.iter().map(|r| r.count(200)).sum();
    let refused: u64 = reports.iter().map(|r| r.count(429)).sum();
    let other: u64 = reports.iter().map(|r| r.latencies.len() as u64 - r.count(200) - r.count(429)).sum();
    assert_eq!(
        other,
        0,
        "only 200 and 429: {:?}",
        reports.iter().map(|r| r.status_line()).collect::<Vec<_>>()
    );
    let rate = allowed as f64 / DURATION.as_secs_f64();
    println!(
        "| two routers, one tenant at {plan_rate}/s, {CONNECTIONS} connections each, {} s | allowed {rate:.1}/s = **{:.1}%** of the plan's rate ({allowed} allowed: {} and {}; {refused} refused with 429) | within ±10% |",
        DURATION.as_secs(),
        100.0 * rate / f64::from(plan_rate),
        reports[0].count(200),
        reports[1].count(200),
    );
}
