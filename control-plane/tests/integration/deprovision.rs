//! Deleting a tenant that is already being deprovisioned reschedules its drop (it is never
//! queued behind the first one), and a deprovisioning tenant can be restored before its drop.

use crate::{connect_as, create_active, password_of, sqlstate, start};
use control_plane::control_plane::ControlPlane;
use control_plane::jobs::runner::drain;
use control_plane::tenants::{request as operate, LifecycleError, Operation};
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{Slug, TenantStatus};
use testkit::{common_settings, SecretsFor, TestDb};

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// Requests `operation` and runs its due jobs here, as `tenantctl` does; a wait that does not
/// end within 30 s fails the test.
async fn run(cp: &ControlPlane, slug: &str, operation: Operation) -> TenantRecord {
    let slug = Slug::parse(slug).unwrap();
    let tenant = operate(cp, &slug, &operation, "test").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), drain(cp, tenant.id, Duration::from_secs(60)))
        .await
        .unwrap_or_else(|_| panic!("{} of {slug} still waiting after 30 s", operation.name()))
        .unwrap();
    let client = cp.catalog.get().await.unwrap();
    tenancy::catalog::tenant_by_id(&**client, tenant.id).await.unwrap().unwrap()
}

/// The tenant's queued deprovision jobs.
async fn queued_drops(db: &TestDb, tenant: &TenantRecord) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM control.jobs WHERE tenant_id = '{}' AND kind = 'deprovision' AND state = 'queued'",
        tenant.id
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_delete_reschedules_the_drop() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    let kept = run(&cp, "acme", Operation::Deprovision { retention: WEEK }).await;
    assert_eq!(kept.status, TenantStatus::Deprovisioning);
    assert_eq!(queued_drops(&db, &acme).await, 1);

    // Now: the drop is moved, not queued a second time behind the first.
    let deleted = run(&cp, "acme", Operation::Deprovision { retention: Duration::ZERO }).await;
    assert_eq!(deleted.status, TenantStatus::Deleted, "{:?}", deleted.last_error);
    assert_eq!(queued_drops(&db, &acme).await, 0);
    assert_eq!(
        db.tenants_count(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{}'",
            acme.schema_name
        ))
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_a_deprovisioning_tenant_back_as_it_was() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    let password = password_of(&cp, &acme).await;
    create_active(&cp, "bravo").await;
    run(&cp, "bravo", Operation::Suspend).await;

    // Restoring a live tenant is refused.
    let refused = operate(&cp, &Slug::parse("acme").unwrap(), &Operation::Restore, "test").await;
    assert!(matches!(refused, Err(LifecycleError::WrongState { .. })), "{refused:?}");

    for slug in ["acme", "bravo"] {
        run(&cp, slug, Operation::Deprovision { retention: WEEK }).await;
    }
    assert_eq!(sqlstate(connect_as(&db, acme.role_name.as_str(), &password).await), "28000");

    let restored = run(&cp, "acme", Operation::Restore).await;
    assert_eq!(restored.status, TenantStatus::Active);
    assert_eq!(queued_drops(&db, &acme).await, 0, "the drop is off the queue");
    connect_as(&db, acme.role_name.as_str(), &password).await.unwrap();
    let drop_after = db
        .count(&format!("SELECT count(deprovision_after) FROM control.tenants WHERE id = '{}'", acme.id))
        .await;
    assert_eq!(drop_after, 0);
    // A suspended tenant comes back suspended.
    assert_eq!(run(&cp, "bravo", Operation::Restore).await.status, TenantStatus::Suspended);
}
