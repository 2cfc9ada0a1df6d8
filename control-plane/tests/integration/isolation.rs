//! A tenant holding any advisory lock it likes delays none of the control plane's work: its
//! locks live in databases no tenant role can connect to (the catalog's, and each cluster's
//! control database), never in the database tenants share.

use crate::fleet::{all, fleet, Quiet};
use crate::{connect_as, password_of, request};
use control_plane::jobs::provision::provision;
use control_plane::jobs::runner::drain;
use control_plane::tenants;
use control_plane::tenants::{request as operate, Operation};
use std::time::Duration;
use tenancy::domain::{Slug, TenantStatus};

/// Every lock key the control plane uses, in the one-key form.
const SINGLE_KEYS: [i64; 5] = [
    control_plane::catalog::MIGRATION_LOCK_KEY,
    control_plane::clusters::TEMPLATE_LOCK,
    control_plane::clusters::CLUSTER_DDL_LOCK,
    control_plane::clusters::PLACEMENT_LOCK,
    control_plane::catalog::fleet_runs::RUN_LOCK,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_holding_any_advisory_lock_delays_no_control_plane_work() {
    let f = fleet().await;
    let alpha = &f.tenants[0];
    let tenant = connect_as(&f.db, alpha.role_name.as_str(), &password_of(&f.cp, alpha).await).await.unwrap();
    // Every key the control plane uses, and every tenant's migration lock, in both the form it
    // had when the shared database held them and the one it has now.
    let mut sql: Vec<String> =
        SINGLE_KEYS.iter().map(|key| format!("SELECT pg_advisory_lock({key})")).collect();
    let class = control_plane::tenant_migrations::TENANT_LOCK_CLASS;
    for other in &f.tenants {
        let schema = other.schema_name.as_str();
        for name in [schema.to_owned(), format!("{}.{schema}", f.db.tenants_database())] {
            sql.push(format!("SELECT pg_advisory_lock({class}, hashtext('{name}'))"));
        }
    }
    tenant.batch_execute(&sql.join(";")).await.unwrap();
    let held: i64 = tenant
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, i64::try_from(sql.len()).unwrap());

    // While it holds them: a fleet run, tenants provisioned (in the shared database, and in
    // a database of their own cloned from the template), lifecycle jobs. A time-out here is
    // a hang the locks caused.
    let work = async {
        let report = control_plane::fleet::apply(&f.cp, &all(2), "test", &Quiet).await.unwrap();
        assert_eq!((report.migrated, report.failed), (5, 0), "{:?}", report.results);
        for (slug, plan) in [("foxtrot", "starter"), ("golf", "enterprise")] {
            let requested = tenants::create(&f.cp, &request(slug, plan), "test").await.unwrap();
            assert_eq!(provision(&f.cp, requested.id).await.unwrap().status, TenantStatus::Active, "{slug}");
        }
        for operation in [Operation::Suspend, Operation::Resume] {
            let bravo = operate(&f.cp, &Slug::parse("bravo").unwrap(), &operation, "test").await.unwrap();
            drain(&f.cp, bravo.id, Duration::from_secs(60)).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("the control plane waited on a tenant's lock");
    for slug in ["alpha", "bravo", "charlie", "delta", "echo"] {
        assert_eq!(f.v2(slug).await, (1, true), "{slug}");
    }
}
