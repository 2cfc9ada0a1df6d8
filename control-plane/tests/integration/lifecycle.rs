//! The tenant lifecycle after provisioning: suspend/resume, plan change, credential rotation,
//! deprovisioning and retry, each checked where it matters: in PostgreSQL.

use crate::{connect_as, create_active, password_of, provisioning, request, sqlstate, start};
use control_plane::control_plane::ControlPlane;
use control_plane::jobs::runner::drain;
use control_plane::tenants;
use control_plane::tenants::{request as operate, LifecycleError, Operation};
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{Slug, TenantStatus};
use testkit::{common_settings, services, SecretsFor, TestDb};

/// Requests `operation` and runs its jobs to the end, as `tenantctl` does.
async fn run(cp: &ControlPlane, slug: &str, operation: Operation) -> TenantRecord {
    let slug = Slug::parse(slug).unwrap();
    let tenant = operate(cp, &slug, &operation, "test").await.unwrap();
    drain(cp, tenant.id, Duration::from_secs(60)).await.unwrap();
    let client = cp.catalog.get().await.unwrap();
    tenancy::catalog::tenant_by_id(&**client, tenant.id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_locks_the_role_out_and_resumption_lets_it_back_in() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    let password = password_of(&cp, &acme).await;
    let open_session = connect_as(&db, acme.role_name.as_str(), &password).await.unwrap();

    let suspended = run(&cp, "acme", Operation::Suspend).await;
    assert_eq!(suspended.status, TenantStatus::Suspended);
    assert!(suspended.generation > acme.generation, "routers see the change");
    assert_eq!(sqlstate(connect_as(&db, acme.role_name.as_str(), &password).await), "28000", "cannot log in");
    assert!(open_session.simple_query("SELECT 1").await.is_err(), "open sessions were ended");
    // Suspending again changes nothing; resuming an active tenant neither.
    assert_eq!(run(&cp, "acme", Operation::Suspend).await.generation, suspended.generation);

    let resumed = run(&cp, "acme", Operation::Resume).await;
    assert_eq!(resumed.status, TenantStatus::Active);
    connect_as(&db, acme.role_name.as_str(), &password).await.unwrap();
    assert_eq!(
        db.count(
            "SELECT count(*) FROM control.audit_log WHERE action IN ('tenant.suspend', 'tenant.resume')"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_the_password_everywhere() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    let old = password_of(&cp, &acme).await;
    let rotated = run(&cp, "acme", Operation::RotateCredentials).await;
    let new = password_of(&cp, &rotated).await;
    assert_ne!(old, new);
    assert_eq!(
        sqlstate(connect_as(&db, acme.role_name.as_str(), &old).await),
        "28P01",
        "old password refused"
    );
    connect_as(&db, acme.role_name.as_str(), &new).await.unwrap();
    assert!(rotated.generation > acme.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_applies_the_new_template_without_moving_data() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    let client = connect_as(&db, acme.role_name.as_str(), &password_of(&cp, &acme).await).await.unwrap();
    client.execute("INSERT INTO users (email, name) VALUES ('a@acme', 'A')", &[]).await.unwrap();

    let pro = run(&cp, "acme", Operation::ChangePlan("pro".into())).await;
    assert_eq!((pro.plan.as_str(), pro.pool_size, pro.rate_limit_per_second), ("pro", 5, Some(100)));
    assert_eq!(pro.config["modules"], serde_json::json!(["projects", "tasks", "comments", "tags"]));
    let limit = db
        .count(&format!("SELECT rolconnlimit::bigint FROM pg_roles WHERE rolname = '{}'", acme.role_name))
        .await;
    assert_eq!(limit, 25);
    // The roles' settings follow the plan (pro: 4GB of temporary files), the read-only role's too.
    let temp_file_limit = format!(
        "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
          WHERE r.rolname IN ('{}', '{}') AND 'temp_file_limit=4GB' = ANY(s.setconfig)",
        acme.role_name,
        acme.role_name.reader()
    );
    assert_eq!(db.count(&temp_file_limit).await, 2);
    assert_eq!(db.tenants_count("SELECT count(*) FROM t_acme.users").await, 1, "data stays");

    let slug = Slug::parse("acme").unwrap();
    let err = operate(&cp, &slug, &Operation::ChangePlan("platinum".into()), "test").await.unwrap_err();
    assert!(matches!(err, LifecycleError::InvalidPlan(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovisioning_drops_schema_role_and_secret_and_keeps_a_tombstone() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let archive = tempfile::tempdir().unwrap();
    let mut settings = provisioning(&db);
    settings.archive_dir = Some(archive.path().to_owned());
    if let Some(bin) = &services().pg_bin {
        settings.pg_dump = std::path::Path::new(bin).join("pg_dump");
    }
    let cp = ControlPlane::start(&common, &settings).await.unwrap();
    let acme = create_active(&cp, "acme").await;
    let secret = acme.secret_name().unwrap();

    // With a retention period the data stays, but the tenant is gone for routers and the role
    // is locked out at once.
    let later = run(&cp, "acme", Operation::Deprovision { retention: Duration::from_secs(3600) }).await;
    assert_eq!(later.status, TenantStatus::Deprovisioning);
    assert_eq!(db.tenants_count("SELECT count(*) FROM pg_namespace WHERE nspname = 't_acme'").await, 1);
    let password = password_of(&cp, &acme).await;
    assert_eq!(sqlstate(connect_as(&db, acme.role_name.as_str(), &password).await), "28000");
    assert!(matches!(
        operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Resume, "test").await,
        Err(LifecycleError::WrongState { status: TenantStatus::Deprovisioning, .. })
    ));

    // The retention period ends (moved to now): everything goes, the tombstone stays.
    db.client()
        .await
        .execute("UPDATE control.jobs SET run_after = now() WHERE kind = 'deprovision'", &[])
        .await
        .unwrap();
    drain(&cp, acme.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(db.tenants_count("SELECT count(*) FROM pg_namespace WHERE nspname = 't_acme'").await, 0);
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{}'", acme.role_name)).await,
        0
    );
    assert!(cp.secrets.get(&secret).await.unwrap().is_none());
    assert_eq!(db.count("SELECT count(*) FROM control.domains").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM control.tenants WHERE status = 'deleted' AND deleted_at IS NOT NULL")
            .await,
        1
    );
    let dump = archive.path().join(format!("acme-{}.dump", acme.id));
    assert!(std::fs::metadata(&dump).unwrap().len() > 0, "archived with pg_dump first");

    // The slug is free again.
    let again = create_active(&cp, "acme").await;
    assert_ne!(again.id, acme.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tenant_can_be_retried_once_the_cause_is_fixed() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let broken = tempfile::tempdir().unwrap();
    std::fs::copy(
        testkit::workspace_root().join("migrations/V1__init.sql"),
        broken.path().join("V1__init.sql"),
    )
    .unwrap();
    std::fs::write(broken.path().join("V2__broken.sql"), "ALTER TABLE no_such_table ADD COLUMN x int;")
        .unwrap();
    let mut settings = provisioning(&db);
    settings.migrations_dir = broken.path().to_owned();
    let cp = ControlPlane::start(&common, &settings).await.unwrap();
    let tenant = tenants::create(&cp, &request("acme", "starter"), "test").await.unwrap();
    drain(&cp, tenant.id, Duration::from_secs(60)).await.unwrap();
    let client = cp.catalog.get().await.unwrap();
    let failed = tenancy::catalog::tenant_by_id(&**client, tenant.id).await.unwrap().unwrap();
    assert_eq!(failed.status, TenantStatus::Failed);
    assert_eq!(failed.failed_step.as_deref(), Some("migrations"));
    assert!(failed.last_error.as_deref().unwrap().contains("no_such_table"), "{:?}", failed.last_error);
    assert!(matches!(
        operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Suspend, "test").await,
        Err(LifecycleError::WrongState { status: TenantStatus::Failed, .. })
    ));

    std::fs::remove_file(broken.path().join("V2__broken.sql")).unwrap();
    let retried = run(&cp, "acme", Operation::Retry).await;
    assert_eq!(retried.status, TenantStatus::Active, "{:?}", retried.last_error);
    assert_eq!(db.tenants_count("SELECT count(*) FROM t_acme.refinery_schema_history").await, 1);
}
