//! Router overhead: `POST /sql` point queries (primary-key select) through `tenant-router`,
//! cycling 100 tenants (each on its own pool, logged in as its own role), against the same query
//! on the same table served by `sql-baseline` (one fixed pool, no routing), in the same run,
//! bare and resetting each session as the router does (which separates the cost of routing from
//! the cost of the reset).
//!
//! Two measurements, each taking the three servers in turn, twice:
//! - throughput: closed loop, 32 connections, 10 s;
//! - latency under load: paced at half the slowest one's throughput, p50/p99.
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
/// The router's connection budget: less than the tenants' pools could grow to (100 × 5), as in
/// production, so pools compete for it.
const BUDGET: usize = 200;
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

/// Sessions PostgreSQL has opened so far (all databases). Its statistics are flushed about
/// once a second, hence the pause.
async fn sessions_opened(db: &testkit::TestDb) -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = db.client().await;
    client.query_one("SELECT sum(sessions)::int8 FROM pg_stat_database", &[]).await.unwrap().get(0)
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
        &[("ROUTER_MAX_CONNECTIONS", BUDGET.to_string()), ("ROUTER_TENANT_MAX_CONNECTIONS", "32".into())],
    )
    .await;
    // Two baselines on one fixed pool: bare, and resetting each session as the router does.
    let bare = start_baseline(&tenants[0].database_url, CONNECTIONS, false).await;
    let with_reset = start_baseline(&tenants[0].database_url, CONNECTIONS, true).await;
    let servers = [Server::Baseline(&bare), Server::Baseline(&with_reset), Server::Router(&router)];
    let names = ["baseline", "baseline with reset", "router"];

    let mut rates = [const { Vec::new() }; 3];
    let mut cpu = [const { Vec::new() }; 3];
    let mut opened = Vec::new();
    for round in 1..=ROUNDS {
        for (i, server) in servers.iter().enumerate() {
            eprintln!("throughput round {round}: {}", names[i]);
            let opened_before = sessions_opened(&db).await;
            let (report, per_request) = measured(server.process(), server.load(&tenants, Load::Closed)).await;
            if let Server::Router(_) = server {
                opened.push(sessions_opened(&db).await - opened_before);
            }
            check(names[i], &report);
            rates[i].push(report.throughput());
            cpu[i].push(per_request);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let rate = rates.each_ref().map(|r| mean(r));

    let paced = Load::Paced((rate.iter().copied().fold(f64::INFINITY, f64::min) / 2.0).round());
    let mut latencies = [const { Vec::new() }; 3];
    for round in 1..=ROUNDS {
        eprintln!("latency round {round}");
        for (i, server) in servers.iter().enumerate() {
            let report = server.load(&tenants, paced).await;
            check(names[i], &report);
            latencies[i].extend(report.latencies);
        }
    }
    let lat = latencies.each_mut().map(|l| Summary::of(l));
    let (rss, peak) = router.memory_mib();

    let rounds = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!(
        "| point query, closed loop, {CONNECTIONS} connections: baseline (one pool) | {:.0} req/s (rounds: {}) | |",
        rate[0],
        rounds(&rates[0])
    );
    println!(
        "| same, baseline resetting each session as the router does | {:.0} req/s (rounds: {}) = {:.1}% of baseline | |",
        rate[1],
        rounds(&rates[1]),
        100.0 * rate[1] / rate[0]
    );
    println!(
        "| same through the router, cycling {TENANTS} tenants | {:.0} req/s (rounds: {}) = **{:.1}%** of baseline, {:.1}% of the resetting baseline | ≥ 85% |",
        rate[2],
        rounds(&rates[2]),
        100.0 * rate[2] / rate[0],
        100.0 * rate[2] / rate[1]
    );
    println!(
        "| server CPU per request (user + system): baseline / resetting baseline / router | {:.0} / {:.0} / {:.0} µs | |",
        mean(&cpu[0]),
        mean(&cpu[1]),
        mean(&cpu[2])
    );
    let Load::Paced(paced_rate) = paced else { unreachable!() };
    for (i, name) in names.iter().enumerate() {
        println!("| latency p50 / p95 / p99 / max at {paced_rate:.0} req/s: {name} | {} | |", lat[i].row());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| router p99 overhead: over the baseline / over the resetting baseline | {:.2} / {:.2} ms (p50 {:.2} / {:.2} ms) | ≤ 1 ms |",
        ms(lat[2].p99) - ms(lat[0].p99),
        ms(lat[2].p99) - ms(lat[1].p99),
        ms(lat[2].p50) - ms(lat[0].p50),
        ms(lat[2].p50) - ms(lat[1].p50)
    );
    println!(
        "| PostgreSQL connections the router opened per throughput round (budget {BUDGET}; the first round opens its pools) | {} | |",
        opened.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
    );
    println!("| router memory after the runs (RSS / peak) | {rss:.0} / {peak:.0} MiB | |");
}

/// What the load is sent to.
enum Server<'a> {
    Baseline(&'a ServerProcess),
    Router(&'a ServerProcess),
}

impl Server<'_> {
    fn process(&self) -> &ServerProcess {
        match self {
            Self::Baseline(p) | Self::Router(p) => p,
        }
    }

    async fn load(&self, tenants: &Arc<Vec<BenchTenant>>, load: Load) -> Report {
        match self {
            Self::Baseline(p) => load_baseline(p, load).await,
            Self::Router(p) => load_router(p, tenants, load).await,
        }
    }
}
