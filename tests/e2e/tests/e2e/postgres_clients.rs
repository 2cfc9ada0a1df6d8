//! Stock PostgreSQL clients through the router's PostgreSQL listener (plaintext), each used as
//! an application uses it: pgbench in its three query modes, node-postgres, psycopg 3 and
//! asyncpg. Every client reaches only its tenant, keeps its own settings and never sees another
//! client's, is refused another tenant's schema and `SET ROLE` (42501), and many clients share
//! fewer server connections than they are.
//!
//! The clients' scripts live in `tests/clients/` (`pgbench/tenant-activity.sql`,
//! `node/wire-client.mjs`, `python/wire_clients.py`) and print what the clients saw; what they
//! should have seen is said here. `scripts/test.sh` installs them: pgbench comes with
//! PostgreSQL's server package (which `scripts/services.sh` installs), the Node packages from
//! `tests/clients/node/package-lock.json`, the Python ones from
//! `tests/clients/python/requirements.txt` into the harness's virtualenv (`TENANCY_PYTHON`).

use control_plane::control_plane::ControlPlane;
use e2e_tests::{provisioned, router_settings, spawn_router_with, Catalog};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::secrets::DbCredentials;
use tenant_router::http::RunningRouter;
use testkit::{workspace_root, TestDb};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How long one client run may take (a few seconds on an idle machine).
const CLIENT_DEADLINE: Duration = Duration::from_secs(180);

/// A tenant's record and credentials.
struct Tenant {
    record: TenantRecord,
    secret: DbCredentials,
}

impl Tenant {
    fn role(&self) -> &str {
        self.record.role_name.as_str()
    }

    fn schema(&self) -> &str {
        self.record.schema_name.as_str()
    }
}

/// Two tenants on the `pro` plan (a pool of five): `acme`, whose clients run, and `globex`,
/// whose schema they must not read; and a router with `budget` server connections in all.
struct Deployment {
    /// The router's server connections in all.
    budget: usize,
    db: TestDb,
    router: RunningRouter,
    acme: Tenant,
    globex: Tenant,
    _cp: Arc<ControlPlane>,
}

async fn deploy(budget: usize, checkout_timeout: Duration) -> Deployment {
    deploy_with(budget, checkout_timeout, Duration::from_secs(60)).await
}

/// [`deploy`], the router ending transactions and pipelines left idle after
/// `idle_transaction_timeout`.
async fn deploy_with(
    budget: usize,
    checkout_timeout: Duration,
    idle_transaction_timeout: Duration,
) -> Deployment {
    let Catalog { db, common, cp } = Catalog::create().await;
    let (record, secret) = provisioned(&cp, "acme", "pro").await;
    let acme = Tenant { record, secret };
    let (record, secret) = provisioned(&cp, "globex", "pro").await;
    let globex = Tenant { record, secret };
    // The clients run hundreds of transactions in a few seconds: above the plan's rate limit.
    db.lift_rate_limits().await;
    let mut settings = router_settings(&common);
    settings.max_connections = budget;
    settings.checkout_timeout = checkout_timeout;
    settings.postgres.idle_transaction_timeout = idle_transaction_timeout;
    let router = spawn_router_with(&settings).await;
    Deployment { budget, db, router, acme, globex, _cp: cp }
}

impl Deployment {
    fn pg_addr(&self) -> SocketAddr {
        self.router.pg_addr.expect("the router's PostgreSQL listener is on")
    }

    /// Server connections of acme's role, as PostgreSQL counts them.
    async fn server_connections(&self, client: &tokio_postgres::Client) -> i64 {
        client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", &[&self.acme.role()])
            .await
            .unwrap()
            .get(0)
    }

    async fn stop(self) {
        self.router.stop().await.unwrap();
    }
}

/// Runs `command` to its end (killed past [`CLIENT_DEADLINE`]); its exit status and output.
async fn run(command: &mut Command, what: &str) -> std::process::Output {
    let output = command.kill_on_drop(true).output();
    tokio::time::timeout(CLIENT_DEADLINE, output)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {CLIENT_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{what} could not be started: {e}"))
}

// ----------------------------------------------------------------------------- pgbench ---

/// pgbench of the PostgreSQL the harness runs (Debian: `/usr/lib/postgresql/<version>/bin`),
/// else the one on PATH.
fn pgbench() -> PathBuf {
    testkit::services()
        .pg_bin
        .as_ref()
        .map(|bin| PathBuf::from(bin).join("pgbench"))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_every_query_mode_shares_fewer_connections_than_clients() {
    const BUDGET: usize = 3;
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 50;
    let all = CLIENTS * PER_CLIENT;
    // Clients wait their turn for the budget's connections, on a busy machine too.
    let deployment = deploy(BUDGET, Duration::from_secs(20)).await;
    let addr = deployment.pg_addr();
    let script = workspace_root().join("tests/clients/pgbench/tenant-activity.sql");
    let watcher = deployment.db.client().await;
    for (run_number, mode) in [(1, "simple"), (2, "extended"), (3, "prepared")] {
        let mut command = Command::new(pgbench());
        // A thread per client: in prepared mode pgbench prepares each statement with a
        // blocking call the first time a client runs it, which stalls the other clients of its
        // thread, mid-transaction and holding their connections, until it returns. With more
        // clients in a thread than connections, that call would wait for connections its own
        // thread holds, until the checkout timeout.
        command
            .args(["--no-vacuum", "--protocol", mode, "--jobs", &CLIENTS.to_string()])
            .args(["--client", &CLIENTS.to_string(), "--transactions", &PER_CLIENT.to_string()])
            .args(["--define", &format!("run={run_number}"), "--file"])
            .arg(&script)
            .env("PGHOST", addr.ip().to_string())
            .env("PGPORT", addr.port().to_string())
            .env("PGUSER", &deployment.acme.secret.username)
            .env("PGPASSWORD", &deployment.acme.secret.password)
            .env("PGDATABASE", &deployment.acme.secret.dbname)
            // Which tenant: named in the startup options.
            .env("PGOPTIONS", "-c tenant=acme")
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "30")
            .env_remove("PGSERVICE");

        // acme's server connections, counted for as long as pgbench runs.
        let running = CancellationToken::new();
        let counting = async {
            let mut most = 0;
            while !running.is_cancelled() {
                most = most.max(deployment.server_connections(&watcher).await);
                tokio::select! {
                    () = running.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            most
        };
        let benchmark = async {
            let output = run(&mut command, &format!("pgbench -M {mode}")).await;
            running.cancel();
            output
        };
        let (most, output) = tokio::join!(counting, benchmark);

        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = format!("pgbench -M {mode} ({}):\n{stdout}\n{stderr}", output.status);
        assert!(output.status.success(), "{said}");
        assert!(
            stdout.contains(&format!("number of transactions actually processed: {all}/{all}\n")),
            "{said}"
        );
        assert!(stdout.contains("number of failed transactions: 0 "), "{said}");
        assert!(
            usize::try_from(most).unwrap() <= BUDGET,
            "pgbench -M {mode}: {most} server connections for a budget of {BUDGET}"
        );
        // Every transaction wrote its row, in acme's own table.
        let written = deployment
            .db
            .tenants_count(&format!(
                "SELECT count(*) FROM t_acme.activity WHERE verb = 'pgbench' \
                 AND split_part(subject, '/', 1) = '{run_number}'"
            ))
            .await;
        assert_eq!(usize::try_from(written).unwrap(), all, "pgbench -M {mode}: rows written");
    }
    assert_eq!(deployment.db.tenants_count("SELECT count(*) FROM t_globex.activity").await, 0);
    deployment.stop().await;
}

// ---------------------------------------------------------------- node-postgres, Python ---

/// Where a client script connects as acme's role, and how it names acme.
struct Door {
    host: String,
    port: u16,
    database: String,
    /// Startup options (empty: none).
    options: String,
}

/// How a client names its tenant to the router.
#[derive(Clone, Copy)]
enum NameTenant {
    /// `options=-c tenant=acme`, with the tenant's own database name.
    ByOptions,
    /// The database name `acme`.
    ByDatabase,
}

impl Deployment {
    /// The router's PostgreSQL listener.
    fn router_door(&self, how: NameTenant) -> Door {
        let addr = self.pg_addr();
        let (database, options) = match how {
            NameTenant::ByOptions => (self.acme.secret.dbname.clone(), "-c tenant=acme".to_owned()),
            NameTenant::ByDatabase => ("acme".to_owned(), String::new()),
        };
        Door { host: addr.ip().to_string(), port: addr.port(), database, options }
    }

    /// PostgreSQL itself, with acme's own credentials: what the clients see there is what they
    /// must see through the router.
    fn postgres_door(&self) -> Door {
        let config: tokio_postgres::Config = self.db.url.parse().unwrap();
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        Door { host, port, database: self.acme.secret.dbname.clone(), options: String::new() }
    }
}

/// Runs `tests/clients/node/wire-client.mjs` as acme at `door`; its report.
async fn node_postgres(deployment: &Deployment, door: &Door) -> Value {
    let secret = &deployment.acme.secret;
    let mut config = json!({
        "host": door.host,
        "port": door.port,
        "user": secret.username,
        "password": secret.password,
        "database": door.database,
        "ssl": false,
    });
    if !door.options.is_empty() {
        config["options"] = json!(door.options);
    }
    let mut command = Command::new("node");
    command
        .arg("wire-client.mjs")
        .current_dir(e2e_tests::node_clients("pg"))
        .env("CLIENT_CONFIG", config.to_string())
        .env("OTHER_SCHEMA", deployment.globex.schema());
    report(&run(&mut command, "node wire-client.mjs").await, "node-postgres")
}

/// Runs `tests/clients/python/wire_clients.py <client>` as acme at `door`; its report.
async fn python_client(deployment: &Deployment, client: &str, door: &Door) -> Value {
    let python = e2e_tests::python();
    let requirements = workspace_root().join("tests/clients/python/requirements.txt");
    let installed = std::process::Command::new(&python).args(["-c", "import psycopg, asyncpg"]).output();
    assert!(
        installed.is_ok_and(|o| o.status.success()),
        "psycopg and asyncpg are not installed for {}: run `{} -m pip install -r {}` \
         (scripts/test.sh does)",
        python.display(),
        python.display(),
        requirements.display()
    );
    let secret = &deployment.acme.secret;
    let mut command = Command::new(&python);
    command
        .arg(workspace_root().join("tests/clients/python/wire_clients.py"))
        .arg(client)
        .env("PG_HOST", &door.host)
        .env("PG_PORT", door.port.to_string())
        .env("PG_USER", &secret.username)
        .env("PG_PASSWORD", &secret.password)
        .env("PG_DATABASE", &door.database)
        .env("PG_OPTIONS", &door.options)
        .env("OTHER_SCHEMA", deployment.globex.schema());
    report(&run(&mut command, &format!("wire_clients.py {client}")).await, client)
}

/// The JSON a client script printed (its last line).
fn report(output: &std::process::Output, client: &str) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{client} script failed ({}):\n{stderr}\n{stdout}", output.status);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{client} printed no report ({e}):\n{stdout}\n{stderr}"))
}

/// What a client saw, compared with what it should have seen.
struct Expectations<'a> {
    report: &'a Value,
    differences: Vec<String>,
}

impl<'a> Expectations<'a> {
    fn new(report: &'a Value) -> Self {
        let mut expectations = Self { report, differences: Vec::new() };
        if !report["error"].is_null() {
            let error = &report["error"];
            expectations.differences.push(format!(
                "stopped at step {}: {} {}",
                error["step"], error["sqlstate"], error["message"]
            ));
        }
        expectations
    }

    /// The value at `pointer` (JSON pointer), or `None` when the client stopped before it
    /// (its error is a difference already).
    fn seen(&self, pointer: &str) -> Option<&'a Value> {
        match self.report.pointer(pointer) {
            None if !self.report["error"].is_null() => None,
            seen => Some(seen.unwrap_or(&Value::Null)),
        }
    }

    /// The value at `pointer` is `expected`.
    fn equal(&mut self, pointer: &str, expected: &Value) {
        if let Some(seen) = self.seen(pointer).filter(|seen| *seen != expected) {
            self.differences.push(format!("{pointer}: saw {seen}, expected {expected}"));
        }
    }

    /// The value at `pointer` is there and is not `unexpected`.
    fn not_equal(&mut self, pointer: &str, unexpected: &Value) {
        if let Some(seen) = self.seen(pointer).filter(|seen| seen.is_null() || *seen == unexpected) {
            self.differences.push(format!("{pointer}: saw {seen}, must not be {unexpected}"));
        }
    }

    /// The number at `pointer` is at least `least`.
    fn at_least(&mut self, pointer: &str, least: u64) {
        if let Some(seen) = self.seen(pointer).filter(|seen| seen.as_u64().is_none_or(|n| n < least)) {
            self.differences.push(format!("{pointer}: saw {seen}, expected at least {least}"));
        }
    }

    /// Every difference, and the whole report; `None` when there is none.
    fn failure(&self, client: &str) -> Option<String> {
        (!self.differences.is_empty()).then(|| {
            format!("{client}:\n  {}\nwhat it saw: {:#}", self.differences.join("\n  "), self.report)
        })
    }

    /// Fails the test with every difference.
    fn assert(&self, client: &str) {
        if let Some(failure) = self.failure(client) {
            panic!("{failure}");
        }
    }
}

/// Rounds of the scripts' repeated and settings steps.
const ROUNDS: usize = 3;
/// The setting client A makes and client B must never have.
const A_SETTING: &str = "4242ms";

/// What every client script must have seen: both clients are acme's role in acme's schema; a
/// committed row is there, a rolled-back one is not; A keeps its `SET statement_timeout` in
/// later transactions and B never has it, B keeps its own application name; another tenant's
/// schema and `SET ROLE` get 42501 and the client goes on; a refused statement fails its
/// transaction, as any error does in PostgreSQL, so what the transaction wrote is not committed.
fn common_expectations(e: &mut Expectations<'_>, deployment: &Deployment, client: &str) {
    for who in 0..2 {
        e.equal(&format!("/identity/{who}/user"), &json!(deployment.acme.role()));
        e.equal(&format!("/identity/{who}/schema"), &json!(deployment.acme.schema()));
    }
    e.equal("/transactions/committed", &json!(1));
    e.equal("/transactions/rolled_back", &json!(0));
    for round in 0..ROUNDS {
        e.equal(&format!("/settings/own/{round}/0"), &json!(A_SETTING));
        e.not_equal(&format!("/settings/other/{round}/0"), &json!(A_SETTING));
        e.equal(&format!("/settings/other/{round}/1"), &json!(format!("{client}-b")));
    }
    let refusals = e.report["refusals"].as_object().cloned().unwrap_or_default();
    if refusals.len() < 3 && e.report["error"].is_null() {
        e.differences
            .push(format!("refusals: saw {refusals:?}, expected other_schema, set_role, usable_after"));
    }
    for name in refusals.keys().filter(|name| *name != "usable_after") {
        e.equal(&format!("/refusals/{name}"), &json!("42501"));
    }
    e.equal("/refusals/usable_after", &json!(1));
    e.equal("/refused_in_transaction", &json!(0));
}

/// node-postgres: also parameters, a named statement `by-id` reused across transactions by both
/// clients (each with its own text), `set_config` in a parameterised query kept for A (or
/// refused) and never seen by B; and Prisma's adapter for it running interactive transactions.
fn node_postgres_expectations<'a>(report: &'a Value, deployment: &Deployment) -> Expectations<'a> {
    let mut e = Expectations::new(report);
    common_expectations(&mut e, deployment, "node");
    e.equal("/identity/1/echo", &json!("b"));
    e.equal("/sum", &json!(42));
    e.equal("/transactions/inside", &json!(1));
    // `set_config(…, false)` outside a transaction: kept for A's session, as PostgreSQL does,
    // or refused with an error; never dropped without a word.
    let kept = if report["set_config"] == json!("allowed") { "node-a-renamed" } else { "node-a" };
    for round in 0..ROUNDS {
        e.equal(&format!("/settings/own/{round}/1"), &json!(kept));
    }
    let emails = ["node-0@example.test", "node-1@example.test", "node-2@example.test", "node-0@example.test"];
    e.equal("/named_statements/a", &json!(emails));
    e.equal("/named_statements/b", &json!(["node user 0", "node user 1", "node user 2"]));
    // `@prisma/adapter-pg`: an interactive transaction rolled back, then one committed.
    e.equal(
        "/prisma",
        &json!({ "inserted": 1, "seenInside": 1, "seenAfterRollback": 0, "seenAfterCommit": 1 }),
    );
    e
}

/// psycopg (autocommit off) and asyncpg: also the same query in several transactions, ten times
/// each, which the library prepares as a named statement; a `SET` in a committed transaction
/// (and, for psycopg, one in autocommit mode) lasts for the session, as in PostgreSQL.
fn python_expectations<'a>(report: &'a Value, deployment: &Deployment, client: &str) -> Expectations<'a> {
    let mut e = Expectations::new(report);
    common_expectations(&mut e, deployment, client);
    let emails: Vec<String> = (0..10).map(|i| format!("{client}-{}@example.test", i % 3)).collect();
    for round in 0..ROUNDS {
        e.equal(&format!("/repeated/{round}"), &json!(emails));
        e.equal(&format!("/settings/own/{round}/1"), &json!(format!("{client}-a-renamed")));
    }
    e.at_least("/prepared", 1);
    if client == "psycopg" {
        // The transaction status the client was told after the refusal (PostgreSQL's 'E').
        e.equal("/status_after_refusal", &json!("INERROR"));
        // The unnamed statement is each client's own: B never runs A's (26000: none), A runs
        // its own in later transactions until its simple query drops it.
        e.equal("/unnamed/other", &json!("26000"));
        e.equal("/unnamed/own", &json!("a-unnamed"));
        e.equal("/unnamed/own_again", &json!("a-unnamed"));
        e.equal("/unnamed/own_after_query", &json!("26000"));
        e.equal("/unnamed/other_own", &json!("b-unnamed"));
        let copied: Vec<String> = (0..3).map(|n| format!("psycopg-copy-{n}@example.test")).collect();
        e.equal("/copy/copied", &json!(copied));
        if deployment.budget > 1 {
            // A's COPY over, its connection went back: C is served while B holds the other.
            e.equal("/copy/third_client", &json!("served"));
        }
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_reaches_only_its_tenant() {
    let deployment = deploy(2, Duration::from_secs(10)).await;
    let report = node_postgres(&deployment, &deployment.router_door(NameTenant::ByOptions)).await;
    node_postgres_expectations(&report, &deployment).assert("node-postgres");
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_reaches_only_its_tenant() {
    let deployment = deploy(2, Duration::from_secs(10)).await;
    let report = python_client(&deployment, "psycopg", &deployment.router_door(NameTenant::ByOptions)).await;
    python_expectations(&report, &deployment, "psycopg").assert("psycopg");
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_reaches_only_its_tenant() {
    let deployment = deploy(2, Duration::from_secs(10)).await;
    let report = python_client(&deployment, "asyncpg", &deployment.router_door(NameTenant::ByDatabase)).await;
    python_expectations(&report, &deployment, "asyncpg").assert("asyncpg");
    deployment.stop().await;
}

/// Pipelines a client leaves without a `Sync` (libpq's pipeline mode, each flushed): one
/// whose statement is done while its client goes idle holds a server connection as an idle
/// transaction does, and is ended the same way; one whose statement runs long is cancelled at
/// the plan's statement timeout however the client set its own, and is not taken for idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_left_without_sync_are_bounded_as_transactions_are() {
    let deployment = deploy_with(2, Duration::from_secs(10), Duration::from_millis(500)).await;
    deployment
        .db
        .client()
        .await
        .execute("UPDATE control.tenants SET statement_timeout_ms = 2000 WHERE slug = 'acme'", &[])
        .await
        .unwrap();
    let report =
        python_client(&deployment, "pipelines", &deployment.router_door(NameTenant::ByOptions)).await;
    deployment.stop().await;
    let pipelines = &report["pipelines"];
    assert_eq!(pipelines["answered"], json!("ok"), "{report}");
    assert!(
        pipelines["idle"] == json!("25P03") || pipelines["idle"] == json!("closed"),
        "a pipeline left idle was not ended: {report}"
    );
    assert_eq!(pipelines["slow"], json!("57014"), "a slow pipelined statement was not cancelled: {report}");
}

/// Runs the three client scripts at `door`; the differences of each from what it should have
/// seen.
async fn all_clients(deployment: &Deployment, options: &Door, database: &Door) -> Vec<String> {
    let node = node_postgres(deployment, options).await;
    let psycopg = python_client(deployment, "psycopg", options).await;
    let asyncpg = python_client(deployment, "asyncpg", database).await;
    [
        node_postgres_expectations(&node, deployment).failure("node-postgres"),
        python_expectations(&psycopg, deployment, "psycopg").failure("psycopg"),
        python_expectations(&asyncpg, deployment, "asyncpg").failure("asyncpg"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The same clients on a budget of one server connection: their two clients take turns on it,
/// named prepared statements included (the router prepares a client's statements on the
/// connection it hands out), and neither sees the other's settings there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_prepared_statements_take_turns_on_one_server_connection() {
    // A client left waiting for the connection fails after this, rather than hang the test.
    let deployment = deploy(1, Duration::from_secs(3)).await;
    let failures = all_clients(
        &deployment,
        &deployment.router_door(NameTenant::ByOptions),
        &deployment.router_door(NameTenant::ByDatabase),
    )
    .await;
    let connections = deployment.server_connections(&deployment.db.client().await).await;
    deployment.stop().await;
    assert!(connections <= 1, "{connections} server connections for a budget of 1");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The expectations are PostgreSQL's own: the same scripts, connected to PostgreSQL directly
/// as the tenant's role, see exactly what they should see through the router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_the_same_on_postgresql_itself() {
    let deployment = deploy(2, Duration::from_secs(10)).await;
    let door = deployment.postgres_door();
    let failures = all_clients(&deployment, &door, &door).await;
    deployment.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
