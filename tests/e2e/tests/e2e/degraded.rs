//! Redis going away degrades the router, it does not break it: cached tenants keep being served,
//! and once Redis is back, invalidations flow again.

use control_plane::tenants::{request as operate, Operation};
use e2e_tests::{connection_string, provisioning_settings, spawn_router, TenantSql};
use serde_json::json;
use std::time::{Duration, Instant};
use tenancy::domain::Slug;
use testkit::{common_settings, RedisServer, SecretsFor, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_no_5xx_for_cached_tenants_and_invalidations_resume_after() {
    let mut redis = RedisServer::start();
    let db = TestDb::create().await;
    let mut common = common_settings(&db, SecretsFor::Local);
    common.redis_url = Some(redis.url().into());
    let cp = control_plane::control_plane::ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let tenant = control_plane::tenants::create(
        &cp,
        &control_plane::tenants::TenantRequest::new("acme", "pro"),
        "test",
    )
    .await
    .unwrap();
    control_plane::jobs::provision::provision(&cp, tenant.id).await.unwrap();
    let router = spawn_router(&common).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);
    assert_eq!(acme.post(json!({"query": "SELECT 1"})).await.0, 200);

    // Redis dies under load: not a single 5xx for the cached tenant.
    redis.stop();
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(acme.post(json!({"query": "SELECT 1"})).await.0);
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Redis comes back: the router resubscribes, and a suspension reaches it again.
    redis.start_again();
    subscribed(&router).await;
    operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Suspend, "test").await.unwrap();
    let started = Instant::now();
    while acme.post(json!({"query": "SELECT 1"})).await.0 != 403 {
        assert!(started.elapsed() < Duration::from_secs(5), "suspension did not reach the router");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.stop().await.unwrap();
}

/// A Redis that requires a password (ElastiCache's AUTH token): with the password in
/// `REDIS_URL`, routers share signed routing records and hear invalidations through it; with a
/// wrong one, Redis is as good as away and the router still serves from the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_requires_auth_is_used_with_its_password() {
    let redis = RedisServer::start_with_password("redis-auth-token-of-the-test");
    let db = TestDb::create().await;
    let mut common = common_settings(&db, SecretsFor::Local);
    common.redis_url = Some(redis.url().into());
    let cp = control_plane::control_plane::ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let tenant = control_plane::tenants::create(
        &cp,
        &control_plane::tenants::TenantRequest::new("acme", "pro"),
        "test",
    )
    .await
    .unwrap();
    control_plane::jobs::provision::provision(&cp, tenant.id).await.unwrap();
    let acme_connection = connection_string(&cp, "acme").await;

    // The wrong password: no 5xx, served from the catalog.
    let mut wrong = common.clone();
    wrong.redis_url = Some(redis.url_with_password(Some("not-the-token")).into());
    let router = spawn_router(&wrong).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &acme_connection);
    assert_eq!(acme.post(json!({"query": "SELECT 1"})).await.0, 200);
    router.stop().await.unwrap();

    // The right one: the routing record lands in Redis, and a suspension reaches the router.
    let router = spawn_router(&common).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &acme_connection);
    assert_eq!(acme.post(json!({"query": "SELECT 1"})).await.0, 200);
    let mut client =
        redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key =
        tenancy::invalidation::RedisNames::new(&db.redis_prefix).route_key(&Slug::parse("acme").unwrap());
    let record: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut client).await.unwrap();
    assert!(record.is_some_and(|r| r.starts_with("v1.")), "no signed routing record in Redis");
    let unauthenticated = redis::Client::open(redis.url_with_password(None)).unwrap();
    let refused: Result<Option<String>, _> = match unauthenticated.get_multiplexed_async_connection().await {
        Ok(mut connection) => redis::cmd("GET").arg(&key).query_async(&mut connection).await,
        Err(e) => Err(e),
    };
    assert!(refused.is_err(), "Redis answered without the password");
    subscribed(&router).await;
    operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Suspend, "test").await.unwrap();
    let started = Instant::now();
    while acme.post(json!({"query": "SELECT 1"})).await.0 != 403 {
        assert!(started.elapsed() < Duration::from_secs(5), "suspension did not reach the router");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.stop().await.unwrap();
}

/// Waits (at most 15 s) until `router` is subscribed to Redis's invalidations.
async fn subscribed(router: &tenant_router::http::RunningRouter) {
    let started = Instant::now();
    loop {
        let metrics = reqwest::get(format!("http://{}/metrics", router.admin_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("tenant_router_redis_connected 1") {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "router did not subscribe to Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
