//! Fleet migration speed: tenants provisioned by the control plane (the sample app schema, 11
//! tables), then a migration that adds a column and an index to three tables applied to all of
//! them with `fleet::apply` (what `tenantctl migrate apply` runs), against the same DDL sent
//! raw on 2 connections in the same run; then a run with nothing pending. Measured at
//! `BENCH_SMALL` (default 1,000) and `BENCH_TENANTS` (default 10,000) tenants, and at the larger
//! size with each concurrency of `BENCH_CONCURRENCY` (default `2,4,8`).
//!
//! Run with `BENCHES=fleet-migrate make bench`. Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use control_plane::control_plane::ControlPlane;
use control_plane::fleet::{ApplyOptions, ApplyReport, RunOptions, TenantResult};
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use futures::StreamExt as _;
use std::path::Path;
use std::time::Instant;
use testkit::{common_settings, workspace_root, SecretsFor, TestDb};

/// Tenants provisioned at a time while building the fleet.
const PROVISIONING_IN_FLIGHT: usize = 8;
/// Connections of the raw DDL baseline (the reference: ≈ 600 schemas/s on 2).
const RAW_CONNECTIONS: usize = 2;

struct Quiet;

impl control_plane::fleet::Progress for Quiet {
    fn start(&self, _more: usize) {}
    fn tenant_done(&self, _result: &TenantResult) {}
    fn finish(&self) {}
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|n| n.trim().parse().unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

/// The benchmark migration `V<version>`: a column and an index on three tables, the names made
/// unique by `tag` (each measurement adds its own). With `BENCH_NOT_NULL=1` the first column is
/// `NOT NULL DEFAULT 0`, which PostgreSQL verifies with work that grows with the catalog (about
/// 50 ms per such `ALTER TABLE` with 10,000 schemas in the database).
fn ddl(tag: &str) -> String {
    let not_null =
        if std::env::var("BENCH_NOT_NULL").is_ok_and(|v| v == "1") { " NOT NULL DEFAULT 0" } else { "" };
    format!(
        "ALTER TABLE tasks ADD COLUMN priority_{tag} int{not_null};
         CREATE INDEX tasks_priority_{tag} ON tasks (priority_{tag});
         ALTER TABLE projects ADD COLUMN color_{tag} text;
         CREATE INDEX projects_color_{tag} ON projects (color_{tag});
         ALTER TABLE comments ADD COLUMN edited_at_{tag} timestamptz;
         CREATE INDEX comments_edited_{tag} ON comments (edited_at_{tag});"
    )
}

/// Provisions tenants `from..to` (`fleet-<n>`) and returns the rate.
async fn grow(cp: &ControlPlane, from: usize, to: usize) -> f64 {
    let started = Instant::now();
    futures::stream::iter(from..to)
        .for_each_concurrent(PROVISIONING_IN_FLIGHT, |i| async move {
            let slug = format!("fleet-{i}");
            let tenant = tenants::create(cp, &TenantRequest::new(slug.clone(), "starter"), "bench")
                .await
                .unwrap_or_else(|e| panic!("{slug}: {e}"));
            provision(cp, tenant.id).await.unwrap_or_else(|e| panic!("{slug}: {e}"));
        })
        .await;
    (to - from) as f64 / started.elapsed().as_secs_f64()
}

/// The raw DDL on every tenant schema (in the tenants database), `RAW_CONNECTIONS` sessions, one transaction per schema:
/// schemas per second.
async fn raw_ddl(db: &TestDb, tag: &str) -> f64 {
    let schemas: Vec<String> = db
        .client()
        .await
        .query("SELECT schema_name FROM control.tenants WHERE status = 'active' ORDER BY slug", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sql = ddl(tag);
    let started = Instant::now();
    let chunk = schemas.len().div_ceil(RAW_CONNECTIONS);
    let sessions = schemas.chunks(chunk).map(|part| {
        let sql = sql.clone();
        async move {
            let client = db.tenants_client().await;
            for schema in part {
                client
                    .batch_execute(&format!("BEGIN; SET LOCAL search_path TO \"{schema}\"; {sql} COMMIT;"))
                    .await
                    .unwrap();
            }
        }
    });
    futures::future::join_all(sessions).await;
    schemas.len() as f64 / started.elapsed().as_secs_f64()
}

async fn apply(cp: &ControlPlane, concurrency: usize) -> ApplyReport {
    let options =
        ApplyOptions { run: RunOptions { concurrency, ..Default::default() }, ..Default::default() };
    let report = control_plane::fleet::apply(cp, &options, "bench", &Quiet).await.unwrap();
    assert_eq!(report.state, "completed", "{:?}", report.results.iter().find(|r| r.error.is_some()));
    report
}

fn add_migration(dir: &Path, version: usize, tag: &str) {
    std::fs::write(dir.join(format!("V{version}__bench_{tag}.sql")), ddl(tag)).unwrap();
}

fn row(what: &str, measured: &str, target: &str) {
    println!("| {what} | {measured} | {target} |");
}

#[tokio::main]
async fn main() {
    let small = env_list("BENCH_SMALL", "1000")[0];
    let large = env_list("BENCH_TENANTS", "10000")[0];
    let concurrencies = env_list("BENCH_CONCURRENCY", "2,4,8");
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let migrations = tempfile::tempdir().unwrap();
    std::fs::copy(workspace_root().join("migrations/V1__init.sql"), migrations.path().join("V1__init.sql"))
        .unwrap();
    let settings = control_plane::settings::ProvisioningSettings::new(
        &db.role_prefix,
        migrations.path().to_owned(),
        workspace_root().join("tenant-templates"),
    );
    let cp = ControlPlane::start(&common, &settings).await.unwrap();
    let mut version = 1;

    let rate = grow(&cp, 0, small).await;
    row(
        &format!("provisioning the first {small} tenants, {PROVISIONING_IN_FLIGHT} in flight"),
        &format!("{rate:.1} tenants/s"),
        "",
    );
    let raw = raw_ddl(&db, "raw1").await;
    row(
        &format!("raw DDL, {small} schemas, {RAW_CONNECTIONS} connections"),
        &format!("{raw:.0} schemas/s"),
        "",
    );
    version += 1;
    add_migration(migrations.path(), version, "s");
    let report = apply(&cp, 2).await;
    row(
        &format!("`migrate apply`, {small} tenants, concurrency 2"),
        &format!(
            "{:.1} s, {:.0} schemas/s = {:.0}% of raw DDL",
            report.duration_ms as f64 / 1000.0,
            report.rate,
            report.rate * 100.0 / raw
        ),
        "",
    );

    let rate = grow(&cp, small, large).await;
    row(
        &format!("provisioning tenants {small}..{large}, {PROVISIONING_IN_FLIGHT} in flight"),
        &format!("{rate:.1} tenants/s"),
        "",
    );
    let raw = raw_ddl(&db, "raw2").await;
    row(
        &format!("raw DDL, {large} schemas, {RAW_CONNECTIONS} connections"),
        &format!("{raw:.0} schemas/s"),
        "",
    );
    for concurrency in concurrencies {
        version += 1;
        add_migration(migrations.path(), version, &format!("c{concurrency}"));
        let report = apply(&cp, concurrency).await;
        row(
            &format!("`migrate apply`, {large} tenants, concurrency {concurrency}"),
            &format!(
                "{:.1} s, {:.0} schemas/s = {:.0}% of raw DDL ({} migrated)",
                report.duration_ms as f64 / 1000.0,
                report.rate,
                report.rate * 100.0 / raw,
                report.migrated
            ),
            "≤ 40 s",
        );
    }
    let started = Instant::now();
    let report = apply(&cp, 4).await;
    row(
        &format!("`migrate apply` with nothing pending, {large} tenants"),
        &format!(
            "{:.2} s ({} up to date, {} connected to)",
            started.elapsed().as_secs_f64(),
            report.up_to_date,
            report.results.len()
        ),
        "≤ 1 s",
    );
    let started = Instant::now();
    let plan = control_plane::fleet::plan::plan(
        &cp,
        &control_plane::fleet::plan::PlanOptions {
            selection: Default::default(),
            concurrency: 4,
            drift: true,
        },
    )
    .await
    .unwrap();
    row(
        &format!("`migrate plan` with the drift check, {large} tenants"),
        &format!("{:.2} s ({} drift)", started.elapsed().as_secs_f64(), plan.drift.map_or(0, |d| d.len())),
        "",
    );
}
