//! `tenantctl tenants delete` and `restore` from the command line: deleting again reschedules
//! the drop (with or without `--no-wait`), a deprovisioning tenant is restored, and no wait is
//! unbounded (`--timeout`, exit code 7).

use e2e_tests::tenantctl;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tenancy::settings::CommonSettings;
use testkit::{common_settings, SecretsFor, TestDb};

/// Runs `tenantctl args`; its exit code and how long it took. Still running after 60 s fails
/// the test.
async fn cli(db: &TestDb, common: &CommonSettings, args: &[&str]) -> (ExitCode, Duration) {
    let started = Instant::now();
    let code = tokio::time::timeout(Duration::from_secs(60), tenantctl(args, db, common))
        .await
        .unwrap_or_else(|_| panic!("tenantctl {args:?} still running after 60 s"));
    (code, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_again_reschedules_restore_brings_back_and_waits_are_bounded() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cli = |args: &'static [&'static str]| cli(&db, &common, args);
    for args in [
        &["tenants", "create", "--slug", "acme", "--plan", "starter"][..],
        &["tenants", "create", "--slug", "bravo", "--plan", "starter"],
        &["tenants", "create", "--slug", "cobalt", "--plan", "starter"],
    ] {
        assert_eq!(cli(args).await.0, ExitCode::SUCCESS);
    }

    // Deleted with a week's retention, then again to drop it now: with --no-wait the drop is
    // rescheduled (due now), and without it the drop happens here.
    assert_eq!(cli(&["tenants", "delete", "acme", "--retention", "7d"]).await.0, ExitCode::SUCCESS);
    assert_eq!(e2e_tests::tenant_status(&db, "acme").await, "deprovisioning");
    assert_eq!(cli(&["tenants", "show", "acme"]).await.0, ExitCode::SUCCESS);
    assert_eq!(
        cli(&["tenants", "delete", "acme", "--retention", "0s", "--no-wait"]).await.0,
        ExitCode::SUCCESS
    );
    let drops: String = db
        .client()
        .await
        .query_one(
            "SELECT format('%s queued, %s due', count(*), count(*) FILTER (WHERE j.run_after <= now()))
               FROM control.jobs j JOIN control.tenants t ON t.id = j.tenant_id
              WHERE t.slug = 'acme' AND j.kind = 'deprovision' AND j.state = 'queued'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(drops, "1 queued, 1 due", "the queued drop is due now, not a second one behind it");
    assert_eq!(cli(&["tenants", "delete", "acme", "--retention", "0s"]).await.0, ExitCode::SUCCESS);
    assert_eq!(e2e_tests::tenant_status(&db, "acme").await, "deleted");

    // Restored before its drop.
    assert_eq!(cli(&["tenants", "delete", "bravo", "--retention", "1h"]).await.0, ExitCode::SUCCESS);
    assert_eq!(cli(&["tenants", "restore", "bravo"]).await.0, ExitCode::SUCCESS);
    assert_eq!(e2e_tests::tenant_status(&db, "bravo").await, "active");
    assert_eq!(cli(&["tenants", "restore", "bravo"]).await.0, ExitCode::from(5), "not deprovisioning");

    // A wait that cannot finish (cobalt's queued job is held by another session) ends at its
    // timeout with exit code 7; the work stays queued.
    assert_eq!(cli(&["tenants", "suspend", "cobalt", "--no-wait"]).await.0, ExitCode::SUCCESS);
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT j.id FROM control.jobs j JOIN control.tenants t ON t.id = j.tenant_id
          WHERE t.slug = 'cobalt' AND j.state = 'queued' FOR UPDATE OF j",
        &[],
    )
    .await
    .unwrap();
    let (code, took) = cli(&["tenants", "resume", "cobalt", "--timeout", "2s"]).await;
    assert_eq!(code, ExitCode::from(7));
    assert!(took < Duration::from_secs(10), "{took:?}");
    tx.rollback().await.unwrap();
    assert_eq!(cli(&["tenants", "resume", "cobalt"]).await.0, ExitCode::SUCCESS);
    assert_eq!(e2e_tests::tenant_status(&db, "cobalt").await, "active");
    // Waiting for the tenant itself (another transaction holds its row) is bounded too, and
    // nothing changes.
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM control.tenants WHERE slug = 'cobalt' FOR UPDATE", &[]).await.unwrap();
    let (code, took) = cli(&["tenants", "suspend", "cobalt", "--no-wait", "--timeout", "1s"]).await;
    assert_eq!(code, ExitCode::from(7));
    assert!(took < Duration::from_secs(10), "{took:?}");
    tx.rollback().await.unwrap();
    assert_eq!(e2e_tests::tenant_status(&db, "cobalt").await, "active");
}
