//! Neon's own driver (`@neondatabase/serverless`) against the router's `/sql`, compared value by
//! value with node-postgres (`pg`) against PostgreSQL directly, over the types users store:
//! the Node script `tests/clients/node/compare-values.mjs` runs both and lists every difference.
//! `scripts/test.sh` installs its packages (`npm ci`) when they are missing.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use e2e_tests::{connection_string, provisioning_settings, router_settings, spawn_router_with};
use testkit::{common_settings, SecretsFor, TestDb};

/// The tenant's credentials, pointed at PostgreSQL itself instead of the router.
fn direct_url(db: &TestDb, tenant_connection_string: &str) -> String {
    let config: tokio_postgres::Config = tenant_connection_string.parse().unwrap();
    let user = config.get_user().unwrap();
    let password = String::from_utf8(config.get_password().unwrap().to_vec()).unwrap();
    let dbname = config.get_dbname().unwrap();
    // The test database's host and port, with the tenant's role and database.
    let url = db.url_as(user, &password);
    let (server, _) = url.rsplit_once('/').unwrap();
    format!("{server}/{dbname}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neon_driver_values_match_node_postgres() {
    let client_dir = e2e_tests::node_clients("@neondatabase/serverless");
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    let tenant = tenants::create(&cp, &TenantRequest::new("acme", "starter"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    // The script sends a few hundred requests in a few seconds: above the starter plan's limit.
    db.lift_rate_limits().await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let neon_url = connection_string(&cp, "acme").await;

    let output = tokio::process::Command::new("node")
        .arg("compare-values.mjs")
        .current_dir(&client_dir)
        .env("ROUTER_SQL_URL", format!("http://{}/sql", router.addr))
        .env("ROUTER_HOST", "acme.app.localhost")
        .env("PG_URL", direct_url(&db, &neon_url))
        .env("NEON_URL", &neon_url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), output)
        .await
        .expect("the Node script did not finish in 120 s")
        .expect("node could not be started (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the driver and node-postgres disagree:\n{stderr}\n{stdout}");
    assert!(stdout.contains("queries agree"), "{stdout}");
}
