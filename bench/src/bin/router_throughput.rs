//! The routing tax: `POST /sql` point queries (primary-key select) through `tenant-router`,
//! cycling 100 `pro` tenants (each on its own pool, logged in as its own role), against
//! `sql-baseline` doing the same work without the routing: the same 100 tenants from the same
//! dedicated pools (one per tenant, by `Host`), the same reset policy (`auto`: reset only after
//! a statement the classifier says can change the session), no resolution, authentication,
//! rate limit or budget. Also, as context, the bare single-pool baseline (tenant 0's table from
//! one fixed pool, no reset), and the router serving one tenant against it (what `auto` buys).
//!
//! Two measurements, in the same run:
//! - throughput: closed loop, 32 connections, 10 s, each server in turn, twice;
//! - latency under load: paced at half the slowest one's throughput, p50/p99.
//!
//! Run with `BENCHES=router-throughput make bench`. Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use tenancy_bench::fleet::{point_query_body, provision_fleet, BenchTenant};
use tenancy_bench::load::{run, Load, Report, SqlRequest};
use tenancy_bench::process::{start_baseline, start_router, start_tenant_baseline, ServerProcess};
use tenancy_bench::Summary;

const TENANTS: usize = 100;
const CONNECTIONS: usize = 32;
/// The router's connection budget: less than the tenants' pools could grow to (100 × 5), as in
/// production, so pools compete for it; and small enough that the router and both baselines
/// together stay within the harness PostgreSQL's `max_connections` (400).
const BUDGET: usize = 150;
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

/// Load cycling `tenants` (their hosts and connection strings).
async fn load(server: &ServerProcess, tenants: &Arc<Vec<BenchTenant>>, load: Load) -> Report {
    let tenants = tenants.clone();
    run(server.addr, CONNECTIONS, load, WARMUP, DURATION, move |i| {
        let tenant = &tenants[(i % tenants.len() as u64) as usize];
        SqlRequest {
            host: tenant.host.clone(),
            connection_string: Some(tenant.connection_string.clone()),
            body: point_query_body(user_id(i)),
        }
    })
    .await
}

fn check(name: &str, report: &Report) {
    let ok = report.count(200);
    assert!(ok > 0 && ok == report.latencies.len() as u64, "{name}: not all 200: {}", report.status_line());
}

/// A server under test: its name and which tenants its load cycles.
struct Subject<'a> {
    name: &'static str,
    process: &'a ServerProcess,
    tenants: Arc<Vec<BenchTenant>>,
}

#[tokio::main]
async fn main() {
    let (db, common, cp) = tenancy_bench::control_plane_with_settings().await;
    let tenants = provision_fleet(&db, &cp, "rt", "pro", TENANTS, 4, USERS_PER_TENANT).await;
    // Throughput is measured here, not the plans' rate limits; tenant 0 may use as many
    // connections as there are clients (for the one-tenant run).
    let client = db.client().await;
    client.execute("UPDATE control.tenants SET rate_limit_per_second = NULL", &[]).await.unwrap();
    client
        .execute("UPDATE control.tenants SET pool_size = $1 WHERE slug = 'rt-0'", &[&(CONNECTIONS as i32)])
        .await
        .unwrap();
    let role: String = client
        .query_one("SELECT role_name FROM control.tenants WHERE slug = 'rt-0'", &[])
        .await
        .unwrap()
        .get(0);
    client.batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT -1")).await.unwrap();
    let sizes: Vec<(String, String, usize)> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.host.clone(), t.database_url.clone(), if i == 0 { CONNECTIONS } else { 5 }))
        .collect();
    let all = Arc::new(tenants);
    let first = Arc::new(all[..1].to_vec());

    let router = start_router(
        &common,
        &[
            ("ROUTER_MAX_CONNECTIONS", BUDGET.to_string()),
            ("ROUTER_TENANT_MAX_CONNECTIONS", CONNECTIONS.to_string()),
        ],
    )
    .await;
    let bare = start_baseline(&all[0].database_url, CONNECTIONS, "0").await;
    let same_pools = start_tenant_baseline(&sizes, "auto").await;
    let subjects = [
        Subject { name: "bare baseline (one pool, no reset)", process: &bare, tenants: first.clone() },
        Subject {
            name: "baseline: same 100 tenants, same pools, same reset policy",
            process: &same_pools,
            tenants: all.clone(),
        },
        Subject { name: "router, cycling 100 tenants", process: &router, tenants: all.clone() },
        Subject { name: "router, one tenant", process: &router, tenants: first.clone() },
    ];

    let mut rates = [const { Vec::new() }; 4];
    let mut cpu = [const { Vec::new() }; 4];
    for round in 1..=ROUNDS {
        for (i, subject) in subjects.iter().enumerate() {
            eprintln!("throughput round {round}: {}", subject.name);
            let (report, per_request) =
                measured(subject.process, load(subject.process, &subject.tenants, Load::Closed)).await;
            check(subject.name, &report);
            rates[i].push(report.throughput());
            cpu[i].push(per_request);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let rate = rates.each_ref().map(|r| mean(r));

    // Latency: the router against the baseline that does the same work, and the bare one.
    let paced = Load::Paced((rate[1].min(rate[2]) / 2.0).round());
    let mut latencies = [const { Vec::new() }; 3];
    for round in 1..=ROUNDS {
        eprintln!("latency round {round}");
        for (i, subject) in subjects[..3].iter().enumerate() {
            let report = load(subject.process, &subject.tenants, paced).await;
            check(subject.name, &report);
            latencies[i].extend(report.latencies);
        }
    }
    let lat = latencies.each_mut().map(|l| Summary::of(l));
    let (rss, peak) = router.memory_mib();

    let rounds = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!(
        "| point query, closed loop, {CONNECTIONS} connections: {} | {:.0} req/s (rounds: {}) | context |",
        subjects[0].name,
        rate[0],
        rounds(&rates[0])
    );
    println!("| same: {} | {:.0} req/s (rounds: {}) | |", subjects[1].name, rate[1], rounds(&rates[1]));
    println!(
        "| same: {} | {:.0} req/s (rounds: {}) = **{:.1}%** of the same-pools baseline ({:.1}% of the bare one) | ≥ 90% |",
        subjects[2].name,
        rate[2],
        rounds(&rates[2]),
        100.0 * rate[2] / rate[1],
        100.0 * rate[2] / rate[0]
    );
    println!(
        "| same: {} (reset `auto`) | {:.0} req/s (rounds: {}) = **{:.1}%** of the bare baseline | ≥ 85% |",
        subjects[3].name,
        rate[3],
        rounds(&rates[3]),
        100.0 * rate[3] / rate[0]
    );
    println!(
        "| server CPU per request (user + system): bare / same pools / router 100 tenants / router 1 tenant | {:.0} / {:.0} / {:.0} / {:.0} µs | |",
        mean(&cpu[0]),
        mean(&cpu[1]),
        mean(&cpu[2]),
        mean(&cpu[3])
    );
    let Load::Paced(paced_rate) = paced else { unreachable!() };
    for (i, subject) in subjects[..3].iter().enumerate() {
        println!(
            "| latency p50 / p95 / p99 / max at {paced_rate:.0} req/s: {} | {} | |",
            subject.name,
            lat[i].row()
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| router p99 overhead over the same-pools baseline (over the bare one) | **{:.2}** ms ({:.2} ms); p50 {:.2} ms | ≤ 1 ms |",
        ms(lat[2].p99) - ms(lat[1].p99),
        ms(lat[2].p99) - ms(lat[0].p99),
        ms(lat[2].p50) - ms(lat[1].p50),
    );
    println!(
        "| connections the router opened / closed to make room, all rounds | {:.0} / {:.0} | |",
        router.metric("tenant_router_connections_opened_total").await,
        router.metric("tenant_router_connections_shed_total").await
    );
    println!("| router memory after the runs (RSS / peak) | {rss:.0} / {peak:.0} MiB | |");
}
