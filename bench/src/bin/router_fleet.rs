//! The router with 10,000 tenants (`BENCH_TENANTS`) hit at random with a Zipf distribution (a few hot tenants,
//! a long tail): its memory, the PostgreSQL connections it holds (sampled every 100 ms; never
//! above `ROUTER_MAX_CONNECTIONS`), and the answers (200, or the designed 429 of a hot tenant
//! over its plan's rate and 503 `pool_exhausted`; nothing else).
//!
//! Run with `BENCHES=router-fleet make bench`. Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenancy_bench::fleet::{point_query_body, provision_fleet};
use tenancy_bench::load::{run, Load, SqlRequest};
use tenancy_bench::process::start_router;
use tenancy_bench::Summary;

/// Tenants (`BENCH_TENANTS` overrides: provisioning 10,000 takes a while).
fn tenants() -> usize {
    std::env::var("BENCH_TENANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}
const BUDGET: usize = 100;
const CONNECTIONS: usize = 32;
const DURATION: Duration = Duration::from_secs(60);
/// Zipf exponent: the hottest tenant gets about 10% of the requests.
const ZIPF_S: f64 = 1.0;
/// Users per tenant (ids `1..=USERS_PER_TENANT`): a few, as 10,000 tenants are seeded.
const USERS_PER_TENANT: i64 = 100;

/// splitmix64: a fast, well-mixed 64-bit hash, so request `i` always picks the same tenant.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The cumulative Zipf distribution over `n` ranks.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let (db, common, cp) = tenancy_bench::control_plane_with_settings().await;
    let count = tenants();
    eprintln!("provisioning {count} tenants…");
    let started = std::time::Instant::now();
    let tenants = Arc::new(provision_fleet(&db, &cp, "zf", "starter", count, 4, USERS_PER_TENANT).await);
    eprintln!("provisioned in {:.0} s", started.elapsed().as_secs_f64());
    let router = start_router(&common, &[("ROUTER_MAX_CONNECTIONS", BUDGET.to_string())]).await;
    let (idle_rss, _) = router.memory_mib();

    // Connections the router holds, sampled while the load runs.
    let most = Arc::new(AtomicI64::new(0));
    let sampler = {
        let most = most.clone();
        let client = db.client().await;
        let pattern = format!("{}%", db.role_prefix);
        tokio::spawn(async move {
            loop {
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenant-router' AND usename LIKE $1",
                        &[&pattern],
                    )
                    .await
                    .unwrap();
                most.fetch_max(row.get::<_, i64>(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let cdf = Arc::new(zipf_cdf(count, ZIPF_S));
    let picked = tenants.clone();
    eprintln!("loading for {} s…", DURATION.as_secs());
    let mut report =
        run(router.addr, CONNECTIONS, Load::Closed, Duration::from_secs(2), DURATION, move |i| {
            let u = (mix(i) >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cdf.partition_point(|&p| p < u).min(cdf.len() - 1);
            // Ranks are spread over the tenants, so the hot ones are not all provisioned together.
            let tenant = &picked[(mix(rank as u64 ^ 0xA5A5) % picked.len() as u64) as usize];
            SqlRequest {
                host: tenant.host.clone(),
                connection_string: Some(tenant.connection_string.clone()),
                body: point_query_body((mix(i ^ 0x5555) % USERS_PER_TENANT as u64) as i64 + 1),
            }
        })
        .await;
    sampler.abort();
    let (rss, peak) = router.memory_mib();
    let most = most.load(Ordering::Relaxed);
    let distinct = {
        let client = db.client().await;
        client.query_one("SELECT count(*) FROM control.tenants", &[]).await.unwrap().get::<_, i64>(0)
    };
    let unexpected: u64 =
        report.statuses.iter().filter(|(s, _)| ![200, 429, 503].contains(*s)).map(|(_, n)| n).sum::<u64>()
            + report.transport_errors;
    let answers = report.latencies.len();
    let summary = Summary::of(&mut report.latencies);

    println!("| router with {distinct} tenants, Zipf (s = {ZIPF_S}), {CONNECTIONS} connections, {} s | {:.0} answers/s ({}) | no errors but 429/503 |", DURATION.as_secs(), answers as f64 / DURATION.as_secs_f64(), report.status_line());
    println!("| latency of all answers | {} | |", summary.row());
    println!("| unexpected answers (not 200/429/503, or none) | {unexpected} | 0 |");
    println!("| PostgreSQL connections held by the router (most seen, sampled every 100 ms) | {most} | ≤ {BUDGET} (the budget) |");
    println!("| router RSS: idle after start / after the run / peak | {idle_rss:.0} / {rss:.0} / {peak:.0} MiB | ≤ 300 MB |");
}
