//! Custom domains: validated, unique, outside the base domain, and seen by routers at once.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::runner::drain;
use control_plane::tenants::domains::{self, DomainError};
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, spawn_router, TenantSql};
use serde_json::json;
use std::time::{Duration, Instant};
use tenancy::domain::Slug;
use testkit::{common_settings, SecretsFor, TestDb};

async fn create(cp: &ControlPlane, slug: &str) {
    let request = TenantRequest::new(slug, "starter");
    let tenant = tenants::create(cp, &request, "test").await.unwrap();
    drain(cp, tenant.id, Duration::from_secs(60)).await.unwrap();
}

async fn status_within(sql: &TenantSql, want: u16, limit: Duration) {
    let started = Instant::now();
    loop {
        let (status, body) = sql.post(json!({"query": "SELECT current_user AS who"})).await;
        if status == want {
            return;
        }
        assert!(started.elapsed() < limit, "still {status} after {limit:?}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_domains_are_validated_unique_and_reach_the_router_at_once() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    create(&cp, "acme").await;
    create(&cp, "globex").await;
    let router = spawn_router(&common).await;
    let shop = TenantSql::new(&router, "shop.acme.test", &connection_string(&cp, "acme").await);
    assert_eq!(shop.post(json!({"query": "SELECT 1"})).await.0, 404, "not a domain yet (now cached as such)");

    let (acme, globex) = (Slug::parse("acme").unwrap(), Slug::parse("globex").unwrap());
    assert_eq!(domains::add(&cp, &acme, "Shop.Acme.Test.", "test").await.unwrap(), "shop.acme.test");
    status_within(&shop, 200, Duration::from_secs(5)).await;
    assert_eq!(
        domains::add(&cp, &acme, "shop.acme.test", "test").await.unwrap(),
        "shop.acme.test",
        "idempotent"
    );

    assert!(matches!(domains::add(&cp, &globex, "shop.acme.test", "test").await, Err(DomainError::Taken(_))));
    assert!(matches!(
        domains::add(&cp, &globex, "x.app.localhost", "test").await,
        Err(DomainError::UnderBaseDomain(_))
    ));
    assert!(matches!(
        domains::add(&cp, &globex, "bad host!", "test").await,
        Err(DomainError::InvalidHost(_))
    ));
    assert!(matches!(
        domains::add(&cp, &globex, "shop.acme.test:443", "test").await,
        Err(DomainError::InvalidHost(_))
    ));
    assert!(matches!(
        domains::add(&cp, &Slug::parse("nobody").unwrap(), "a.test", "test").await,
        Err(DomainError::TenantNotFound(_))
    ));

    let hosts: Vec<(String, String)> =
        domains::list(&cp, &acme).await.unwrap().into_iter().map(|d| (d.host, d.kind)).collect();
    assert_eq!(
        hosts,
        [("acme.app.localhost".into(), "subdomain".into()), ("shop.acme.test".into(), "custom".into())]
    );

    domains::remove(&cp, &acme, "shop.acme.test", "test").await.unwrap();
    status_within(&shop, 404, Duration::from_secs(5)).await;
    assert!(matches!(
        domains::remove(&cp, &acme, "shop.acme.test", "test").await,
        Err(DomainError::NoSuchDomain { .. })
    ));
    assert!(
        matches!(
            domains::remove(&cp, &acme, "acme.app.localhost", "test").await,
            Err(DomainError::NoSuchDomain { .. })
        ),
        "the subdomain is not removable"
    );
    router.stop().await.unwrap();
}
