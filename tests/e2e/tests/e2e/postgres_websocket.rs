//! The PostgreSQL protocol over WebSocket (`/v2` on the router's HTTP listener), driven by Neon's
//! own serverless driver (`@neondatabase/serverless` `Pool` and `Client`, with the `ws`
//! package) as an application uses it against Neon, only the endpoint settings changed, and by
//! `@prisma/adapter-neon` on top of it (through its driver-adapter interface, as Prisma Client
//! calls it). The
//! Node script `tests/clients/node/neon-websocket.mjs` prints what the driver saw; what it
//! should have seen is said here. `scripts/test.sh` installs its packages (`npm ci`).
//!
//! The tenant is named the two ways the driver can: by the WebSocket request's `Host` (the
//! connection string's host, the driver's default), and by the driver's `?address=` when the
//! request goes to the router's own address.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, router_settings, spawn_router_with};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::settings::CommonSettings;
use tenant_router::http::RunningRouter;
use testkit::{common_settings, SecretsFor, TestDb};

/// How long one run of the script may take (a few seconds on an idle machine).
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);

/// `acme`, whose clients run, and `globex`, whose schema they must not read (both `pro`).
struct Deployment {
    db: TestDb,
    /// The settings the control plane ran with (the router must read the same secrets).
    common: CommonSettings,
    cp: Arc<ControlPlane>,
    acme: TenantRecord,
    globex: TenantRecord,
}

async fn deploy() -> Deployment {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let acme = tenant(&cp, "acme").await;
    let globex = tenant(&cp, "globex").await;
    db.lift_rate_limits().await;
    Deployment { db, common, cp, acme, globex }
}

async fn tenant(cp: &ControlPlane, slug: &str) -> TenantRecord {
    let requested = tenants::create(cp, &TenantRequest::new(slug, "pro"), "test").await.unwrap();
    provision(cp, requested.id).await.unwrap()
}

/// How the driver names the tenant to the router.
#[derive(Debug, Clone, Copy)]
enum NameTenant {
    /// The WebSocket request's `Host` is the connection string's host.
    ByHost,
    /// The request goes to the router's address, with `?address=<host>:<port>`.
    ByAddress,
}

impl NameTenant {
    fn as_str(self) -> &'static str {
        match self {
            Self::ByHost => "host",
            Self::ByAddress => "address",
        }
    }
}

/// Runs `neon-websocket.mjs` in `mode` with the connection string `url`; its report.
async fn driver(router: &RunningRouter, url: &str, how: NameTenant, mode: &str, other_schema: &str) -> Value {
    let output = tokio::process::Command::new("node")
        .arg("neon-websocket.mjs")
        .current_dir(e2e_tests::node_clients("@neondatabase/serverless"))
        .env("ROUTER_WS", router.addr.to_string())
        .env("DATABASE_URL", url)
        .env("NAME_TENANT", how.as_str())
        .env("MODE", mode)
        .env("OTHER_SCHEMA", other_schema)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CLIENT_DEADLINE, output)
        .await
        .unwrap_or_else(|_| panic!("neon-websocket.mjs did not finish in {CLIENT_DEADLINE:?}"))
        .expect("node could not be started (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "neon-websocket.mjs failed ({}):\n{stderr}\n{stdout}", output.status);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the script printed no report ({e}):\n{stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neon_pool_runs_interactive_transactions_over_websocket() {
    let deployment = deploy().await;
    let router = spawn_router_with(&router_settings(&deployment.common)).await;
    let url = connection_string(&deployment.cp, "acme").await;
    let (role, schema) = (deployment.acme.role_name.as_str(), deployment.acme.schema_name.as_str());
    for how in [NameTenant::ByHost, NameTenant::ByAddress] {
        let report = driver(&router, &url, how, "session", deployment.globex.schema_name.as_str()).await;
        let expected = json!({
            "mode": "session",
            "nameTenant": how.as_str(),
            "error": null,
            "identity": { "user": role, "schema": schema },
            "rolledBack": { "insertedId": true, "seenInside": 1, "seenAfter": 0 },
            "committed": { "inTransaction": true, "seenBySecondClient": 1 },
            "client": 42,
            // PostgreSQL refuses acme's role the other schema; the router refuses SET ROLE.
            "otherSchema": "42501",
            "setRole": "42501",
            "prisma": { "inserted": 1, "seenInside": 1, "seenAfterRollback": 0, "seenAfterCommit": 1 },
            "wrongPassword": "28P01",
        });
        assert_eq!(report, expected, "named by {how:?}");
    }
    // The WebSocket clients count as the PostgreSQL door's: one wrong password per run.
    assert_eq!(metric(&router, "tenant_router_pg_auth_failures_total").await, 2);
    // The committed rows are acme's, in acme's own table (one per run of each); none went to
    // globex.
    let committed =
        "SELECT count(*) FROM {schema}.users WHERE email LIKE 'ws-commit-%' OR email LIKE 'prisma-%'";
    assert_eq!(deployment.db.tenants_count(&committed.replace("{schema}", schema)).await, 4);
    let globex = deployment.globex.schema_name.as_str();
    assert_eq!(deployment.db.tenants_count(&format!("SELECT count(*) FROM {globex}.users")).await, 0);
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_are_refused_as_on_the_postgresql_listener() {
    let deployment = deploy().await;
    tenant(&deployment.cp, "initech").await;
    let initech = tenancy::domain::Slug::parse("initech").unwrap();
    tenants::request(&deployment.cp, &initech, &tenants::Operation::Suspend, "test").await.unwrap();
    let suspended = connection_string(&deployment.cp, "initech").await;
    let acme = connection_string(&deployment.cp, "acme").await;
    let nobody = acme.replace("@acme.", "@nobody.");
    let router = spawn_router_with(&router_settings(&deployment.common)).await;
    let other = deployment.globex.schema_name.as_str();
    for how in [NameTenant::ByHost, NameTenant::ByAddress] {
        let refused = driver(&router, &suspended, how, "connect", other).await;
        assert_eq!(refused["connect"], "28000", "a suspended tenant, named by {how:?}: {refused}");
        let refused = driver(&router, &nobody, how, "connect", other).await;
        assert_eq!(refused["connect"], "3D000", "no tenant, named by {how:?}: {refused}");
    }
    router.stop().await.unwrap();

    // One client limit for both transports: with a PostgreSQL client connected over TCP, a
    // WebSocket client past ROUTER_PG_MAX_CLIENTS = 1 is refused (53300).
    let mut settings = router_settings(&deployment.common);
    settings.postgres.max_clients = 1;
    let router = spawn_router_with(&settings).await;
    let secret = deployment.cp.secrets.get(&deployment.acme.secret_name().unwrap()).await.unwrap().unwrap();
    let pg_addr = router.pg_addr.unwrap();
    let (tcp_client, connection) = tokio_postgres::Config::new()
        .host(pg_addr.ip().to_string())
        .port(pg_addr.port())
        .user(&secret.username)
        .password(&secret.password)
        .dbname(&secret.dbname)
        .options("-c tenant=acme")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    tcp_client.simple_query("SELECT 1").await.unwrap();
    let full = driver(&router, &acme, NameTenant::ByHost, "connect", other).await;
    assert_eq!(full["connect"], "53300", "{full}");
    assert_eq!(metric(&router, "tenant_router_pg_clients_refused_total").await, 1);
    drop(tcp_client);
    connection.await.unwrap().unwrap();
    // Its place is free once the router has seen its session end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metric(&router, "tenant_router_pg_clients").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the TCP client's session never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let room = driver(&router, &acme, NameTenant::ByHost, "connect", other).await;
    assert_eq!(room["connect"], "allowed", "{room}");
    router.stop().await.unwrap();
}

/// On shutdown the router stops accepting, and a WebSocket client in a transaction finishes it:
/// the router's `stop` returns only once the client's session is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_websocket_client_finish_its_transaction() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let deployment = deploy().await;
    let router = spawn_router_with(&router_settings(&deployment.common)).await;
    let (addr, pg_addr) = (router.addr, router.pg_addr.unwrap());
    let url = connection_string(&deployment.cp, "acme").await;
    let mut node = tokio::process::Command::new("node")
        .arg("neon-websocket.mjs")
        .current_dir(e2e_tests::node_clients("@neondatabase/serverless"))
        .env("ROUTER_WS", addr.to_string())
        .env("DATABASE_URL", &url)
        .env("NAME_TENANT", "host")
        .env("MODE", "drain")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node could not be started (is Node.js installed?)");
    let mut stdout = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(CLIENT_DEADLINE, stdout.next_line()).await.unwrap().unwrap();
    assert_eq!(first.as_deref(), Some("in transaction"));

    let mut stopping = tokio::spawn(router.stop());
    // The shutdown has begun once the PostgreSQL listener is closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(pg_addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the router never stopped accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The router cannot be done while the client is inside its transaction: it is still
    // stopping a while later (a bounded wait for something that must not happen).
    let early = tokio::time::timeout(Duration::from_millis(500), &mut stopping).await;
    assert!(early.is_err(), "the router stopped with a WebSocket client inside a transaction");
    let mut stdin = node.stdin.take().unwrap();
    stdin.write_all(b"commit\n").await.unwrap();
    let report = tokio::time::timeout(CLIENT_DEADLINE, stdout.next_line()).await.unwrap().unwrap().unwrap();
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["commit"], "allowed", "{report}");
    tokio::time::timeout(CLIENT_DEADLINE, stopping).await.unwrap().unwrap().unwrap();
    drop(stdin);
    let exit = tokio::time::timeout(CLIENT_DEADLINE, node.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit}");
    let schema = deployment.acme.schema_name.as_str();
    let sql = format!("SELECT count(*) FROM {schema}.users WHERE email LIKE 'ws-drain-%'");
    assert_eq!(deployment.db.tenants_count(&sql).await, 1);
}

/// A metric's value on the router's `/metrics`.
async fn metric(router: &RunningRouter, name: &str) -> u64 {
    let text =
        reqwest::get(format!("http://{}/metrics", router.admin_addr)).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
