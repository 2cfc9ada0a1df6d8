//! Operator tokens' scopes and lifetimes over the API and the CLI; fleet migration runs halted,
//! resumed and named by a prefix of their id; the fleet views the console reads; and the
//! OpenAPI document checked by a maintained OpenAPI 3.1 validator.

use control_plane::catalog::tokens::{self, NewToken, Scope};
use control_plane::control_plane::ControlPlane;
use serde_json::{json, Value};
use testkit::{common_settings, SecretsFor, TestDb};
use tokio_util::sync::CancellationToken;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// `tenantctl <args> --json` against the test's catalog: exit code and output.
async fn tenantctl(args: &[&str], db: &TestDb, common: &tenancy::settings::CommonSettings) -> (i32, Value) {
    e2e_tests::tenantctl_json(env!("CARGO_BIN_EXE_tenantctl-under-test"), args, db, common).await
}

async fn token(cp: &ControlPlane, name: &str, scope: Scope) -> String {
    let client = cp.catalog.get().await.unwrap();
    tokens::create(&**client, &NewToken { name, scope, expires_at: None, created_by: "test" })
        .await
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_decide_what_a_token_may_do_and_expired_or_revoked_tokens_do_nothing() {
    use reqwest::Method;
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = e2e_tests::spawn_control_plane(&db, &common).await;
    let api = Api { base: control.url.clone(), http: reqwest::Client::new() };
    let viewer = token(&control.cp, "viewer", Scope::ReadOnly).await;
    let operator = token(&control.cp, "operator", Scope::Operator).await;
    let admin = token(&control.cp, "admin", Scope::Admin).await;

    // Who am I.
    for (token, name, scope) in
        [(&viewer, "viewer", "read_only"), (&operator, "operator", "operator"), (&admin, "admin", "admin")]
    {
        assert_eq!(
            api.call(token, Method::GET, "/v1/whoami", None).await,
            (
                200,
                json!({"name": name, "scope": scope, "expires_at": null, "server_version": env!("CARGO_PKG_VERSION")})
            )
        );
    }

    // read_only reads everything and changes nothing.
    for path in [
        "/v1/tenants",
        "/v1/jobs",
        "/v1/audit",
        "/v1/migrations/runs",
        "/v1/fleet",
        "/v1/clusters",
        "/v1/routers/pools",
        "/v1/billing/events",
        "/v1/migrations/plan?drift=false",
    ] {
        let (status, body) = api.call(&viewer, Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // An empty tenant list is not the whole fleet.
    let (status, body) = api.call(&viewer, Method::GET, "/v1/migrations/plan?tenant=,", None).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("invalid_options")), "{body}");
    let (status, body) = api
        .call(&viewer, Method::POST, "/v1/tenants", Some(json!({"slug": "nope", "plan": "starter"})))
        .await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("read_only"), "{body}");
    let (status, _) = api.call(&viewer, Method::POST, "/v1/migrations/runs", None).await;
    assert_eq!(status, 403);

    // operator changes tenants, not tokens.
    let (status, body) = api
        .call(&operator, Method::POST, "/v1/tenants", Some(json!({"slug": "scoped", "plan": "starter"})))
        .await;
    assert_eq!(status, 202, "{body}");
    e2e_tests::wait_until_active(&control.cp, "scoped", std::time::Duration::from_secs(30)).await;
    let (status, _) = api.call(&operator, Method::GET, "/v1/tokens", None).await;
    assert_eq!(status, 403);
    let (status, _) =
        api.call(&operator, Method::POST, "/v1/tokens", Some(json!({"name": "x", "scope": "admin"}))).await;
    assert_eq!(status, 403, "an operator cannot make itself an admin");

    // admin manages tokens: one made with a lifetime, listed without its secret, revoked.
    let (status, made) = api
        .call(
            &admin,
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "ci deploys", "scope": "read_only", "expires_in": "30d"})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let fresh = made["token"].as_str().unwrap().to_owned();
    assert!(fresh.starts_with("tct_"));
    assert_eq!((&made["scope"], &made["created_by"]), (&json!("read_only"), &json!("admin")));
    let expires: chrono::DateTime<chrono::Utc> = made["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.1).contains(&days), "expires in {days} days");
    assert_eq!(api.call(&fresh, Method::GET, "/v1/whoami", None).await.0, 200);
    let (_, listed) = api.call(&admin, Method::GET, "/v1/tokens", None).await;
    assert!(!listed.to_string().contains(&fresh), "a listing never shows a token");
    assert_eq!(listed.as_array().unwrap().len(), 4);
    for (body, code) in [
        (json!({"name": "", "scope": "admin"}), "invalid_token"),
        (json!({"name": "x", "scope": "admin", "expires_in": "10s"}), "invalid_token"),
        (json!({"name": "x", "scope": "admin", "expires_in": "soon"}), "invalid_token"),
        (json!({"name": "x", "scope": "root"}), "invalid_body"),
        (json!({"name": "billing", "scope": "read_only"}), "invalid_token"),
        (json!({"name": "user:42", "scope": "read_only"}), "invalid_token"),
    ] {
        let (status, answer) = api.call(&admin, Method::POST, "/v1/tokens", Some(body.clone())).await;
        assert_eq!((status, &answer["error"]["code"]), (400, &json!(code)), "{body}: {answer}");
    }
    let id = made["id"].as_i64().unwrap();
    let (status, revoked) = api.call(&admin, Method::DELETE, &format!("/v1/tokens/{id}"), None).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let (status, body) = api.call(&fresh, Method::GET, "/v1/whoami", None).await;
    assert_eq!((status, &body["error"]["message"]), (401, &json!("unknown or revoked token")));
    assert_eq!(api.call(&admin, Method::DELETE, "/v1/tokens/999999", None).await.0, 404);

    // An expired token is refused, and says so.
    {
        let client = control.cp.catalog.get().await.unwrap();
        client
            .execute(
                "UPDATE control.operator_tokens SET expires_at = now() - interval '1 minute' WHERE name = 'operator'",
                &[],
            )
            .await
            .unwrap();
    }
    let (status, body) = api.call(&operator, Method::GET, "/v1/tenants", None).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

    // The CLI: create with a scope and a lifetime, list, revoke; all audited.
    let (code, created) = tenantctl(
        &["tokens", "create", "--name", "from-cli", "--scope", "read-only", "--expires-in", "12h"],
        &db,
        &common,
    )
    .await;
    assert_eq!(code, 0, "{created}");
    assert_eq!(created["scope"], json!("read_only"));
    let cli_token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(api.call(&cli_token, Method::GET, "/v1/whoami", None).await.1["name"], json!("from-cli"));
    let (code, listed) = tenantctl(&["tokens", "list"], &db, &common).await;
    assert_eq!(code, 0);
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"from-cli") && !names.contains(&"ci deploys"),
        "revoked ones only with --all: {names:?}"
    );
    let (_, all) = tenantctl(&["tokens", "list", "--all"], &db, &common).await;
    assert!(all.to_string().contains("ci deploys"));
    let cli_id = created["id"].as_i64().unwrap().to_string();
    assert_eq!(tenantctl(&["tokens", "revoke", &cli_id], &db, &common).await.0, 0);
    assert_eq!(api.call(&cli_token, Method::GET, "/v1/whoami", None).await.0, 401);
    assert_eq!(tenantctl(&["tokens", "revoke", "999999"], &db, &common).await.0, 4);
    let (code, _) = tenantctl(&["tokens", "create", "--name", "x", "--expires-in", "5s"], &db, &common).await;
    assert_eq!(code, 3, "a lifetime under a minute is refused");
    let client = control.cp.catalog.get().await.unwrap();
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM control.audit_log WHERE action IN ('token.create', 'token.revoke')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 4, "two created and two revoked");
    drop(client);
    control.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_halted_and_resumed_over_the_api_and_named_by_a_prefix_of_its_id() {
    use reqwest::Method;
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let (cp, migrations) = e2e_tests::fleet_at_v1(&db, &common, "run", 6).await;
    std::fs::write(migrations.path().join("V2__slow.sql"), "SELECT pg_sleep(0.3);").unwrap();
    let server = control_plane::http::spawn(
        cp.clone(),
        &e2e_tests::control_plane_settings(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let api = Api { base: format!("http://{}", server.addr), http: reqwest::Client::new() };
    let operator = token(&cp, "halter", Scope::Operator).await;

    // The fleet at a glance: all six behind the V2 the directory now ends at.
    let (status, fleet) = api.call(&operator, Method::GET, "/v1/fleet?days=1", None).await;
    assert_eq!(status, 200, "{fleet}");
    assert_eq!(fleet["target_version"], json!(2));
    assert_eq!(fleet["schema_versions"], json!([{"version": 1, "tenants": 6}]));
    assert_eq!(fleet["counts"], json!([{"status": "active", "plan": "starter", "tenants": 6}]));
    assert_eq!(api.call(&operator, Method::GET, "/v1/fleet?days=0", None).await.0, 400);
    let (_, clusters) = api.call(&operator, Method::GET, "/v1/clusters", None).await;
    assert_eq!(clusters[0]["tenants"], json!(6), "{clusters}");
    let (_, page) = api.call(&operator, Method::GET, "/v1/tenants?schema_version=1&q=RUN-", None).await;
    assert_eq!(page["tenants"].as_array().unwrap().len(), 6, "search is case-insensitive: {page}");
    assert_eq!(page["tenants"][0]["schema_version"], json!(1));
    let (_, page) = api.call(&operator, Method::GET, "/v1/tenants?schema_version=2", None).await;
    assert_eq!(page["tenants"], json!([]));

    // Several tenants named on the command line: repeated, or separated by commas.
    let (code, plan) =
        tenantctl(&["migrate", "plan", "--tenant", "run-00,run-01", "--tenant", "run-04"], &db, &common)
            .await;
    assert_eq!((code, &plan["tenants"]), (0, &json!(3)), "{plan}");

    // Start one tenant at a time, halt it once it has begun.
    let (status, run) =
        api.call(&operator, Method::POST, "/v1/migrations/runs", Some(json!({"concurrency": 1}))).await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let prefix = &id[..8];
    let (status, halting) =
        api.call(&operator, Method::POST, &format!("/v1/migrations/runs/{prefix}/halt"), None).await;
    assert_eq!(status, 202, "{halting}");
    assert_eq!(halting["halt_requested_by"], json!("halter"));
    let halted = wait_for_run(&api, &operator, &id, |run| run["state"] != json!("running")).await;
    assert_eq!(halted["state"], json!("halted"), "{halted}");
    assert!(halted["halt_reason"].as_str().unwrap().starts_with("halted by halter"), "{halted}");
    let done = halted["counts"]["done"].as_i64().unwrap_or(0);
    assert!(done < 6 && halted["counts"]["pending"].as_i64().unwrap() > 0, "tenants left: {halted}");
    let (status, body) =
        api.call(&operator, Method::POST, &format!("/v1/migrations/runs/{id}/halt"), None).await;
    assert_eq!((status, &body["error"]["code"]), (422, &json!("not_running")), "{body}");

    // `migrate status` by the prefix; a prefix too short or matching nothing is refused.
    let (code, status) = tenantctl(&["migrate", "status", prefix], &db, &common).await;
    assert_eq!((code, &status["run"]["id"]), (0, &json!(id)), "{status}");
    for (bad, code) in [("ab", 3), ("ffffffff", 4), ("not-hex!", 3)] {
        assert_eq!(tenantctl(&["migrate", "status", bad], &db, &common).await.0, code, "{bad}");
    }

    // Resumed over the API, to the end; no tenant migrated twice.
    let (status, resumed) =
        api.call(&operator, Method::POST, &format!("/v1/migrations/runs/{prefix}/resume"), None).await;
    assert_eq!(status, 202, "{resumed}");
    assert_eq!(resumed["halt_requested_by"], Value::Null);
    // Watched from the command line to its end: a view per interval, exit 0 once completed.
    let (code, last) =
        tenantctl(&["migrate", "status", prefix, "--watch", "--interval", "200ms"], &db, &common).await;
    assert_eq!((code, &last["state"]), (0, &json!("completed")), "the watch ends with the run: {last}");
    let finished = wait_for_run(&api, &operator, &id, |run| run["state"] != json!("running")).await;
    assert_eq!(finished["state"], json!("completed"), "{finished}");
    let (_, audit) = api.call(&operator, Method::GET, "/v1/audit?actor=halter", None).await;
    let actions: Vec<&str> =
        audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["migration.resume", "migration.halt"], "{audit}");
    assert_eq!(finished["counts"], json!({"done": 6}));
    let client = cp.catalog.get().await.unwrap();
    let attempts: Vec<i32> = client
        .query("SELECT attempts FROM control.migration_items WHERE run_id = $1::text::uuid", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts, vec![1; 6], "each tenant migrated once");
    drop(client);
    server.stop().await.unwrap();
}

async fn wait_for_run(api: &Api, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, run) =
            api.call(token, reqwest::Method::GET, &format!("/v1/migrations/runs/{id}"), None).await;
        assert_eq!(status, 200, "{run}");
        if done(&run) {
            return run;
        }
        assert!(tokio::time::Instant::now() < deadline, "run {id} still {run}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_openapi_3_1_and_covers_the_api() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = e2e_tests::spawn_control_plane(&db, &common).await;
    let document: Value =
        reqwest::get(format!("{}/v1/openapi.json", control.url)).await.unwrap().json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    for (path, method) in [
        ("/v1/tokens", "post"),
        ("/v1/tokens/{id}", "delete"),
        ("/v1/whoami", "get"),
        ("/v1/migrations/runs/{id}/halt", "post"),
        ("/v1/migrations/runs/{id}/resume", "post"),
        ("/v1/fleet", "get"),
        ("/v1/clusters", "get"),
        ("/v1/routers/pools", "get"),
        ("/v1/webhooks/billing", "post"),
    ] {
        assert!(document["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    assert!(
        document["paths"]["/v1/tenants"]["get"]["responses"]["403"].is_object(),
        "scopes' refusals documented"
    );
    assert!(
        document["paths"]["/v1/webhooks/billing"]["post"]["responses"]["401"].is_null(),
        "the webhook takes no token"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let python = e2e_tests::python();
    let output = tokio::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(file.path())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "openapi-spec-validator ({} -m pip install -r tests/clients/python/requirements.txt; scripts/test.sh does) refused the document:\n{}\n{}",
        python.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    control.server.stop().await.unwrap();
}
