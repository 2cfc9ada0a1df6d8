//! The web console (`/console`) in a real browser: headless Chromium (Debian's) driven by
//! Playwright from `tests/clients/node/console.mjs`, against `tenantctl serve` and a router
//! (for the routers' picture). The script signs in, creates a tenant and watches it become
//! active, suspends it, starts a fleet migration run and watches its progress, halts and
//! resumes it, and signs in read-only; this test then checks what the catalog says happened.
//! Screenshots of the main pages are kept in `target/console-screenshots/`.

use control_plane::catalog::tokens::{NewToken, Scope};
use e2e_tests::{connection_string, node_clients, router_settings, spawn_router_with};
use std::path::PathBuf;
use testkit::{common_settings, workspace_root, SecretsFor, TestDb};
use tokio_util::sync::CancellationToken;

/// Tenants the migration run has to migrate (each waits a little in the new migration, so the
/// run lasts long enough to be watched and halted).
const FLEET: usize = 12;

fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    assert!(
        path.is_file(),
        "Chromium is not installed at {} (scripts/test.sh installs Debian's `chromium`; or set CHROMIUM)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_fleet_from_the_console_in_a_real_browser() {
    let chromium = chromium();
    let node = node_clients("playwright-core");
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);

    // A fleet at V1; then a V2 that takes a moment per tenant.
    let (cp, migrations) = e2e_tests::fleet_at_v1(&db, &common, "fleet", FLEET).await;
    std::fs::write(
        migrations.path().join("V2__notes.sql"),
        "SELECT pg_sleep(0.4);\nCREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);",
    )
    .unwrap();

    let router = spawn_router_with(&router_settings(&common)).await;
    let mut serve = e2e_tests::control_plane_settings();
    serve.routers = vec![format!("http://{}", router.admin_addr)];
    let server = control_plane::http::spawn(cp.clone(), &serve, CancellationToken::new()).await.unwrap();
    // One tenant in use through the router: a pool for the routers' picture.
    let sql = e2e_tests::TenantSql::new(
        &router,
        "fleet-00.app.localhost",
        &connection_string(&cp, "fleet-00").await,
    );
    assert_eq!(sql.rows("SELECT 1 AS one", serde_json::json!([])).await, serde_json::json!([{"one": 1}]));

    let client = cp.catalog.get().await.unwrap();
    let token = |name, scope| NewToken { name, scope, expires_at: None, created_by: "test" };
    let (operator, _) =
        control_plane::catalog::tokens::create(&**client, &token("console-operator", Scope::Operator))
            .await
            .unwrap();
    let (viewer, _) =
        control_plane::catalog::tokens::create(&**client, &token("console-viewer", Scope::ReadOnly))
            .await
            .unwrap();
    drop(client);

    let screenshots = workspace_root().join("target/console-screenshots");
    // Only this run's screenshots count.
    let _ = std::fs::remove_dir_all(&screenshots);
    let output = tokio::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(&node)
        .env("CONSOLE_URL", format!("http://{}/console", server.addr))
        .env("OPERATOR_TOKEN", &operator)
        .env("READ_ONLY_TOKEN", &viewer)
        .env("PLAN", "starter")
        .env("NEW_TENANT", "made-in-console")
        .env("RUN_TENANTS", FLEET.to_string())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), output)
        .await
        .expect("the browser test did not finish in 5 minutes")
        .unwrap();
    assert!(
        output.status.success(),
        "the browser test failed (screenshot of where: {}/failure.png):\n{}\n{}",
        screenshots.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // What the catalog says the operator did.
    let client = cp.catalog.get().await.unwrap();
    let made = client
        .query_one(
            "SELECT status, plan, schema_version FROM control.tenants WHERE slug = 'made-in-console'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (made.get::<_, String>(0), made.get::<_, String>(1)),
        ("suspended".to_owned(), "starter".to_owned())
    );
    assert_eq!(made.get::<_, Option<i64>>(2), Some(2), "provisioned to the newest migration");
    let run = client
        .query_one(
            "SELECT state, created_by, halt_reason, halt_requested_by FROM control.migration_runs
              ORDER BY created_at DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(run.get::<_, String>(0), "completed", "halted, then resumed to the end");
    assert_eq!(run.get::<_, String>(1), "console-operator");
    assert_eq!((run.get::<_, Option<String>>(2), run.get::<_, Option<String>>(3)), (None, None));
    let behind: i64 = client
        .query_one(
            "SELECT count(*) FROM control.tenants WHERE status IN ('active', 'suspended')
               AND schema_version IS DISTINCT FROM 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(behind, 0, "every tenant at V2");
    let actions: Vec<String> = client
        .query("SELECT action FROM control.audit_log WHERE actor = 'console-operator' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        actions.contains(&"tenant.create".to_owned()) && actions.contains(&"tenant.suspend".to_owned()),
        "{actions:?}"
    );
    assert!(
        !client
            .query("SELECT 1 FROM control.audit_log WHERE actor = 'console-viewer'", &[])
            .await
            .unwrap()
            .iter()
            .any(|_| true),
        "the read-only token changed nothing"
    );
    for page in ["sign-in", "overview", "tenants", "tenant", "migration-run", "migrations"] {
        assert!(screenshots.join(format!("{page}.png")).is_file(), "screenshot {page}.png");
    }
    drop(client);
    server.stop().await.unwrap();
    router.stop().await.unwrap();
}
