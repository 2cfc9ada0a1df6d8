//! Nothing one request does to its session reaches the next, with the router's default
//! `ROUTER_SESSION_RESET=auto` (a reset only after a request whose statements can change the
//! session): for each kind of session state, a request sets it and the next request, on the
//! same server connection, sees a fresh session. Then random sequences of such requests.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, router_settings, spawn_router_with, TenantSql};
use proptest::prelude::*;
use serde_json::{json, Value};
use testkit::{common_settings, SecretsFor, TestDb};

/// Everything about a session that a request could leave behind, as one row.
const FINGERPRINT: &str = "SELECT \
     (SELECT md5(string_agg(name || '=' || setting, ',' ORDER BY name)) FROM pg_settings) AS settings, \
     current_user::text AS role, session_user::text AS session_role, \
     (SELECT count(*) FROM pg_prepared_statements WHERE from_sql AND name <> 'tenancy_reset_check') AS sql_prepared, \
     (SELECT count(*) FROM pg_cursors) AS cursors, \
     (SELECT count(*) FROM pg_listening_channels()) AS listening, \
     (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) AS temporary, \
     (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks, \
     now() = statement_timestamp() AS own_transaction";

/// Requests that each leave one kind of state in the session (if nothing undid it).
const SETS_STATE: &[(&str, &str)] = &[
    ("SET", "SET search_path = public"),
    ("SET TIME ZONE", "SET TIME ZONE 'Europe/Paris'"),
    ("set_config", "SELECT set_config('statement_timeout', '1234', false)"),
    ("set_config in a subquery", "SELECT * FROM (SELECT set_config('work_mem', '1234kB', false)) s"),
    ("PREPARE", "PREPARE leftover AS SELECT 1"),
    ("LISTEN", "LISTEN leftover"),
    ("cursor WITH HOLD", "DECLARE leftover CURSOR WITH HOLD FOR SELECT 1"),
    ("advisory lock", "SELECT pg_advisory_lock(42)"),
    ("shared advisory lock in a CTE", "WITH l AS (SELECT pg_advisory_lock_shared(43)) SELECT * FROM l"),
    ("transaction left open", "BEGIN"),
];

/// Temporary objects: PostgreSQL refuses them to tenant roles (no `TEMPORARY` on the database),
/// and the classifier counts them as changing the session all the same.
const REFUSED_TEMPORARY: &[&str] =
    &["CREATE TEMPORARY TABLE leftover (x int)", "SELECT 1 AS x INTO TEMPORARY leftover_into"];

struct Tenant {
    sql: TenantSql,
    fresh: Value,
}

impl Tenant {
    async fn fingerprint(&self) -> Value {
        self.sql.rows(FINGERPRINT, json!([])).await[0].clone()
    }

    async fn backend(&self) -> Value {
        self.sql.rows("SELECT pg_backend_pid() AS pid", json!([])).await[0]["pid"].clone()
    }

    /// Runs `statement` (expects it to succeed: the state it sets must really be set).
    async fn run(&self, statement: &str) {
        let (status, body) = self.sql.post(json!({ "query": statement })).await;
        assert_eq!(status, 200, "{statement}: {body}");
    }

    /// The next request sees a fresh session: the fingerprint, and an empty sequence cache.
    async fn assert_fresh(&self, after: &str) {
        assert_eq!(self.fingerprint().await, self.fresh, "the session after {after} is not fresh");
        let (status, body) = self.sql.post(json!({ "query": "SELECT lastval()" })).await;
        assert_eq!(status, 400, "after {after}, lastval() answered: {body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains("lastval is not yet defined"),
            "{body}"
        );
    }
}

/// A tenant behind a router whose pool holds one connection, so consecutive requests share it.
async fn tenant() -> (TestDb, tenant_router::http::RunningRouter, Tenant) {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "pro"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    db.lift_rate_limits().await;
    let mut settings = router_settings(&common);
    settings.tenant_max_connections = 1;
    let router = spawn_router_with(&settings).await;
    let sql = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);
    let fresh = sql.rows(FINGERPRINT, json!([])).await[0].clone();
    (db, router, Tenant { sql, fresh })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_session_state_is_gone_by_the_next_request() {
    let (_db, router, acme) = tenant().await;
    let mut backend = acme.backend().await;
    for (kind, statement) in SETS_STATE {
        acme.run(statement).await;
        acme.assert_fresh(kind).await;
        if *kind == "PREPARE" {
            // A session with SQL-prepared statements is closed rather than reset (a reset that
            // deallocated them would also drop the router's own cached statements).
            assert_ne!(acme.backend().await, backend, "{kind}: the connection was replaced");
            backend = acme.backend().await;
        } else {
            assert_eq!(acme.backend().await, backend, "{kind}: the same connection serves the next request");
        }
    }
    for statement in REFUSED_TEMPORARY {
        let (status, body) = acme.sql.post(json!({ "query": statement })).await;
        assert_eq!((status, &body["code"]), (400, &json!("42501")), "{statement}: {body}");
        acme.assert_fresh(statement).await;
    }
    // An INSERT fills the sequence cache (its identity column) and needs no reset: the
    // next request that reads the cache gets it discarded first.
    acme.run("INSERT INTO users (email, name) VALUES ('a@example.com', 'A')").await;
    acme.assert_fresh("an INSERT").await;
    // A batch (its own transaction): SET LOCAL ends with it; set_config(…, false) does not.
    for queries in [
        json!([{"query": "SET LOCAL statement_timeout = 1000"}, {"query": "SELECT 1"}]),
        json!([{"query": "SELECT set_config('work_mem', '2MB', false)"}, {"query": "SELECT 1"}]),
    ] {
        let (status, body) = acme.sql.post(json!({ "queries": queries })).await;
        assert_eq!(status, 200, "{body}");
        acme.assert_fresh(&queries.to_string()).await;
    }
    assert_eq!(acme.backend().await, backend);
    router.stop().await.unwrap();
}

/// A request of the random sequences: one statement, or a batch of them.
fn request() -> impl Strategy<Value = Vec<&'static str>> {
    let statement = prop_oneof![
        3 => proptest::sample::select(SETS_STATE).prop_map(|(_, s)| s),
        1 => proptest::sample::select(REFUSED_TEMPORARY),
        2 => proptest::sample::select(&[
            "SELECT count(*) FROM users",
            "SELECT id, email FROM users WHERE id = 1",
            "INSERT INTO users (email, name) SELECT md5(random()::text) || '@example.com', 'P'",
            "UPDATE users SET name = upper(name) WHERE id < 0",
            "SELECT currval(pg_get_serial_sequence('users', 'id'))",
            "SET LOCAL work_mem = '3MB'",
            "NOTIFY somewhere",
        ][..]),
    ];
    proptest::collection::vec(statement, 1..3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_any_sequence_of_requests_the_next_sees_a_fresh_session() {
    let (_db, router, acme) = tenant().await;
    let handle = tokio::runtime::Handle::current();
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 24, ..ProptestConfig::default() });
    let result = tokio::task::block_in_place(|| {
        runner.run(&proptest::collection::vec(request(), 1..6), |requests| {
            handle.block_on(async {
                for request in &requests {
                    // Statements may fail (a second PREPARE of the same name, currval before
                    // any nextval) or be refused (BEGIN in a batch: 403): only what they leave
                    // behind matters.
                    let body = if let [single] = request.as_slice() {
                        json!({ "query": single })
                    } else {
                        json!({ "queries": request.iter().map(|q| json!({ "query": q })).collect::<Vec<_>>() })
                    };
                    let (status, answer) = acme.sql.post(body).await;
                    assert!(matches!(status, 200 | 400 | 403), "{request:?}: {status} {answer}");
                }
                acme.assert_fresh(&format!("{requests:?}")).await;
            });
            Ok(())
        })
    });
    result.unwrap();
    router.stop().await.unwrap();
}
