//! The reverse proxy: other paths reach the application with the tenant in trusted headers; a
//! client cannot forge them; a slow or absent application gives 504 or 502.

use axum::http::HeaderMap;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use control_plane::tenants::{request as operate, Operation};
use e2e_tests::{provisioning_settings, router_settings, spawn_router_with};
use serde_json::{json, Value};
use std::time::Duration;
use tenancy::domain::Slug;
use testkit::{common_settings, SecretsFor, TestDb};

/// An application that answers with what it received.
async fn echo_app() -> std::net::SocketAddr {
    async fn echo(headers: HeaderMap, uri: axum::http::Uri, body: String) -> axum::Json<Value> {
        let tenant_headers: serde_json::Map<String, Value> = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-tenant-"))
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or_default())))
            .collect();
        axum::Json(json!({ "uri": uri.to_string(), "tenant": tenant_headers, "body": body }))
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "too late"
    }
    let app = axum::Router::new().route("/slow", axum::routing::any(slow)).fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_reach_the_application_with_trusted_tenant_headers() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = control_plane::control_plane::ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "pro"), "test").await.unwrap();
    let acme = provision(&cp, tenant.id).await.unwrap();
    let app = echo_app().await;
    let mut settings = router_settings(&common);
    settings.upstream = Some(format!("http://{app}").parse().unwrap());
    settings.upstream_timeout = Duration::from_millis(500);
    let router = spawn_router_with(&settings).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.post(format!("http://{}{path}", router.addr))
            .header("host", "acme.app.localhost")
            .header("x-tenant-slug", "globex") // forged: must not reach the application
            .header("x-tenant-admin", "true")
            .body("hello")
    };

    let response = get("/projects/7?sort=name").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["uri"], json!("/projects/7?sort=name"));
    assert_eq!(echoed["body"], json!("hello"));
    assert_eq!(
        echoed["tenant"],
        json!({"x-tenant-id": acme.id.to_string(), "x-tenant-slug": "acme", "x-tenant-plan": "pro"})
    );

    // Too slow: 504. Unknown host: 404 without reaching the application.
    let response = get("/slow").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 504);
    let response = http
        .get(format!("http://{}/x", router.addr))
        .header("host", "nobody.app.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    // A suspended tenant is refused before the application sees anything.
    operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Suspend, "test").await.unwrap();
    let started = std::time::Instant::now();
    while get("/projects").send().await.unwrap().status().as_u16() != 403 {
        assert!(started.elapsed() < Duration::from_secs(5), "suspension did not reach the proxy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.stop().await.unwrap();

    // No application listening: 502.
    let mut settings = router_settings(&common);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    settings.upstream = Some(format!("http://{closed}").parse().unwrap());
    let router = spawn_router_with(&settings).await;
    operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Resume, "test").await.unwrap();
    let response = http
        .get(format!("http://{}/x", router.addr))
        .header("host", "acme.app.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("upstream_unavailable"));
    router.stop().await.unwrap();
}
