//! Requests the servers must refuse cleanly, and lookups an attacker must not multiply: a NUL
//! in a query or a signed webhook (400, not 5xx), two `Host` headers (400), unknown hosts (each
//! address may cost only a few catalog lookups), and bearer tokens not yet valid or for another
//! issuer or audience (401).

use control_plane::billing::send::TestEvent;
use control_plane::billing::signature;
use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{
    connection_string, provisioning_settings, router_settings, spawn_control_plane, spawn_router_with,
    TenantSql, WEBHOOK_SECRET,
};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::{common_settings, SecretsFor, TestDb};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const JWT_SECRET: &str = "jwt-hygiene-secret";

/// A control plane with one active tenant, `acme`.
async fn one_tenant() -> (TestDb, tenancy::settings::CommonSettings, std::sync::Arc<ControlPlane>) {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "starter"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    (db, common, cp)
}

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_a_query_is_refused_with_400() {
    let (_db, common, cp) = one_tenant().await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);
    for body in [
        json!({"query": "SELECT 'a\u{0}b' AS s"}),
        json!({"queries": [{"query": "SELECT 1"}, {"query": "SELECT '\u{0}'"}]}),
    ] {
        let (status, answer) = acme.post(body.clone()).await;
        assert_eq!((status, &answer["error"]["code"]), (400, &json!("nul_character")), "{body}: {answer}");
    }
    // In a parameter PostgreSQL refuses it itself: still the client's error.
    let (status, answer) = acme.post(json!({"query": "SELECT $1::text AS s", "params": ["a\u{0}b"]})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(acme.rows("SELECT 1 AS one", json!([])).await, json!([{"one": 1}]));
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_refused_with_400() {
    let (_db, common, cp) = one_tenant().await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let connection = connection_string(&cp, "acme").await;
    // Which one would the router use, and which one the application behind it?
    let body = json!({"query": "SELECT 1"}).to_string();
    let request = format!(
        "POST /sql HTTP/1.1\r\nHost: acme.app.localhost\r\nHost: other.app.localhost\r\n\
         Neon-Connection-String: {connection}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"invalid_host\""), "{answer}");
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_billing_event_with_a_nul_character_is_refused_with_400() {
    let db = TestDb::create().await;
    let control = spawn_control_plane(&db, &common_settings(&db, SecretsFor::Local)).await;
    let mut event = TestEvent::subscription_created("nul", "starter").body(now());
    event["data"]["object"]["metadata"]["note"] = json!("a\u{0}b");
    let body = serde_json::to_vec(&event).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/billing", control.url))
        .header("stripe-signature", signature::sign(WEBHOOK_SECRET, now(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!((status, &answer["error"]["code"]), (400, &json!("nul_character")), "{answer}");
    control.server.stop().await.unwrap();
}

/// Catalog lookups that found nothing, from the router's metrics.
async fn catalog_misses(router: &tenant_router::http::RunningRouter) -> u64 {
    let text =
        reqwest::get(format!("http://{}/metrics", router.admin_addr)).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tenant_router_resolutions_total{layer=\"catalog\",outcome=\"not_found\"} ")
        })
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_cost_an_address_only_a_few_catalog_lookups() {
    let (_db, common, cp) = one_tenant().await;
    let mut settings = router_settings(&common);
    settings.negative_cache_ttl = Duration::from_secs(30);
    settings.trusted_proxy_hops = 1;
    settings.auth_failures_per_minute = 5;
    let router = spawn_router_with(&settings).await;
    let connection = connection_string(&cp, "acme").await;
    let post = |host: String, address: &'static str| {
        reqwest::Client::new()
            .post(format!("http://{}/sql", router.addr))
            .header("host", host)
            .header("x-forwarded-for", address)
            .header("neon-connection-string", &connection)
            .json(&json!({"query": "SELECT 1"}))
            .send()
    };

    // The same unknown host again and again: one lookup, then the cached miss.
    for _ in 0..3 {
        assert_eq!(post("ghost.app.localhost".into(), "198.51.100.1").await.unwrap().status().as_u16(), 404);
    }
    assert_eq!(catalog_misses(&router).await, 1);

    // A new unknown host each time: the address's allowance, then 429 without a lookup.
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses
            .push(post(format!("ghost-{i}.app.localhost"), "203.0.113.7").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[..5], [404; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(catalog_misses(&router).await, 6);

    // Other addresses are served.
    assert_eq!(post("acme.app.localhost".into(), "198.51.100.2").await.unwrap().status().as_u16(), 200);
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_from_many_addresses_cost_a_bounded_number_of_catalog_lookups() {
    const RATE: f64 = 2.0;
    let (_db, common, cp) = one_tenant().await;
    let mut settings = router_settings(&common);
    settings.negative_cache_ttl = Duration::from_secs(30);
    settings.trusted_proxy_hops = 1;
    settings.unknown_host_lookups_per_second = 2;
    let router = spawn_router_with(&settings).await;
    let connection = connection_string(&cp, "acme").await;
    let post = |host: String, address: String| {
        reqwest::Client::new()
            .post(format!("http://{}/sql", router.addr))
            .header("host", host)
            .header("x-forwarded-for", address)
            .header("neon-connection-string", &connection)
            .json(&json!({"query": "SELECT 1"}))
            .send()
    };
    assert_eq!(
        post("acme.app.localhost".into(), "198.51.100.1".into()).await.unwrap().status().as_u16(),
        200
    );

    // A new made-up host from a new address each time: each address is within its allowance,
    // the router as a whole is not.
    let started = std::time::Instant::now();
    let mut throttled = 0;
    for i in 0..20 {
        let response = post(format!("ghost-{i}.app.localhost"), format!("203.0.113.{i}")).await.unwrap();
        match response.status().as_u16() {
            404 => {}
            503 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], json!("unknown_hosts_throttled"), "{body}");
                throttled += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let most = RATE + RATE * started.elapsed().as_secs_f64() + 1.0;
    let misses = catalog_misses(&router).await;
    assert!(misses as f64 <= most, "{misses} catalog lookups of unknown hosts (at most {most:.0})");
    assert!(throttled > 0);
    // The tenant in use is still served, and so is a host the catalog knows.
    assert_eq!(
        post("acme.app.localhost".into(), "198.51.100.1".into()).await.unwrap().status().as_u16(),
        200
    );
    router.stop().await.unwrap();
}

fn token(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_checked_for_not_before_issuer_and_audience() {
    let (_db, common, _cp) = one_tenant().await;
    let mut settings = router_settings(&common);
    settings.identity.jwt_hs256_secret = Some(JWT_SECRET.into());
    // These tokens carry no role: the default role applies.
    settings.identity.jwt_default_role = Some("tenant-admin".into());
    settings.identity.jwt_issuer = Some("https://auth.example.com/".into());
    settings.identity.jwt_audience = vec!["tenant-router".into(), "sql".into()];
    let router = spawn_router_with(&settings).await;
    let status_of = |claims: Value| {
        let request = reqwest::Client::new()
            .post(format!("http://{}/sql", router.addr))
            .header("host", "acme.app.localhost")
            .bearer_auth(token(&claims))
            .json(&json!({"query": "SELECT 1"}));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (iss, exp) = ("https://auth.example.com/", now() + 600);
    let mut wrong = Vec::new();
    for (claims, want) in [
        (json!({"tenant": "acme", "exp": exp, "iss": iss, "aud": "sql"}), 200),
        (json!({"tenant": "acme", "exp": exp, "iss": iss, "aud": ["other", "tenant-router"]}), 200),
        (json!({"tenant": "acme", "exp": exp, "iss": iss, "aud": "sql", "nbf": now() - 60}), 200),
        // Not valid yet (past the leeway for clock skew).
        (json!({"tenant": "acme", "exp": exp, "iss": iss, "aud": "sql", "nbf": now() + 300}), 401),
        (json!({"tenant": "acme", "exp": exp, "iss": "https://evil.example.com/", "aud": "sql"}), 401),
        (json!({"tenant": "acme", "exp": exp, "aud": "sql"}), 401),
        (json!({"tenant": "acme", "exp": exp, "iss": iss, "aud": "other"}), 401),
        (json!({"tenant": "acme", "exp": exp, "iss": iss}), 401),
    ] {
        let (status, body) = status_of(claims.clone()).await;
        if status != want || (want == 401 && !body.contains("invalid_token")) {
            wrong.push(format!("{claims}: {status} {body}"));
        }
    }
    assert!(wrong.is_empty(), "answered wrongly:\n{}", wrong.join("\n"));
    router.stop().await.unwrap();
}
