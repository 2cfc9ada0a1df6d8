//! The PostgreSQL-protocol door under load and faults: hundreds of clients over many tenants
//! never make the router open more server connections than its budget, and a client that waits
//! too long for one gets an error, never a hang; PostgreSQL restarted under its clients' feet
//! gives them clean errors, then service again; SIGTERM drains a router process.

use control_plane::control_plane::ControlPlane;
use e2e_tests::pg_door::{connect, connect_client, first, DoorClient};
use e2e_tests::{
    provisioned, provisioning_settings, router_settings, spawn_router_with, Catalog, RouterProcess,
};
use futures::StreamExt as _;
use std::net::SocketAddr;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::secrets::DbCredentials;
use testkit::{common_settings, PgServer, SecretsFor, TestDb};
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

/// How long any one client's work may take before the test calls it hung: far longer than
/// the router's checkout timeout, which bounds every wait for a server connection.
const HANG: Duration = Duration::from_secs(90);

/// SCRAM logins opened at once (each costs the client 4096 rounds of PBKDF2).
const LOGINS_AT_ONCE: usize = 8;

/// Tenants provisioned at once.
const PROVISIONED_AT_ONCE: usize = 4;

/// A tenant of the test: its record and credentials.
struct Tenant {
    record: TenantRecord,
    secret: DbCredentials,
}

impl Tenant {
    fn slug(&self) -> &str {
        self.record.slug.as_str()
    }
}

/// `count` tenants on the `pro` plan (`load-00`, `load-01`, ...), whose rate limit is lifted:
/// the clients run more transactions a second than the plan allows, and this test is about the
/// connection budget.
async fn tenants(cp: &ControlPlane, db: &TestDb, count: usize) -> Vec<Tenant> {
    let tenants: Vec<Tenant> = futures::stream::iter(0..count)
        .map(|i| async move {
            let (record, secret) = provisioned(cp, &format!("load-{i:02}"), "pro").await;
            Tenant { record, secret }
        })
        .buffered(PROVISIONED_AT_ONCE)
        .collect()
        .await;
    db.lift_rate_limits().await;
    tenants
}

/// Server connections the tenants' roles hold now, as PostgreSQL counts them.
async fn server_connections(admin: &tokio_postgres::Client, roles: &[String]) -> i64 {
    admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1)", &[&roles])
        .await
        .unwrap()
        .get(0)
}

/// A gauge of the router's `/metrics`.
async fn gauge(admin_addr: SocketAddr, name: &str) -> i64 {
    let text = reqwest::get(format!("http://{admin_addr}/metrics")).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The most server connections seen at once while it runs, by PostgreSQL and by the router's
/// own count (`tenant_router_connections_in_use`), sampled until `done`.
async fn watch_connections(
    db: &TestDb,
    roles: Vec<String>,
    admin_addr: SocketAddr,
    done: CancellationToken,
) -> tokio::task::JoinHandle<(i64, i64)> {
    let admin = db.client().await;
    tokio::spawn(async move {
        let (mut by_postgres, mut by_router) = (0, 0);
        let mut every = tokio::time::interval(Duration::from_millis(10));
        while !done.is_cancelled() {
            every.tick().await;
            by_postgres = by_postgres.max(server_connections(&admin, &roles).await);
            by_router = by_router.max(gauge(admin_addr, "tenant_router_connections_in_use").await);
        }
        (by_postgres, by_router)
    })
}

/// What one client does: short selects (simple and extended protocol), and for one client in
/// ten a transaction that inserts a row and sleeps a little before it commits. `Ok(true)` when
/// it inserted its row.
async fn client_work(
    client: &tokio_postgres::Client,
    tenant: &Tenant,
    n: usize,
) -> Result<bool, tokio_postgres::Error> {
    let schema = client.simple_query("SELECT current_schema()").await?;
    let seen = schema.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(
        seen.as_deref(),
        Some(tenant.record.schema_name.as_str()),
        "a client saw another tenant's schema"
    );
    let sum: i32 = client.query_one("SELECT $1::int + 1", &[&i32::try_from(n).unwrap()]).await?.get(0);
    assert_eq!(sum, i32::try_from(n).unwrap() + 1);
    if n % 10 != 0 {
        return Ok(false);
    }
    client.batch_execute("BEGIN").await?;
    client
        .execute(
            "INSERT INTO users (email, name) VALUES ($1, 'load')",
            &[&format!("client-{n}@load.example")],
        )
        .await?;
    client.batch_execute("SELECT pg_sleep(0.05)").await?;
    client.batch_execute("COMMIT").await?;
    Ok(true)
}

/// Whether `err` is the router's answer to a client that waited past the checkout timeout.
fn is_checkout_timeout(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::TOO_MANY_CONNECTIONS)
}

const TENANTS: usize = 50;
const CLIENTS_PER_TENANT: usize = 10;
const BUDGET: usize = 20;
const TENANT_CAP: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_over_fifty_tenants_never_exceed_the_budget_and_none_hangs() {
    let Catalog { db, common, cp } = Catalog::create().await;
    let tenants = tenants(&cp, &db, TENANTS).await;
    let mut settings = router_settings(&common);
    settings.max_connections = BUDGET;
    settings.tenant_max_connections = TENANT_CAP;
    settings.checkout_timeout = Duration::from_secs(5);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();
    let mut roles: Vec<String> = tenants.iter().map(|t| t.record.role_name.as_str().to_owned()).collect();
    roles.extend(tenants.iter().filter_map(|t| t.secret.reader_username.clone()));
    let done = CancellationToken::new();
    let watcher = watch_connections(&db, roles, router.admin_addr, done.clone()).await;

    // 500 clients log in (a few at a time: SCRAM is slow on purpose), each taking a server
    // connection for a moment to learn its settings.
    // (Tenant by tenant: a tenant's logins share its server connections.)
    let logins = (0..TENANTS * CLIENTS_PER_TENANT).map(|n| {
        let tenant = &tenants[n / CLIENTS_PER_TENANT];
        async move {
            let login = tokio::time::timeout(HANG, connect_client(addr, tenant.slug(), &tenant.secret));
            (n, login.await.expect("a login hung"))
        }
    });
    let clients: Vec<(usize, Result<DoorClient, tokio_postgres::Error>)> =
        futures::stream::iter(logins).buffer_unordered(LOGINS_AT_ONCE).collect().await;
    let mut connected = Vec::new();
    for (n, login) in clients {
        match login {
            Ok(door) => connected.push((n, door)),
            Err(err) if is_checkout_timeout(&err) => {}
            Err(err) => panic!("client {n} refused: {err:?}"),
        }
    }

    // All at once: every client's work succeeds, or fails with the checkout timeout.
    let works = connected.iter().map(|(n, door)| {
        let tenant = &tenants[n / CLIENTS_PER_TENANT];
        async move {
            let work = tokio::time::timeout(HANG, client_work(&door.client, tenant, *n)).await;
            (*n, work.unwrap_or_else(|_| panic!("client {n} hung")))
        }
    });
    let results = futures::future::join_all(works).await;
    done.cancel();
    let (by_postgres, by_router) = watcher.await.unwrap();

    let mut inserted = vec![0i64; TENANTS];
    let (mut served, mut timed_out) = (0, 0);
    for (n, result) in results {
        match result {
            Ok(insert) => {
                served += 1;
                inserted[n / CLIENTS_PER_TENANT] += i64::from(insert);
            }
            Err(err) if is_checkout_timeout(&err) => timed_out += 1,
            Err(err) => panic!("client {n} failed: {err:?}"),
        }
    }
    eprintln!(
        "{} of {} clients connected; {served} served, {timed_out} timed out; at most {by_postgres} server connections (router: {by_router})",
        connected.len(),
        TENANTS * CLIENTS_PER_TENANT
    );
    assert!(
        by_postgres <= BUDGET as i64,
        "PostgreSQL saw {by_postgres} connections for a budget of {BUDGET}"
    );
    assert!(
        by_router <= BUDGET as i64,
        "the router counted {by_router} connections for a budget of {BUDGET}"
    );
    assert!(served > 0, "nobody was served");
    // What was committed is there, and nothing else.
    let tenants_db = db.tenants_client().await;
    for (tenant, inserted) in tenants.iter().zip(inserted) {
        let sql = format!("SELECT count(*) FROM \"{}\".users", tenant.record.schema_name.as_str());
        let rows: i64 = tenants_db.query_one(&sql, &[]).await.unwrap().get(0);
        assert_eq!(rows, inserted, "{}: rows committed", tenant.slug());
    }
    // Every client is still usable.
    let afterwards: Vec<_> = futures::stream::iter(&connected)
        .map(|(n, door)| async move { (*n, door.client.simple_query("SELECT 1").await) })
        .buffer_unordered(BUDGET)
        .collect()
        .await;
    for (n, result) in afterwards {
        if let Err(err) = result {
            assert!(is_checkout_timeout(&err), "client {n} broken after the load: {err:?}");
        }
    }
    router.stop().await.unwrap();
}

/// A client that waits for a server connection past `ROUTER_CHECKOUT_TIMEOUT` (its tenant's
/// whole cap is held in open transactions) gets `53300`, not a hang, and stays connected; it
/// is served once a connection is free. Other tenants are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_past_the_checkout_timeout_gets_an_error_then_service() {
    let Catalog { db, common, cp } = Catalog::create().await;
    let tenants = tenants(&cp, &db, 2).await;
    let mut settings = router_settings(&common);
    settings.max_connections = BUDGET;
    settings.tenant_max_connections = TENANT_CAP;
    settings.checkout_timeout = Duration::from_millis(300);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();
    let (busy, other) = (&tenants[0], &tenants[1]);

    // (Logged in first: a login takes a server connection for a moment, to learn its settings.)
    let waiter = connect(addr, busy.slug(), &busy.secret).await.unwrap();
    let mut holders = Vec::new();
    for _ in 0..TENANT_CAP {
        let holder = connect(addr, busy.slug(), &busy.secret).await.unwrap();
        holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
        holders.push(holder);
    }
    let waited = tokio::time::timeout(HANG, waiter.simple_query("SELECT 1")).await;
    let err = waited.expect("a client waiting for a connection hung").unwrap_err();
    assert!(is_checkout_timeout(&err), "{err:?}");
    assert!(!waiter.is_closed(), "a client that waited too long is told, not closed");
    let neighbour = connect(addr, other.slug(), &other.secret).await.unwrap();
    assert_eq!(first(&neighbour, "SELECT 'served'").await, "served");

    holders[0].batch_execute("COMMIT").await.unwrap();
    assert_eq!(first(&waiter, "SELECT 'my turn'").await, "my turn");
    // (Shutdown would wait for the transaction still open.)
    holders[1].batch_execute("COMMIT").await.unwrap();
    router.stop().await.unwrap();
}

/// Whether `err` is a clean answer to a client whose server connection PostgreSQL took away:
/// PostgreSQL's own `FATAL` (57P01, relayed), the router's (08006), or the connection closed
/// after one of them.
fn is_server_lost(err: &tokio_postgres::Error) -> bool {
    err.is_closed()
        || matches!(err.code(), Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CONNECTION_FAILURE)
}

/// Whether `err` is the router's answer while the tenant's database cannot be reached (57P03).
fn is_database_unavailable(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::CANNOT_CONNECT_NOW)
}

/// How the connection of `door` ended (the client was closed), or a failed test if it does not.
async fn ended(door: DoorClient, who: &str) -> Result<(), tokio_postgres::Error> {
    let ending = tokio::time::timeout(HANG, door.connection).await;
    let ending = ending.unwrap_or_else(|_| panic!("{who}: the router never closed the connection")).unwrap();
    assert!(door.client.is_closed(), "{who}");
    ending
}

/// Waits until PostgreSQL runs `sql` for a client.
async fn until_running(admin: &tokio_postgres::Client, sql: &str) {
    let started = std::time::Instant::now();
    loop {
        let running: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1", &[&sql])
            .await
            .unwrap()
            .get(0);
        if running > 0 {
            return;
        }
        assert!(started.elapsed() < HANG, "{sql} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that runs short transactions until `done`: each succeeds or fails cleanly, none
/// hangs. Returns how many failed.
fn busy_client(door: DoorClient, done: CancellationToken) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut failed = 0;
        while !done.is_cancelled() {
            let query = door.client.simple_query("SELECT count(*) FROM users");
            match tokio::time::timeout(HANG, query).await.expect("a query through the router hung") {
                Ok(_) => {}
                // The connection's end: closed, or about to be (a FATAL error the router relays
                // arrives before the close that follows it, so the client may not see it closed
                // yet).
                Err(err) if door.client.is_closed() || is_server_lost(&err) => {
                    assert!(is_server_lost(&err), "a busy client was closed uncleanly: {err:?}");
                    return failed + 1;
                }
                Err(err) => {
                    assert!(is_database_unavailable(&err), "a busy client failed uncleanly: {err:?}");
                    failed += 1;
                    // As an application would, it retries a little later.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        failed
    })
}

/// A dedicated PostgreSQL server, a control plane on it with two tenants, and a router whose
/// budget is `RESTART_BUDGET`, each tenant's cap half of it.
struct Restartable {
    pg: PgServer,
    router: tenant_router::http::RunningRouter,
    acme: DbCredentials,
    globex: DbCredentials,
    _db: TestDb,
}

const RESTART_BUDGET: usize = 4;

impl Restartable {
    async fn start() -> Self {
        let pg = PgServer::start().await;
        let db = TestDb::create().await; // for its unique prefixes only
        let mut common = common_settings(&db, SecretsFor::Local);
        common.database_url = Some(pg.url("postgres").into());
        let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
        let (_, acme) = provisioned(&cp, "acme", "pro").await;
        let (_, globex) = provisioned(&cp, "globex", "pro").await;
        let mut settings = router_settings(&common);
        settings.max_connections = RESTART_BUDGET;
        settings.tenant_max_connections = RESTART_BUDGET / 2;
        settings.checkout_timeout = Duration::from_secs(2);
        let restartable = Self { pg, router: spawn_router_with(&settings).await, acme, globex, _db: db };
        let admin = restartable.admin().await;
        admin.execute("UPDATE control.tenants SET rate_limit_per_second = 100000", &[]).await.unwrap();
        restartable
    }

    fn addr(&self) -> SocketAddr {
        self.router.pg_addr.unwrap()
    }

    /// A superuser connection to the server's catalog database.
    async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.pg.url("postgres"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// Stops PostgreSQL (`immediate`: as if it crashed) while clients of the door are busy, and
    /// starts it again; checks what each client saw.
    async fn restart_under_load(&self, immediate: bool) {
        let (addr, acme, globex) = (self.addr(), &self.acme, &self.globex);
        let lost = format!("lost-{immediate}@acme.example");
        let in_transaction = connect_client(addr, "acme", acme).await.unwrap();
        in_transaction.client.batch_execute("BEGIN").await.unwrap();
        in_transaction
            .client
            .execute("INSERT INTO users (email, name) VALUES ($1, 'lost')", &[&lost])
            .await
            .unwrap();
        let running = connect_client(addr, "globex", globex).await.unwrap();
        let sleeping = tokio::spawn(async move {
            let sleep = running.client.simple_query("SELECT pg_sleep(60)").await.map(|_| ());
            (sleep, running)
        });
        let idle = connect(addr, "acme", acme).await.unwrap();
        assert_eq!(first(&idle, "SELECT 'before'").await, "before");
        let done = CancellationToken::new();
        let mut busy = Vec::new();
        for (slug, secret) in [("acme", acme), ("globex", globex)] {
            busy.push(busy_client(connect_client(addr, slug, secret).await.unwrap(), done.clone()));
        }
        until_running(&self.admin().await, "SELECT pg_sleep(60)").await;

        self.pg.stop(immediate).await;
        // The query in flight, and the open transaction, are lost with their server connections.
        let (sleep, running) =
            tokio::time::timeout(HANG, sleeping).await.expect("the running query hung").unwrap();
        let err = sleep.unwrap_err();
        assert!(is_server_lost(&err), "{err:?}");
        let err = ended(running, "the client of the running query").await.unwrap_err();
        assert!(is_server_lost(&err), "{err:?}");
        let err = ended(in_transaction, "the client in a transaction").await.unwrap_err();
        assert!(is_server_lost(&err), "{err:?}");
        // A client between transactions is told the database is unavailable, and stays.
        for _ in 0..2 {
            let err = idle.simple_query("SELECT 1").await.unwrap_err();
            assert!(is_database_unavailable(&err), "{err:?}");
            assert!(!idle.is_closed());
        }
        // New clients are refused, and the router itself is up.
        let err = connect(addr, "acme", acme).await.unwrap_err();
        assert!(is_database_unavailable(&err), "{err:?}");
        let health = reqwest::get(format!("http://{}/healthz", self.router.admin_addr)).await.unwrap();
        assert_eq!(health.status().as_u16(), 200);

        self.pg.start_again().await;
        // The client that waited is served at its next transaction, and new clients are.
        assert_eq!(first(&idle, "SELECT 'after'").await, "after");
        let fresh = connect(addr, "globex", globex).await.unwrap();
        assert_eq!(first(&fresh, "SELECT 'new'").await, "new");
        // The transaction PostgreSQL lost is not there.
        let sql = format!("SELECT count(*) FROM users WHERE email = '{lost}'");
        assert_eq!(first(&idle, &sql).await, "0");
        done.cancel();
        for client in busy {
            assert!(client.await.unwrap() > 0, "a busy client never saw PostgreSQL go");
        }
        // No unit of the budget was lost: all of it can be held at once.
        let mut holders = Vec::new();
        for (slug, secret) in [("acme", acme), ("acme", acme), ("globex", globex), ("globex", globex)] {
            let holder = connect(addr, slug, secret).await.unwrap();
            let held = holder.batch_execute("BEGIN; SELECT 1").await;
            held.unwrap_or_else(|e| panic!("a unit of the budget is missing: {e:?}"));
            holders.push(holder);
        }
        for holder in &holders {
            holder.batch_execute("COMMIT").await.unwrap();
        }
    }
}

/// What a restart of PostgreSQL does to the door's clients, as PgBouncer does it in transaction
/// pooling: a client whose query or transaction was on a server connection when PostgreSQL went
/// away gets PostgreSQL's `FATAL` (57P01) or the router's (08006) and is closed (its transaction
/// is lost); a client between transactions stays connected, gets `ERROR 57P03` while PostgreSQL
/// is down, and is served again at its next transaction once it is back; new clients are
/// refused with 57P03 meanwhile. Nothing hangs, and no unit of the budget is lost. Twice: an
/// administrator's restart (`fast`), then a crash (`immediate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_load_gives_clean_errors_then_service_again() {
    let restartable = Restartable::start().await;
    restartable.restart_under_load(false).await;
    restartable.restart_under_load(true).await;
    restartable.router.stop().await.unwrap();
}

/// `tenant-router` as a process of its own (see [`RouterProcess`]) with `shutdown_grace`.
async fn router_process(common: &tenancy::settings::CommonSettings, shutdown_grace: &str) -> RouterProcess {
    RouterProcess::start(
        env!("CARGO_BIN_EXE_tenant-router-under-test"),
        common,
        &[("SHUTDOWN_GRACE", shutdown_grace)],
    )
    .await
}

/// SIGTERM drains the router: the PostgreSQL listener stops accepting at once, clients between
/// transactions are closed at once (`FATAL 57P01`), a client in a transaction finishes it
/// (its `COMMIT` is kept) and is closed then, and the process exits 0 (its drain finished
/// within `SHUTDOWN_GRACE`; past it, it exits 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_postgres_door_and_the_router_exits_cleanly() {
    let Catalog { db, common, cp } = Catalog::create().await;
    let (acme, secret) = provisioned(&cp, "acme", "pro").await;
    let router = router_process(&common, "30s").await;
    let addr = router.pg_addr;

    let writer = connect_client(addr, "acme", &secret).await.unwrap();
    writer.client.batch_execute("BEGIN").await.unwrap();
    writer
        .client
        .execute("INSERT INTO users (email, name) VALUES ('drained@acme.example', 'd')", &[])
        .await
        .unwrap();
    let idle = connect_client(addr, "acme", &secret).await.unwrap();
    assert_eq!(first(&idle.client, "SELECT 'idle'").await, "idle");

    router.terminate();
    // The idle client is told, and closed, while the transaction is still open.
    let err = ended(idle, "the idle client").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err:?}");
    assert!(connect(addr, "acme", &secret).await.is_err(), "a new client was accepted while draining");
    // The transaction finishes, and what it did is kept.
    assert_eq!(
        first(&writer.client, "SELECT count(*) FROM users WHERE email = 'drained@acme.example'").await,
        "1"
    );
    writer.client.batch_execute("COMMIT").await.unwrap();
    let err = ended(writer, "the client whose transaction finished").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err:?}");
    let committed = format!(
        "SELECT count(*) FROM \"{}\".users WHERE email = 'drained@acme.example'",
        acme.schema_name.as_str()
    );
    assert_eq!(db.tenants_count(&committed).await, 1);

    let (status, _) = router.exit().await;
    assert!(status.success(), "the router exited with {status}");
}
