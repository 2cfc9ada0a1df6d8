//! Tenant moves: a tenant's data copied to another placement while clients write through the
//! router, then switched over with a short pause its requests wait out. Moves by dump are in
//! [`by_dump`].

mod by_dump;

use control_plane::moves::{self, Destination, MoveState};
use e2e_tests::pg_door::connect;
use e2e_tests::{provisioned, router_settings, spawn_router_with, Catalog};
use futures::StreamExt as _;
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
        static WRITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let client = connect(addr, slug, secret).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let slug = format!("{slug}-{}", WRITERS.fetch_add(1, Ordering::Relaxed));
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

/// The ids of the rows [`Writer`]s wrote in `schema`.users of the database `client` is on.
async fn written_ids(client: &tokio_postgres::Client, schema: &str) -> Vec<i64> {
    let sql = format!("SELECT id FROM \"{schema}\".users WHERE name = 'writer' ORDER BY id");
    client.query(sql.as_str(), &[]).await.unwrap().iter().map(|row| row.get(0)).collect()
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
    let ids = written_ids(&target, schema).await;
    let mut expected = acknowledged.clone();
    expected.sort_unstable();
    assert_eq!(ids, expected, "acknowledged rows on the target");
    // Table by table, the target has what the source (kept, read-only) has, and new rows get
    // new ids (the sequences came along).
    // (The old copy's schema has the move's retired name, so the tenant may move back.)
    let source = db.tenants_client().await;
    let kept = tenancy::domain::SchemaName::retired(&slug, started.id);
    let (before, after) = (fingerprint(&source, kept.as_str()).await, fingerprint(&target, schema).await);
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
    let source_ids = written_ids(&source, kept.as_str()).await;
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

/// What is left of move `id` of tenant `slug` on the server: its replication objects, the
/// roles under its names, and (`aborted`: it is not the tenant's now) its own database.
async fn leftovers(db: &testkit::TestDb, slug: &Slug, id: i64, aborted: bool) -> Vec<String> {
    let admin = db.client().await;
    let name = format!("{}_move_{id}", db.role_prefix);
    let copy = tenancy::domain::RoleName::for_move(&db.role_prefix, slug, id);
    let retired = tenancy::domain::RoleName::retired(&db.role_prefix, slug, id);
    let database = tenancy::domain::DatabaseName::for_move(&db.role_prefix, slug, id);
    let database = if aborted { database.as_str().to_owned() } else { String::new() };
    let rows = admin
        .query(
            "SELECT 'slot ' || slot_name FROM pg_replication_slots WHERE slot_name = $1
             UNION ALL SELECT 'subscription ' || subname FROM pg_subscription WHERE subname = $1
             UNION ALL SELECT 'role ' || rolname FROM pg_roles
                        WHERE rolname IN ($2, $3, $4, $5)
             UNION ALL SELECT 'database ' || datname FROM pg_database WHERE datname = $6",
            &[
                &name,
                &copy.as_str(),
                &copy.reader().as_str(),
                &retired.as_str(),
                &retired.reader().as_str(),
                &database,
            ],
        )
        .await
        .unwrap();
    let mut found: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let publications = db
        .tenants_client()
        .await
        .query("SELECT 'publication ' || pubname FROM pg_publication WHERE pubname = $1", &[&name])
        .await
        .unwrap();
    found.extend(publications.iter().map(|row| row.get::<_, String>(0)));
    found
}

/// `tenantctl tenants move <slug> --isolation database --drop-source --method <method>`, in a
/// process of its own killed (it exits at once, with status 137) right after `point`.
async fn move_killed_after(catalog: &Catalog, slug: &str, method: moves::MoveMethod, point: &str) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl-under-test"))
        .args(["tenants", "move", slug, "--isolation", "database", "--drop-source"])
        .args(["--method", method.as_str()])
        .args(e2e_tests::catalog_flags(&catalog.db, &catalog.common))
        .env(moves::CRASH_AFTER_VARIABLE, point)
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(137),
        "tenantctl was not killed after {point}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_killed_at_any_step_ends_fully_moved_or_fully_back_and_leaves_nothing_behind() {
    killed_at_each_point(moves::MoveMethod::Replication, &moves::CRASH_POINTS).await;
}

/// Per point of `points`: a tenant whose move by `method` is killed there then resumed, and
/// (before the point of no return) one whose move is killed there then aborted.
async fn killed_at_each_point(method: moves::MoveMethod, points: &[&'static str]) {
    let catalog = Catalog::create().await;
    let (db, cp) = (&catalog.db, &catalog.cp);
    let no_return = points.iter().position(|p| *p == "locked").unwrap();
    let mut cases = Vec::new();
    for (i, point) in points.iter().enumerate() {
        cases.push((format!("resumed{i}"), *point, false));
        if i < no_return {
            cases.push((format!("aborted{i}"), *point, true));
        }
    }
    let mut tenants = Vec::new();
    for (slug, ..) in &cases {
        let (tenant, secret) = provisioned(cp, slug, "pro").await;
        let client = db.tenants_client().await;
        client
            .execute(
                &format!(
                    "INSERT INTO \"{}\".users (email, name) VALUES ('before@example.test', 'before')",
                    tenant.schema_name.as_str()
                ),
                &[],
            )
            .await
            .unwrap();
        tenants.push((tenant, secret));
    }
    // A few at a time: each copy takes replication workers and slots of the shared server.
    futures::stream::iter(
        cases.iter().map(|(slug, point, _)| move_killed_after(&catalog, slug, method, point)),
    )
    .buffer_unordered(4)
    .collect::<Vec<()>>()
    .await;

    // Every killed move is still running; the aborts are asked for before any worker runs.
    for (slug, point, abort) in &cases {
        let slug = Slug::parse(slug).unwrap();
        let record = moves::of_tenant(cp, &slug, 1).await.unwrap().remove(0);
        assert_eq!(record.state, MoveState::Running, "{slug} after {point}");
        if *abort {
            moves::abort(cp, &slug, "test").await.unwrap_or_else(|e| panic!("{slug} after {point}: {e}"));
        } else if points.iter().position(|p| p == point).unwrap() >= no_return {
            let refused = moves::abort(cp, &slug, "test").await.unwrap_err();
            assert!(matches!(refused, moves::MoveError::Switched(_)), "{slug} after {point}: {refused}");
        }
    }
    for ((slug, point, abort), (before, secret)) in cases.iter().zip(&tenants) {
        let slug = Slug::parse(slug).unwrap();
        let record = moves::of_tenant(cp, &slug, 1).await.unwrap().remove(0);
        // The restart: a worker picks the move up where it was.
        control_plane::jobs::runner::drain(cp, before.id, Duration::from_secs(60)).await.unwrap();
        control_plane::jobs::runner::run_due(cp).await.unwrap();
        let record = moves::load(cp, record.id).await.unwrap();
        let now = tenancy::catalog::tenant_by_id(&db.client().await, before.id).await.unwrap().unwrap();
        assert!(now.paused_until.is_none(), "{slug} after {point}: still paused");
        assert!(now.writes_paused_until.is_none(), "{slug} after {point}: its writes are still paused");
        let (database, schema) = if *abort {
            assert_eq!(record.state, MoveState::Aborted, "{slug} after {point}: {:?}", record.last_error);
            assert_eq!(
                (now.isolation, now.database_name.clone()),
                (Isolation::Schema, None),
                "{slug} after {point}"
            );
            (db.tenants_database(), before.schema_name.as_str().to_owned())
        } else {
            assert_eq!(record.state, MoveState::Done, "{slug} after {point}: {:?}", record.last_error);
            assert_eq!(now.isolation, Isolation::Database, "{slug} after {point}");
            assert!(record.source_dropped_at.is_some(), "{slug} after {point}: the old copy was not dropped");
            (now.database_name.clone().unwrap().as_str().to_owned(), now.schema_name.as_str().to_owned())
        };
        // Its data, where it is now, reached with its own credentials (as its clients do).
        let url = db.database_url_as(&database, &secret.username, &secret.password);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{slug} after {point}: its credentials: {e}"));
        tokio::spawn(connection);
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".users WHERE name = 'before'"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 1, "{slug} after {point}");
        // Nothing of the move is left: no slot, subscription, publication, role or database of
        // its own (the old copy was dropped at once: --drop-source), nor the other side's
        // secret.
        assert_eq!(
            leftovers(db, &slug, record.id, *abort).await,
            Vec::<String>::new(),
            "{slug} after {point}"
        );
        let gone = if *abort { record.to.secret_ref.clone() } else { record.from.secret_ref.clone() };
        let gone = tenancy::secrets::SecretName::from_catalog(gone.unwrap());
        assert!(cp.secrets.get(&gone).await.unwrap().is_none(), "{slug} after {point}: secret {gone:?} left");
        if !*abort {
            // The old copy is gone with its roles.
            let old: i64 = db
                .tenants_client()
                .await
                .query_one(
                    "SELECT count(*) FROM pg_namespace WHERE nspname IN ($1, $2)",
                    &[
                        &before.schema_name.as_str(),
                        &tenancy::domain::SchemaName::retired(&slug, record.id).as_str(),
                    ],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(old, 0, "{slug} after {point}: the old schema is left");
        }
    }
}

/// Waits (at most a minute) until tenant `slug` has `isolation` and no running move.
async fn wait_for_isolation(
    cp: &control_plane::control_plane::ControlPlane,
    slug: &str,
    isolation: Isolation,
) -> tenancy::catalog::TenantRecord {
    let slug = Slug::parse(slug).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let client = cp.catalog.get().await.unwrap();
        let tenant = tenancy::catalog::tenant_by_slug(&**client, &slug).await.unwrap().unwrap();
        let moving = moves::of_tenant(cp, &slug, 1)
            .await
            .unwrap()
            .first()
            .is_some_and(|m| m.state == MoveState::Running);
        if tenant.isolation == isolation && !moving {
            return tenant;
        }
        assert!(tokio::time::Instant::now() < deadline, "{slug} is not {isolation:?} after a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_upgrade_to_enterprise_moves_the_tenant_into_its_own_database_and_back() {
    use control_plane::billing::send::TestEvent;
    let db = testkit::TestDb::create().await;
    let common = testkit::common_settings(&db, testkit::SecretsFor::Local);
    let control = e2e_tests::spawn_control_plane(&db, &common).await;
    let url = format!("{}/v1/webhooks/billing", control.url);
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .unwrap();
    let mut event = TestEvent::subscription_created("initech", "pro");
    event.subscription_id = Some("sub_initech_move".into());
    event.customer_id = Some("cus_initech_move".into());
    let deliver = |event: &TestEvent, at: i64| {
        let body = serde_json::to_vec(&event.body(at)).unwrap();
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(&url)
                .header(
                    "stripe-signature",
                    control_plane::billing::signature::sign(e2e_tests::WEBHOOK_SECRET, at, &body),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
        }
    };
    deliver(&event, now).await;
    let tenant = e2e_tests::wait_until_active(&control.cp, "initech", Duration::from_secs(30)).await;
    assert_eq!(tenant.isolation, Isolation::Schema);
    db.tenants_client()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{}\".users (email, name) VALUES ('kept@example.test', 'kept')",
                tenant.schema_name.as_str()
            ),
            &[],
        )
        .await
        .unwrap();
    let secret = control.cp.secrets.get(&tenant.secret_name().unwrap()).await.unwrap().unwrap();
    let kept = |database: String, schema: String| {
        let url = db.database_url_as(&database, &secret.username, &secret.password);
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let row = client
                .query_one(
                    &format!("SELECT count(*) FROM \"{schema}\".users WHERE email = 'kept@example.test'"),
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };

    // Upgraded: the plan's template isolates it in a database of its own.
    event.kind = "customer.subscription.updated".into();
    event.plan = "enterprise".into();
    deliver(&event, now + 1).await;
    let upgraded = wait_for_isolation(&control.cp, "initech", Isolation::Database).await;
    assert_eq!(upgraded.plan.as_str(), "enterprise");
    let database = upgraded.database_name.clone().unwrap();
    assert_eq!(kept(database.as_str().to_owned(), upgraded.schema_name.as_str().to_owned()).await, 1);

    // Downgraded: back into a schema of the shared database.
    event.plan = "pro".into();
    deliver(&event, now + 2).await;
    let downgraded = wait_for_isolation(&control.cp, "initech", Isolation::Schema).await;
    assert_eq!(downgraded.database_name, None);
    assert_eq!(kept(db.tenants_database(), downgraded.schema_name.as_str().to_owned()).await, 1);
    control.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_drained_under_light_load_then_removed() {
    let second = testkit::PgServer::start().await;
    let Catalog { db, common, cp } = Catalog::create().await;
    control_plane::clusters::add(&cp, "second", &second.url("postgres").into(), 100, "test").await.unwrap();
    // Every tenant on the second cluster: the default one takes none meanwhile.
    let admin = db.client().await;
    admin.execute("UPDATE control.clusters SET draining = true WHERE name = 'default'", &[]).await.unwrap();
    let mut tenants = Vec::new();
    for i in 0..20 {
        let (tenant, secret) = provisioned(&cp, &format!("t{i:02}"), "starter").await;
        assert_eq!(tenant.cluster, "second");
        tenants.push((tenant, secret));
    }
    admin.execute("UPDATE control.clusters SET draining = false WHERE name = 'default'", &[]).await.unwrap();
    db.lift_rate_limits().await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let writer = Writer::start(router.pg_addr.unwrap(), "t00", &tenants[0].1).await;

    // Not removable before it is drained, nor while it holds tenants.
    let refused = control_plane::clusters::remove(&cp, "second", "test").await.unwrap_err();
    assert!(matches!(refused, control_plane::clusters::ClusterChangeError::Invalid(_)), "{refused}");
    admin.execute("UPDATE control.clusters SET draining = true WHERE name = 'second'", &[]).await.unwrap();
    let refused = control_plane::clusters::remove(&cp, "second", "test").await.unwrap_err();
    assert!(matches!(refused, control_plane::clusters::ClusterChangeError::NotEmpty { .. }), "{refused}");
    let settings = control_plane::clusters::DrainSettings {
        to: None,
        concurrency: 4,
        drop_source: true,
        method: moves::MoveMethod::Replication,
    };
    let progress = std::sync::Mutex::new(Vec::new());
    let drained = control_plane::clusters::drain(&cp, "second", &settings, |t| {
        progress.lock().unwrap().push(t.slug.clone());
    })
    .await
    .unwrap();
    assert_eq!(progress.lock().unwrap().len(), 20, "a line per tenant");
    let not_moved: Vec<_> = drained.iter().filter(|t| t.outcome != "moved").collect();
    assert!(not_moved.is_empty(), "{not_moved:?}");
    let (acknowledged, errors) = writer.finish().await;
    assert!(errors.is_empty(), "the writer saw errors: {errors:?}");

    // All on the default cluster, with their data; the second one is empty and can go.
    for (before, secret) in &tenants {
        let now = tenancy::catalog::tenant_by_id(&admin, before.id).await.unwrap().unwrap();
        assert_eq!(now.cluster, "default", "{}", before.slug);
        let url = db.database_url_as(&db.tenants_database(), &secret.username, &secret.password);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let written: i64 =
            client.query_one("SELECT count(*) FROM users WHERE name = 'writer'", &[]).await.unwrap().get(0);
        let expected = if before.slug.as_str() == "t00" { acknowledged.len() } else { 0 };
        assert_eq!(written, i64::try_from(expected).unwrap(), "{}", before.slug);
    }
    let on_second: i64 = tokio_postgres::connect(&second.url("postgres"), tokio_postgres::NoTls)
        .await
        .map(|(client, connection)| {
            tokio::spawn(connection);
            client
        })
        .unwrap()
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname ~ $1) + (SELECT count(*) FROM pg_replication_slots)",
            &[&format!("^{}_(_ro_)?t[0-9]", db.role_prefix)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_second, 0, "tenant roles or replication slots left on the drained cluster");
    // Opened again (as `kubectl uncordon` does a node): it takes tenants again, and cannot be
    // removed until it is drained again.
    assert_eq!(
        e2e_tests::tenantctl(&["clusters", "undrain", "second"], &db, &common).await,
        std::process::ExitCode::SUCCESS
    );
    let draining = |clusters: Vec<control_plane::clusters::ClusterInfo>| {
        clusters.into_iter().find(|c| c.name == "second").map(|c| c.draining)
    };
    assert_eq!(draining(control_plane::clusters::list(&cp).await.unwrap()), Some(false));
    let refused = control_plane::clusters::remove(&cp, "second", "test").await.unwrap_err();
    assert!(matches!(refused, control_plane::clusters::ClusterChangeError::Invalid(_)), "{refused}");
    assert_eq!(
        e2e_tests::tenantctl(&["clusters", "undrain", "nowhere"], &db, &common).await,
        std::process::ExitCode::from(4),
        "an unknown cluster"
    );
    assert!(control_plane::clusters::drain(&cp, "second", &settings, |_| {}).await.unwrap().is_empty());
    control_plane::clusters::remove(&cp, "second", "test").await.unwrap();
    let listed: Vec<String> =
        control_plane::clusters::list(&cp).await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(listed, vec!["default".to_owned()]);
    router.stop().await.unwrap();
}
