//! The operator REST API: bearer tokens, the tenant lifecycle over HTTP, JSON errors with the
//! right statuses, pagination, OpenAPI and Prometheus metrics.

use e2e_tests::{spawn_control_plane, wait_until_active};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::{common_settings, SecretsFor, TestDb};

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_manages_tenants_with_json_errors_openapi_and_metrics() {
    use reqwest::Method;
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = spawn_control_plane(&db, &common).await;
    let client = control.cp.catalog.get().await.unwrap();
    let (token, _) = control_plane::catalog::tokens::create(
        &**client,
        &control_plane::catalog::tokens::NewToken::admin("ops-test"),
    )
    .await
    .unwrap();
    drop(client);
    let api = Api { base: control.url.clone(), token, http: reqwest::Client::new() };

    // Authentication.
    let unauthenticated = api.http.get(format!("{}/v1/tenants", api.base)).send().await.unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let body: Value = unauthenticated.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("unauthorized"));
    let forged =
        api.http.get(format!("{}/v1/tenants", api.base)).bearer_auth("tct_forged").send().await.unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // Create, then watch it become active.
    let (status, tenant) = api
        .call(Method::POST, "/v1/tenants", Some(json!({"slug": "acme", "plan": "starter", "name": "Acme"})))
        .await;
    assert_eq!(status, 202, "{tenant}");
    assert_eq!(tenant["status"], json!("provisioning"));
    assert_eq!(tenant["host"], json!("acme.app.localhost"));
    wait_until_active(&control.cp, "acme", Duration::from_secs(30)).await;
    let (status, tenant) = api.call(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!((status, &tenant["status"]), (200, &json!("active")));

    // Bad input: clear errors, right statuses, nothing created.
    for (body, status, code) in [
        (json!({"slug": "Acme!", "plan": "starter"}), 400, "invalid_slug"),
        (json!({"slug": "www", "plan": "starter"}), 400, "invalid_slug"),
        (json!({"slug": "other", "plan": "platinum"}), 400, "invalid_plan"),
        (json!({"slug": "acme", "plan": "starter"}), 409, "duplicate_slug"),
        (json!({"slug": "other", "plan": "starter", "color": "red"}), 400, "invalid_body"),
    ] {
        let (got, answer) = api.call(Method::POST, "/v1/tenants", Some(body.clone())).await;
        assert_eq!((got, &answer["error"]["code"]), (status, &json!(code)), "{body}: {answer}");
    }
    let malformed = api
        .http
        .post(format!("{}/v1/tenants", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"slug\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let huge = api
        .http
        .post(format!("{}/v1/tenants", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body(format!("{{\"slug\": \"{}\"}}", "a".repeat(2 << 20)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    let body: Value = huge.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("body_too_large"));
    assert_eq!(db.count("SELECT count(*) FROM control.tenants").await, 1);

    // Lifecycle over HTTP; wrong transitions are 422.
    let (status, _) = api.call(Method::POST, "/v1/tenants/acme/resume", None).await;
    assert_eq!(status, 202, "resuming an active tenant is a no-op");
    let (status, tenant) = api.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!((status, &tenant["status"]), (202, &json!("suspended")));
    let (status, answer) = api.call(Method::POST, "/v1/tenants/acme/retry", None).await;
    assert_eq!((status, &answer["error"]["code"]), (422, &json!("wrong_state")));
    let (status, _) = api.call(Method::POST, "/v1/tenants/nobody/suspend", None).await;
    assert_eq!(status, 404);
    let (status, answer) =
        api.call(Method::PUT, "/v1/tenants/acme/plan", Some(json!({"plan": "platinum"}))).await;
    assert_eq!((status, &answer["error"]["code"]), (400, &json!("invalid_plan")));
    let (status, tenant) = api.call(Method::PUT, "/v1/tenants/acme/plan", Some(json!({"plan": "pro"}))).await;
    assert_eq!((status, &tenant["plan"]), (202, &json!("pro")));
    let (status, _) = api.call(Method::PUT, "/v1/tenants/acme/config", Some(json!({"config": [1, 2]}))).await;
    assert_eq!(status, 400);
    let (status, tenant) = api
        .call(Method::PUT, "/v1/tenants/acme/config", Some(json!({"config": {"modules": ["tasks"]}})))
        .await;
    assert_eq!((status, &tenant["config"]), (200, &json!({"modules": ["tasks"]})));
    // A JSON merge patch (RFC 7386), as `application/merge-patch+json`.
    let patch = |body: Value| {
        api.http
            .patch(format!("{}/v1/tenants/acme/config", api.base))
            .bearer_auth(&api.token)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
    };
    let response = patch(json!({"theme": {"logo": "acme.svg"}, "modules": null})).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let tenant: Value = response.json().await.unwrap();
    assert_eq!(tenant["config"], json!({"theme": {"logo": "acme.svg"}}));
    assert_eq!(patch(json!([1])).await.unwrap().status().as_u16(), 400);
    // The template's schema: a colour that is not one is refused, with where and why.
    let response = patch(json!({"theme": {"primary_color": "red"}})).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], json!("invalid_config"));
    assert!(answer["error"]["message"].as_str().unwrap().contains("/theme/primary_color"), "{answer}");
    let (status, answer) =
        api.call(Method::PUT, "/v1/tenants/acme/template-upgrades", Some(json!({"enabled": false}))).await;
    assert_eq!((status, &answer), (200, &json!({"enabled": false})));
    let (status, _) =
        api.call(Method::PUT, "/v1/tenants/nobody/template-upgrades", Some(json!({"enabled": false}))).await;
    assert_eq!(status, 404);
    let (status, _) = api.call(Method::DELETE, "/v1/tenants/acme?retention=soon", None).await;
    assert_eq!(status, 400);

    // Custom domains.
    let (status, domain) =
        api.call(Method::POST, "/v1/tenants/acme/domains", Some(json!({"host": "Shop.Acme.Test"}))).await;
    assert_eq!((status, &domain["host"]), (201, &json!("shop.acme.test")));
    let (status, answer) =
        api.call(Method::POST, "/v1/tenants/acme/domains", Some(json!({"host": "a.app.localhost"}))).await;
    assert_eq!((status, &answer["error"]["code"]), (400, &json!("invalid_host")));
    let (_, listed) = api.call(Method::GET, "/v1/tenants/acme/domains", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let (status, _) = api.call(Method::DELETE, "/v1/tenants/acme/domains/shop.acme.test", None).await;
    assert_eq!(status, 204);
    let (status, _) = api.call(Method::DELETE, "/v1/tenants/acme/domains/shop.acme.test", None).await;
    assert_eq!(status, 404);

    // Pagination by slug.
    for slug in ["bravo", "charlie", "delta"] {
        let (status, _) =
            api.call(Method::POST, "/v1/tenants", Some(json!({"slug": slug, "plan": "starter"}))).await;
        assert_eq!(status, 202);
    }
    let (_, page) = api.call(Method::GET, "/v1/tenants?limit=3", None).await;
    let slugs: Vec<&str> =
        page["tenants"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["acme", "bravo", "charlie"]);
    let (_, next) = api
        .call(
            Method::GET,
            &format!("/v1/tenants?limit=3&cursor={}", page["next_cursor"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(next["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(next["next_cursor"], Value::Null);
    let (_, suspended) = api.call(Method::GET, "/v1/tenants?status=suspended", None).await;
    assert_eq!(suspended["tenants"].as_array().unwrap().len(), 1);
    let (status, _) = api.call(Method::GET, "/v1/tenants?limit=0", None).await;
    assert_eq!(status, 400);

    // Jobs and the audit log, read-only; the token's name is the actor.
    let (status, jobs) = api.call(Method::GET, "/v1/jobs?tenant=acme", None).await;
    assert_eq!(status, 200);
    assert!(jobs.as_array().unwrap().iter().any(|j| j["kind"] == json!("sync_access")), "{jobs}");
    let (_, audit) = api.call(Method::GET, "/v1/audit?tenant=acme", None).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == json!("tenant.suspend") && a["actor"] == json!("ops-test")),
        "{audit}"
    );

    // OpenAPI and metrics, without a token.
    let openapi: Value =
        api.http.get(format!("{}/v1/openapi.json", api.base)).send().await.unwrap().json().await.unwrap();
    assert!(openapi["paths"]["/v1/tenants/{slug}/suspend"]["post"].is_object(), "{openapi}");
    assert!(openapi["components"]["securitySchemes"]["bearer"].is_object());
    let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .contains("tenantctl_http_requests_total{method=\"POST\",route=\"/v1/tenants\",status=\"2xx\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("tenantctl_tenants{status=\"suspended\"} 1"), "{metrics}");
    assert!(metrics.contains("tenantctl_jobs_total{kind=\"provision\",outcome=\"done\"}"), "{metrics}");
    assert!(!metrics.contains("acme"), "no tenant in labels");

    control.server.stop().await.unwrap();
}
