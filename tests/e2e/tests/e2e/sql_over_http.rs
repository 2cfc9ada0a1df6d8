//! `POST /sql` through the router: values as Neon returns them, per-request session state that
//! never leaks, and bad input refused with the right status before anything runs.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, router_settings, spawn_router_with, TenantSql};
use serde_json::json;
use std::time::Duration;
use testkit::{common_settings, SecretsFor, TestDb};

pub(super) struct Fixture {
    pub(super) db: TestDb,
    pub(super) cp: std::sync::Arc<ControlPlane>,
    pub(super) settings: tenant_router::settings::RouterSettings,
    pub(super) router: tenant_router::http::RunningRouter,
    pub(super) acme: TenantSql,
    pub(super) globex_connection_string: String,
}

pub(super) const JWT_SECRET: &str = "jwt-test-secret";
/// `ROUTER_MAX_RESPONSE_BYTES` of the tests' router.
const RESPONSE_LIMIT: usize = 64 * 1024;

/// Two active tenants (acme, globex) and a router that also accepts HS256 tokens.
pub(super) async fn fixture() -> Fixture {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    for slug in ["acme", "globex"] {
        let request = TenantRequest::new(slug, "starter");
        let tenant = tenants::create(&cp, &request, "test").await.unwrap();
        provision(&cp, tenant.id).await.unwrap();
    }
    let mut settings = router_settings(&common);
    settings.identity.jwt_hs256_secret = Some(JWT_SECRET.into());
    settings.max_response_bytes = RESPONSE_LIMIT;
    let router = spawn_router_with(&settings).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);
    let globex_connection_string = connection_string(&cp, "globex").await;
    Fixture { db, cp, settings, router, acme, globex_connection_string }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_as_neon_returns_them() {
    let f = fixture().await;
    let query = "SELECT true AS b, 7::int2 AS i2, 8::int4 AS i4, 9007199254740993::int8 AS i8, \
                 1.5::float8 AS f, 'NaN'::float8 AS nan, 12.340::numeric AS n, -0.000012::numeric AS small, \
                 '{\"a\":[1,2]}'::jsonb AS j, ARRAY[1,NULL,3] AS arr, ARRAY[['a','b'],['c','d']] AS grid, \
                 '2024-01-02 03:04:05.5+00'::timestamptz AS ts, '2024-01-02 03:04:05'::timestamp AS lts, \
                 '2024-02-29'::date AS d, '\\x01ff'::bytea AS bin, \
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, NULL::text AS nothing, 'hé'::varchar AS s";
    let (status, body) = f.acme.post(json!({ "query": query })).await;
    assert_eq!(status, 200, "{body}");
    let row = &body["rows"][0];
    for (column, expected) in [
        ("b", json!(true)),
        ("i2", json!(7)),
        ("i4", json!(8)),
        ("i8", json!("9007199254740993")),
        ("f", json!(1.5)),
        ("nan", json!("NaN")),
        ("j", json!({"a": [1, 2]})),
        ("arr", json!([1, null, 3])),
        ("grid", json!([["a", "b"], ["c", "d"]])),
        ("nothing", json!(null)),
        ("s", json!("hé")),
    ] {
        assert_eq!(row[column], expected, "column {column}");
    }
    assert_eq!(body["fields"][3]["dataTypeID"], json!(20));
    assert_eq!(body["rowAsArray"], json!(false));

    // Everything rendered as text must equal PostgreSQL's own text output.
    let text_query = "SELECT 12.340::numeric::text AS n, (-0.000012)::numeric::text AS small, \
                      '2024-01-02 03:04:05.5+00'::timestamptz::text AS ts, '2024-01-02 03:04:05'::timestamp::text AS lts, \
                      '2024-02-29'::date::text AS d, '\\x01ff'::bytea::text AS bin, \
                      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid::text AS u";
    let text_row = &f.acme.rows(text_query, json!([])).await[0];
    for column in ["n", "small", "ts", "lts", "d", "bin", "u"] {
        assert_eq!(row[column], text_row[column], "column {column}");
    }

    // Array mode and raw text output.
    let response = f
        .acme
        .request()
        .header("neon-array-mode", "true")
        .header("neon-raw-text-output", "true")
        .json(&json!({"query": "SELECT 1::int4 AS one, true AS yes"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["rows"], json!([["1", "t"]]));
    assert_eq!(body["rowAsArray"], json!(true));

    // Raw text output is PostgreSQL's text output, arrays included (what Neon's driver parses).
    let response = f
        .acme
        .request()
        .header("neon-raw-text-output", "true")
        .json(&json!({"query": "SELECT array[1,NULL] AS ints, array['a,b'] AS t, NULL::int[] AS nothing"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["rows"], json!([{"ints": "{1,NULL}", "t": "{\"a,b\"}", "nothing": null}]));

    // Every type has a value: PostgreSQL's text output where Neon types none.
    let rows =
        f.acme.rows("SELECT interval '1 day' AS i, int4range(1, 3) AS r, 2::money AS m", json!([])).await;
    assert_eq!(rows[0]["i"], json!("1 day"));
    assert_eq!(rows[0]["r"], json!("[1,3)"));
    assert!(rows[0]["m"].as_str().unwrap().contains('2'), "{rows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_of_one_request_never_reach_the_next() {
    let f = fixture().await;
    let set =
        "SELECT set_config('search_path', 'public', false), set_config('statement_timeout', '1', false)";
    for _ in 0..4 {
        f.acme.rows(set, json!([])).await;
    }
    let show = "SELECT current_schema() AS schema, current_setting('statement_timeout') AS timeout";
    for _ in 0..4 {
        let rows = f.acme.rows(show, json!([])).await;
        assert_eq!(rows[0]["schema"], json!("t_acme"), "{rows}");
        assert_ne!(rows[0]["timeout"], json!("1ms"));
    }
    // A transaction a request leaves open ends with it: the next requests commit as usual.
    for _ in 0..3 {
        f.acme.rows("BEGIN", json!([])).await;
    }
    f.acme.rows("INSERT INTO teams (name) VALUES ('after-begin')", json!([])).await;
    f.acme.rows("PREPARE leftover AS SELECT 1", json!([])).await;
    assert_eq!(
        f.db.tenants_count("SELECT count(*) FROM t_acme.teams").await,
        1,
        "committed, seen by another session"
    );
    for _ in 0..3 {
        let (status, body) = f.acme.post(json!({"query": "EXECUTE leftover"})).await;
        assert_eq!(
            (status, &body["code"]),
            (400, &json!("26000")),
            "prepared statements do not survive: {body}"
        );
    }

    // A batch is one transaction: a failing statement rolls back the earlier ones.
    let (status, _) = f
        .acme
        .post(json!({"queries": [
            {"query": "INSERT INTO tags (name) VALUES ('kept?')"},
            {"query": "INSERT INTO tags (name) VALUES (NULL)"}
        ]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(f.acme.rows("SELECT count(*)::int4 AS n FROM tags", json!([])).await, json!([{"n": 0}]));
}

/// What a function does to its session is undone too: a statement it prepares, an advisory lock
/// it takes; and a request that breaks the reset itself loses its connection, nothing more.
/// (Tenants write no functions: these come from the tenant's migrations, as the owner.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_function_does_to_its_session_is_undone_too() {
    let f = fixture().await;
    f.db.tenants_client()
        .await
        .batch_execute(
            "CREATE FUNCTION t_acme.prepare_hidden() RETURNS void LANGUAGE plpgsql
               AS $$ BEGIN EXECUTE 'PREPARE hidden AS SELECT 2'; END $$;
             CREATE FUNCTION t_acme.drop_reset_check() RETURNS void LANGUAGE plpgsql
               AS $$ BEGIN EXECUTE 'DEALLOCATE tenancy_reset_check'; END $$;",
        )
        .await
        .unwrap();
    f.acme.rows("SELECT prepare_hidden()", json!([])).await;
    for _ in 0..3 {
        let (status, body) = f.acme.post(json!({"query": "EXECUTE hidden"})).await;
        assert_eq!((status, &body["code"]), (400, &json!("26000")), "{body}");
    }
    for _ in 0..3 {
        f.acme.rows("SELECT pg_advisory_lock(4242)", json!([])).await;
    }
    let other = f.db.tenants_client().await;
    let free: bool = other.query_one("SELECT pg_try_advisory_lock(4242)", &[]).await.unwrap().get(0);
    assert!(free, "the requests' advisory locks were released");
    // A request that deallocates the router's own reset check costs its connection, not the
    // next request.
    f.acme.rows("SELECT drop_reset_check()", json!([])).await;
    for _ in 0..4 {
        assert_eq!(f.acme.rows("SELECT 1 AS one", json!([])).await, json!([{"one": 1}]));
    }
}

/// Statements stay prepared on each connection between requests (one round trip for a repeated
/// query); a table that changes shape, a `DEALLOCATE ALL`, and user types looked up on a
/// connection after earlier requests must all keep working. Each step runs more times than the
/// pool (2 connections) has connections, so every connection sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_statements_survive_schema_changes_and_deallocate() {
    let f = fixture().await;
    // Some thirty requests in a row: more than the plan allows per second.
    f.db.lift_rate_limits().await;
    f.acme.rows("INSERT INTO tags (name) VALUES ('red')", json!([])).await;
    for _ in 0..4 {
        let rows = f.acme.rows("SELECT * FROM tags", json!([])).await;
        assert_eq!(rows[0]["name"], json!("red"));
    }
    // The cached `SELECT *` no longer matches the table (a migration, run by the owner): it is
    // prepared again, not refused.
    f.db.tenants_client()
        .await
        .batch_execute("ALTER TABLE t_acme.tags ADD COLUMN shade text DEFAULT 'dark'")
        .await
        .unwrap();
    for _ in 0..4 {
        let rows = f.acme.rows("SELECT * FROM tags", json!([])).await;
        assert_eq!(rows[0]["shade"], json!("dark"), "{rows}");
    }
    // Dropping every prepared statement behind the router's back costs nothing visible.
    f.acme.rows("DEALLOCATE ALL", json!([])).await;
    for _ in 0..4 {
        assert_eq!(f.acme.rows("SELECT * FROM tags", json!([])).await[0]["shade"], json!("dark"));
    }
    // Types of the tenant's own, looked up by the driver (with statements of its own) on
    // connections that already served other requests.
    f.db.tenants_client()
        .await
        .batch_execute("CREATE TYPE t_acme.mood AS ENUM ('calm', 'busy'); CREATE TYPE t_acme.size AS ENUM ('s', 'm', 'l')")
        .await
        .unwrap();
    for _ in 0..4 {
        assert_eq!(f.acme.rows("SELECT 'busy'::mood AS m", json!([])).await, json!([{"m": "busy"}]));
    }
    for _ in 0..4 {
        assert_eq!(f.acme.rows("SELECT 'l'::size AS s", json!([])).await, json!([{"s": "l"}]));
    }
}

/// One malformed request: what it is, and the status it must get.
struct BadRequest {
    what: &'static str,
    host: &'static str,
    connection_string: Option<String>,
    body: String,
    status: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_run_nothing() {
    let f = fixture().await;
    let own = Some(f.acme.connection_string.clone());
    let insert =
        json!({"query": "INSERT INTO tags (name) VALUES ($1)", "params": ["should-not-exist"]}).to_string();
    let case = |what, host, connection_string: &Option<String>, body: &str, status| BadRequest {
        what,
        host,
        connection_string: connection_string.clone(),
        body: body.to_owned(),
        status,
    };
    let acme = "acme.app.localhost";
    let cases = [
        case("invalid host", "acme..app.localhost", &own, &insert, 400),
        case("unknown tenant", "nobody.app.localhost", &own, &insert, 404),
        case("no credentials", acme, &None, &insert, 401),
        case("wrong password", acme, &Some("postgresql://x:y@acme.app.localhost/db".into()), &insert, 401),
        case("another tenant's credentials", acme, &Some(f.globex_connection_string.clone()), &insert, 403),
        case("not a URL", acme, &Some("hello".into()), &insert, 400),
        case("malformed JSON", acme, &own, "{\"query\": ", 400),
        case("neither query nor queries", acme, &own, r#"{"params": ["should-not-exist"]}"#, 400),
        case(
            "both query and queries",
            acme,
            &own,
            r#"{"query": "SELECT 1", "queries": [{"query": "INSERT INTO tags (name) VALUES ('no')"}]}"#,
            400,
        ),
        case(
            "wrong parameter count",
            acme,
            &own,
            r#"{"query": "INSERT INTO tags (name) VALUES ($1)", "params": []}"#,
            400,
        ),
        case(
            "oversized body",
            acme,
            &own,
            &format!(r#"{{"query": "SELECT 1", "pad": "{}"}}"#, "x".repeat(2 << 20)),
            413,
        ),
    ];
    // The tenant's own connection string, accepted once, is remembered by its pool: every other
    // one must still be refused.
    assert_eq!(f.acme.rows("SELECT 1 AS one", json!([])).await, json!([{"one": 1}]));
    let http = reqwest::Client::new();
    for case in cases {
        let mut request = http
            .post(format!("http://{}/sql", f.router.addr))
            .header("host", case.host)
            .header("content-type", "application/json")
            .body(case.body);
        if let Some(conn) = &case.connection_string {
            request = request.header("neon-connection-string", conn);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert!(!body.contains(&f.acme.connection_string), "{}: no secrets in errors", case.what);
    }
    assert_eq!(
        f.acme.rows("SELECT count(*)::int4 AS n FROM tags", json!([])).await,
        json!([{"n": 0}]),
        "nothing was executed"
    );

    // A PostgreSQL error comes back with its SQLSTATE and position.
    let (status, body) = f.acme.post(json!({"query": "SELECT * FROM no_such_table"})).await;
    assert_eq!(status, 400);
    assert_eq!((&body["code"], &body["position"]), (&json!("42P01"), &json!("15")));
}

/// A result beyond `ROUTER_MAX_RESPONSE_BYTES` is refused with a clear error, never truncated;
/// one just under it comes back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_limit_is_refused_not_truncated() {
    let f = fixture().await;
    // No statement timeout for acme (read when its first request builds its pool), so that
    // only the router can stop the endless query below.
    let admin = f.db.client().await;
    admin
        .execute("UPDATE control.tenants SET statement_timeout_ms = NULL WHERE slug = 'acme'", &[])
        .await
        .unwrap();
    let too_large = [
        "SELECT repeat('x', 1000) AS x FROM generate_series(1, 100)",
        // Empty values are not free: every row and key counts.
        "SELECT NULL AS n FROM generate_series(1, 100000)",
    ];
    for query in too_large {
        let (status, body) = f.acme.post(json!({ "query": query })).await;
        assert_eq!((status, &body["error"]["code"]), (400, &json!("response_too_large")), "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(&RESPONSE_LIMIT.to_string()), "{body}");
    }
    let (status, body) =
        f.acme.post(json!({"queries": [{"query": "SELECT 1 AS one"}, {"query": too_large[0]}]})).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("response_too_large")), "batch: {body}");
    let rows = f.acme.rows("SELECT repeat('x', 1000) AS x FROM generate_series(1, 60)", json!([])).await;
    assert_eq!(rows.as_array().map(Vec::len), Some(60));
    assert!(rows.as_array().unwrap().iter().all(|r| r["x"].as_str().map(str::len) == Some(1000)));

    // A result that would take PostgreSQL hours to produce (100 GB, streamed from its first
    // row): refused as soon as it passes the limit, and the query itself is stopped, not left
    // running to its end (before, the request waited for it, behind the session reset).
    let endless =
        "SELECT repeat('x', 1000) AS endless FROM generate_series(1, 10000) a, generate_series(1, 10000) b";
    for body in [json!({ "query": endless }), json!({"queries": [{ "query": endless }]})] {
        let (status, body) = tokio::time::timeout(Duration::from_secs(60), f.acme.post(body))
            .await
            .expect("the refusal must not wait for the whole result");
        assert_eq!((status, &body["error"]["code"]), (400, &json!("response_too_large")), "{body}");
        let started = std::time::Instant::now();
        loop {
            let running: i64 = admin
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%AS endless FROM%' AND pid <> pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            if running == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the endless query is still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(f.acme.post(json!({"query": "SELECT 1 AS one"})).await.0, 200, "the tenant is served after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_plans_rate_is_throttled_alone() {
    let f = fixture().await;
    // Starter allows 20 requests/s: a burst of 40 at once gets some 429s with Retry-After.
    let burst: Vec<_> =
        (0..40).map(|_| f.acme.request().json(&json!({"query": "SELECT 1"})).send()).collect();
    let responses = futures::future::join_all(burst).await;
    let mut limited = 0;
    for response in responses {
        let response = response.unwrap();
        if response.status().as_u16() == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            limited += 1;
        } else {
            assert_eq!(response.status().as_u16(), 200);
        }
    }
    assert!(limited > 0 && limited < 40, "{limited} of 40 throttled");
    // Another tenant is not affected.
    let globex = TenantSql::new(&f.router, "globex.app.localhost", &f.globex_connection_string);
    assert_eq!(globex.post(json!({"query": "SELECT 1"})).await.0, 200);
}

pub(super) fn token(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_name_their_tenant_and_may_make_requests_read_only() {
    let f = fixture().await;
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .unwrap();
    let post = |bearer: String, query: &'static str| {
        reqwest::Client::new()
            .post(format!("http://{}/sql", f.router.addr))
            .header("host", "acme.app.localhost")
            .bearer_auth(bearer)
            .json(&json!({ "query": query }))
            .send()
    };
    let status_and_code = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        (
            status,
            body["error"]["code"].as_str().or(body["code"].as_str()).unwrap_or_default().to_owned(),
            body,
        )
    };

    let valid = token(&json!({"tenant": "acme", "role": "tenant-admin", "exp": now + 600}), JWT_SECRET);
    let (status, _, body) =
        status_and_code(post(valid.clone(), "SELECT current_schema() AS schema").await.unwrap()).await;
    assert_eq!((status, &body["rows"]), (200, &json!([{"schema": "t_acme"}])), "{body}");
    let (status, _, _) =
        status_and_code(post(valid, "INSERT INTO tags (name) VALUES ('by-token')").await.unwrap()).await;
    assert_eq!(status, 200, "a tenant admin may write");

    for (claims, secret, want) in [
        (
            json!({"tenant": "globex", "role": "tenant-admin", "exp": now + 600}),
            JWT_SECRET,
            (403, "wrong_tenant"),
        ),
        // No role, or one the router does not know: nothing is assumed.
        (json!({"tenant": "acme", "exp": now + 600}), JWT_SECRET, (403, "role_not_allowed")),
        (json!({"tenant": "acme", "role": "owner", "exp": now + 600}), JWT_SECRET, (403, "role_not_allowed")),
        (json!({"tenant": "acme", "exp": now - 3600}), JWT_SECRET, (401, "invalid_token")),
        (json!({"tenant": "acme"}), JWT_SECRET, (401, "invalid_token")),
        (json!({"tenant": "acme", "exp": now + 600}), "another-secret", (401, "invalid_token")),
        (json!({"exp": now + 600}), JWT_SECRET, (401, "invalid_token")),
    ] {
        let (status, code, body) =
            status_and_code(post(token(&claims, secret), "SELECT 1").await.unwrap()).await;
        assert_eq!((status, code.as_str()), want, "{claims}: {body}");
    }
    let (status, code, _) = status_and_code(post("not.a.jwt".into(), "SELECT 1").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));

    // A read-only role reads but cannot write: PostgreSQL refuses in a read-only transaction.
    let reader = token(&json!({"tenant": "acme", "role": "tenant-viewer", "exp": now + 600}), JWT_SECRET);
    let (status, _, body) =
        status_and_code(post(reader.clone(), "SELECT count(*)::int4 AS n FROM tags").await.unwrap()).await;
    assert_eq!((status, &body["rows"]), (200, &json!([{"n": 1}])));
    let (status, code, _) =
        status_and_code(post(reader.clone(), "INSERT INTO tags (name) VALUES ('nope')").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "25006"));
    // Ending the read-only transaction first does not help: transaction control is refused
    // before anything runs, alone or in a batch.
    for body in [
        json!({"query": "COMMIT"}),
        json!({"queries": [{"query": "COMMIT"}, {"query": "INSERT INTO tags (name) VALUES ('nope')"}]}),
    ] {
        let response = reqwest::Client::new()
            .post(format!("http://{}/sql", f.router.addr))
            .header("host", "acme.app.localhost")
            .bearer_auth(&reader)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, code, answer) = status_and_code(response).await;
        assert_eq!((status, code.as_str()), (403, "statement_not_allowed"), "{body}: {answer}");
    }
    let (_, _, body) = status_and_code(
        post(reader, "SELECT count(*)::int4 AS n FROM tags WHERE name = 'nope'").await.unwrap(),
    )
    .await;
    assert_eq!(body["rows"], json!([{"n": 0}]), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_has_its_query_cancelled() {
    let f = fixture().await;
    let role = format!("{}_acme", f.db.role_prefix);
    let running = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND query LIKE '%pg_sleep(20)%' AND state = 'active'"
    );
    let request = f.acme.request().json(&json!({"query": "SELECT pg_sleep(20)"})).send();
    let client = tokio::spawn(request);
    // Wait until the query really runs on the server, then the client goes away.
    let started = std::time::Instant::now();
    while f.db.count(&running).await == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the query never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    client.abort();
    let started = std::time::Instant::now();
    while f.db.count(&running).await > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "the query kept running (the plan's statement timeout is 5 s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_cost_one_catalog_lookup() {
    let db = TestDb::create().await;
    let mut common = common_settings(&db, SecretsFor::Local);
    common.redis_url = None; // only the in-process cache and the catalog
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "enterprise"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    let router = spawn_router_with(&router_settings(&common)).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1000).build().unwrap();
    // Unauthenticated on purpose: resolution happens first, and nothing reaches PostgreSQL.
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            http.post(format!("http://{}/sql", router.addr))
                .header("host", "acme.app.localhost")
                .body("{}")
                .send()
        })
        .collect();
    let responses = futures::future::join_all(requests).await;
    // 401 (no credentials) or 429 (over the plan's rate): both come after resolution.
    let statuses: Vec<u16> =
        responses.iter().map(|r| r.as_ref().map_or(0, |r| r.status().as_u16())).collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{:?}",
        statuses.iter().filter(|s| **s != 401 && **s != 429).take(5).collect::<Vec<_>>()
    );
    let metrics =
        reqwest::get(format!("http://{}/metrics", router.admin_addr)).await.unwrap().text().await.unwrap();
    let catalog = metrics
        .lines()
        .find(|l| l.starts_with("tenant_router_resolutions_total{layer=\"catalog\",outcome=\"found\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(catalog.ends_with(" 1"), "{catalog}");
}
