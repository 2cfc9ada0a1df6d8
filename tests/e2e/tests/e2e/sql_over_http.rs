//! `POST /sql` through the router: values as Neon returns them, per-request session state that
//! never leaks, and bad input refused with the right status before anything runs.

use control_plane::context::ControlPlane;
use control_plane::provisioning::{request_tenant, steps::provision, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, spawn_router, sql};
use serde_json::json;
use testkit::{common_settings, SecretsFor, TestDb};

struct Fixture {
    _db: TestDb,
    router: tenant_router::http::RunningRouter,
    conn: String,
    other_conn: String,
}

async fn fixture(label: &str) -> Fixture {
    let db = TestDb::create(label).await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    for slug in ["acme", "globex"] {
        let request = TenantRequest {
            slug: slug.into(),
            display_name: None,
            plan: "starter".into(),
            billing_customer_id: None,
            billing_subscription_id: None,
        };
        let tenant = request_tenant(&cp, &request, "test").await.unwrap();
        provision(&cp, tenant.id).await.unwrap();
    }
    let router = spawn_router(&common).await;
    let conn = connection_string(&cp, "acme").await;
    let other_conn = connection_string(&cp, "globex").await;
    Fixture {
        _db: db,
        router,
        conn,
        other_conn,
    }
}

const ACME: &str = "acme.app.localhost";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_as_neon_returns_them() {
    let f = fixture("sql_values").await;
    let query = "SELECT true AS b, 7::int2 AS i2, 8::int4 AS i4, 9007199254740993::int8 AS i8, \
                 1.5::float8 AS f, 'NaN'::float8 AS nan, 12.340::numeric AS n, -0.000012::numeric AS small, \
                 '{\"a\":[1,2]}'::jsonb AS j, ARRAY[1,NULL,3] AS arr, ARRAY[['a','b'],['c','d']] AS grid, \
                 '2024-01-02 03:04:05.5+00'::timestamptz AS ts, '2024-01-02 03:04:05'::timestamp AS lts, \
                 '2024-02-29'::date AS d, '\\x01ff'::bytea AS bin, \
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, NULL::text AS nothing, 'hé'::varchar AS s";
    let (status, body) = sql(&f.router, ACME, &f.conn, json!({ "query": query })).await;
    assert_eq!(status, 200, "{body}");
    let row = &body["rows"][0];
    assert_eq!(row["b"], json!(true));
    assert_eq!(row["i2"], json!(7));
    assert_eq!(row["i4"], json!(8));
    assert_eq!(row["i8"], json!("9007199254740993"));
    assert_eq!(row["f"], json!(1.5));
    assert_eq!(row["nan"], json!("NaN"));
    assert_eq!(row["j"], json!({"a": [1, 2]}));
    assert_eq!(row["arr"], json!([1, null, 3]));
    assert_eq!(row["grid"], json!([["a", "b"], ["c", "d"]]));
    assert_eq!(row["nothing"], json!(null));
    assert_eq!(row["s"], json!("hé"));
    assert_eq!(body["fields"][3]["dataTypeID"], json!(20));
    assert_eq!(body["rowAsArray"], json!(false));

    // Everything rendered as text must equal PostgreSQL's own text output.
    let text_query = "SELECT 12.340::numeric::text AS n, (-0.000012)::numeric::text AS small, \
                      '2024-01-02 03:04:05.5+00'::timestamptz::text AS ts, '2024-01-02 03:04:05'::timestamp::text AS lts, \
                      '2024-02-29'::date::text AS d, '\\x01ff'::bytea::text AS bin, \
                      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid::text AS u";
    let (_, text_body) = sql(&f.router, ACME, &f.conn, json!({ "query": text_query })).await;
    for column in ["n", "small", "ts", "lts", "d", "bin", "u"] {
        assert_eq!(row[column], text_body["rows"][0][column], "column {column}");
    }

    // Array mode and raw text output.
    let response = reqwest::Client::new()
        .post(format!("http://{}/sql", f.router.addr))
        .header("host", ACME)
        .header("neon-connection-string", &f.conn)
        .header("neon-array-mode", "true")
        .header("neon-raw-text-output", "true")
        .json(&json!({"query": "SELECT 1::int4 AS one, true AS yes"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["rows"], json!([["1", "t"]]));
    assert_eq!(body["rowAsArray"], json!(true));

    // Types without a text rendering yet are refused clearly, not mangled.
    let (status, body) = sql(
        &f.router,
        ACME,
        &f.conn,
        json!({"query": "SELECT interval '1 day' AS i"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("::text"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_of_one_request_never_reach_the_next() {
    let f = fixture("sql_session").await;
    for _ in 0..4 {
        let (status, body) = sql(
            &f.router,
            ACME,
            &f.conn,
            json!({"query": "SELECT set_config('search_path', 'public', false), set_config('statement_timeout', '1', false)"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for _ in 0..4 {
        let (_, body) = sql(
            &f.router,
            ACME,
            &f.conn,
            json!({"query": "SELECT current_schema() AS schema, current_setting('statement_timeout') AS timeout, current_user AS who"}),
        )
        .await;
        assert_eq!(body["rows"][0]["schema"], json!("t_acme"), "{body}");
        assert_ne!(body["rows"][0]["timeout"], json!("1ms"));
    }
    // A batch is one transaction: a failing statement rolls back the earlier ones.
    let (status, _) = sql(
        &f.router,
        ACME,
        &f.conn,
        json!({"queries": [
            {"query": "INSERT INTO tags (name) VALUES ('kept?')"},
            {"query": "INSERT INTO tags (name) VALUES (NULL)"}
        ]}),
    )
    .await;
    assert_eq!(status, 400);
    let (_, body) = sql(
        &f.router,
        ACME,
        &f.conn,
        json!({"query": "SELECT count(*)::int4 AS n FROM tags"}),
    )
    .await;
    assert_eq!(body["rows"][0]["n"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_run_nothing() {
    let f = fixture("sql_bad_input").await;
    let insert =
        json!({"query": "INSERT INTO tags (name) VALUES ($1)", "params": ["should-not-exist"]});
    // (what, Host, Neon-Connection-String, raw body instead of a valid insert, expected status)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<String>, u16);
    let cases: Vec<Case<'_>> = vec![
        (
            "invalid host",
            "acme..app.localhost",
            Some(&f.conn),
            None,
            400,
        ),
        (
            "unknown tenant",
            "nobody.app.localhost",
            Some(&f.conn),
            None,
            404,
        ),
        ("no credentials", ACME, None, None, 401),
        (
            "wrong password",
            ACME,
            Some("postgresql://x:y@acme.app.localhost/db"),
            None,
            401,
        ),
        (
            "another tenant's credentials",
            ACME,
            Some(&f.other_conn),
            None,
            403,
        ),
        ("not a URL", ACME, Some("hello"), None, 400),
        (
            "malformed JSON",
            ACME,
            Some(&f.conn),
            Some("{\"query\": ".into()),
            400,
        ),
        (
            "wrong parameter count",
            ACME,
            Some(&f.conn),
            Some(r#"{"query": "INSERT INTO tags (name) VALUES ($1)", "params": []}"#.into()),
            400,
        ),
        (
            "oversized body",
            ACME,
            Some(&f.conn),
            Some(format!(
                r#"{{"query": "SELECT 1", "params": [], "pad": "{}"}}"#,
                "x".repeat(2 * 1024 * 1024)
            )),
            413,
        ),
    ];
    for (what, host, conn, raw_body, expected) in cases {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/sql", f.router.addr))
            .header("host", host)
            .header("content-type", "application/json")
            .body(raw_body.unwrap_or_else(|| insert.to_string()));
        if let Some(conn) = conn {
            request = request.header("neon-connection-string", conn);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            !body.contains(&f.conn) && !body.contains("password="),
            "{what}: no secrets in errors"
        );
    }
    let (_, body) = sql(
        &f.router,
        ACME,
        &f.conn,
        json!({"query": "SELECT count(*)::int4 AS n FROM tags"}),
    )
    .await;
    assert_eq!(body["rows"][0]["n"], json!(0), "nothing was executed");

    // A PostgreSQL error comes back with its SQLSTATE and position.
    let (status, body) = sql(
        &f.router,
        ACME,
        &f.conn,
        json!({"query": "SELECT * FROM no_such_table"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], json!("42P01"));
    assert_eq!(body["position"], json!("15"));
}
