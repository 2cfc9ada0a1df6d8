//! The embeddable extractor: a service of its own gets the request's tenant and a connection on
//! that tenant's role, with the router's status rules.

use control_plane::lifecycle::{request as operate, Operation};
use control_plane::provisioning::{request_tenant, steps::provision, TenantRequest};
use e2e_tests::{provisioning_settings, router_settings};
use std::time::Duration;
use tenancy::domain::Slug;
use tenant_router::embed::TenantConnection;
use testkit::{common_settings, SecretsFor, TestDb};

async fn whoami(TenantConnection { tenant, client }: TenantConnection) -> String {
    let row = client.query_one("SELECT current_user::text, current_schema()::text", &[]).await.unwrap();
    format!("{} {} {}", tenant.slug, row.get::<_, String>(0), row.get::<_, String>(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_service_gets_the_tenant_and_a_connection_on_its_role() {
    let db = TestDb::create("embed").await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = control_plane::control_plane::ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let tenant = request_tenant(&cp, &TenantRequest::new("acme", "starter"), "test").await.unwrap();
    let acme = provision(&cp, tenant.id).await.unwrap();
    let state =
        tenant_router::embed::start(&router_settings(&common), &tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    let app = axum::Router::new().route("/whoami", axum::routing::get(whoami)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let get = |host: &'static str| {
        reqwest::Client::new().get(format!("http://{addr}/whoami")).header("host", host).send()
    };

    let response = get("acme.app.localhost").await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), format!("acme {} t_acme", acme.role_name));
    assert_eq!(get("nobody.app.localhost").await.unwrap().status().as_u16(), 404);

    // The embedding service hears invalidations like the router: a suspension is refused.
    operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Suspend, "test").await.unwrap();
    let started = std::time::Instant::now();
    while get("acme.app.localhost").await.unwrap().status().as_u16() != 403 {
        assert!(started.elapsed() < Duration::from_secs(5), "suspension did not reach the embedding service");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
