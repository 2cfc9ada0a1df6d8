//! A plan's rate limit holds across routers: they keep its state in Redis. With Redis away, each
//! router still limits the tenant on its own.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, spawn_router, TenantSql};
use serde_json::json;
use std::time::Instant;
use testkit::{common_settings, RedisServer, SecretsFor, TestDb};

const RATE: f64 = 10.0;

/// Sends `count` requests, alternating between `clients`; the number answered 200 and the time
/// it took. Every answer is 200 or 429.
async fn burst(clients: &[&TenantSql], count: usize) -> (usize, f64) {
    let started = Instant::now();
    let mut allowed = 0;
    for i in 0..count {
        let (status, body) = clients[i % clients.len()].post(json!({"query": "SELECT 1"})).await;
        match status {
            200 => allowed += 1,
            429 => assert_eq!(body["error"]["code"], json!("rate_limited"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (allowed, started.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_share_a_tenants_rate_limit_and_each_still_limits_without_redis() {
    let mut redis = RedisServer::start();
    let db = TestDb::create().await;
    let mut common = common_settings(&db, SecretsFor::Local);
    common.redis_url = Some(redis.url().into());
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "pro"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    db.client().await.execute("UPDATE control.tenants SET rate_limit_per_second = 10", &[]).await.unwrap();
    let connection = connection_string(&cp, "acme").await;
    let (first, second) = (spawn_router(&common).await, spawn_router(&common).await);
    let a = TenantSql::new(&first, "acme.app.localhost", &connection);
    let b = TenantSql::new(&second, "acme.app.localhost", &connection);

    // Together, the two routers allow one burst (a second's worth) and the rate after it: with
    // a limiter each they would allow two bursts.
    let (allowed, seconds) = burst(&[&a, &b], 40).await;
    let most = RATE + RATE * seconds + 1.0;
    assert!(
        allowed as f64 >= RATE && allowed as f64 <= most,
        "{allowed} of 40 allowed in {seconds:.2} s by two routers sharing a limit of {RATE}/s (at most {most:.0})"
    );

    // Redis goes away: each router limits on its own (a burst each, no error), once their own
    // limiters, which counted the requests above, have refilled.
    redis.stop();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (allowed, seconds) = burst(&[&a, &b], 60).await;
    let most = 2.0 * (RATE + RATE * seconds) + 1.0;
    assert!(
        allowed as f64 >= RATE && allowed as f64 <= most,
        "{allowed} of 60 allowed in {seconds:.2} s by two routers limiting alone (at most {most:.0})"
    );
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

/// A client at `address` (as the trusted proxy in front reports it in X-Forwarded-For).
fn from(sql: &TenantSql, address: &str, connection_string: Option<&str>) -> reqwest::RequestBuilder {
    let request = reqwest::Client::new()
        .post(format!("http://{}/sql", sql.addr()))
        .header("host", &sql.host)
        .header("x-forwarded-for", address);
    match connection_string {
        Some(connection) => request.header("neon-connection-string", connection),
        None => request,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_spend_no_tenant_limit_and_a_failing_address_is_refused() {
    let db = TestDb::create().await;
    let mut common = common_settings(&db, SecretsFor::Local);
    common.redis_url = None;
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "pro"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    db.client().await.execute("UPDATE control.tenants SET rate_limit_per_second = 10", &[]).await.unwrap();
    let connection = connection_string(&cp, "acme").await;
    let wrong_password = connection.replacen("://", "://x", 1).replacen('@', "x@", 1);
    let mut settings = e2e_tests::router_settings(&common);
    settings.trusted_proxy_hops = 1;
    settings.auth_failures_per_minute = 5;
    let router = e2e_tests::spawn_router_with(&settings).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &connection);
    let query = json!({"query": "SELECT 1"});

    // An anonymous and wrong-password flood from many addresses (each under its own allowance
    // of failures): 100 requests, ten times the tenant's rate.
    for i in 0..100 {
        let address = format!("203.0.113.{}", i % 25);
        let credentials = if i % 2 == 0 { None } else { Some(wrong_password.as_str()) };
        let response = from(&acme, &address, credentials).json(&query).send().await.unwrap();
        assert_ne!(response.status().as_u16(), 200, "request {i} of the flood");
    }
    // The tenant's own requests right after it: within its burst, none is refused.
    for i in 0..8 {
        let response = from(&acme, "198.51.100.1", Some(&connection)).json(&query).send().await.unwrap();
        let status = response.status().as_u16();
        assert_eq!(status, 200, "legitimate request {i}: {}", response.text().await.unwrap_or_default());
    }

    // One address failing past its allowance (5 a minute) is refused, with Retry-After, even
    // with the right password; other addresses are not.
    let attacker = "192.0.2.66";
    for _ in 0..5 {
        let response = from(&acme, attacker, Some(&wrong_password)).json(&query).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }
    for credentials in [Some(wrong_password.as_str()), Some(connection.as_str()), None] {
        let response = from(&acme, attacker, credentials).json(&query).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 429);
        let retry_after: u64 =
            response.headers()["retry-after"].to_str().unwrap().parse().expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], json!("too_many_failed_attempts"), "{body}");
    }
    let response = from(&acme, "198.51.100.1", Some(&connection)).json(&query).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    router.stop().await.unwrap();
}
