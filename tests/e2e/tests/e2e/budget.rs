//! The router's global connection budget: never more server connections than
//! `ROUTER_MAX_CONNECTIONS`, whatever the number of tenants; idle connections of one tenant
//! make room for another; when everything is busy a request waits, then gets 503, never hangs.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::runner::drain;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, router_settings, spawn_router_with, TenantSql};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::{common_settings, SecretsFor, TestDb};

const TENANTS: usize = 5;
const BUDGET: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_budget_is_never_exceeded_and_waiting_requests_get_503() {
    let db = TestDb::create().await;
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
        let tenant = tenants::create(&cp, &TenantRequest::new(slug.as_str(), "pro"), "test").await.unwrap();
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

/// The server process behind the tenant's next request.
async fn backend(client: &TenantSql) -> serde_json::Value {
    client.rows("SELECT pg_backend_pid() AS pid", json!([])).await[0]["pid"].clone()
}

/// The value of a counter on the router's `/metrics`.
async fn counter(router: &tenant_router::http::RunningRouter, name: &str) -> u64 {
    let text =
        reqwest::get(format!("http://{}/metrics", router.admin_addr)).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// With the budget all in use, a tenant whose connections are busy waits for its own rather than
/// close another tenant's warm connection; it takes that one only when it has been idle for
/// `ROUTER_RECLAIM_IDLE_AFTER` (and never when it is at its own size limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_takes_another_tenants_connection_only_when_it_went_cold() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let mut clients = Vec::new();
    for slug in ["busy", "idle"] {
        let tenant = tenants::create(&cp, &TenantRequest::new(slug, "pro"), "test").await.unwrap();
        drain(&cp, tenant.id, Duration::from_secs(60)).await.unwrap();
        clients.push((format!("{slug}.app.localhost"), connection_string(&cp, slug).await));
    }
    // (tenant size limit, reclaim after, whether the idle tenant's connection is taken)
    for (tenant_max_connections, reclaim_after, taken) in
        [(1, Duration::ZERO, false), (2, Duration::from_secs(60), false), (2, Duration::ZERO, true)]
    {
        let mut settings = router_settings(&common);
        settings.max_connections = 2;
        settings.tenant_max_connections = tenant_max_connections;
        settings.reclaim_idle_after = reclaim_after;
        settings.checkout_timeout = Duration::from_secs(5);
        let router = spawn_router_with(&settings).await;
        let busy = TenantSql::new(&router, &clients[0].0, &clients[0].1);
        let idle = TenantSql::new(&router, &clients[1].0, &clients[1].1);
        // One connection each: the budget is all in use.
        let busy_backend = backend(&busy).await;
        let idle_backend = backend(&idle).await;

        // The busy tenant's only connection held by a slow request; a second request meanwhile.
        let slow = {
            let busy = TenantSql::new(&router, &clients[0].0, &clients[0].1);
            tokio::spawn(async move { busy.post(json!({"query": "SELECT pg_sleep(1)"})).await })
        };
        let admin = db.client().await;
        let pid = i32::try_from(busy_backend.as_i64().unwrap()).unwrap();
        while admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
                &[&pid],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            assert!(!slow.is_finished(), "the slow request ended before it was seen running");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = backend(&busy).await;
        let (status, body) = slow.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let shed = counter(&router, "tenant_router_connections_shed_total").await;
        let case = format!("tenant max {tenant_max_connections}, reclaim after {reclaim_after:?}");
        if taken {
            assert_eq!(shed, 1, "{case}: one cold connection closed to let the busy tenant grow");
            assert_ne!(second, busy_backend, "{case}: the second request got a connection of its own");
            assert_ne!(
                backend(&idle).await,
                idle_backend,
                "{case}: the idle tenant's connection made the room"
            );
        } else {
            assert_eq!(shed, 0, "{case}: no connection of another tenant closed");
            assert_eq!(second, busy_backend, "{case}: the second request waited for the tenant's own");
            assert_eq!(backend(&idle).await, idle_backend, "{case}: the idle tenant keeps its connection");
        }
        router.stop().await.unwrap();
    }
}

/// More demand than budget, for a while: 12 tenants whose pools could hold 24 connections, a
/// budget of 6, 8 clients cycling the tenants. Connection opens stay within the configured rate,
/// every tenant is served, and every request is answered (200, or 503 at the checkout timeout)
/// without waiting past the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_overload_opens_stay_bounded_and_every_tenant_is_served() {
    const TENANTS: usize = 12;
    const CLIENTS: usize = 8;
    const RATE: u32 = 20;
    const RUN: Duration = Duration::from_secs(3);
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let mut settings = router_settings(&common);
    settings.max_connections = 6;
    settings.tenant_max_connections = 2;
    settings.max_connects_per_second = RATE;
    settings.checkout_timeout = Duration::from_millis(500);
    let router = spawn_router_with(&settings).await;
    let mut clients = Vec::new();
    for i in 0..TENANTS {
        let slug = format!("load-{i}");
        let tenant =
            tenants::create(&cp, &TenantRequest::new(slug.as_str(), "starter"), "test").await.unwrap();
        drain(&cp, tenant.id, Duration::from_secs(60)).await.unwrap();
        let host = format!("{slug}.app.localhost");
        clients.push(TenantSql::new(&router, &host, &connection_string(&cp, &slug).await));
    }
    // The budget is under test here, not the plan's rate limit.
    db.lift_rate_limits().await;
    let clients = std::sync::Arc::new(clients);
    let opened_before = counter(&router, "tenant_router_connections_opened_total").await;
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let clients = clients.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut i = worker;
                while started.elapsed() < RUN {
                    let client = &clients[i % TENANTS];
                    let sent = Instant::now();
                    let response = client
                        .request()
                        .json(&json!({"query": "SELECT pg_sleep(0.005), $1::int AS tenant", "params": [i % TENANTS]}))
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap();
                    answers.push((i % TENANTS, status, body, sent.elapsed()));
                    i += CLIENTS + 1;
                }
                answers
            })
        })
        .collect();
    let mut served = [0usize; TENANTS];
    let (mut ok, mut exhausted) = (0, 0);
    for worker in workers {
        for (tenant, status, body, waited) in worker.await.unwrap() {
            match status {
                200 => {
                    ok += 1;
                    served[tenant] += 1;
                    assert_eq!(body["rows"][0]["tenant"], json!(tenant), "{body}");
                }
                503 => {
                    assert_eq!(body["error"]["code"], json!("pool_exhausted"), "{body}");
                    exhausted += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
            assert!(
                // (Slack for a test machine running the whole suite on two cores.)
                waited < settings.checkout_timeout + Duration::from_secs(2),
                "a request waited {waited:?}, past the checkout timeout without its 503"
            );
        }
    }
    let elapsed = started.elapsed();
    let opened = counter(&router, "tenant_router_connections_opened_total").await - opened_before;
    // The limiter allows a second's worth at once, then RATE per second.
    let allowed = u64::from(RATE) * (elapsed.as_secs() + 2);
    assert!(opened <= allowed, "{opened} connections opened in {elapsed:?}, over {RATE}/s");
    assert!(served.iter().all(|&n| n > 0), "every tenant served: {served:?} ({exhausted} got 503)");
    assert!(ok > exhausted, "most requests are served: {ok} ok, {exhausted} 503");
    router.stop().await.unwrap();
}
