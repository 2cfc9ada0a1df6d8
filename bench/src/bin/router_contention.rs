//! The router under contention: more tenants active than its connection budget holds pools
//! for. 300 `starter` tenants (pool 2 each), 16 client connections cycling 100 of them, a
//! primary-key select each, plan rate limits lifted. The router with its default budget
//! (`ROUTER_MAX_CONNECTIONS` = 100: the 100 pools could want 200) against the same router with
//! room for every pool (budget 300), in the same run; then the same with 100 `pro` tenants
//! (pool 5 each: 500 wanted) against a budget of 500.
//!
//! Reports throughput, latency, and the connections opened and closed to make room in each
//! steady round (after a first round that opens the pools).
//!
//! Run with `BENCHES=router-contention make bench`. Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use tenancy_bench::fleet::{point_query_body, provision_fleet, BenchTenant};
use tenancy_bench::load::{run, Load, Report};
use tenancy_bench::process::{start_router, ServerProcess};
use tenancy_bench::Summary;

const CONNECTIONS: usize = 16;
const CYCLED: usize = 100;
const WARMUP: Duration = Duration::from_secs(2);
const DURATION: Duration = Duration::from_secs(10);
const USERS_PER_TENANT: i64 = 1_000;

/// One steady round: the report, and the connections opened / closed to make room during it.
struct Round {
    report: Report,
    opened: f64,
    shed: f64,
}

async fn round(router: &ServerProcess, tenants: &Arc<Vec<BenchTenant>>) -> Round {
    let (opened, shed) = (
        router.metric("tenant_router_connections_opened_total").await,
        router.metric("tenant_router_connections_shed_total").await,
    );
    let picked = tenants.clone();
    let report = run(router.addr, CONNECTIONS, Load::Closed, WARMUP, DURATION, move |i| {
        let tenant = &picked[(i % CYCLED as u64) as usize];
        tenancy_bench::load::SqlRequest {
            host: tenant.host.clone(),
            connection_string: Some(tenant.connection_string.clone()),
            body: point_query_body((i as i64 * 7919) % USERS_PER_TENANT + 1),
        }
    })
    .await;
    assert_eq!(report.count(200), report.latencies.len() as u64, "not all 200: {}", report.status_line());
    Round {
        opened: router.metric("tenant_router_connections_opened_total").await - opened,
        shed: router.metric("tenant_router_connections_shed_total").await - shed,
        report,
    }
}

/// Both routers in turn, a first round each to open the pools, then two steady rounds each.
async fn compare(label: &str, tenants: &Arc<Vec<BenchTenant>>, routers: [(&str, &ServerProcess); 2]) {
    for (name, router) in routers {
        eprintln!("{label}: first round, {name}");
        round(router, tenants).await;
    }
    let mut rounds: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        for (i, (name, router)) in routers.iter().enumerate() {
            eprintln!("{label}: steady round, {name}");
            rounds[i].push(round(router, tenants).await);
        }
    }
    let rate = |r: &[Round]| r.iter().map(|r| r.report.throughput()).sum::<f64>() / r.len() as f64;
    let rates = [rate(&rounds[0]), rate(&rounds[1])];
    for (i, (name, _)) in routers.iter().enumerate() {
        let requests: usize = rounds[i].iter().map(|r| r.report.latencies.len()).sum();
        let per_round =
            rounds[i].iter().map(|r| format!("{:.0}", r.report.throughput())).collect::<Vec<_>>().join(", ");
        let opened: f64 = rounds[i].iter().map(|r| r.opened).sum();
        let shed: f64 = rounds[i].iter().map(|r| r.shed).sum();
        let mut latencies: Vec<Duration> =
            rounds[i].iter_mut().flat_map(|r| std::mem::take(&mut r.report.latencies)).collect();
        let summary = Summary::of(&mut latencies);
        let share = if i == 0 {
            format!(" = **{:.1}%** of {}", 100.0 * rates[0] / rates[1], routers[1].0)
        } else {
            String::new()
        };
        println!(
            "| {label}, {name}: {CONNECTIONS} clients cycling {CYCLED} tenants | {:.0} req/s (rounds: {}){share}; p50 / p99 {:.2} / {:.2} ms; opened / closed to make room per 100 requests: {:.2} / {:.2} ({opened:.0} / {shed:.0} in {} s) | {} |",
            rates[i],
            per_round,
            summary.p50.as_secs_f64() * 1e3,
            summary.p99.as_secs_f64() * 1e3,
            100.0 * opened / requests as f64,
            100.0 * shed / requests as f64,
            DURATION.as_secs() * 2,
            if i == 0 { "≥ 90% of room for every pool; ≤ 1 opened per 100 requests" } else { "" },
        );
    }
}

#[tokio::main]
async fn main() {
    let (db, common, cp) = tenancy_bench::control_plane_with_settings().await;
    eprintln!("provisioning 300 starter and 100 pro tenants…");
    let starter = Arc::new(provision_fleet(&db, &cp, "ct", "starter", 300, 8, USERS_PER_TENANT).await);
    // Throughput is measured here, not the plans' rate limits.
    db.client().await.execute("UPDATE control.tenants SET rate_limit_per_second = NULL", &[]).await.unwrap();
    {
        let default_budget = start_router(&common, &[]).await;
        let roomy = start_router(&common, &[("ROUTER_MAX_CONNECTIONS", "300".into())]).await;
        compare(
            "300 starter tenants (pool 2)",
            &starter,
            [("default budget (100)", &default_budget), ("budget 300", &roomy)],
        )
        .await;
    }
    drop(starter);
    let pro = Arc::new(provision_fleet(&db, &cp, "cp", "pro", 100, 8, USERS_PER_TENANT).await);
    db.client().await.execute("UPDATE control.tenants SET rate_limit_per_second = NULL", &[]).await.unwrap();
    let default_budget = start_router(&common, &[]).await;
    let roomy = start_router(&common, &[("ROUTER_MAX_CONNECTIONS", "500".into())]).await;
    compare(
        "100 pro tenants (pool 5)",
        &pro,
        [("default budget (100)", &default_budget), ("budget 500", &roomy)],
    )
    .await;
}
