//! A database per test, named after the test, and the sweep of what earlier runs left.
//!
//! **Names.** [`TestDb::create`] names its database `test_<test>_<key>`, after the test that
//! runs: libtest (and so nextest) names each test's thread with the test's path, e.g.
//! `lifecycle::suspend_then_resume` becomes `test_lifecycle__suspend_then_resume_0a1b2c3d`.
//! The path is cut to fit PostgreSQL's 63-byte names (leading modules first, then the end of
//! the test's name); the whole path is in the database's comment (`\l+`). Outside a test (a
//! benchmark's `main`) the executable's name stands for the test's. The key, 32 random bits,
//! also makes the test's role prefix `tk<key>` (its roles, and the databases its control
//! plane creates: `tk<key>_control`, `tk<key>_tenants`, `tk<key>_template`, tenants' own) and
//! its Redis prefix.
//!
//! **Ownership.** Before it creates anything, a process claims the key: an advisory lock (in
//! the admin URL's database) on a session the process keeps open for its whole life, released
//! once the test's database and roles are dropped. When the process ends, however it ends
//! (normally, `kill -9`, a runner's timeout), PostgreSQL ends the session and the claims with
//! it. The
//! database's comment also records the test run: the process that started the tests
//! (cargo test, nextest; for a test binary run straight from a shell, that shell) by pid,
//! start time and boot.
//!
//! **The sweep.** Before its first database, each test process sweeps what earlier runs left:
//! every key of a `test_…_<key>` database, `tk<key>_…` database or `tk<key>_…` role is dropped
//! (databases and roles) when both
//! - no process claims it: the sweep takes the claim itself for the time it drops, so a live
//!   test's key, or one another sweep is dropping, is never touched; and
//! - its run is over: the run's process is gone, or was on another machine. A failed test
//!   keeps its database for inspection while its run goes on (the other test processes and
//!   binaries of the same `cargo test` or nextest run leave it alone); a later run sweeps it.
//!
//! Concurrent test processes (cargo's test binaries, nextest's one process per test, another
//! run) thus never drop each other's databases. A database without the kit's comment (made
//! before there were comments, or whose process died before writing it) counts as from a run
//! that is over: only its claim protects it.

mod claims;
mod name;
mod run;
mod sweep;

use crate::services;
use claims::{Claims, Key};
use run::Run;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

/// A fresh database on the shared PostgreSQL, named after the test, plus unique prefixes for
/// the roles and Redis keys the test creates. Dropped (with every role and database under its
/// prefix) when the test passes; kept when it panics, so the state can be inspected, until a
/// later test run sweeps it (see the [module](self) docs).
pub struct TestDb {
    pub name: String,
    /// Superuser URL of this database.
    pub url: String,
    /// Prefix for PostgreSQL roles (`TENANT_ROLE_PREFIX`).
    pub role_prefix: String,
    /// Prefix for Redis keys and channels (`REDIS_KEY_PREFIX`).
    pub redis_prefix: String,
    key: Key,
    admin_url: String,
}

/// This process's claims, once the sweep has run.
static CLAIMS: OnceCell<Claims> = OnceCell::const_new();

async fn claims(admin_url: &str) -> &'static Claims {
    CLAIMS
        .get_or_init(|| async {
            let swept = sweep::sweep(&connect(admin_url).await).await;
            if !swept.is_empty() {
                eprintln!("testkit: swept what earlier test runs left: {}", swept.join(", "));
            }
            Claims::open(admin_url).await
        })
        .await
}

/// The role prefix of a test: `tk<key>`.
fn role_prefix(key: Key) -> String {
    format!("tk{}", key.hex())
}

/// Replaces the database name in a `postgres://…/<db>` URL.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

async fn one_value(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", tenancy::pg::describe_error(&e)))
        .get(0)
}

impl TestDb {
    /// Creates `test_<test>_<key>`, after the running test (see the [module](self) docs); the
    /// process's first call sweeps what earlier runs left.
    pub async fn create() -> Self {
        crate::init_logging();
        let admin_url = services().database_url.clone();
        let key = claims(&admin_url).await.claim_new().await;
        let test = name::current_test();
        let name = name::database_name(&test, &key.hex());
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let comment = Run::comment(&test, Run::current().as_ref()).replace('\'', "''");
        admin
            .batch_execute(&format!("COMMENT ON DATABASE \"{name}\" IS '{comment}'"))
            .await
            .unwrap_or_else(|e| panic!("COMMENT ON DATABASE {name}: {e}"));
        Self {
            url: with_database(&admin_url, &name),
            role_prefix: role_prefix(key),
            redis_prefix: format!("test:{}:", key.hex()),
            name,
            key,
            admin_url,
        }
    }

    /// Sweeps what earlier test runs left now (as the process's first [`TestDb::create`]
    /// does); returns the test databases it dropped (or, where only a test's roles and control
    /// plane databases were left, their prefix).
    pub async fn sweep_stale() -> Vec<String> {
        sweep::sweep(&connect(&services().database_url).await).await
    }

    /// A superuser connection to this database (the catalog's).
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Lifts every tenant's plan rate limit: for tests that send requests as fast as the machine
    /// allows and are not about rate limits (on a fast machine the plan would refuse some).
    pub async fn lift_rate_limits(&self) {
        let lifted =
            self.client().await.execute("UPDATE control.tenants SET rate_limit_per_second = NULL", &[]).await;
        lifted.unwrap_or_else(|e| panic!("lift rate limits: {e}"));
    }

    /// The database of the default cluster's schema tenants (created by the control plane).
    pub fn tenants_database(&self) -> String {
        format!("{}_tenants", self.role_prefix)
    }

    /// A superuser connection to the default cluster's tenants database.
    pub async fn tenants_client(&self) -> tokio_postgres::Client {
        connect(&with_database(&self.url, &self.tenants_database())).await
    }

    /// A superuser connection to another database of the test server (a tenant's own).
    pub async fn database_client(&self, database: &str) -> tokio_postgres::Client {
        connect(&with_database(&self.url, database)).await
    }

    /// This database's URL with other credentials (e.g. a tenant role's).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        self.database_url_as(&self.name, user, password)
    }

    /// The URL of `database` on the test server with credentials `user` and `password`.
    pub fn database_url_as(&self, database: &str, user: &str, password: &str) -> String {
        let config: tokio_postgres::Config = self.url.parse().unwrap_or_else(|e| panic!("bad test URL: {e}"));
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{user}:{password}@{host}:{port}/{database}")
    }

    /// The single integer a `SELECT count(*) …` (or any one-value query) returns, in the
    /// catalog's database.
    pub async fn count(&self, sql: &str) -> i64 {
        one_value(&self.client().await, sql).await
    }

    /// [`TestDb::count`] in the default cluster's tenants database.
    pub async fn tenants_count(&self, sql: &str) -> i64 {
        one_value(&self.tenants_client().await, sql).await
    }

    /// Roles created under this test's prefix.
    pub async fn roles(&self) -> Vec<String> {
        self.client()
            .await
            .query(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1",
                &[&format!("{}_", self.role_prefix)],
            )
            .await
            .unwrap_or_else(|e| panic!("listing roles: {e}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// Drops a test's database (when given), then every database and role under its prefix (the
/// roles own those databases or hold privileges on them). Goes on past a failure, and reports
/// them all.
async fn drop_everything(
    admin: &tokio_postgres::Client,
    database: Option<&str>,
    role_prefix: &str,
) -> Result<(), String> {
    let pattern = format!("{role_prefix}_");
    let mut failures = Vec::new();
    drop_replication(admin, &pattern, &mut failures).await;
    let mut databases: Vec<String> = database.map(str::to_owned).into_iter().collect();
    match admin.query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", &[&pattern]).await {
        Ok(rows) => databases.extend(rows.iter().map(|row| row.get::<_, String>(0))),
        Err(e) => failures.push(format!("listing databases: {e}")),
    }
    for database in databases {
        let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
        if let Err(e) = admin.batch_execute(&sql).await {
            failures.push(format!("dropping database {database}: {e}"));
        }
    }
    match admin.query("SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", &[&pattern]).await {
        Ok(rows) => {
            for role in rows.iter().map(|row| row.get::<_, String>(0)) {
                if let Err(e) = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\"")).await {
                    failures.push(format!("dropping role {role}: {e}"));
                }
            }
        }
        Err(e) => failures.push(format!("listing roles: {e}")),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// What a test's tenant moves left of their logical replication (named `<prefix>_move_<id>`):
/// subscriptions, dropped in their database without touching their slot, then slots. A
/// database with either cannot be dropped.
async fn drop_replication(admin: &tokio_postgres::Client, pattern: &str, failures: &mut Vec<String>) {
    let subscriptions = admin
        .query(
            "SELECT s.subname::text, d.datname::text FROM pg_subscription s
               JOIN pg_database d ON d.oid = s.subdbid WHERE starts_with(s.subname, $1)",
            &[&pattern],
        )
        .await;
    match subscriptions {
        Ok(rows) => {
            for row in rows {
                let (name, database): (String, String) = (row.get(0), row.get(1));
                let client = connect(&with_database(&services().database_url, &database)).await;
                let statements = [
                    format!("ALTER SUBSCRIPTION \"{name}\" DISABLE"),
                    format!("ALTER SUBSCRIPTION \"{name}\" SET (slot_name = NONE)"),
                    format!("DROP SUBSCRIPTION \"{name}\""),
                ];
                for statement in &statements {
                    if let Err(e) = client.batch_execute(statement).await {
                        failures.push(format!("dropping subscription {name}: {e}"));
                        break;
                    }
                }
            }
        }
        Err(e) => failures.push(format!("listing subscriptions: {e}")),
    }
    let slots = admin
        .query(
            "SELECT slot_name::text, pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE starts_with(slot_name, $1)",
            &[&pattern],
        )
        .await;
    match slots {
        Ok(rows) => {
            for name in rows.iter().map(|row| row.get::<_, String>(0)) {
                let mut dropped = admin.execute("SELECT pg_drop_replication_slot($1)", &[&name]).await;
                for _ in 0..50 {
                    if dropped.is_ok() {
                        break;
                    }
                    // Its sender, just terminated, may not have let go of it yet.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    dropped = admin.execute("SELECT pg_drop_replication_slot($1)", &[&name]).await;
                }
                if let Err(e) = dropped {
                    failures.push(format!("dropping replication slot {name}: {e}"));
                }
            }
        }
        Err(e) => failures.push(format!("listing replication slots: {e}")),
    }
}

/// What a passing test leaves: nothing, and its key free for another.
async fn clean_up(admin_url: &str, name: &str, key: Key) {
    let admin = connect(admin_url).await;
    if let Err(e) = drop_everything(&admin, Some(name), &role_prefix(key)).await {
        eprintln!("testkit: could not drop all of {name} ({e}): a later run sweeps it");
        return;
    }
    if let Some(claims) = CLAIMS.get() {
        claims.release(key).await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "testkit: test failed; kept database {} (and the roles and databases under {}_) \
                 for inspection while this test run goes on: a later run sweeps it",
                self.name, self.role_prefix
            );
            return;
        }
        let (url, name, key) = (self.admin_url.clone(), self.name.clone(), self.key);
        // Drop runs inside the test's runtime: clean up on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(clean_up(&url, &name, key)),
                Err(e) => eprintln!("testkit: no runtime for cleanup: {e}"),
            }
        });
        let _ = cleanup.join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u:p@h:1/postgres", "x"), "postgres://u:p@h:1/x");
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
    }
}
