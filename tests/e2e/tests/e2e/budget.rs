//! The router's global connection budget: never more server connections than
//! `ROUTER_MAX_CONNECTIONS`, whatever the number of tenants; idle connections of one tenant
//! make room for another; when everything is busy a request waits, then gets 503, never hangs.

use control_plane::context::ControlPlane;
use control_plane::provisioning::worker::drain;
use control_plane::provisioning::{request_tenant, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, router_settings, spawn_router_with, TenantSql};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::{common_settings, SecretsFor, TestDb};

const TENANTS: usize = 5;
const BUDGET: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_budget_is_never_exceeded_and_waiting_requests_get_503() {
    let db = TestDb::create("budget").await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let mut settings = router_settings(&common);
    settings.max_connections = BUDGET;
    settings.tenant_max_connections = 2;
    settings.checkout_timeout = Duration::from_millis(500);
    let router = spawn_router_with(&settings).await;
    let mut clients = Vec::new();
    for i in 0..TENANTS {
        let slug = format!("tenant-{i}");
        let tenant = request_tenant(&cp, &TenantRequest::new(slug.as_str(), "pro"), "test").await.unwrap();
        drain(&cp, tenant.id, Duration::from_secs(60)).await.unwrap();
        let host = format!("{slug}.app.localhost");
        clients.push(TenantSql::new(&router, &host, &connection_string(&cp, &slug).await));
    }

    // One at a time, every tenant is served: idle connections of others make room.
    for _ in 0..2 {
        for client in &clients {
            let (status, body) = client.post(json!({"query": "SELECT 1 AS one"})).await;
            assert_eq!(status, 200, "{body}");
        }
    }

    // All at once, slowly: watch the server's connections while it happens.
    let prefix = format!("{}\\_%", db.role_prefix);
    let watcher = {
        let admin = db.client().await;
        tokio::spawn(async move {
            let mut most = 0i64;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                let n: i64 = admin
                    .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename LIKE $1", &[&prefix])
                    .await
                    .unwrap()
                    .get(0);
                most = most.max(n);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    let mut requests = Vec::new();
    for client in &clients {
        for _ in 0..3 {
            requests.push(client.request().json(&json!({"query": "SELECT pg_sleep(0.3)"})).send());
        }
    }
    let started = Instant::now();
    let responses = futures::future::join_all(requests).await;
    let elapsed = started.elapsed();
    let (mut ok, mut exhausted) = (0, 0);
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], json!("pool_exhausted"), "{body}");
                exhausted += 1;
            }
            other => panic!("unexpected status {other}: {}", response.text().await.unwrap()),
        }
    }
    let most = watcher.await.unwrap();
    assert!(most <= BUDGET as i64, "{most} server connections, budget {BUDGET}");
    assert!(ok >= BUDGET, "at least the budget's worth succeed ({ok} ok, {exhausted} exhausted)");
    assert!(exhausted > 0, "15 slow requests on 3 connections with a 0.5 s wait: some must give up");
    assert!(elapsed < Duration::from_secs(15), "nobody hangs: {elapsed:?}");
    router.stop().await.unwrap();
}
