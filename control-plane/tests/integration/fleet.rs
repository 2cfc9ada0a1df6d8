//! Fleet migrations with the ledger: a failing tenant is recorded and resumed, a tenant whose
//! table is locked is retried after its lock timeout without delaying the others, a second run
//! is refused while one is going, and a run whose process dies is resumed without migrating
//! anyone twice. (Waves, drift, `plan` and tenants created during a run: `fleet_waves.rs`.)

use crate::{create_active, provisioning, sqlstate};
use control_plane::catalog::fleet_runs;
use control_plane::control_plane::ControlPlane;
use control_plane::fleet::{ApplyOptions, FleetError, ItemState, RunOptions};
use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use testkit::{common_settings, SecretsFor, TestDb};

pub struct Quiet;

impl control_plane::fleet::Progress for Quiet {
    fn start(&self, _more: usize) {}
    fn tenant_done(&self, _result: &control_plane::fleet::TenantResult) {}
    fn finish(&self) {}
}

pub struct Fleet {
    pub db: TestDb,
    pub cp: Arc<ControlPlane>,
    pub tenants: Vec<TenantRecord>,
    pub migrations: tempfile::TempDir,
}

/// Five tenants at V1, then a V2 (a table and a column) added to the migrations directory.
pub async fn fleet() -> Fleet {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let migrations = tempfile::tempdir().unwrap();
    std::fs::copy(
        testkit::workspace_root().join("migrations/V1__init.sql"),
        migrations.path().join("V1__init.sql"),
    )
    .unwrap();
    let mut settings = provisioning(&db);
    settings.migrations_dir = migrations.path().to_owned();
    let cp = ControlPlane::start(&common, &settings).await.unwrap();
    let mut tenants = Vec::new();
    for slug in ["alpha", "bravo", "charlie", "delta", "echo"] {
        tenants.push(create_active(&cp, slug).await);
    }
    std::fs::write(
        migrations.path().join("V2__audit.sql"),
        "CREATE TABLE audit (id bigint PRIMARY KEY, note text NOT NULL);\n\
         ALTER TABLE tasks ADD COLUMN priority int NOT NULL DEFAULT 0;",
    )
    .unwrap();
    Fleet { db, cp, tenants, migrations }
}

pub fn all(concurrency: usize) -> ApplyOptions {
    ApplyOptions { run: RunOptions { concurrency, ..Default::default() }, ..Default::default() }
}

pub fn with(run: RunOptions) -> ApplyOptions {
    ApplyOptions { run, ..Default::default() }
}

impl Fleet {
    pub fn schema(&self, slug: &str) -> String {
        self.tenants.iter().find(|t| t.slug.as_str() == slug).unwrap().schema_name.to_string()
    }

    /// How many times V2 is in the tenant's history (0 or 1), and whether its column exists.
    pub async fn v2(&self, slug: &str) -> (i64, bool) {
        let schema = self.schema(slug);
        let recorded = self
            .db
            .tenants_count(&format!(
                "SELECT count(*) FROM \"{schema}\".refinery_schema_history WHERE version = 2"
            ))
            .await;
        let column = self
            .db
            .tenants_count(&format!(
                "SELECT count(*) FROM information_schema.columns
                  WHERE table_schema = '{schema}' AND table_name = 'tasks' AND column_name = 'priority'"
            ))
            .await;
        (recorded, column == 1)
    }

    /// Another session holding `slug`'s `tasks` table (ACCESS EXCLUSIVE) until it rolls back.
    pub async fn lock_tasks_of(&self, slug: &str) -> tokio_postgres::Client {
        let blocker = self.db.tenants_client().await;
        let schema = self.schema(slug);
        blocker
            .batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".tasks IN ACCESS EXCLUSIVE MODE"))
            .await
            .unwrap();
        blocker
    }

    pub async fn items(&self, run: uuid::Uuid) -> Vec<fleet_runs::Item> {
        let client = self.cp.catalog.get().await.unwrap();
        fleet_runs::items(&**client, run, None).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_tenant_fails_alone_and_resume_finishes_it_after_the_fix() {
    let f = fleet().await;
    let bravo = f.schema("bravo");
    let admin = f.db.tenants_client().await;
    admin.batch_execute(&format!("CREATE TABLE \"{bravo}\".audit (x int)")).await.unwrap();

    let report = control_plane::fleet::apply(&f.cp, &all(2), "test", &Quiet).await.unwrap();
    assert_eq!((report.tenants, report.migrated, report.failed), (5, 4, 1), "{:?}", report.results);
    assert_eq!(report.state, "failed");
    let items = f.items(report.run_id).await;
    for item in &items {
        if item.slug == "bravo" {
            assert_eq!(item.state, control_plane::fleet::ItemState::Failed);
            assert!(item.error.as_deref().unwrap_or_default().contains("already exists"), "{item:?}");
        } else {
            assert_eq!((item.state.as_str(), item.to_version, item.from_version), ("done", Some(2), Some(1)));
        }
    }
    // All or nothing: bravo's V2 left no column behind.
    assert_eq!(f.v2("bravo").await, (0, false));
    assert_eq!(f.v2("alpha").await, (1, true));

    // Fixed, then resumed: only bravo is migrated.
    admin.batch_execute(&format!("DROP TABLE \"{bravo}\".audit")).await.unwrap();
    let resumed = control_plane::fleet::resume(&f.cp, report.run_id, Some(2), "test", &Quiet).await.unwrap();
    assert_eq!((resumed.tenants, resumed.migrated, resumed.failed), (1, 1, 0), "{:?}", resumed.results);
    assert_eq!(resumed.state, "completed");
    for slug in ["alpha", "bravo", "charlie", "delta", "echo"] {
        assert_eq!(f.v2(slug).await, (1, true), "{slug}");
    }
    let bravo_item = f.items(report.run_id).await.into_iter().find(|i| i.slug == "bravo").unwrap();
    assert_eq!((bravo_item.state.as_str(), bravo_item.attempts), ("done", 2));

    // A run that is complete has nothing left to do; an unknown one is refused.
    let again = control_plane::fleet::resume(&f.cp, report.run_id, None, "test", &Quiet).await.unwrap();
    assert_eq!(again.tenants, 0);
    assert!(matches!(
        control_plane::fleet::resume(&f.cp, uuid::Uuid::new_v4(), None, "test", &Quiet).await,
        Err(FleetError::NoSuchRun(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_and_a_killed_run_resumes() {
    let f = fleet().await;
    // Another session holds a lock on charlie's table for as long as it likes.
    let blocker = f.lock_tasks_of("charlie").await;

    let run = {
        let cp = f.cp.clone();
        // No lock timeout: charlie waits for as long as the blocker holds its table.
        let options = with(RunOptions { concurrency: 2, lock_timeout_ms: 0, ..Default::default() });
        tokio::spawn(async move { control_plane::fleet::apply(&cp, &options, "test", &Quiet).await })
    };
    // The other four finish while charlie waits.
    let run_id = loop {
        let client = f.cp.catalog.get().await.unwrap();
        if let Some(latest) = fleet_runs::latest_run(&**client).await.unwrap() {
            let items = f.items(latest.id).await;
            let done = items.iter().filter(|i| i.state == control_plane::fleet::ItemState::Done).count();
            let waiting = items
                .iter()
                .any(|i| i.slug == "charlie" && i.state == control_plane::fleet::ItemState::Running);
            if done == 4 && waiting {
                break latest.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // One run at a time: a second one is refused, naming the first.
    match control_plane::fleet::apply(&f.cp, &all(2), "test", &Quiet).await {
        Err(FleetError::Busy(Some(id))) => assert_eq!(id, run_id),
        other => panic!("expected the second run to be refused, got {other:?}"),
    }

    // The process dies: its task stops and its connections go (PostgreSQL rolls back what
    // they had open, as it does for a killed process).
    run.abort();
    assert!(run.await.is_err());
    admin_terminate_migrators(&f.db).await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(f.v2("charlie").await, (0, false), "nothing half-applied");

    let resumed = control_plane::fleet::resume(&f.cp, run_id, Some(2), "test", &Quiet).await.unwrap();
    assert_eq!((resumed.tenants, resumed.migrated, resumed.failed), (1, 1, 0), "{:?}", resumed.results);
    assert_eq!(resumed.state, "completed");
    for slug in ["alpha", "bravo", "charlie", "delta", "echo"] {
        assert_eq!(f.v2(slug).await, (1, true), "{slug}: migrated once");
    }
    assert_eq!(sqlstate(f.db.client().await.query("SELECT 1", &[]).await), "succeeded");
}

/// Ends every connection the control plane opened to this test's databases, as a process exit
/// would (other tests' databases are left alone).
async fn admin_terminate_migrators(db: &TestDb) {
    db.client()
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'tenantctl' AND pid <> pg_backend_pid()
                AND (datname = current_database() OR starts_with(datname, $1))",
            &[&format!("{}_", db.role_prefix)],
        )
        .await
        .unwrap();
}

/// Waits until `check` holds for the latest run's items.
pub async fn wait_for_items(
    f: &Fleet,
    what: &str,
    check: impl Fn(&[fleet_runs::Item]) -> bool,
) -> uuid::Uuid {
    wait_for_run_items(f, None, what, check).await
}

/// [`wait_for_items`] for a run other than `earlier`.
pub async fn wait_for_run_items(
    f: &Fleet,
    earlier: Option<uuid::Uuid>,
    what: &str,
    check: impl Fn(&[fleet_runs::Item]) -> bool,
) -> uuid::Uuid {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let latest = {
            let client = f.cp.catalog.get().await.unwrap();
            fleet_runs::latest_run(&**client).await.unwrap()
        };
        if let Some(latest) = latest.filter(|run| Some(run.id) != earlier) {
            if check(&f.items(latest.id).await) {
                return latest.id;
            }
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_tenant_is_retried_after_its_lock_timeout_and_never_delays_the_others() {
    let f = fleet().await;
    let blocker = f.lock_tasks_of("charlie").await;

    // Locked through every attempt: reported as lock_timeout, the others migrated.
    let short = RunOptions { concurrency: 2, lock_timeout_ms: 100, retries: 1, ..Default::default() };
    let report = control_plane::fleet::apply(&f.cp, &with(short), "test", &Quiet).await.unwrap();
    assert_eq!((report.migrated, report.lock_timeout, report.failed), (4, 1, 0), "{:?}", report.results);
    assert_eq!(report.state, "failed");
    let item = f.items(report.run_id).await.into_iter().find(|i| i.slug == "charlie").unwrap();
    assert_eq!((item.state.as_str(), item.attempts), ("lock_timeout", 2), "{item:?}");
    assert!(item.error.as_deref().unwrap_or_default().contains("55P03"), "{item:?}");
    assert_eq!(f.v2("charlie").await, (0, false));

    // A new run retries charlie, who waits at the back of the queue; once the lock goes, it is
    // migrated.
    let patient = RunOptions { concurrency: 2, lock_timeout_ms: 100, retries: 20, ..Default::default() };
    let run = {
        let cp = f.cp.clone();
        tokio::spawn(async move { control_plane::fleet::apply(&cp, &with(patient), "test", &Quiet).await })
    };
    wait_for_run_items(&f, Some(report.run_id), "charlie retried", |items| {
        items.iter().any(|i| {
            i.slug == "charlie"
                && i.attempts >= 2
                && i.error.as_deref().is_some_and(|e| e.contains("lock timeout"))
        })
    })
    .await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.tenants, report.migrated, report.state.as_str()), (5, 1, "completed"), "{report:?}");
    let charlie_result = &report.results[0];
    assert_eq!(charlie_result.state, ItemState::Done);
    assert!(charlie_result.attempts >= 2, "retried: {charlie_result:?}");
    assert_eq!(f.v2("charlie").await, (1, true));
}

/// A finished run lets go of the run lock before it returns: a script that runs `apply` twice
/// in a row never gets "a run is in progress" from the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_right_after_another_finds_the_lock_free() {
    let f = fleet().await;
    for i in 0..30 {
        match control_plane::fleet::apply(&f.cp, &all(2), "test", &Quiet).await {
            Ok(report) => assert_eq!(report.failed, 0, "run {i}: {:?}", report.results),
            Err(e) => panic!("run {i} right after the previous one: {e}"),
        }
    }
}
