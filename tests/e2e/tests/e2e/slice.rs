//! The thin slice: `tenantctl` creates tenants (CLI and billing webhook), `tenant-router` serves
//! them, each on its own role.

use clap::Parser as _;
use control_plane::context::ControlPlane;
use e2e_tests::{
    connection_string, provisioning_settings, spawn_control_plane, spawn_router, sql,
    wait_until_active,
};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;
use tenancy::settings::CommonSettings;
use testkit::{common_settings, workspace_root, PgServer, SecretsFor, TestDb};

/// `tenantctl` arguments that point a command at `db` with `common`'s settings.
fn catalog_flags(db: &TestDb, common: &CommonSettings) -> Vec<String> {
    let root = workspace_root();
    vec![
        "--database-url".into(),
        db.url.clone(),
        "--redis-url".into(),
        common.redis_url.clone().unwrap_or_default(),
        "--redis-key-prefix".into(),
        common.redis_key_prefix.clone(),
        "--role-prefix".into(),
        db.role_prefix.clone(),
        "--migrations-dir".into(),
        root.join("migrations").display().to_string(),
        "--templates-dir".into(),
        root.join("tenant-templates").display().to_string(),
        "--secrets-backend".into(),
        "local".into(),
        "--secrets-prefix".into(),
        common.secrets.secrets_prefix.as_str().into(),
        "--secrets-local-key".into(),
        common.secrets.secrets_local_key.clone().unwrap_or_default(),
    ]
}

async fn tenantctl(args: &[&str], db: &TestDb, common: &CommonSettings) -> ExitCode {
    let mut argv: Vec<String> = std::iter::once("tenantctl".to_owned())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect();
    argv.extend(catalog_flags(db, common));
    let cli = control_plane::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
    control_plane::commands::run(cli).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_with_the_cli_answers_sql_through_the_router_on_its_own_role() {
    let db = TestDb::create("cli_slice").await;
    let common = common_settings(&db, SecretsFor::Local);
    let code = tenantctl(
        &["tenants", "create", "--slug", "acme", "--plan", "starter"],
        &db,
        &common,
    )
    .await;
    assert_eq!(code, ExitCode::SUCCESS);

    // Role, schema with migrations applied, catalog row.
    let admin = db.client().await;
    let role = format!("{}_acme", db.role_prefix);
    assert_eq!(
        db.roles().await,
        vec![role.clone(), format!("{}_owner", db.role_prefix)]
    );
    let versions: i64 = admin
        .query_one("SELECT count(*) FROM t_acme.refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
    let status: String = admin
        .query_one(
            "SELECT status FROM control.tenants WHERE slug = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "active");

    let cp = ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let router = spawn_router(&common).await;
    let conn = connection_string(&cp, "acme").await;
    let (status, body) = sql(
        &router,
        "acme.app.localhost",
        &conn,
        json!({"query": "SELECT current_user AS who, current_schema() AS schema"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["who"], json!(role));
    assert_eq!(body["rows"][0]["schema"], json!("t_acme"));
    assert_eq!(body["command"], json!("SELECT"));

    let (status, body) = sql(
        &router,
        "ACME.app.localhost:8081",
        &conn,
        json!({"query": "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id, email", "params": ["ada@acme.test", "Ada"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rowCount"], json!(1));
    assert_eq!(body["rows"][0]["email"], json!("ada@acme.test"));
    assert_eq!(
        body["rows"][0]["id"],
        json!("1"),
        "int8 is a string, as Neon returns it"
    );
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_slugs_are_refused_with_the_reason_and_nothing_is_created() {
    let db = TestDb::create("bad_slugs").await;
    let common = common_settings(&db, SecretsFor::Local);
    let too_long = "a".repeat(70);
    for slug in ["Acme!", "-a", too_long.as_str(), "www"] {
        let code = tenantctl(
            &["tenants", "create", "--slug", slug, "--plan", "starter"],
            &db,
            &common,
        )
        .await;
        assert_eq!(code, ExitCode::from(3), "slug {slug:?}");
    }
    let code = tenantctl(
        &[
            "tenants",
            "create",
            "--slug",
            "fine",
            "--plan",
            "no-such-plan",
        ],
        &db,
        &common,
    )
    .await;
    assert_eq!(code, ExitCode::from(3));
    let admin = db.client().await;
    let tenants: i64 = admin
        .query_one("SELECT count(*) FROM control.tenants", &[])
        .await
        .unwrap()
        .get(0);
    let jobs: i64 = admin
        .query_one("SELECT count(*) FROM control.jobs", &[])
        .await
        .unwrap()
        .get(0);
    let schemas: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((tenants, jobs, schemas), (0, 0, 0));
    assert!(db.roles().await.is_empty());

    // The messages say why.
    let err = control_plane::provisioning::request_tenant(
        &ControlPlane::start(&common, &provisioning_settings(&db))
            .await
            .unwrap(),
        &control_plane::provisioning::TenantRequest {
            slug: "www".into(),
            display_name: None,
            plan: "starter".into(),
            billing_customer_id: None,
            billing_subscription_id: None,
        },
        "test",
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid slug \"www\": slug \"www\" is reserved"
    );
}

async fn send_event(url: &str, slug: &str, plan: &str) -> serde_json::Value {
    let event = control_plane::billing::send::TestEvent {
        kind: "customer.subscription.created".into(),
        slug: slug.into(),
        name: Some(format!("{slug} Inc")),
        plan: plan.into(),
        subscription_id: None,
        customer_id: None,
        status: "active".into(),
    };
    let body = event.body(chrono_now());
    control_plane::billing::send::send(
        &format!("{url}/v1/webhooks/billing"),
        e2e_tests::WEBHOOK_SECRET,
        &body,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    body
}

fn chrono_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_billing_webhooks_provision_tenants_that_each_see_only_their_own_rows() {
    let db = TestDb::create("webhook_flow").await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = spawn_control_plane(&db, &common).await;
    let router = spawn_router(&common).await;

    let first = send_event(&control.url, "acme", "starter").await;
    send_event(&control.url, "globex", "pro").await;
    // The same event delivered again, concurrently with itself: acknowledged, not re-processed.
    let url = format!("{}/v1/webhooks/billing", control.url);
    let (a, b) = tokio::join!(
        control_plane::billing::send::send(&url, e2e_tests::WEBHOOK_SECRET, &first),
        control_plane::billing::send::send(&url, e2e_tests::WEBHOOK_SECRET, &first)
    );
    assert!(a.unwrap().response["duplicate"].as_bool().unwrap());
    assert!(b.unwrap().response["duplicate"].as_bool().unwrap());

    let acme = wait_until_active(&control.cp, "acme", Duration::from_secs(30)).await;
    let globex = wait_until_active(&control.cp, "globex", Duration::from_secs(30)).await;
    assert_eq!(acme.display_name, "acme Inc");
    assert_eq!(
        (acme.pool_size, globex.pool_size),
        (2, 5),
        "pool sizes from the plan templates"
    );

    let acme_conn = connection_string(&control.cp, "acme").await;
    let globex_conn = connection_string(&control.cp, "globex").await;
    for (host, conn, name) in [
        ("acme.app.localhost", &acme_conn, "Ada"),
        ("globex.app.localhost", &globex_conn, "Grace"),
    ] {
        let (status, body) = sql(
            &router,
            host,
            conn,
            json!({"query": "INSERT INTO users (email, name) VALUES ($1, $1)", "params": [name]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, body) = sql(
        &router,
        "acme.app.localhost",
        &acme_conn,
        json!({"query": "SELECT name FROM users"}),
    )
    .await;
    assert_eq!(body["rows"], json!([{"name": "Ada"}]));
    let (_, body) = sql(
        &router,
        "globex.app.localhost",
        &globex_conn,
        json!({"query": "SELECT name FROM users"}),
    )
    .await;
    assert_eq!(body["rows"], json!([{"name": "Grace"}]));

    // Reaching into the other tenant's schema is refused by PostgreSQL.
    let (status, body) = sql(
        &router,
        "acme.app.localhost",
        &acme_conn,
        json!({"query": "SELECT name FROM t_globex.users"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], json!("42501"), "{body}");
    // Acme's credentials do not open globex's host.
    let (status, _) = sql(
        &router,
        "globex.app.localhost",
        &acme_conn,
        json!({"query": "SELECT 1"}),
    )
    .await;
    assert_eq!(status, 403);

    // Bad signature: 400 and nothing stored.
    let response = reqwest::Client::new()
        .post(&url)
        .header("stripe-signature", "t=1,v1=00")
        .body(r#"{"id":"evt_forged","type":"customer.subscription.created","created":1,"data":{"object":{}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let admin = db.client().await;
    let events: i64 = admin
        .query_one("SELECT count(*) FROM control.billing_events", &[])
        .await
        .unwrap()
        .get(0);
    let tenants: i64 = admin
        .query_one("SELECT count(*) FROM control.tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((events, tenants), (2, 2));

    router.stop().await.unwrap();
    control.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_fails_cleanly_while_postgres_is_down_and_recovers_after_a_restart() {
    testkit::init_logging();
    let pg = PgServer::start().await;
    let url = pg.url("postgres");
    let db = TestDb::create("pg_restart").await; // for its unique prefixes only
    let mut common = common_settings(&db, SecretsFor::Local);
    common.database_url = url.clone();
    let cp = ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let tenant = control_plane::provisioning::request_tenant(
        &cp,
        &control_plane::provisioning::TenantRequest {
            slug: "initech".into(),
            display_name: None,
            plan: "starter".into(),
            billing_customer_id: None,
            billing_subscription_id: None,
        },
        "test",
    )
    .await
    .unwrap();
    control_plane::provisioning::steps::provision(&cp, tenant.id)
        .await
        .unwrap();
    let router = spawn_router(&common).await;
    let conn = connection_string(&cp, "initech").await;
    let query = json!({"query": "SELECT count(*) AS n FROM users"});
    let (status, _) = sql(&router, "initech.app.localhost", &conn, query.clone()).await;
    assert_eq!(status, 200);

    pg.stop(true).await;
    let (status, body) = sql(&router, "initech.app.localhost", &conn, query.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        !body.to_string().contains(&conn),
        "no credentials in errors"
    );

    pg.start_again().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = sql(&router, "initech.app.localhost", &conn, query.clone()).await;
        if status == 200 {
            assert_eq!(body["rows"][0]["n"], json!("0"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "router did not recover: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    router.stop().await.unwrap();
}
