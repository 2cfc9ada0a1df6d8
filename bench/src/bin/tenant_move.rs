//! `tenant-move`: a tenant with about 1 GB of data (`BENCH_MOVE_MB`, default 1024) moved from a
//! schema of the shared database into a database of its own, on this machine, while clients
//! write to it through the router's PostgreSQL door (a separate `tenant-router` process, its
//! default settings). Prints rows for `bench/RESULTS.md`: the move's total time and when each
//! step ended, the pause it reported, the latency the clients' requests saw before and during
//! the move (the added latency's p100 is what the target is about), failed requests;
//! and, as the baseline doing the same copy, `pg_dump | pg_restore` of the tenant's schema into
//! a new database on the same server (offline: requests stopped for all of it).
//!
//! `BENCH_MOVE_METHOD=dump` moves it by `pg_dump | pg_restore` (`tenants move --method dump`)
//! instead of logical replication. Two more clients read (a point select) throughout: a move by
//! dump holds the tenant's writes for the copy, not its reads.

// A benchmark: it prints its rows, and a failure is the end of the run.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use control_plane::moves::{self, Destination, MoveState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenancy::domain::{Isolation, Slug};
use tenancy_bench::process::start_router_with_postgres;
use tenancy_bench::Summary;

/// Clients writing through the router during the move.
const CLIENTS: usize = 8;
/// Clients reading through the router during the move.
const READERS: usize = 2;
/// How long the clients run before the move starts (their latency without one).
const BEFORE: Duration = Duration::from_secs(5);

/// One request a client made: when it started (since the benchmark's clock began), how long it
/// took, and whether it failed.
struct Sample {
    at: Duration,
    took: Duration,
    failed: Option<String>,
    read: bool,
}

#[tokio::main]
async fn main() {
    let megabytes: i64 = std::env::var("BENCH_MOVE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let method: moves::MoveMethod = std::env::var("BENCH_MOVE_METHOD")
        .ok()
        .map(|raw| raw.parse().unwrap_or_else(|e| panic!("BENCH_MOVE_METHOD: {e}")))
        .unwrap_or_default();
    let (db, common, cp) = tenancy_bench::control_plane_without_tls().await;
    let requested = control_plane::tenants::create(
        &cp,
        &control_plane::tenants::TenantRequest::new("acme", "pro"),
        "bench",
    )
    .await
    .unwrap_or_else(|e| panic!("create: {e}"));
    let tenant =
        control_plane::jobs::provision::provision(&cp, requested.id).await.unwrap_or_else(|e| panic!("{e}"));
    db.lift_rate_limits().await;
    let secret = cp.secrets.get(&tenant.secret_name().unwrap()).await.unwrap().unwrap();
    let schema = tenant.schema_name.as_str().to_owned();

    // The data: rows of about 1 KiB in `activity`, loaded as an application's history would be.
    let admin = db.tenants_client().await;
    let rows = megabytes * 1024;
    let loading = Instant::now();
    let mut done = 0;
    while done < rows {
        let upto = (done + 100_000).min(rows);
        admin
            .execute(
                &format!(
                    "INSERT INTO \"{schema}\".activity (verb, subject)
                     SELECT 'seeded', repeat(md5(g::text), 30) FROM generate_series($1::bigint, $2::bigint) g"
                ),
                &[&(done + 1), &upto],
            )
            .await
            .unwrap_or_else(|e| panic!("loading: {e}"));
        done = upto;
    }
    admin.batch_execute(&format!("VACUUM ANALYZE \"{schema}\".activity")).await.unwrap();
    let bytes: i64 = admin
        .query_one(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
              WHERE c.relnamespace = to_regnamespace($1) AND c.relkind = 'r'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    let mib = bytes as f64 / 1024.0 / 1024.0;
    eprintln!("loaded {rows} rows ({mib:.0} MiB) in {:.1} s", loading.elapsed().as_secs_f64());

    // The baseline: the same schema copied offline with pg_dump | pg_restore.
    let baseline = dump_and_restore(&db, &schema).await;

    // Clients writing through the router.
    let router = start_router_with_postgres(&common, &[]).await;
    let addr = router.postgres.unwrap();
    let clock = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for n in 0..CLIENTS + READERS {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(addr.port())
            .user(&secret.username)
            .password(&secret.password)
            .dbname(&secret.dbname)
            .options("-c tenant=acme");
        let client = tenancy_bench::pg_load::connect(&config).await;
        let (stop, samples) = (stop.clone(), samples.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            let read = n >= CLIENTS;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let started = Instant::now();
                let result = if read {
                    client
                        .query_opt(
                            "SELECT id, name FROM users WHERE id = $1",
                            &[&i64::try_from(i % 1000).unwrap()],
                        )
                        .await
                        .map(|_| ())
                } else {
                    client
                        .query_one(
                            "INSERT INTO users (email, name) VALUES ($1, 'bench') RETURNING id",
                            &[&format!("client{n}-{i}@bench.example")],
                        )
                        .await
                        .map(|_| ())
                };
                let sample = Sample {
                    at: started - clock,
                    took: started.elapsed(),
                    failed: result.err().map(|e| tenancy::pg::describe_error(&e)),
                    read,
                };
                samples.lock().unwrap().push(sample);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(BEFORE).await;

    // The move, its steps watched as they end.
    let slug = Slug::parse("acme").unwrap();
    let destination = Destination { isolation: Some(Isolation::Database), method, ..Destination::default() };
    let move_started = clock.elapsed();
    let started = moves::start(&cp, &slug, &destination, "bench").await.unwrap_or_else(|e| panic!("{e}"));
    let steps = Arc::new(Mutex::new(Vec::<(String, Duration)>::new()));
    let watcher = {
        let (cp, steps) = (cp.clone(), steps.clone());
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let record = moves::load(&cp, started.id).await.unwrap();
                if record.step != last {
                    last = record.step.clone();
                    steps.lock().unwrap().push((last.clone().unwrap_or_default(), clock.elapsed()));
                }
                if record.state != MoveState::Running {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    control_plane::jobs::runner::drain(&cp, tenant.id, Duration::from_secs(60)).await.unwrap();
    let move_ended = clock.elapsed();
    let _ = watcher.await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    let record = moves::load(&cp, started.id).await.unwrap();
    assert_eq!(record.state, MoveState::Done, "{:?}", record.last_error);

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.failed.is_some()).collect();
    let latencies = |read: bool, during: bool| -> Vec<Duration> {
        samples
            .iter()
            .filter(|s| s.read == read)
            .filter(|s| if during { s.at >= move_started && s.at <= move_ended } else { s.at < move_started })
            .map(|s| s.took)
            .collect()
    };
    let (before, during) =
        (Summary::of(&mut latencies(false, false)), Summary::of(&mut latencies(false, true)));
    let (reads_before, reads_during) =
        (Summary::of(&mut latencies(true, false)), Summary::of(&mut latencies(true, true)));
    let total = move_ended - move_started;
    let secs = |d: Duration| d.as_secs_f64();
    println!("| what | measured | target |");
    println!("|---|---|---|");
    println!(
        "| data | {mib:.0} MiB ({rows} rows of about 1 KiB in `activity`, and the sample schema's other tables) | about 1 GB |"
    );
    println!(
        "| baseline: `pg_dump -Fc -n <schema> \\| pg_restore` into a new database, offline | {:.1} s | |",
        secs(baseline)
    );
    let timeline: Vec<String> = steps
        .lock()
        .unwrap()
        .iter()
        .filter(|(step, _)| !step.is_empty())
        .map(|(step, at)| format!("{step} +{:.1} s", secs(*at - move_started)))
        .collect();
    println!(
        "| the move by {}, schema → own database, online | **{:.1} s** ({:.2}× the offline dump and restore); steps ended at: {} | |",
        method.as_str(),
        secs(total),
        secs(total) / secs(baseline),
        timeline.join(", ")
    );
    println!(
        "| the pause (requests held at the switch, as the move reports it) | **{} ms** | ≤ 2 s |",
        record.pause_ms.unwrap_or_default()
    );
    println!("| {CLIENTS} clients' writes before the move: p50 / p95 / p99 / max | {} | |", before.row());
    println!("| the same during the move | {} | |", during.row());
    println!("| {READERS} clients' point reads before the move | {} | |", reads_before.row());
    println!("| the same during the move | {} | |", reads_during.row());
    println!(
        "| added latency's p100 (max during − p50 before) | **{:.0} ms** | ≤ 2 s |",
        (during.max.saturating_sub(before.p50)).as_secs_f64() * 1000.0
    );
    println!(
        "| failed requests | **{}** of {} ({} reads){} | none |",
        failed.len(),
        samples.len(),
        failed.iter().filter(|s| s.read).count(),
        failed
            .first()
            .and_then(|s| s.failed.as_deref())
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    drop(router);
}

/// `pg_dump -Fc -n <schema>` of the tenants database piped into `pg_restore` into a new
/// database of the same server: how long the same copy takes offline.
async fn dump_and_restore(db: &testkit::TestDb, schema: &str) -> Duration {
    let target = format!("{}_dump_baseline", db.role_prefix);
    let admin = db.client().await;
    admin.batch_execute(&format!("CREATE DATABASE \"{target}\"")).await.unwrap();
    let url_of = |database: &str| {
        let (base, query) = db.url.split_once('?').map_or((db.url.as_str(), None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
        query.map_or_else(|| format!("{base}/{database}"), |q| format!("{base}/{database}?{q}"))
    };
    let started = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("pg_dump -Fc -n \"$SCHEMA\" \"$SOURCE\" | pg_restore --no-owner --no-acl -d \"$TARGET\"")
        .env("SCHEMA", schema)
        .env("SOURCE", url_of(&db.tenants_database()))
        .env("TARGET", url_of(&target))
        .status()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "pg_dump | pg_restore failed");
    admin.batch_execute(&format!("DROP DATABASE \"{target}\"")).await.unwrap();
    took
}
