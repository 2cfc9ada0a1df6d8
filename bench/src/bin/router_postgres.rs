//! The router's PostgreSQL door against PgBouncer and against PostgreSQL itself, in one run.
//!
//! 100 `starter` tenants, each with a `pgbench -S`-like `accounts` table (10,000 rows), plan
//! rate limits lifted. A select-only load (`SELECT abalance FROM accounts WHERE aid = $1`) from
//! 64 client connections, each bound to one tenant for a round (client `i` to tenant
//! `(i + 64 × round) mod 100`: two rounds serve every tenant), in three protocols (simple,
//! extended with the unnamed statement, prepared with a named statement reused), on three
//! targets in turn (their order turning with each round), each a fresh process per round:
//!
//! - the router with its default settings (budget `ROUTER_MAX_CONNECTIONS` = 100, up to 20 per
//!   tenant), its PostgreSQL door open in plaintext;
//! - PgBouncer (transaction pooling, one pool of 1 per tenant: 100 server connections at most,
//!   the same budget);
//! - PostgreSQL directly (64 server connections, one per client, no pooling).
//!
//! Then one tenant, as the reference: 8 clients directly, 16 through PgBouncer on a pool
//! of 8, 16 through the router with `ROUTER_TENANT_MAX_CONNECTIONS` = 8. Then the memory of
//! 1,000 idle authenticated client connections (10 per tenant) to the router and to PgBouncer.
//! A pooler's CPU per transaction is its user and system time over the load divided by the
//! transactions, both shown: system time is mostly its sockets' work, the same for both.
//!
//! Every connection to PostgreSQL is plaintext (the cluster's `sslmode=disable`), so each
//! target does the same work on the server side. Run with `BENCHES=router-postgres make bench`.
//! Prints Markdown for bench/RESULTS.md.
//!
//! For profiling one part, `ROUTER_POSTGRES_ONLY` narrows the run to the targets, protocols and
//! scenarios it names (comma-separated, any of `router`, `pgbouncer`, `direct`, `simple`,
//! `extended`, `prepared`, `100`, `1`, `idle`); a kind it does not name is not narrowed.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use tenancy_bench::pg_load::{self, PgReport, Protocol, ServerWatch};
use tenancy_bench::pgbouncer::{self, PgBouncerPool};
use tenancy_bench::process::{start_router_with_postgres, ServerProcess};
use tenancy_bench::Summary;
use tokio_postgres::Config;

const TENANTS: usize = 100;
const CLIENTS: usize = 64;
const ROUNDS: usize = 2;
const ROWS: i32 = 10_000;
const WARMUP: Duration = Duration::from_secs(2);
const DURATION: Duration = Duration::from_secs(8);
const IDLE_CLIENTS: usize = 1_000;
/// The one-tenant rows' pool (PgBouncer's `pool_size`, the router's tenant maximum and the
/// tenant's own pool size).
const ONE_TENANT_POOL: i32 = 8;
/// The router's default `ROUTER_MAX_CONNECTIONS`, which PgBouncer's pools add up to.
const BUDGET: usize = 100;

/// One tenant as each target reaches it.
#[derive(Debug, Clone)]
struct Tenant {
    slug: String,
    schema: String,
    role: String,
    password: String,
    dbname: String,
    host: String,
    port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Router,
    PgBouncer,
    Direct,
}

impl Target {
    const ALL: [Self; 3] = [Self::Router, Self::PgBouncer, Self::Direct];

    fn name(self) -> &'static str {
        match self {
            Self::Router => "router",
            Self::PgBouncer => "PgBouncer",
            Self::Direct => "direct",
        }
    }
}

/// How a scenario sizes the poolers.
#[derive(Debug, Clone, Copy)]
struct Sizing {
    /// PgBouncer's `pool_size` per tenant.
    pool_size: usize,
    /// `ROUTER_TENANT_MAX_CONNECTIONS`, when not the default.
    router_tenant_max: Option<usize>,
}

/// A target running: its process (none for PostgreSQL itself) and its clients' settings.
struct Running {
    process: Option<ServerProcess>,
    clients: Vec<Config>,
}

async fn start(target: Target, env: &Env, clients: &[&Tenant], sizing: Sizing) -> Running {
    let mut configs = Vec::with_capacity(clients.len());
    let process = match target {
        Target::Router => {
            let extra: Vec<(&str, String)> = sizing
                .router_tenant_max
                .map(|n| ("ROUTER_TENANT_MAX_CONNECTIONS", n.to_string()))
                .into_iter()
                .collect();
            let router = start_router_with_postgres(&env.common, &extra).await;
            let addr = router.postgres.unwrap();
            for t in clients {
                let mut c = login(t);
                c.host("127.0.0.1")
                    .port(addr.port())
                    .dbname(&t.dbname)
                    .options(format!("-c tenant={}", t.slug));
                configs.push(c);
            }
            Some(router)
        }
        Target::PgBouncer => {
            let pools: Vec<PgBouncerPool> = env
                .tenants
                .iter()
                .map(|t| PgBouncerPool {
                    alias: t.slug.clone(),
                    host: t.host.clone(),
                    port: t.port,
                    dbname: t.dbname.clone(),
                    user: t.role.clone(),
                    password: t.password.clone(),
                    pool_size: sizing.pool_size,
                })
                .collect();
            let bouncer = pgbouncer::start(&pools, IDLE_CLIENTS + 100).await;
            for t in clients {
                let mut c = login(t);
                c.host("127.0.0.1").port(bouncer.addr.port()).dbname(&t.slug);
                configs.push(c);
            }
            Some(bouncer)
        }
        Target::Direct => {
            for t in clients {
                let mut c = login(t);
                c.host(&t.host).port(t.port).dbname(&t.dbname);
                configs.push(c);
            }
            None
        }
    };
    Running { process, clients: configs }
}

fn login(t: &Tenant) -> Config {
    let mut c = Config::new();
    c.user(&t.role).password(&t.password);
    c
}

/// One round on one target: the load's report and the target's CPU seconds per transaction.
struct Measured {
    report: PgReport,
    /// User and system CPU seconds per transaction.
    cpu_per_transaction: Option<(f64, f64)>,
}

async fn measure(
    env: &Env,
    target: Target,
    protocol: Protocol,
    clients: &[&Tenant],
    sizing: Sizing,
) -> Measured {
    env.watch.wait_for_none().await;
    let running = start(target, env, clients, sizing).await;
    let connected = pg_load::open_all(&running.clients, 16).await;
    // From here on: the load alone (logins are not counted in the CPU per transaction).
    let cpu = running.process.as_ref().map(ServerProcess::cpu_split);
    let report = pg_load::run(connected, protocol, ROWS, WARMUP, DURATION, &env.watch).await;
    let cpu_per_transaction = running.process.as_ref().zip(cpu).map(|(p, (user, system))| {
        let (user_now, system_now) = p.cpu_split();
        let per = |seconds: f64| seconds / report.total.max(1) as f64;
        (per(user_now - user), per(system_now - system))
    });
    if report.errors > 0 {
        eprintln!(
            "  {} {}: {} errors, first: {}",
            target.name(),
            protocol.name(),
            report.errors,
            report.first_error.as_deref().unwrap_or("")
        );
    }
    Measured { report, cpu_per_transaction }
}

/// The rounds of one target in one protocol, summed up.
struct Row {
    tps: f64,
    rounds: Vec<f64>,
    summary: Summary,
    peak: i64,
    errors: u64,
    /// CPU per transaction: user, system (µs).
    cpu_us: Option<(f64, f64)>,
}

impl Row {
    fn of(mut measured: Vec<Measured>) -> Self {
        let rounds: Vec<f64> = measured.iter().map(|m| m.report.tps()).collect();
        let cpu: Vec<(f64, f64)> = measured.iter().filter_map(|m| m.cpu_per_transaction).collect();
        let mut latencies: Vec<Duration> =
            measured.iter_mut().flat_map(|m| std::mem::take(&mut m.report.latencies)).collect();
        Self {
            tps: rounds.iter().sum::<f64>() / rounds.len() as f64,
            peak: measured.iter().map(|m| m.report.peak_server_connections).max().unwrap_or(0),
            errors: measured.iter().map(|m| m.report.errors).sum(),
            cpu_us: (!cpu.is_empty()).then(|| {
                let mean =
                    |f: fn(&(f64, f64)) -> f64| 1e6 * cpu.iter().map(f).sum::<f64>() / cpu.len() as f64;
                (mean(|c| c.0), mean(|c| c.1))
            }),
            summary: Summary::of(&mut latencies),
            rounds,
        }
    }

    fn cells(&self) -> String {
        let rounds = self.rounds.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        let cpu = self.cpu_us.map_or_else(String::new, |(user, system)| {
            format!("; its CPU {:.0} µs/transaction (user {user:.0}, system {system:.0})", user + system)
        });
        let errors = if self.errors > 0 { format!("; **{} errors**", self.errors) } else { String::new() };
        format!(
            "{:.0} tps (rounds: {rounds}); p50 / p99 {:.2} / {:.2} ms; server connections at most {}{cpu}{errors}",
            self.tps,
            self.summary.p50.as_secs_f64() * 1e3,
            self.summary.p99.as_secs_f64() * 1e3,
            self.peak,
        )
    }
}

/// What `ROUTER_POSTGRES_ONLY` keeps of the run.
struct Only(Vec<String>);

impl Only {
    fn from_env() -> Self {
        let raw = std::env::var("ROUTER_POSTGRES_ONLY").unwrap_or_default();
        Self(raw.split(',').map(|w| w.trim().to_ascii_lowercase()).filter(|w| !w.is_empty()).collect())
    }

    /// Whether `name`, one of `kind`, is kept: named, or no word of its kind is.
    fn keeps(&self, name: &str, kind: &[&str]) -> bool {
        let named = |w: &str| self.0.iter().any(|o| o == w);
        named(name) || !kind.iter().any(|k| named(k))
    }

    fn target(&self, target: Target) -> bool {
        self.keeps(&target.name().to_ascii_lowercase(), &["router", "pgbouncer", "direct"])
    }

    fn protocol(&self, protocol: Protocol) -> bool {
        self.keeps(protocol.name(), &["simple", "extended", "prepared"])
    }

    fn scenario(&self, name: &str) -> bool {
        self.keeps(name, &["100", "1", "idle"])
    }
}

struct Env {
    only: Only,
    common: tenancy::settings::CommonSettings,
    tenants: Vec<Tenant>,
    watch: ServerWatch,
}

/// One scenario: every protocol, every target, `ROUNDS` rounds; `clients(round)` are the tenants
/// of the clients in that round.
async fn scenario(
    env: &Env,
    label: &str,
    sizing: Sizing,
    clients: impl Fn(Target, usize) -> Vec<usize>,
    budget_note: &str,
) {
    let prepared_through_pgbouncer = pgbouncer::carries_prepared_statements();
    for protocol in [Protocol::Simple, Protocol::Extended, Protocol::Prepared] {
        if !env.only.protocol(protocol) {
            continue;
        }
        let mut measured: [Vec<Measured>; 3] = Default::default();
        for round in 0..ROUNDS {
            // The targets' order turns with each round: on a machine whose load changes during
            // a run, none always runs first.
            let mut order: Vec<(usize, Target)> = Target::ALL.into_iter().enumerate().collect();
            order.rotate_left(round % Target::ALL.len());
            for (i, target) in order {
                if !env.only.target(target) {
                    continue;
                }
                if target == Target::PgBouncer
                    && protocol == Protocol::Prepared
                    && !prepared_through_pgbouncer
                {
                    continue;
                }
                eprintln!("{label}, {}: round {round}, {}", protocol.name(), target.name());
                let picked: Vec<&Tenant> =
                    clients(target, round).into_iter().map(|t| &env.tenants[t]).collect();
                measured[i].push(measure(env, target, protocol, &picked, sizing).await);
            }
        }
        let rows: [Option<Row>; 3] = measured.map(|m| (!m.is_empty()).then(|| Row::of(m)));
        for (target, row) in Target::ALL.into_iter().zip(&rows) {
            if !env.only.target(target) {
                continue;
            }
            let clients_here = clients(target, 0).len();
            let what = format!("{label}, {}, {}: {clients_here} clients", protocol.name(), target.name());
            match row {
                Some(row) => println!("| {what} | {} | |", row.cells()),
                None => println!(
                    "| {what} | not run: PgBouncer {} keeps no named prepared statements in transaction pooling (`max_prepared_statements` arrived in 1.21) | |",
                    pgbouncer::version().0.trim_start_matches("PgBouncer ")
                ),
            }
        }
        let [Some(router), bouncer, Some(direct)] = &rows else { continue };
        let versus_bouncer = bouncer.as_ref().map_or_else(
            || "PgBouncer: not run".to_owned(),
            |b| {
                format!(
                    "**{:.2}×** PgBouncer's throughput, p99 {:.2} against {:.2} ms",
                    router.tps / b.tps,
                    router.summary.p99.as_secs_f64() * 1e3,
                    b.summary.p99.as_secs_f64() * 1e3
                )
            },
        );
        let met = bouncer.as_ref().map_or("", |b| {
            if router.tps >= b.tps && router.summary.p99 <= b.summary.p99 {
                "met"
            } else {
                "**not met**"
            }
        });
        println!(
            "| {label}, {}: router against the others | {versus_bouncer}; {:.1}% of direct; router's server connections at most {} ({budget_note}) | ≥ 1× PgBouncer (aim 1.5×), p99 ≤ PgBouncer's: {met} |",
            protocol.name(),
            100.0 * router.tps / direct.tps,
            router.peak,
        );
    }
}

/// RSS before and after `IDLE_CLIENTS` authenticated idle clients (10 per tenant).
async fn idle_memory(env: &Env, target: Target) {
    env.watch.wait_for_none().await;
    let clients: Vec<&Tenant> = (0..IDLE_CLIENTS).map(|i| &env.tenants[i % TENANTS]).collect();
    let running =
        start(target, env, &clients, Sizing { pool_size: BUDGET / TENANTS, router_tenant_max: None }).await;
    let process = running.process.as_ref().unwrap();
    let (before, _) = process.memory_mib();
    let open = pg_load::open_all(&running.clients, 16).await;
    let (after, peak) = process.memory_mib();
    let servers = env.watch.count_now().await;
    println!(
        "| {} clients idle, {}: RSS before / after (peak) | {before:.1} / {after:.1} ({peak:.1}) MiB = **{:.1} KiB per client connection**; server connections held meanwhile: {servers} | |",
        open.len(),
        target.name(),
        (after - before) * 1024.0 / open.len() as f64,
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() {
    println!("# load average (1, 5, 15 min) at the start: {}", load_average());
    println!("# {}", pgbouncer::version().0);
    let (db, common, cp) = tenancy_bench::control_plane_without_tls().await;
    eprintln!("provisioning {TENANTS} starter tenants…");
    let fleet = tenancy_bench::fleet::provision_fleet(&db, &cp, "pgd", "starter", TENANTS, 8, 1).await;
    let admin = db.client().await;
    // Throughput is measured here, not the plans' rate limits. The one-tenant rows want a pool
    // of 8 for tenant 0, which its plan's pool (2) would cap below the router's tenant maximum.
    admin.execute("UPDATE control.tenants SET rate_limit_per_second = NULL", &[]).await.unwrap();
    admin
        .execute(
            "UPDATE control.tenants SET pool_size = $1 WHERE slug = $2",
            &[&ONE_TENANT_POOL, &fleet[0].slug],
        )
        .await
        .unwrap();
    let mut tenants = Vec::with_capacity(fleet.len());
    for t in &fleet {
        let row = admin
            .query_one("SELECT schema_name, role_name FROM control.tenants WHERE slug = $1", &[&t.slug])
            .await
            .unwrap();
        let url: Config = t.database_url.parse().unwrap();
        let host = match url.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            other => panic!("tenant host {other:?}"),
        };
        tenants.push(Tenant {
            slug: t.slug.clone(),
            schema: row.get(0),
            role: row.get(1),
            password: String::from_utf8(url.get_password().unwrap().to_vec()).unwrap(),
            dbname: url.get_dbname().unwrap().to_owned(),
            host,
            port: url.get_ports().first().copied().unwrap_or(5432),
        });
    }
    seed_accounts(&db, &tenants).await;
    let watch = ServerWatch {
        admin_url: db.url.clone(),
        roles: Arc::new(tenants.iter().map(|t| t.role.clone()).collect()),
    };
    let env = Env { only: Only::from_env(), common, tenants, watch };

    println!("| what | measured | target |");
    println!("|---|---|---|");
    if env.only.scenario("100") {
        scenario(
            &env,
            "100 tenants",
            Sizing { pool_size: BUDGET / TENANTS, router_tenant_max: None },
            |_, round| (0..CLIENTS).map(|i| (i + CLIENTS * round) % TENANTS).collect(),
            &format!("budget {BUDGET}"),
        )
        .await;
    }
    if env.only.scenario("1") {
        scenario(
            &env,
            "1 tenant",
            Sizing { pool_size: ONE_TENANT_POOL as usize, router_tenant_max: Some(ONE_TENANT_POOL as usize) },
            |target, _| vec![0; if target == Target::Direct { 8 } else { 16 }],
            "tenant max 8",
        )
        .await;
    }
    if env.only.scenario("idle") {
        for target in [Target::Router, Target::PgBouncer] {
            if env.only.target(target) {
                idle_memory(&env, target).await;
            }
        }
    }
    println!("# load average (1, 5, 15 min) at the end: {}", load_average());
}

/// A `pgbench_accounts`-like table in every tenant's schema, readable by the tenant's role.
async fn seed_accounts(db: &testkit::TestDb, tenants: &[Tenant]) {
    let client = db.tenants_client().await;
    for chunk in tenants.chunks(20) {
        let sql: String = chunk
            .iter()
            .map(|t| {
                let (schema, role) = (&t.schema, &t.role);
                format!(
                    "CREATE TABLE \"{schema}\".accounts (aid integer PRIMARY KEY, bid integer NOT NULL, \
                     abalance integer NOT NULL, filler character(84)); \
                     INSERT INTO \"{schema}\".accounts SELECT i, 1, 0, '' FROM generate_series(1, {ROWS}) AS i; \
                     ANALYZE \"{schema}\".accounts; \
                     GRANT SELECT ON \"{schema}\".accounts TO \"{role}\";"
                )
            })
            .collect();
        client.batch_execute(&sql).await.unwrap();
    }
}
