//! Tenant moves: a tenant's data copied to another placement while clients write through the
//! router, then switched over with a short pause its requests wait out.

use control_plane::moves::{self, Destination, MoveState};
use e2e_tests::pg_door::connect;
use e2e_tests::{provisioned, router_settings, spawn_router_with, Catalog};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenancy::domain::{Isolation, Slug};
use tenancy::secrets::DbCredentials;

/// A client writing one row after another through the router's PostgreSQL door, until told to
/// stop: the ids PostgreSQL acknowledged, and every error it saw.
struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<i64>, Vec<String>)>,
}

impl Writer {
    async fn start(addr: std::net::SocketAddr, slug: &str, secret: &DbCredentials) -> Self {
        let client = connect(addr, slug, secret).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let slug = slug.to_owned();
        let task = tokio::spawn(async move {
            let (mut acknowledged, mut errors) = (Vec::new(), Vec::new());
            let mut n = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                n += 1;
                let inserted = client
                    .query_one(
                        "INSERT INTO users (email, name) VALUES ($1, 'writer') RETURNING id",
                        &[&format!("{slug}-writer-{n}@example.test")],
                    )
                    .await;
                match inserted {
                    Ok(row) => acknowledged.push(row.get::<_, i64>(0)),
                    Err(err) => errors.push(tenancy::pg::describe_error(&err)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acknowledged, errors)
        });
        Self { stop, task }
    }

    async fn finish(self) -> (Vec<i64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Row count and a checksum of every row of each of the tenant's tables (but its migration
/// history), in `schema` of the database `client` is on.
async fn fingerprint(client: &tokio_postgres::Client, schema: &str) -> Vec<(String, i64, String)> {
    let tables: Vec<String> = client
        .query(
            "SELECT relname::text FROM pg_class
              WHERE relnamespace = to_regnamespace($1) AND relkind = 'r' AND relname NOT LIKE 'refinery%'
              ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let sql = format!(
            "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM \"{schema}\".\"{table}\" t"
        );
        let row = client.query_one(sql.as_str(), &[]).await.unwrap();
        out.push((table, row.get(0), row.get(1)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_into_its_own_database_while_a_client_writes_through_the_router() {
    let Catalog { db, common, cp } = Catalog::create().await;
    let (acme, acme_secret) = provisioned(&cp, "acme", "pro").await;
    let (globex, globex_secret) = provisioned(&cp, "globex", "pro").await;
    db.lift_rate_limits().await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let addr = router.pg_addr.unwrap();
    let acme_writer = Writer::start(addr, "acme", &acme_secret).await;
    let globex_writer = Writer::start(addr, "globex", &globex_secret).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let slug = Slug::parse("acme").unwrap();
    let destination = Destination { isolation: Some(Isolation::Database), ..Destination::default() };
    let started = moves::start(&cp, &slug, &destination, "test").await.unwrap();
    assert_eq!(started.state, MoveState::Running);
    // A second move of the same tenant is refused while this one runs.
    let again = moves::start(&cp, &slug, &destination, "test").await.unwrap_err();
    assert!(matches!(again, moves::MoveError::Running { .. }), "{again}");
    control_plane::jobs::runner::drain(&cp, acme.id, Duration::from_secs(60)).await.unwrap();
    let done = moves::load(&cp, started.id).await.unwrap();
    assert_eq!(done.state, MoveState::Done, "{:?}", done.last_error);
    // The client goes on writing to the tenant where it is now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (acknowledged, errors) = acme_writer.finish().await;
    let (globex_acknowledged, globex_errors) = globex_writer.finish().await;
    assert!(errors.is_empty(), "acme's writer saw errors: {errors:?}");
    assert!(globex_errors.is_empty(), "globex's writer saw errors: {globex_errors:?}");
    assert!(acknowledged.len() > 20, "too few writes to tell: {}", acknowledged.len());

    // The catalog: acme is in its own database, same role name, paused no more.
    let admin = db.client().await;
    let moved = tenancy::catalog::tenant_by_id(&admin, acme.id).await.unwrap().unwrap();
    assert_eq!(moved.isolation, Isolation::Database);
    assert_eq!(moved.database_name, done.to.database);
    assert_eq!(moved.role_name, acme.role_name);
    assert!(moved.paused_until.is_none());
    assert!(moved.generation > acme.generation);
    assert!(done.pause_ms.is_some_and(|ms| ms >= 0), "{:?}", done.pause_ms);

    // Every acknowledged row is in the new database exactly once.
    let database = moved.database_name.clone().unwrap();
    let target = db.database_client(database.as_str()).await;
    let schema = moved.schema_name.as_str();
    let ids: Vec<i64> = target
        .query(&format!("SELECT id FROM \"{schema}\".users WHERE name = 'writer' ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut expected = acknowledged.clone();
    expected.sort_unstable();
    assert_eq!(ids, expected, "acknowledged rows on the target");
    // Table by table, the target has what the source (kept, read-only) has, and new rows get
    // new ids (the sequences came along).
    let source = db.tenants_client().await;
    let (before, after) =
        (fingerprint(&source, acme.schema_name.as_str()).await, fingerprint(&target, schema).await);
    let users_after = after.iter().find(|(t, ..)| t == "users").unwrap().1;
    let users_before = before.iter().find(|(t, ..)| t == "users").unwrap().1;
    assert!(users_after >= users_before);
    let last_acknowledged = *expected.last().unwrap();
    let fresh = connect(addr, "acme", &acme_secret).await.unwrap();
    let id: i64 = fresh
        .query_one("INSERT INTO users (email, name) VALUES ('after@example.test', 'after') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert!(id > last_acknowledged, "new id {id} after {last_acknowledged}: the sequence did not come along");
    // Where the source has rows the client wrote before the switch, they match.
    let source_ids: Vec<i64> = source
        .query(
            &format!(
                "SELECT id FROM \"{}\".users WHERE name = 'writer' ORDER BY id",
                acme.schema_name.as_str()
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(ids.starts_with(&source_ids), "the target lacks rows the source has");
    for ((table, count, sum), (table_after, count_after, sum_after)) in before.iter().zip(&after) {
        assert_eq!(table, table_after);
        if table != "users" {
            assert_eq!((count, sum), (count_after, sum_after), "table {table}");
        }
    }

    // The tenant's credentials reach the new database only; its old role cannot log in.
    let old = tokio_postgres::connect(
        &db.database_url_as(&db.tenants_database(), &acme_secret.username, &acme_secret.password),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(old.is_err(), "the tenant's credentials still open the old copy");
    let retired = tenancy::domain::RoleName::retired(&db.role_prefix, &slug, started.id);
    let can_login: bool = admin
        .query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", &[&retired.as_str()])
        .await
        .unwrap()
        .get(0);
    assert!(!can_login, "the old role can log in");
    // Nothing of the move's replication is left.
    let name = format!("{}_move_{}", db.role_prefix, started.id);
    let leftovers: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)
                  + (SELECT count(*) FROM pg_subscription WHERE subname = $1)",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);

    // Globex saw nothing: its rows are all there, where they were.
    let globex_rows: i64 = source
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".users WHERE name = 'writer'", globex.schema_name.as_str()),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(globex_rows, i64::try_from(globex_acknowledged.len()).unwrap());
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_move_leaves_the_tenant_where_it_was_and_nothing_behind() {
    let Catalog { db, common: _, cp } = Catalog::create().await;
    let (acme, _) = provisioned(&cp, "acme", "pro").await;
    let slug = Slug::parse("acme").unwrap();
    let destination = Destination { isolation: Some(Isolation::Database), ..Destination::default() };
    let started = moves::start(&cp, &slug, &destination, "test").await.unwrap();
    moves::abort(&cp, &slug, "test").await.unwrap();
    control_plane::jobs::runner::drain(&cp, acme.id, Duration::from_secs(60)).await.unwrap();
    let aborted = moves::load(&cp, started.id).await.unwrap();
    assert_eq!(aborted.state, MoveState::Aborted);
    let admin = db.client().await;
    let now = tenancy::catalog::tenant_by_id(&admin, acme.id).await.unwrap().unwrap();
    assert_eq!(
        (now.isolation, now.database_name.clone(), now.role_name.clone()),
        (acme.isolation, None, acme.role_name.clone())
    );
    let copy_role = tenancy::domain::RoleName::for_move(&db.role_prefix, &slug, started.id);
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1)
                  + (SELECT count(*) FROM pg_database WHERE datname = $2)",
            &[&copy_role.as_str(), &started.to.database.as_ref().unwrap().as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the aborted move left its role or database");
    // Moving it for real afterwards works.
    let again = moves::start(&cp, &slug, &destination, "test").await.unwrap();
    control_plane::jobs::runner::drain(&cp, acme.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(moves::load(&cp, again.id).await.unwrap().state, MoveState::Done);
}
