//! Fleet migrations and the clusters' template databases (enterprise tenants are cloned from
//! them): a run migrates exactly its selection, so a run for one tenant leaves the template
//! alone, and `plan` shows each template with its pending migrations and drift; a template that
//! fails to migrate fails the run, recorded in the ledger.

use crate::create_active;
use crate::fleet::{all, Quiet};
use control_plane::control_plane::ControlPlane;
use control_plane::fleet::plan::{plan, PlanOptions};
use control_plane::fleet::ApplyOptions;
use control_plane::fleet::Selection;
use control_plane::jobs::runner::drain;
use control_plane::tenants;
use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::TenantStatus;
use testkit::{common_settings, SecretsFor, TestDb};

struct Setup {
    db: TestDb,
    cp: Arc<ControlPlane>,
    migrations: tempfile::TempDir,
}

/// A control plane whose migrations directory holds V1 only, an enterprise tenant (which
/// creates the template database) and a schema tenant, both at V1.
async fn setup() -> Setup {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let migrations = tempfile::tempdir().unwrap();
    std::fs::copy(
        testkit::workspace_root().join("migrations/V1__init.sql"),
        migrations.path().join("V1__init.sql"),
    )
    .unwrap();
    let mut settings = crate::provisioning(&db);
    settings.migrations_dir = migrations.path().to_owned();
    let cp = ControlPlane::start(&common, &settings).await.unwrap();
    assert_eq!(enterprise(&cp, "initech").await.status, TenantStatus::Active);
    create_active(&cp, "alpha").await;
    Setup { db, cp, migrations }
}

/// Creates an enterprise tenant (a database of its own, cloned from the template) and runs
/// its provisioning here.
async fn enterprise(cp: &ControlPlane, slug: &str) -> TenantRecord {
    let tenant = tenants::create(cp, &crate::request(slug, "enterprise"), "test").await.unwrap();
    drain(cp, tenant.id, Duration::from_secs(60)).await.unwrap();
    let client = cp.catalog.get().await.unwrap();
    tenancy::catalog::tenant_by_id(&**client, tenant.id).await.unwrap().unwrap()
}

impl Setup {
    /// The newest version in the template database's history (its session is closed before
    /// this returns: a template cannot be cloned while anyone is connected to it).
    async fn template_version(&self) -> i64 {
        let url = format!("{}/{}_template", self.db.url.rsplit_once('/').unwrap().0, self.db.role_prefix);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(connection);
        let version: i64 = client
            .query_one("SELECT max(version)::int8 FROM app.refinery_schema_history", &[])
            .await
            .unwrap()
            .get(0);
        drop(client);
        task.await.unwrap().unwrap();
        version
    }

    /// The templates `migrate plan` shows for `selection`.
    async fn plan(&self, selection: Selection) -> Vec<control_plane::fleet::templates::TemplatePlan> {
        let options = PlanOptions { selection, concurrency: 2, drift: true };
        plan(&self.cp, &options).await.unwrap().templates
    }

    fn write(&self, file: &str, sql: &str) {
        std::fs::write(self.migrations.path().join(file), sql).unwrap();
    }
}

fn only(tenant: &str) -> ApplyOptions {
    ApplyOptions { selection: Selection { tenants: vec![tenant.to_owned()], ..Default::default() }, ..all(2) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_for_one_tenant_leaves_the_template_alone() {
    let s = setup().await;
    // A migration tried on one tenant first, then withdrawn from the directory.
    s.write("V2__trial.sql", "CREATE TABLE trial (id int);");
    let report = control_plane::fleet::apply(&s.cp, &only("alpha"), "test", &Quiet).await.unwrap();
    assert_eq!((report.state.as_str(), report.tenants, report.migrated), ("completed", 1, 1), "{report:?}");
    assert_eq!(s.template_version().await, 1, "the template is not part of a run for alpha");

    // The plan shows the template: behind, and moved only by a whole-fleet run.
    let for_alpha = s.plan(only("alpha").selection).await;
    assert_eq!(for_alpha.len(), 1, "{for_alpha:?}");
    let template = &for_alpha[0];
    assert_eq!(
        (template.state.as_str(), template.version, template.pending.as_slice()),
        ("present", Some(1), &[2][..])
    );
    assert_eq!((template.drift.as_deref(), template.moved), (None, false), "{template:?}");
    assert!(s.plan(Selection::default()).await[0].moved);
    let with_templates = Selection { templates: true, ..only("alpha").selection };
    assert!(s.plan(with_templates).await[0].moved);
    std::fs::remove_file(s.migrations.path().join("V2__trial.sql")).unwrap();

    // Enterprise tenants are still cloned from a template the directory agrees with.
    let hooli = enterprise(&s.cp, "hooli").await;
    assert_eq!(hooli.status, TenantStatus::Active, "{:?}", hooli.last_error);

    // A whole-fleet run moves the template; a migration withdrawn after that is the template's
    // drift in the plan (no database tenant can be cloned from it until it is fixed).
    s.write("V2__trial.sql", "CREATE TABLE trial (id int);");
    let report = control_plane::fleet::apply(&s.cp, &all(2), "test", &Quiet).await.unwrap();
    assert_eq!((report.state.as_str(), report.migrated), ("completed", 2), "{report:?}");
    assert_eq!(s.template_version().await, 2);
    std::fs::remove_file(s.migrations.path().join("V2__trial.sql")).unwrap();
    let templates = s.plan(Selection::default()).await;
    let drift = templates[0].drift.clone().unwrap_or_default();
    assert!(drift.contains("V2 (trial) is applied but not in the migrations directory"), "{templates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_fails_to_migrate_fails_the_run_in_the_ledger() {
    let s = setup().await;
    // Fails in the template database only (tenants' databases are named after them).
    s.write(
        "V2__fragile.sql",
        "DO $$ BEGIN IF current_database() LIKE '%template' THEN
             RAISE EXCEPTION 'the template refuses V2';
         END IF; END $$;",
    );
    let report = control_plane::fleet::apply(&s.cp, &all(2), "test", &Quiet).await.unwrap();
    assert_eq!(report.state, "failed", "{report:?}");
    let reason = report.halt_reason.clone().unwrap_or_default();
    assert!(reason.contains("template") && reason.contains("refuses V2"), "{report:?}");
    assert_eq!((report.migrated, report.not_started), (0, 2), "{report:?}");
    let client = s.cp.catalog.get().await.unwrap();
    let run = control_plane::catalog::fleet_runs::run(&**client, report.run_id).await.unwrap().unwrap();
    assert_eq!((run.state.as_str(), run.halt_reason), ("failed", Some(reason)));
    drop(client);
    assert_eq!(s.template_version().await, 1);

    // Fixed, then resumed: the template first, then the tenants.
    s.write("V2__fragile.sql", "CREATE TABLE sturdy (id int);");
    let resumed = control_plane::fleet::resume(&s.cp, report.run_id, None, "test", &Quiet).await;
    // The checksum of V2 changed, but no tenant has V2 yet: the run goes on.
    let resumed = resumed.unwrap();
    assert_eq!((resumed.state.as_str(), resumed.migrated), ("completed", 2), "{resumed:?}");
    assert_eq!(s.template_version().await, 2);
}
