//! Tenant changes reach every running router through Redis invalidations: suspension,
//! resumption, credential rotation and billing-driven changes, each seen within a second.

use control_plane::billing::send::{send, TestEvent};
use control_plane::jobs::runner::drain;
use control_plane::tenants::{request as operate, Operation};
use e2e_tests::{
    connection_string, spawn_control_plane, spawn_router, wait_until_active, TenantSql, WEBHOOK_SECRET,
};
use serde_json::json;
use std::time::{Duration, Instant};
use tenancy::domain::Slug;
use testkit::{common_settings, SecretsFor, TestDb};

/// Polls until `sql` answers `status`; fails the test after `limit`.
async fn expect_within(sql: &TenantSql, status: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (got, body) = sql.post(json!({"query": "SELECT 1 AS one"})).await;
        if got == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still {got} after {limit:?}, wanted {status}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_resumption_and_rotation_reach_every_router_within_a_second() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = spawn_control_plane(&db, &common).await;
    let cp = &control.cp;
    let url = format!("{}/v1/webhooks/billing", control.url);
    let event = TestEvent {
        subscription_id: Some("sub_acme".into()),
        ..TestEvent::subscription_created("acme", "starter")
    };
    let now = chrono_now();
    send(&url, WEBHOOK_SECRET, &event.body(now - 100)).await.unwrap();
    let acme = wait_until_active(cp, "acme", Duration::from_secs(30)).await;
    let (one, two) = (spawn_router(&common).await, spawn_router(&common).await);
    let conn = connection_string(cp, "acme").await;
    let routers = [
        TenantSql::new(&one, "acme.app.localhost", &conn),
        TenantSql::new(&two, "acme.app.localhost", &conn),
    ];
    for router in &routers {
        expect_within(router, 200, Duration::from_secs(1)).await; // both have acme cached now
    }
    // The first router read the catalog and shared the record; the second found it in Redis.
    let metrics =
        reqwest::get(format!("http://{}/metrics", two.admin_addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tenant_router_resolutions_total{layer=\"l2\",outcome=\"found\"}"), "{metrics}");

    let slug = Slug::parse("acme").unwrap();
    operate(cp, &slug, &Operation::Suspend, "test").await.unwrap();
    for router in &routers {
        expect_within(router, 403, Duration::from_secs(1)).await;
    }
    operate(cp, &slug, &Operation::Resume, "test").await.unwrap();
    drain(cp, acme.id, Duration::from_secs(60)).await.unwrap();
    for router in &routers {
        expect_within(router, 200, Duration::from_secs(1)).await;
    }

    // Rotation: the new password is accepted by every router, the old one refused.
    operate(cp, &slug, &Operation::RotateCredentials, "test").await.unwrap();
    drain(cp, acme.id, Duration::from_secs(60)).await.unwrap();
    let new_conn = connection_string(cp, "acme").await;
    assert_ne!(new_conn, conn);
    for router in [&one, &two] {
        expect_within(&TenantSql::new(router, "acme.app.localhost", &new_conn), 200, Duration::from_secs(1))
            .await;
        expect_within(&TenantSql::new(router, "acme.app.localhost", &conn), 401, Duration::from_secs(1))
            .await;
    }
    let routers = [
        TenantSql::new(&one, "acme.app.localhost", &new_conn),
        TenantSql::new(&two, "acme.app.localhost", &new_conn),
    ];

    // Billing: past_due suspends; an older event arriving late changes nothing; deletion makes
    // the tenant disappear.
    let updated = |status: &str, created: i64| {
        let event = TestEvent {
            kind: "customer.subscription.updated".into(),
            status: status.into(),
            ..event.clone()
        };
        event.body(created)
    };
    send(&url, WEBHOOK_SECRET, &updated("past_due", now)).await.unwrap();
    for router in &routers {
        expect_within(router, 403, Duration::from_secs(5)).await;
    }
    let stale = updated("active", now - 50); // older than the past_due event: ignored
    send(&url, WEBHOOK_SECRET, &stale).await.unwrap();
    let started = Instant::now();
    let outcome: String = loop {
        let row = db
            .client()
            .await
            .query_opt(
                "SELECT outcome FROM control.billing_events WHERE event_id = $1 AND processed_at IS NOT NULL",
                &[&stale["id"].as_str().unwrap()],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            break row.get(0);
        }
        assert!(started.elapsed() < Duration::from_secs(20), "stale event not processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(outcome.starts_with("ignored"), "{outcome}");
    assert_eq!(routers[0].post(json!({"query": "SELECT 1"})).await.0, 403, "a stale event did not resume it");
    let deleted = TestEvent {
        kind: "customer.subscription.deleted".into(),
        status: "canceled".into(),
        ..event.clone()
    };
    send(&url, WEBHOOK_SECRET, &deleted.body(now + 1)).await.unwrap();
    for router in &routers {
        expect_within(router, 404, Duration::from_secs(5)).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM control.tenants WHERE status = 'deprovisioning'").await, 1);

    // The routers' metrics saw it all, with no tenant in any label.
    let metrics =
        reqwest::get(format!("http://{}/metrics", one.admin_addr)).await.unwrap().text().await.unwrap();
    for expected in [
        "tenant_router_requests_total{status=\"2xx\"}",
        "tenant_router_requests_total{status=\"4xx\"}",
        "tenant_router_resolutions_total{layer=\"l1\",outcome=\"found\"}",
        "tenant_router_resolutions_total{layer=\"catalog\",outcome=\"found\"}",
        "tenant_router_redis_connected 1",
        "tenant_router_connection_budget 100",
        "tenant_router_checkout_wait_seconds_count",
    ] {
        assert!(metrics.contains(expected), "{expected} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("tenant_router_invalidations_total 0"), "invalidations were counted");
    assert!(!metrics.contains("acme"), "no tenant in labels");

    one.stop().await.unwrap();
    two.stop().await.unwrap();
    control.server.stop().await.unwrap();
}

fn chrono_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    i64::try_from(now).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_succeeding_through_a_credential_rotation_even_without_invalidations() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = spawn_control_plane(&db, &common).await;
    let cp = control.cp.clone();
    let url = format!("{}/v1/webhooks/billing", control.url);
    let event = TestEvent::subscription_created("acme", "starter");
    send(&url, WEBHOOK_SECRET, &event.body(chrono_now())).await.unwrap();
    let acme = wait_until_active(&cp, "acme", Duration::from_secs(30)).await;
    // A router that hears no invalidations: it must cope by itself.
    let mut deaf = common.clone();
    deaf.redis_url = None;
    let router = spawn_router(&deaf).await;

    // A client that reads its credentials from the secret store before each request, as an
    // application does, keeps querying while the credentials rotate.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (cp, stop, router_addr) = (cp.clone(), stop.clone(), router.addr);
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut requests = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let conn = connection_string(&cp, "acme").await;
                let sql = TenantSql::new_at(router_addr, "acme.app.localhost", &conn);
                let (status, body) = sql.post(json!({"query": "SELECT count(*) AS n FROM users"})).await;
                requests += 1;
                if status != 200 {
                    failures.push(format!("{status} {body}"));
                }
                // Below the starter plan's 20 requests/s: this test is about rotation.
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            (requests, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slug = Slug::parse("acme").unwrap();
    for _ in 0..3 {
        operate(&cp, &slug, &Operation::RotateCredentials, "test").await.unwrap();
        drain(&cp, acme.id, Duration::from_secs(60)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (requests, failures) = client.await.unwrap();
    assert!(requests >= 5, "only {requests} requests");
    let first: Vec<&String> = failures.iter().take(3).collect();
    assert!(failures.is_empty(), "{} of {requests} requests failed, first: {first:?}", failures.len());

    // The sessions the router opened with the old password end (between requests: a query
    // running when its session is killed fails, rotation or not). The router's pool still has
    // the old password and hears no invalidation; it must log in again with the new one.
    db.client()
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&acme.role_name.as_str()],
        )
        .await
        .unwrap();
    // pg_terminate_backend only signals: wait until the router has seen its sessions end (their
    // budget units come back), so that no request is sent on one being killed.
    let started = std::time::Instant::now();
    loop {
        let metrics = reqwest::get(format!("http://{}/metrics", router.admin_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|line| line == "tenant_router_connections_in_use 0") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the terminated sessions never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let conn = connection_string(&cp, "acme").await;
    let sql = TenantSql::new(&router, "acme.app.localhost", &conn);
    for _ in 0..10 {
        let (status, body) = sql.post(json!({"query": "SELECT count(*) AS n FROM users"})).await;
        assert_eq!(status, 200, "{body}");
    }
    router.stop().await.unwrap();
    control.server.stop().await.unwrap();
}
