//! Router overhead: `POST /sql` point queries (primary-key select) through `tenant-router`,
//! cycling 100 tenants (each on its own pool, logged in as its own role), against the same query
//! on the same table served by `sql-baseline` (one fixed pool, no routing), in the same run.
//!
//! Two measurements, each alternating baseline and router twice:
//! - throughput: closed loop, 32 connections, 10 s;
//! - latency under load: paced at half the baseline's throughput, p50/p99.
//!
//! Run with `BENCHES=router-throughput make bench`. Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use tenancy_bench::fleet::{point_query_body, provision_fleet, BenchTenant};
use tenancy_bench::load::{run, Load, Report, SqlRequest};
use tenancy_bench::process::{start_baseline, start_router, ServerProcess};
use tenancy_bench::Summary;

const TENANTS: usize = 100;
const CONNECTIONS: usize = 32;
const WARMUP: Duration = Duration::from_secs(2);
const DURATION: Duration = Duration::from_secs(10);
const ROUNDS: usize = 2;
/// Users per tenant: enough that PostgreSQL looks a user up by its primary-key index (with a
/// hundred, two pages, it scans the table), as it would in a real tenant.
const USERS_PER_TENANT: i64 = 10_000;

fn user_id(i: u64) -> i64 {
    (i as i64 * 7919) % USERS_PER_TENANT + 1
}

/// A load run and the server's CPU time per answer in it, in µs.
async fn measured(server: &ServerProcess, run: impl std::future::Future<Output = Report>) -> (Report, f64) {
    let before = server.cpu_seconds();
    let report = run.await;
    let cpu = server.cpu_seconds() - before;
    let per_request = cpu * 1e6 / report.latencies.len().max(1) as f64;
    (report, per_request)
}

async fn load_router(router: &ServerProcess, tenants: &Arc<Vec<BenchTenant>>, load: Load) -> Report {
    let tenants = tenants.clone();
    run(router.addr, CONNECTIONS, load, WARMUP, DURATION, move |i| {
        let tenant = &tenants[(i % tenants.len() as u64) as usize];
        SqlRequest {
            host: tenant.host.clone(),
            connection_string: Some(tenant.connection_string.clone()),
            body: point_query_body(user_id(i)),
        }
    })
    .await
}

async fn load_baseline(baseline: &ServerProcess, load: Load) -> Report {
    run(baseline.addr, CONNECTIONS, load, WARMUP, DURATION, move |i| SqlRequest {
        host: "baseline".into(),
        connection_string: None,
        body: point_query_body(user_id(i)),
    })
    .await
}

fn check(name: &str, report: &Report) {
    let ok = report.count(200);
    assert!(ok > 0 && ok == report.latencies.len() as u64, "{name}: not all 200: {}", report.status_line());
}

#[tokio::main]
async fn main() {
    let (db, common, cp) = tenancy_bench::control_plane_with_settings("bench_router").await;
    let tenants = provision_fleet(&db, &cp, "rt", "pro", TENANTS, 4, USERS_PER_TENANT).await;
    // Throughput is measured here, not the plans' rate limits.
    db.client().await.execute("UPDATE control.tenants SET rate_limit_per_second = NULL", &[]).await.unwrap();
    // The baseline logs in as the first tenant with one connection per client connection.
    let role = db
        .client()
        .await
        .query_one("SELECT role_name FROM control.tenants WHERE slug = 'rt-0'", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    db.client().await.batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT -1")).await.unwrap();
    // Experiments: BENCH_CYCLE=n cycles the first n tenants only.
    let cycle = std::env::var("BENCH_CYCLE").ok().and_then(|v| v.parse().ok()).unwrap_or(TENANTS);
    let tenants = Arc::new(tenants.into_iter().take(cycle).collect::<Vec<_>>());

    if cycle < TENANTS {
        db.client().await.execute("UPDATE control.tenants SET pool_size = 32", &[]).await.unwrap();
    }
    let router = start_router(
        &common,
        &[("ROUTER_MAX_CONNECTIONS", "200".into()), ("ROUTER_TENANT_MAX_CONNECTIONS", "32".into())],
    )
    .await;
    let baseline = start_baseline(&tenants[0].database_url, CONNECTIONS).await;

    let (mut base_rates, mut router_rates) = (Vec::new(), Vec::new());
    let (mut base_cpu, mut router_cpu) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("throughput round {round}: baseline");
        let (b, cpu) = measured(&baseline, load_baseline(&baseline, Load::Closed)).await;
        check("baseline", &b);
        base_rates.push(b.throughput());
        base_cpu.push(cpu);
        eprintln!("throughput round {round}: router");
        let (r, cpu) = measured(&router, load_router(&router, &tenants, Load::Closed)).await;
        check("router", &r);
        router_rates.push(r.throughput());
        router_cpu.push(cpu);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (base_rate, router_rate) = (mean(&base_rates), mean(&router_rates));

    let paced = Load::Paced((base_rate.min(router_rate) / 2.0).round());
    let (mut base_lat, mut router_lat) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("latency round {round}");
        let b = load_baseline(&baseline, paced).await;
        check("baseline", &b);
        base_lat.extend(b.latencies);
        let r = load_router(&router, &tenants, paced).await;
        check("router", &r);
        router_lat.extend(r.latencies);
    }
    let (base_lat, router_lat) = (Summary::of(&mut base_lat), Summary::of(&mut router_lat));
    let (rss, peak) = router.memory_mib();

    let rates = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!(
        "| point query, closed loop, {CONNECTIONS} connections: baseline (one pool) | {base_rate:.0} req/s (rounds: {}) | |",
        rates(&base_rates)
    );
    println!(
        "| same through the router, cycling {TENANTS} tenants | {router_rate:.0} req/s (rounds: {}) = **{:.1}%** of baseline | ≥ 85% |",
        rates(&router_rates),
        100.0 * router_rate / base_rate
    );
    println!(
        "| server CPU per request (user + system): baseline / router | {:.0} / {:.0} µs | |",
        mean(&base_cpu),
        mean(&router_cpu)
    );
    let Load::Paced(rate) = paced else { unreachable!() };
    println!(
        "| latency at {rate:.0} req/s (half the slower one's throughput): baseline | {} | |",
        base_lat.row()
    );
    println!("| same through the router | {} | |", router_lat.row());
    println!(
        "| router p99 overhead | {:.2} ms (p50 {:.2} ms) | ≤ 1 ms |",
        (router_lat.p99.as_secs_f64() - base_lat.p99.as_secs_f64()) * 1000.0,
        (router_lat.p50.as_secs_f64() - base_lat.p50.as_secs_f64()) * 1000.0
    );
    println!("| router memory after the runs (RSS / peak) | {rss:.0} / {peak:.0} MiB | |");
}
