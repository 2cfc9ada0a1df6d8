//! Tenants with a database of their own (`database` isolation): cloned from the cluster's
//! migrated template, reachable only by their role, migrated and dropped as a whole.

use crate::{password_of, provisioning, sqlstate, start};
use control_plane::control_plane::ControlPlane;
use control_plane::jobs::runner::drain;
use control_plane::tenants::{self, TenantRequest};
use control_plane::tenants::{request as operate, Operation};
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{Isolation, Slug, TenantStatus};
use testkit::{common_settings, services, SecretsFor, TestDb};

async fn create(cp: &ControlPlane, slug: &str, plan: &str, isolation: Option<Isolation>) -> TenantRecord {
    let request = TenantRequest { isolation, ..TenantRequest::new(slug, plan) };
    let tenant = tenants::create(cp, &request, "test").await.unwrap();
    drain(cp, tenant.id, Duration::from_secs(60)).await.unwrap();
    let client = cp.catalog.get().await.unwrap();
    tenancy::catalog::tenant_by_id(&**client, tenant.id).await.unwrap().unwrap()
}

async fn connect(
    db: &TestDb,
    database: &str,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = db.database_url_as(database, user, password);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_tenant_gets_a_migrated_clone_that_only_its_role_can_enter() {
    let db = TestDb::create().await;
    // One set of settings (one secret key) for every control plane of this test.
    let common = common_settings(&db, SecretsFor::Local);
    let cp = start(&db, &common).await;
    // Enterprise plans have their own database; any plan may ask for one.
    let initech = create(&cp, "initech", "enterprise", None).await;
    let hooli = create(&cp, "hooli", "starter", Some(Isolation::Database)).await;
    let acme = create(&cp, "acme", "starter", None).await;
    assert_eq!(
        (initech.status, initech.isolation, hooli.isolation),
        (TenantStatus::Active, Isolation::Database, Isolation::Database)
    );
    assert_eq!(acme.isolation, Isolation::Schema);
    let initech_db = initech.database_name.clone().unwrap();
    assert_eq!(initech_db.as_str(), format!("{}_initech", db.role_prefix));
    assert_eq!(initech.schema_name.as_str(), "app");

    // Its own database: migrated (cloned from the template), seeded, usable with its password.
    let password = password_of(&cp, &initech).await;
    let client = connect(&db, initech_db.as_str(), initech.role_name.as_str(), &password).await.unwrap();
    client.execute("INSERT INTO users (email, name) VALUES ('a@initech', 'A')", &[]).await.unwrap();
    let seed: String =
        client.query_one("SELECT value FROM settings WHERE key = 'plan_features'", &[]).await.unwrap().get(0);
    assert_eq!(seed, "enterprise");
    assert_eq!(sqlstate(client.query("SELECT * FROM refinery_schema_history", &[]).await), "42501");
    assert_eq!(sqlstate(client.batch_execute("CREATE TABLE sneaky (i int)").await), "42501");
    assert_eq!(sqlstate(client.batch_execute("CREATE TABLE public.sneaky (i int)").await), "42501");
    // No anonymous code and no large objects: the template's lock-down comes with the clone.
    assert_eq!(sqlstate(client.batch_execute("DO $$ BEGIN PERFORM 1; END $$").await), "42501");
    assert_eq!(sqlstate(client.query("SELECT lo_create(0)", &[]).await), "42501");

    // Not another tenant's database, not the shared database, not the template.
    let hooli_db = hooli.database_name.clone().unwrap();
    assert_eq!(
        sqlstate(connect(&db, hooli_db.as_str(), initech.role_name.as_str(), &password).await),
        "42501"
    );
    assert_eq!(sqlstate(connect(&db, &db.name, initech.role_name.as_str(), &password).await), "42501");
    let template = format!("{}_template", db.role_prefix);
    assert_eq!(sqlstate(connect(&db, &template, initech.role_name.as_str(), &password).await), "42501");
    // And a schema tenant cannot enter it either.
    let acme_password = password_of(&cp, &acme).await;
    assert_eq!(
        sqlstate(connect(&db, initech_db.as_str(), acme.role_name.as_str(), &acme_password).await),
        "42501"
    );

    // A new migration reaches the template and every database tenant.
    let migrations = tempfile::tempdir().unwrap();
    std::fs::copy(
        testkit::workspace_root().join("migrations/V1__init.sql"),
        migrations.path().join("V1__init.sql"),
    )
    .unwrap();
    std::fs::write(
        migrations.path().join("V2__priority.sql"),
        "ALTER TABLE tasks ADD COLUMN priority int NOT NULL DEFAULT 0;",
    )
    .unwrap();
    let mut settings = provisioning(&db);
    settings.migrations_dir = migrations.path().to_owned();
    let cp2 = ControlPlane::start(&common, &settings).await.unwrap();
    let report = control_plane::fleet::apply(&cp2, &crate::fleet::all(2), "test", &Silent).await.unwrap();
    assert_eq!((report.tenants, report.migrated, report.failed), (3, 3, 0), "{:?}", report.results);
    client.query("SELECT priority FROM tasks", &[]).await.unwrap();
    let later = create(&cp2, "pied-piper", "enterprise", None).await;
    let later_history = {
        let admin =
            connect(&db, later.database_name.as_ref().unwrap().as_str(), "postgres", &admin_password())
                .await
                .unwrap();
        admin
            .query_one("SELECT max(version)::bigint FROM app.refinery_schema_history", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(later_history, 2, "cloned from the migrated template");

    // Deprovisioning drops the database and the role, after archiving it.
    let archive = tempfile::tempdir().unwrap();
    let mut settings = provisioning(&db);
    settings.archive_dir = Some(archive.path().to_owned());
    if let Some(bin) = &services().pg_bin {
        settings.pg_dump = std::path::Path::new(bin).join("pg_dump");
    }
    let cp3 = ControlPlane::start(&common, &settings).await.unwrap();
    drop(client);
    operate(
        &cp3,
        &Slug::parse("initech").unwrap(),
        &Operation::Deprovision { retention: Duration::ZERO },
        "test",
    )
    .await
    .unwrap();
    drain(&cp3, initech.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM pg_database WHERE datname = '{initech_db}'")).await,
        0
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{}'", initech.role_name)).await,
        0
    );
    assert!(
        std::fs::metadata(archive.path().join(format!("initech-{}.dump", initech.id))).unwrap().len() > 0
    );
}

fn admin_password() -> String {
    let url = &services().database_url;
    let config: tokio_postgres::Config = url.parse().unwrap();
    String::from_utf8(config.get_password().unwrap().to_vec()).unwrap()
}

struct Silent;

impl control_plane::fleet::Progress for Silent {
    fn start(&self, _total: usize) {}
    fn tenant_done(&self, _result: &control_plane::fleet::TenantResult) {}
    fn finish(&self) {}
}
