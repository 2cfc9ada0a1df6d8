//! The thin slice: `tenantctl` creates tenants (CLI and billing webhook), `tenant-router` serves
//! them, each on its own role.

use control_plane::billing::send::{send, TestEvent};
use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{
    connection_string, provisioning_settings, spawn_control_plane, spawn_router, tenantctl,
    wait_until_active, TenantSql, WEBHOOK_SECRET,
};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;
use testkit::{common_settings, PgServer, SecretsFor, TestDb};

fn request(slug: &str) -> TenantRequest {
    TenantRequest::new(slug, "starter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_with_the_cli_answers_sql_through_the_router_on_its_own_role() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let code = tenantctl(&["tenants", "create", "--slug", "acme", "--plan", "starter"], &db, &common).await;
    assert_eq!(code, ExitCode::SUCCESS);

    // Role, schema with the migrations applied, catalog row.
    let role = format!("{}_acme", db.role_prefix);
    assert_eq!(
        db.roles().await,
        vec![
            format!("{}__ro_acme", db.role_prefix),
            role.clone(),
            format!("{}_owner", db.role_prefix),
            format!("{}_router", db.role_prefix),
            format!("{}_tenants", db.role_prefix)
        ]
    );
    assert_eq!(db.tenants_count("SELECT count(*) FROM t_acme.refinery_schema_history").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM control.tenants WHERE slug = 'acme' AND status = 'active'").await,
        1
    );

    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let router = spawn_router(&common).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);
    let (status, body) =
        acme.post(json!({"query": "SELECT current_user AS who, current_schema() AS schema"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{"who": role, "schema": "t_acme"}]));
    assert_eq!(body["command"], json!("SELECT"));

    // Host matching ignores case and port.
    let shouting = TenantSql::new(&router, "ACME.app.localhost:8081", &acme.connection_string);
    let (status, body) = shouting
        .post(json!({"query": "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id, email", "params": ["ada@acme.test", "Ada"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rowCount"], json!(1));
    assert_eq!(
        body["rows"],
        json!([{"id": "1", "email": "ada@acme.test"}]),
        "int8 is a string, as Neon returns it"
    );
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_slugs_are_refused_with_the_reason_and_nothing_is_created() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let too_long = "a".repeat(70);
    for slug in ["Acme!", "-a", too_long.as_str(), "www"] {
        let code = tenantctl(&["tenants", "create", "--slug", slug, "--plan", "starter"], &db, &common).await;
        assert_eq!(code, ExitCode::from(3), "slug {slug:?}");
    }
    let code =
        tenantctl(&["tenants", "create", "--slug", "fine", "--plan", "no-such-plan"], &db, &common).await;
    assert_eq!(code, ExitCode::from(3));
    // (Refused before the catalog was even touched; start a control plane to look at it.)
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM control.tenants").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM control.jobs").await, 0);
    // No schema, not even the databases that would hold them.
    let databases =
        format!("SELECT count(*) FROM pg_database WHERE starts_with(datname, '{}_')", db.role_prefix);
    assert_eq!(db.count(&databases).await, 0);
    // Only the routers' catalog role, which starting the control plane creates.
    assert_eq!(db.roles().await, vec![format!("{}_router", db.role_prefix)]);

    // The messages say why.
    let err = tenants::create(&cp, &request("www"), "test").await.unwrap_err();
    assert_eq!(err.to_string(), "invalid slug \"www\": slug \"www\" is reserved");
}

fn subscription_created(slug: &str, plan: &str) -> serde_json::Value {
    let event =
        TestEvent { name: Some(format!("{slug} Inc")), ..TestEvent::subscription_created(slug, plan) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    event.body(i64::try_from(now).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_billing_webhooks_provision_tenants_that_each_see_only_their_own_rows() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = spawn_control_plane(&db, &common).await;
    let router = spawn_router(&common).await;
    let url = format!("{}/v1/webhooks/billing", control.url);

    // A new event delivered twice at once: one of them is stored and processed, the other is
    // acknowledged as a duplicate.
    let first = subscription_created("acme", "starter");
    let (a, b) = tokio::join!(send(&url, WEBHOOK_SECRET, &first), send(&url, WEBHOOK_SECRET, &first));
    let duplicates =
        [a.unwrap(), b.unwrap()].iter().filter(|d| d.response["duplicate"] == json!(true)).count();
    assert_eq!(duplicates, 1);
    send(&url, WEBHOOK_SECRET, &subscription_created("globex", "pro")).await.unwrap();
    // Delivered again later: acknowledged, not processed again.
    assert_eq!(send(&url, WEBHOOK_SECRET, &first).await.unwrap().response["duplicate"], json!(true));

    let acme = wait_until_active(&control.cp, "acme", Duration::from_secs(30)).await;
    let globex = wait_until_active(&control.cp, "globex", Duration::from_secs(30)).await;
    assert_eq!(acme.display_name, "acme Inc");
    assert_eq!((acme.pool_size, globex.pool_size), (2, 5), "pool sizes from the plan templates");

    let acme_sql =
        TenantSql::new(&router, "acme.app.localhost", &connection_string(&control.cp, "acme").await);
    let globex_sql =
        TenantSql::new(&router, "globex.app.localhost", &connection_string(&control.cp, "globex").await);
    let insert = "INSERT INTO users (email, name) VALUES ($1, $1)";
    acme_sql.rows(insert, json!(["Ada"])).await;
    globex_sql.rows(insert, json!(["Grace"])).await;
    assert_eq!(acme_sql.rows("SELECT name FROM users", json!([])).await, json!([{"name": "Ada"}]));
    assert_eq!(globex_sql.rows("SELECT name FROM users", json!([])).await, json!([{"name": "Grace"}]));

    // Reaching into the other tenant's schema is refused by PostgreSQL.
    let (status, body) = acme_sql.post(json!({"query": "SELECT name FROM t_globex.users"})).await;
    assert_eq!((status, &body["code"]), (400, &json!("42501")), "{body}");
    // Acme's credentials do not open globex's host.
    let impostor = TenantSql::new(&router, "globex.app.localhost", &acme_sql.connection_string);
    assert_eq!(impostor.post(json!({"query": "SELECT 1"})).await.0, 403);

    // A forged signature: 400 and nothing stored.
    let response = reqwest::Client::new()
        .post(&url)
        .header("stripe-signature", "t=1,v1=00")
        .body(
            r#"{"id":"evt_forged","type":"customer.subscription.created","created":1,"data":{"object":{}}}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(db.count("SELECT count(*) FROM control.billing_events").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM control.tenants").await, 2);

    router.stop().await.unwrap();
    control.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_fails_cleanly_while_postgres_is_down_and_recovers_after_a_restart() {
    let pg = PgServer::start().await;
    let db = TestDb::create().await; // for its unique prefixes only
    let mut common = common_settings(&db, SecretsFor::Local);
    common.database_url = Some(pg.url("postgres").into());
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = tenants::create(&cp, &request("initech"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    let router = spawn_router(&common).await;
    let initech = TenantSql::new(&router, "initech.app.localhost", &connection_string(&cp, "initech").await);
    let query = json!({"query": "SELECT count(*) AS n FROM users"});
    assert_eq!(initech.post(query.clone()).await.0, 200);

    pg.stop(true).await;
    let (status, body) = initech.post(query.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.to_string().contains(&initech.connection_string), "no credentials in errors");

    pg.start_again().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = initech.post(query.clone()).await;
        if status == 200 {
            assert_eq!(body["rows"], json!([{"n": "0"}]));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "router did not recover: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    router.stop().await.unwrap();
}
