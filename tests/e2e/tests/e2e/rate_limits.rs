//! A plan's rate limit holds across routers: they keep its state in Redis. With Redis away, each
//! router still limits the tenant on its own.

use control_plane::context::ControlPlane;
use control_plane::provisioning::steps::provision;
use control_plane::provisioning::{request_tenant, TenantRequest};
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
    let db = TestDb::create("rate_shared").await;
    let mut common = common_settings(&db, SecretsFor::Local);
    common.redis_url = Some(redis.url().into());
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = request_tenant(&cp, &TenantRequest::new("acme", "pro"), "test").await.unwrap();
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
