//! Several clusters: registration (admin connection checked, kept in the secret store),
//! placement on the least loaded cluster with room, tenants served and deprovisioned there.

use control_plane::clusters::{self, AddClusterError};
use control_plane::control_plane::ControlPlane;
use control_plane::jobs::runner::drain;
use control_plane::tenants::{self, CreateTenantError, TenantRequest};
use control_plane::tenants::{request as operate, Operation};
use e2e_tests::{connection_string, provisioning_settings, spawn_router, TenantSql};
use serde_json::json;
use std::time::Duration;
use tenancy::domain::Slug;
use testkit::{common_settings, PgServer, SecretsFor, TestDb};

fn request(slug: &str) -> TenantRequest {
    TenantRequest::new(slug, "starter")
}

pub(crate) async fn create(cp: &ControlPlane, slug: &str) -> tenancy::catalog::TenantRecord {
    let tenant = tenants::create(cp, &request(slug), "test").await.unwrap();
    drain(cp, tenant.id, Duration::from_secs(60)).await.unwrap();
    let client = cp.catalog.get().await.unwrap();
    tenancy::catalog::tenant_by_id(&**client, tenant.id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_placed_on_registered_clusters_and_served_from_there() {
    let second = PgServer::start().await;
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();

    // Registration checks what it is given.
    let url = second.url("postgres");
    let wrong_password = url.replace("postgres:pw", "postgres:nope");
    assert!(matches!(
        clusters::add(&cp, "Second!", &url.clone().into(), 10, "test").await,
        Err(AddClusterError::InvalidName(_))
    ));
    assert!(matches!(
        clusters::add(&cp, "second", &"not a url".into(), 10, "test").await,
        Err(AddClusterError::InvalidUrl(_))
    ));
    assert!(matches!(
        clusters::add(&cp, "second", &wrong_password.into(), 10, "test").await,
        Err(AddClusterError::Unreachable(_))
    ));
    clusters::add(&cp, "second", &url.clone().into(), 10, "test").await.unwrap();
    assert!(matches!(
        clusters::add(&cp, "second", &url.into(), 10, "test").await,
        Err(AddClusterError::Duplicate(_))
    ));

    // The default cluster takes one tenant; the next ones go to the second cluster.
    db.client()
        .await
        .execute("UPDATE control.clusters SET capacity = 1 WHERE name = 'default'", &[])
        .await
        .unwrap();
    let alpha = create(&cp, "alpha").await;
    let beta = create(&cp, "beta").await;
    assert_eq!((alpha.cluster.as_str(), beta.cluster.as_str()), ("default", "second"));
    let load: Vec<(String, i64)> =
        clusters::list(&cp).await.unwrap().into_iter().map(|c| (c.name, c.tenants)).collect();
    assert_eq!(load, [("default".to_owned(), 1), ("second".to_owned(), 1)]);

    // Beta's role and schema live on the second cluster only; the router reaches it there.
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{}'", beta.role_name)).await,
        0
    );
    let router = spawn_router(&common).await;
    let beta_sql = TenantSql::new(&router, "beta.app.localhost", &connection_string(&cp, "beta").await);
    let rows = beta_sql.rows("SELECT current_user AS who, inet_server_port() AS port", json!([])).await;
    assert_eq!(rows, json!([{"who": beta.role_name.as_str(), "port": second.port}]));
    beta_sql.rows("INSERT INTO users (email, name) VALUES ('b@beta', 'B')", json!([])).await;

    // `--tenant` picks one tenant (and `--plan` still applies to it); at the target already, it
    // is recorded as done without a connection.
    let only = |tenant: &str, plan: Option<&str>| control_plane::fleet::ApplyOptions {
        selection: control_plane::fleet::Selection {
            tenants: vec![tenant.to_owned()],
            plan: plan.map(str::to_owned),
            ..Default::default()
        },
        run: control_plane::fleet::RunOptions { concurrency: 2, ..Default::default() },
    };
    let report = control_plane::fleet::apply(&cp, &only("beta", None), "test", &NoProgress).await.unwrap();
    assert_eq!((report.tenants, report.up_to_date, report.failed), (1, 1, 0), "{report:?}");
    let report = control_plane::fleet::apply(&cp, &only("beta", Some("enterprise")), "test", &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.tenants, 0);
    let by_cluster = control_plane::fleet::ApplyOptions {
        selection: control_plane::fleet::Selection { cluster: Some("second".into()), ..Default::default() },
        run: Default::default(),
    };
    let report = control_plane::fleet::apply(&cp, &by_cluster, "test", &NoProgress).await.unwrap();
    assert_eq!(report.tenants, 1, "--cluster second selects beta only");

    // The plan reads every tenant's history, on each cluster: no drift, both clusters checked.
    let plan = control_plane::fleet::plan::plan(
        &cp,
        &control_plane::fleet::plan::PlanOptions {
            selection: Default::default(),
            concurrency: 2,
            drift: true,
        },
    )
    .await
    .unwrap();
    assert_eq!((plan.tenants, plan.pending_tenants), (2, 0), "{plan:?}");
    assert_eq!(plan.drift.as_deref().map(<[_]>::len), Some(0), "{plan:?}");
    let checked: Vec<&str> = plan.headroom.iter().map(|h| h.cluster.as_str()).collect();
    assert_eq!(checked, ["default", "second"]);

    // Deprovisioning works on the tenant's own cluster.
    operate(
        &cp,
        &Slug::parse("beta").unwrap(),
        &Operation::Deprovision { retention: Duration::ZERO },
        "test",
    )
    .await
    .unwrap();
    drain(&cp, beta.id, Duration::from_secs(60)).await.unwrap();
    let (_, body) = beta_sql.post(json!({"query": "SELECT 1"})).await;
    assert_eq!(body["error"]["code"], json!("tenant_not_found"));

    // No room anywhere: a clear refusal, nothing recorded.
    db.client().await.execute("UPDATE control.clusters SET capacity = 1", &[]).await.unwrap();
    create(&cp, "gamma").await; // takes the place beta freed
    let err = tenants::create(&cp, &request("delta"), "test").await.unwrap_err();
    assert!(matches!(err, CreateTenantError::NoCapacity), "{err}");
    assert_eq!(db.count("SELECT count(*) FROM control.tenants WHERE slug = 'delta'").await, 0);
    router.stop().await.unwrap();
}

struct NoProgress;

impl control_plane::fleet::Progress for NoProgress {
    fn start(&self, _total: usize) {}
    fn tenant_done(&self, _result: &control_plane::fleet::TenantResult) {}
    fn finish(&self) {}
}
