//! Tenant moves by `pg_dump` and `pg_restore` (`--method dump`): from a server without logical
//! replication, with the tenant's writes held in the routers while its data is copied.

use super::{fingerprint, killed_at_each_point, leftovers, written_ids, Writer};
use control_plane::moves::{self, Destination, MoveState};
use e2e_tests::pg_door::connect;
use e2e_tests::{provisioned, router_settings, spawn_router_with, Catalog};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenancy::domain::{Isolation, Slug};
use tenancy::secrets::DbCredentials;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_by_dump_killed_at_any_step_ends_fully_moved_or_fully_back_and_leaves_nothing_behind() {
    killed_at_each_point(moves::MoveMethod::Dump, &moves::DUMP_CRASH_POINTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_by_dump_without_pg_dump_is_refused_before_it_starts() {
    let Catalog { db, common, cp } = Catalog::create().await;
    provisioned(&cp, "acme", "pro").await;
    let missing = "/nonexistent/pg_dump";
    let args =
        ["tenants", "move", "acme", "--isolation", "database", "--method", "dump", "--pg-dump", missing];
    let code = e2e_tests::tenantctl(&args, &db, &common).await;
    assert_eq!(code, std::process::ExitCode::from(3), "misconfigured: exit code 3");
    let slug = Slug::parse("acme").unwrap();
    assert!(moves::of_tenant(&cp, &slug, 1).await.unwrap().is_empty(), "a move was recorded");
    let destination = Destination { method: moves::MoveMethod::Dump, ..Destination::default() };
    let refused =
        moves::start(&cp, &slug, &Destination { cluster: Some("nowhere".into()), ..destination }, "test")
            .await
            .unwrap_err();
    assert!(matches!(refused, moves::MoveError::UnknownCluster(_)), "{refused}");
}

/// An operator API call with a token: its status and JSON body.
async fn api_call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// A client reading through the router's PostgreSQL door, one query after another, until told
/// to stop: the errors it saw, and how many reads it made.
struct Reader {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Reader {
    async fn start(addr: std::net::SocketAddr, slug: &str, secret: &DbCredentials) -> Self {
        let client = connect(addr, slug, secret).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut reads, mut errors) = (0, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                match client.query_one("SELECT count(*) FROM tasks", &[]).await {
                    Ok(_) => reads += 1,
                    Err(err) => errors.push(tenancy::pg::describe_error(&err)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (reads, errors)
        });
        Self { stop, task }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_on_a_server_without_logical_replication_moves_by_dump_through_the_api() {
    // The tenant's server has no logical replication (wal_level = replica).
    let second = testkit::PgServer::start_with(&["wal_level=replica"]).await;
    let db = testkit::TestDb::create().await;
    let common = testkit::common_settings(&db, testkit::SecretsFor::Local);
    let control = e2e_tests::spawn_control_plane(&db, &common).await;
    let cp = &control.cp;
    control_plane::clusters::add(cp, "second", &second.url("postgres").into(), 100, "test").await.unwrap();
    let client = cp.catalog.get().await.unwrap();
    let (token, _) = control_plane::catalog::tokens::create(
        &**client,
        &control_plane::catalog::tokens::NewToken::admin("moves-test"),
    )
    .await
    .unwrap();
    drop(client);
    let call = |method: reqwest::Method, path: &'static str, body: Option<serde_json::Value>| {
        api_call(&control.url, &token, method, path, body)
    };
    for (slug, cluster) in [("acme", "second"), ("globex", "default")] {
        let body = serde_json::json!({ "slug": slug, "plan": "pro", "cluster": cluster });
        let (status, created) = call(reqwest::Method::POST, "/v1/tenants", Some(body)).await;
        assert_eq!(status, 202, "{created}");
    }
    let acme = e2e_tests::wait_until_active(cp, "acme", Duration::from_secs(30)).await;
    let globex = e2e_tests::wait_until_active(cp, "globex", Duration::from_secs(30)).await;
    assert_eq!(acme.cluster, "second");
    db.lift_rate_limits().await;
    // Rows that reference each other (restored in an order their foreign keys accept).
    let (source, connection) =
        tokio_postgres::connect(&second.url(&format!("{}_tenants", db.role_prefix)), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    source
        .batch_execute(&format!(
            "SET search_path = \"{}\";
             INSERT INTO users (email, name) SELECT 'u' || i || '@example.test', 'seed' FROM generate_series(1, 50) i;
             INSERT INTO teams (name) VALUES ('core');
             INSERT INTO projects (team_id, name) SELECT id, 'p' || i FROM teams, generate_series(1, 5) i;
             INSERT INTO tasks (project_id, title, assignee_id)
               SELECT p.id, 'task ' || i, (SELECT min(id) FROM users) FROM projects p, generate_series(1, 40) i;",
            acme.schema_name.as_str()
        ))
        .await
        .unwrap();
    let secret = |tenant: &tenancy::catalog::TenantRecord| {
        let name = tenant.secret_name().unwrap();
        async move { cp.secrets.get(&name).await.unwrap().unwrap() }
    };
    let (acme_secret, globex_secret) = (secret(&acme).await, secret(&globex).await);
    let router = spawn_router_with(&router_settings(&common)).await;
    let addr = router.pg_addr.unwrap();
    // More writers than the tenant has server connections (`pro`: 5): writes waiting on the
    // copy's locks would hold them all, and starve the reads.
    let mut writers = Vec::new();
    for _ in 0..8 {
        writers.push(Writer::start(addr, "acme", &acme_secret).await);
    }
    let reader = Reader::start(addr, "acme", &acme_secret).await;
    let globex_writer = Writer::start(addr, "globex", &globex_secret).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Logical replication is what a move uses unless told otherwise: refused, with the way out,
    // and nothing recorded.
    let path = "/v1/tenants/acme/moves";
    let (status, refused) =
        call(reqwest::Method::POST, path, Some(serde_json::json!({ "isolation": "database" }))).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "logical_replication_unavailable", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("wal_level = replica") && message.contains("--method dump"), "{message}");
    let (status, bad) =
        call(reqwest::Method::POST, path, Some(serde_json::json!({ "method": "carrier-pigeon" }))).await;
    assert_eq!((status, &bad["error"]["code"]), (400, &serde_json::json!("invalid_method")), "{bad}");
    let (status, none) = call(reqwest::Method::GET, path, None).await;
    assert_eq!((status, none), (200, serde_json::json!([])));
    let (status, nothing) = call(reqwest::Method::POST, "/v1/tenants/acme/moves/abort", None).await;
    assert_eq!((status, &nothing["error"]["code"]), (422, &serde_json::json!("no_move")), "{nothing}");

    // By dump, into a database of its own on the other cluster.
    let body = serde_json::json!({ "isolation": "database", "to_cluster": "default", "method": "dump" });
    let (status, started) = call(reqwest::Method::POST, path, Some(body)).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(
        (&started["method"], &started["state"]),
        (&serde_json::json!("dump"), &serde_json::json!("running"))
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (_, listed) = call(reqwest::Method::GET, path, None).await;
        if listed[0]["state"] != "running" {
            break listed[0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the move is still running: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["to"]["cluster"], "default", "{done}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut acknowledged, mut errors) = (Vec::new(), Vec::new());
    for writer in writers {
        let (ids, failed) = writer.finish().await;
        acknowledged.extend(ids);
        errors.extend(failed);
    }
    let (reads, read_errors) = reader.finish().await;
    let (_, globex_errors) = globex_writer.finish().await;
    // The writes waited in the router for the copy, and no read waited for them.
    assert!(errors.is_empty(), "acme's writers saw errors: {errors:?}");
    assert!(read_errors.is_empty(), "acme's reader saw errors: {read_errors:?}");
    assert!(globex_errors.is_empty(), "globex's writer saw errors: {globex_errors:?}");
    assert!(
        acknowledged.len() > 20 && reads > 20,
        "too little traffic to tell: {} writes, {reads} reads",
        acknowledged.len()
    );

    // Every acknowledged row is on the target exactly once; every table as on the source.
    let moved = tenancy::catalog::tenant_by_id(&db.client().await, acme.id).await.unwrap().unwrap();
    assert_eq!((moved.cluster.as_str(), moved.isolation), ("default", Isolation::Database));
    let target = db.database_client(moved.database_name.as_ref().unwrap().as_str()).await;
    let schema = moved.schema_name.as_str();
    let ids = written_ids(&target, schema).await;
    let mut expected = acknowledged.clone();
    expected.sort_unstable();
    assert_eq!(ids, expected, "acknowledged rows on the target");
    // (Users aside: the writer went on writing there after the switch.)
    let kept = tenancy::domain::SchemaName::retired(&acme.slug, done["id"].as_i64().unwrap());
    let but_users = |tables: Vec<(String, i64, String)>| -> Vec<_> {
        tables.into_iter().filter(|(table, ..)| table != "users").collect()
    };
    assert_eq!(
        but_users(fingerprint(&source, kept.as_str()).await),
        but_users(fingerprint(&target, schema).await)
    );
    let (before, after) = (users_rows(&source, kept.as_str()).await, users_rows(&target, schema).await);
    assert!(after.starts_with(&before), "the target's users do not begin with the source's");
    // Its credentials open the target; its old role on the source cannot log in.
    let old = tokio_postgres::connect(
        &format!(
            "postgres://{}:{}@127.0.0.1:{}/{}_tenants",
            acme_secret.username, acme_secret.password, second.port, db.role_prefix
        ),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(old.is_err(), "the tenant's credentials still open the old copy");
    let fresh = connect(addr, "acme", &acme_secret).await.unwrap();
    let id: i64 = fresh
        .query_one("INSERT INTO users (email, name) VALUES ('after@example.test', 'after') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert!(id > *expected.last().unwrap(), "the sequence did not come along");
    router.stop().await.unwrap();
    control.server.stop().await.unwrap();
}

/// Every row of `schema`.users, by id, as text.
async fn users_rows(client: &tokio_postgres::Client, schema: &str) -> String {
    let sql = format!("SELECT coalesce(string_agg(u::text, '|' ORDER BY id), '') FROM \"{schema}\".users u");
    client.query_one(sql.as_str(), &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_by_dump_whose_lock_session_ends_during_the_copy_copies_again_and_loses_no_write() {
    let Catalog { db, common, cp } = Catalog::create().await;
    let (acme, acme_secret) = provisioned(&cp, "acme", "pro").await;
    db.lift_rate_limits().await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let writer = Writer::start(router.pg_addr.unwrap(), "acme", &acme_secret).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let destination = Destination {
        isolation: Some(Isolation::Database),
        method: moves::MoveMethod::Dump,
        ..Destination::default()
    };
    let started = moves::start(&cp, &acme.slug, &destination, "test").await.unwrap();
    // The session holding the tenant's tables locked is ended once, mid-copy (an administrator,
    // a server's timeout): writes reach the source again from then on.
    let killer = {
        let admin = db.client().await;
        let name = format!("tenancy move {}: copying (writes wait)", started.id);
        tokio::spawn(async move {
            loop {
                let killed: i64 = admin
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                        &[&name],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if killed > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    control_plane::jobs::runner::drain(&cp, acme.id, Duration::from_secs(60)).await.unwrap();
    killer.await.unwrap();
    let done = moves::load(&cp, started.id).await.unwrap();
    assert_eq!(done.state, MoveState::Done, "{:?}", done.last_error);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (acknowledged, errors) = writer.finish().await;
    assert!(errors.iter().all(|e| e.contains("57014")), "the writer saw other errors: {errors:?}");
    let moved = tenancy::catalog::tenant_by_id(&db.client().await, acme.id).await.unwrap().unwrap();
    let target = db.database_client(moved.database_name.as_ref().unwrap().as_str()).await;
    let ids = written_ids(&target, moved.schema_name.as_str()).await;
    let mut expected = acknowledged;
    expected.sort_unstable();
    assert_eq!(ids, expected, "acknowledged rows on the target");
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_during_a_dump_stops_the_copy_and_lets_the_held_writes_through() {
    // A pg_dump that takes its time: the copy is under way, the tenant's writes waiting, when
    // the abort comes.
    let db = testkit::TestDb::create().await;
    let common = testkit::common_settings(&db, testkit::SecretsFor::Local);
    let slow = std::env::temp_dir().join(format!("{}-slow-pg_dump", db.role_prefix));
    std::fs::write(
        &slow,
        "#!/bin/sh\n[ \"$1\" = --version ] && exec pg_dump --version\nsleep 60\nexec pg_dump \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut settings = e2e_tests::provisioning_settings(&db);
    settings.pg_dump = slow.clone();
    let cp = control_plane::control_plane::ControlPlane::start(&common, &settings).await.unwrap();
    let (acme, acme_secret) = provisioned(&cp, "acme", "pro").await;
    db.lift_rate_limits().await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let writer = Writer::start(router.pg_addr.unwrap(), "acme", &acme_secret).await;
    let destination = Destination {
        isolation: Some(Isolation::Database),
        method: moves::MoveMethod::Dump,
        ..Destination::default()
    };
    let started = moves::start(&cp, &acme.slug, &destination, "test").await.unwrap();
    let mover = {
        let cp = cp.clone();
        tokio::spawn(async move {
            control_plane::jobs::runner::drain(&cp, acme.id, Duration::from_secs(60)).await
        })
    };
    // The copy is under way once the move's session holds the tenant's tables (the writes
    // wait in the router meanwhile).
    let admin = db.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let copying = format!("tenancy move {}: copying (writes wait)", started.id);
    loop {
        let locking: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'",
                &[&copying],
            )
            .await
            .unwrap()
            .get(0);
        if locking > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the copy did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = tenancy::catalog::tenant_by_id(&admin, acme.id).await.unwrap().unwrap();
    assert!(held.writes_paused(), "the tenant's writes are not paused during the copy");
    moves::abort(&cp, &acme.slug, "test").await.unwrap();
    // The job stops the copy (it does not wait out the slow pg_dump) and rolls the move back.
    mover.await.unwrap().unwrap();
    let aborted = moves::load(&cp, started.id).await.unwrap();
    assert_eq!(aborted.state, MoveState::Aborted, "{:?}", aborted.last_error);
    // Its sessions end (a closed connection's backend exits a moment later).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                &[&format!("tenancy move {}:%", started.id)],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the move's sessions outlived its abort");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (acknowledged, errors) = writer.finish().await;
    assert!(errors.is_empty(), "the writer saw errors: {errors:?}");
    // The write that waited went through, where the tenant still is, with every other one.
    let source = db.tenants_client().await;
    let ids = written_ids(&source, acme.schema_name.as_str()).await;
    let mut expected = acknowledged;
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let now = tenancy::catalog::tenant_by_id(&admin, acme.id).await.unwrap().unwrap();
    assert_eq!((now.isolation, now.paused_until), (Isolation::Schema, None));
    assert_eq!(leftovers(&db, &acme.slug, started.id, true).await, Vec::<String>::new());
    router.stop().await.unwrap();
    let _ = std::fs::remove_file(&settings.pg_dump);
}
