//! The admin listener's view of the pools, like PgBouncer's `SHOW POOLS` and `SHOW STATS`:
//! `GET /pools` shows what each pool holds and who waits, `GET /stats` what each has served,
//! both with real clients holding real connections through both doors.

use e2e_tests::pg_door::connect;
use e2e_tests::{connection_string, provisioned, router_settings, spawn_router_with, Catalog, TenantSql};
use serde_json::{json, Value};
use std::time::Duration;
use tenant_router::http::RunningRouter;

/// `GET <admin>/<path>` (e.g. `pools?tenant=acme`): the status and the JSON answer.
async fn admin(router: &RunningRouter, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{}/{path}", router.admin_addr)).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The pool of `tenant` serving `door`, in a `/pools` or `/stats` answer.
fn pool<'a>(answer: &'a Value, tenant: &str, door: &str) -> &'a Value {
    answer["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["tenant"] == tenant && p["door"] == door && p["access"] == "runtime")
        .unwrap_or_else(|| panic!("no {tenant} {door} pool in {answer}"))
}

/// The pool's (active, idle, opening, waiting) server connections and clients.
fn holds(pool: &Value) -> [u64; 4] {
    ["server_active", "server_idle", "server_opening", "clients_waiting"]
        .map(|field| pool[field].as_u64().unwrap_or_else(|| panic!("{field} in {pool}")))
}

/// `/pools` once the pool of `tenant` serving `door` holds `expected` (see [`holds`]).
async fn pools_once(router: &RunningRouter, tenant: &str, door: &str, expected: [u64; 4]) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = admin(router, "pools").await;
        assert_eq!(status, 200, "{answer}");
        let found = answer["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["tenant"] == tenant && p["door"] == door && holds(p) == expected);
        if found {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{tenant} {door} never held {expected:?}: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counter(pool: &Value, field: &str) -> u64 {
    pool[field].as_u64().unwrap_or_else(|| panic!("{field} in {pool}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_show_held_connections_and_waiting_clients_and_their_counters_move() {
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (_, acme_credentials) = provisioned(&cp, "acme", "pro").await;
    provisioned(&cp, "globex", "starter").await;
    let mut settings = router_settings(&common);
    settings.max_connections = 4;
    // One connection per pool: a second client of the same pool waits.
    settings.tenant_max_connections = 1;
    settings.checkout_timeout = Duration::from_secs(60);
    let router = spawn_router_with(&settings).await;
    let pg_addr = router.pg_addr.unwrap();
    let acme_http = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);
    let globex_http =
        TenantSql::new(&router, "globex.app.localhost", &connection_string(&cp, "globex").await);
    acme_http.rows("INSERT INTO settings (key, value) VALUES ('k', 'v')", json!([])).await;
    globex_http.rows("SELECT 1", json!([])).await;

    // A PostgreSQL client holds a transaction (and the row), so acme's HTTP request that
    // updates the row holds its connection until the transaction ends.
    let holder = connect(pg_addr, "acme", &acme_credentials).await.unwrap();
    holder.batch_execute("BEGIN; SELECT value FROM settings WHERE key = 'k' FOR UPDATE").await.unwrap();
    let update = {
        let acme_http = TenantSql::new(&router, "acme.app.localhost", &acme_http.connection_string);
        tokio::spawn(async move {
            acme_http.post(json!({"query": "UPDATE settings SET value = 'w' WHERE key = 'k'"})).await
        })
    };
    pools_once(&router, "acme", "http", [1, 0, 0, 0]).await;
    // A second PostgreSQL client of acme waits for the pool's only connection (at its login).
    let waiter = {
        let credentials = acme_credentials.clone();
        tokio::spawn(async move { connect(pg_addr, "acme", &credentials).await })
    };
    let pools = pools_once(&router, "acme", "postgres", [1, 0, 0, 1]).await;

    let order: Vec<(&str, &str)> = pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["tenant"].as_str().unwrap(), p["door"].as_str().unwrap()))
        .collect();
    assert_eq!(order, [("acme", "http"), ("acme", "postgres"), ("globex", "http")], "by slug: {pools}");
    assert_eq!(holds(pool(&pools, "acme", "http")), [1, 0, 0, 0], "{pools}");
    assert_eq!(holds(pool(&pools, "globex", "http")), [0, 1, 0, 0], "{pools}");
    let waiting = pool(&pools, "acme", "postgres");
    assert_eq!(waiting["pool_size"], 1, "{waiting}");
    assert!(waiting["max_wait_ms"].is_u64(), "{waiting}");
    assert!(waiting["generation"].is_i64() && waiting["tenant_id"].is_string(), "{waiting}");
    assert_eq!(
        pools["budget"],
        json!({
            "max_connections": 4, "connections": 3, "server_active": 2, "server_idle": 1,
            "server_opening": 0, "server_closing": 0, "clients_waiting": 1, "pools": 3,
        }),
        "{pools}"
    );
    // One tenant's pools; the budget is still the router's.
    let (status, globex) = admin(&router, "pools?tenant=globex").await;
    assert_eq!(status, 200, "{globex}");
    assert_eq!(globex["pools"].as_array().unwrap().len(), 1, "{globex}");
    assert_eq!(globex["budget"], pools["budget"], "{globex}");
    let (status, both) = admin(&router, "stats?tenant=globex,acme").await;
    let tenants: Vec<&str> =
        both["pools"].as_array().unwrap().iter().map(|p| p["tenant"].as_str().unwrap()).collect();
    assert_eq!((status, tenants), (200, vec!["acme", "acme", "globex"]), "several tenants: {both}");
    let (status, refused) = admin(&router, "stats?tenant=globex,Not_A_Slug").await;
    assert_eq!((status, &refused["error"]["code"]), (400, &json!("bad_request")), "{refused}");

    let (status, before) = admin(&router, "stats").await;
    assert_eq!(status, 200, "{before}");
    let http = pool(&before, "acme", "http");
    assert_eq!(
        [
            counter(http, "checkouts"),
            counter(http, "connections_opened"),
            counter(http, "checkouts_timed_out")
        ],
        [2, 1, 0],
        "{before}"
    );
    assert!(http["transactions"].is_null(), "no transactions counted on an HTTP pool: {before}");
    let wire = pool(&before, "acme", "postgres");
    assert_eq!(counter(wire, "connections_opened"), 1, "{before}");

    // The transaction ends: the update goes through, the waiting client logs in and runs a
    // statement on the same (only) connection.
    holder.batch_execute("COMMIT").await.unwrap();
    let (status, body) = update.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let second = waiter.await.unwrap().unwrap();
    second.simple_query("SELECT 1").await.unwrap();
    drop(holder);
    acme_http.rows("SELECT 1", json!([])).await;

    let (_, after) = admin(&router, "stats").await;
    let (wire_before, wire) = (pool(&before, "acme", "postgres"), pool(&after, "acme", "postgres"));
    assert_eq!(
        counter(wire, "checkouts"),
        counter(wire_before, "checkouts") + 2,
        "the second client's login and statement: {before} {after}"
    );
    assert_eq!(counter(wire, "transactions"), counter(wire_before, "transactions") + 1, "{after}");
    assert!(
        counter(wire, "checkout_wait_us") > counter(wire_before, "checkout_wait_us"),
        "the second client waited: {before} {after}"
    );
    assert_eq!(counter(wire, "connections_opened"), 1, "one connection served both clients: {after}");
    assert_eq!(counter(pool(&after, "acme", "http"), "checkouts"), 3, "{after}");
    assert_eq!(counter(pool(&after, "globex", "http"), "checkouts"), 1, "{after}");

    // Nobody holds or waits for a connection any more.
    let pools = pools_once(&router, "acme", "postgres", [0, 1, 0, 0]).await;
    assert_eq!(pool(&pools, "acme", "postgres")["max_wait_ms"], 0, "{pools}");
    assert_eq!(holds(pool(&pools, "acme", "http")), [0, 1, 0, 0], "{pools}");
    assert_eq!(pools["budget"]["clients_waiting"], 0, "{pools}");
    router.stop().await.unwrap();
}
