//! The embeddable extractor: a service of its own gets the request's tenant and a connection on
//! that tenant's role, with the router's status rules.

use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use control_plane::tenants::{request as operate, Operation};
use e2e_tests::{connection_string, provisioning_settings, router_settings, spawn_router_with, TenantSql};
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenancy::domain::Slug;
use tenant_router::embed::TenantConnection;
use testkit::{common_settings, SecretsFor, TestDb};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

async fn whoami(TenantConnection { tenant, client }: TenantConnection) -> String {
    let row = client.query_one("SELECT current_user::text, current_schema()::text", &[]).await.unwrap();
    format!("{} {} {}", tenant.slug, row.get::<_, String>(0), row.get::<_, String>(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_service_gets_the_tenant_and_a_connection_on_its_role() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = control_plane::control_plane::ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "starter"), "test").await.unwrap();
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

/// The values recorded in spans' `tenant` fields while it is the subscriber.
#[derive(Clone, Default)]
struct TenantsOnSpans(Arc<Mutex<Vec<String>>>);

impl TenantsOnSpans {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TenantsOnSpans {
    fn on_record(
        &self,
        _span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut TenantField(&self.0));
    }
}

struct TenantField<'a>(&'a Mutex<Vec<String>>);

impl tracing::field::Visit for TenantField<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "tenant" {
            self.0.lock().unwrap().push(format!("{value:?}"));
        }
    }
}

/// The embedding service's request span, with a `tenant` field as the router's has.
async fn request_span(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    next.run(request).instrument(tracing::info_span!("request", tenant = tracing::field::Empty)).await
}

/// `tenant_router_rate_limited_total` in a metrics text.
fn rate_limited(metrics: &str) -> u64 {
    let line = metrics.lines().find_map(|l| l.strip_prefix("tenant_router_rate_limited_total "));
    line.unwrap_or_else(|| panic!("no rate_limited counter in {metrics}")).trim().parse().unwrap()
}

/// Sends requests until the tenant's rate limit refuses one (each refusal must be the router's
/// 429 `rate_limited`): how many were sent, and how many refused.
async fn until_refused<F: Future<Output = (u16, serde_json::Value)>>(send: impl Fn() -> F) -> (usize, u64) {
    let (mut sent, mut refused) = (0, 0);
    while refused == 0 {
        assert!(sent < 20, "20 requests within a rate limit of 1 a second, none refused");
        let (status, body) = send().await;
        sent += 1;
        match status {
            200 => {}
            429 => {
                assert_eq!(body["error"]["code"], json!("rate_limited"), "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (sent, refused)
}

/// The library admits a request as the router's doors do: past the tenant's plan rate it is
/// refused with the same 429 and counted in the same metric, and every request names its
/// tenant on its span. On a current-thread runtime, so that the subscriber the test sets for
/// its thread sees the spans of both services.
#[tokio::test]
async fn an_embedding_service_counts_rate_limited_requests_and_names_the_tenant_like_the_router() {
    let tenants = TenantsOnSpans::default();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(tenants.clone()));
    let db = TestDb::create().await;
    let mut common = common_settings(&db, SecretsFor::Local);
    // Each service limits the tenant on its own, none spends the other's limit.
    common.redis_url = None;
    let cp = control_plane::control_plane::ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "starter"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    db.client().await.execute("UPDATE control.tenants SET rate_limit_per_second = 1", &[]).await.unwrap();
    let settings = router_settings(&common);

    let state =
        tenant_router::embed::start(&settings, &tokio_util::sync::CancellationToken::new()).await.unwrap();
    let metrics = state.metrics.clone();
    let app = axum::Router::new()
        .route("/whoami", axum::routing::get(whoami))
        .layer(axum::middleware::from_fn(request_span))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (sent, refused) = until_refused(|| async {
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/whoami"))
            .header("host", "acme.app.localhost")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    })
    .await;
    assert_eq!(rate_limited(&metrics.encode()), refused, "the library's refusals in its metrics");
    assert_eq!(
        tenants.take(),
        vec!["acme"; sent],
        "the tenant on the span of each of the library's requests"
    );

    let router = spawn_router_with(&settings).await;
    let sql = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);
    let (sent, refused) = until_refused(|| sql.post(json!({"query": "SELECT 1"}))).await;
    let text =
        reqwest::get(format!("http://{}/metrics", router.admin_addr)).await.unwrap().text().await.unwrap();
    assert_eq!(rate_limited(&text), refused, "the router's refusals in its metrics");
    assert_eq!(tenants.take(), vec!["acme"; sent], "the tenant on the span of each of the router's requests");
    router.stop().await.unwrap();
}
