//! Fleet migrations: a failing canary wave halts the run before the rest, `--max-failures`
//! halts it, `plan` reports pending versions and drift and changes nothing, a tenant whose
//! history was tampered with is not migrated, and a tenant created while a run goes ends at the
//! target.

use crate::create_active;
use crate::fleet::{all, fleet, wait_for_items, with, Quiet};
use control_plane::control_plane::ControlPlane;
use control_plane::fleet::plan::{plan, PlanOptions};
use control_plane::fleet::{ItemState, RunOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_halts_the_run_and_max_failures_stops_it() {
    let f = fleet().await;
    let admin = f.db.tenants_client().await;
    // alpha, first by slug, is the canary; its schema conflicts with V2.
    let alpha = f.schema("alpha");
    admin.batch_execute(&format!("CREATE TABLE \"{alpha}\".audit (x int)")).await.unwrap();

    let canary = RunOptions { concurrency: 2, canary: 1, ..Default::default() };
    let report = control_plane::fleet::apply(&f.cp, &with(canary), "test", &Quiet).await.unwrap();
    assert_eq!(report.state, "halted", "{report:?}");
    assert!(report.halt_reason.as_deref().unwrap_or_default().contains("canary"), "{report:?}");
    assert_eq!((report.failed, report.migrated, report.not_started), (1, 0, 4), "{report:?}");
    for item in f.items(report.run_id).await {
        let expected = if item.slug == "alpha" { ("failed", 0) } else { ("pending", 1) };
        assert_eq!((item.state.as_str(), item.wave), expected, "{item:?}");
    }
    for slug in ["bravo", "charlie", "delta", "echo"] {
        assert_eq!(f.v2(slug).await, (0, false), "{slug} untouched after the canary failed");
    }

    // Fixed and resumed: the canary, then the rest.
    admin.batch_execute(&format!("DROP TABLE \"{alpha}\".audit")).await.unwrap();
    let resumed = control_plane::fleet::resume(&f.cp, report.run_id, None, "test", &Quiet).await.unwrap();
    assert_eq!((resumed.state.as_str(), resumed.migrated), ("completed", 5), "{resumed:?}");

    // V3 conflicts in bravo and charlie; with at most 0 failures and one tenant at a time, the
    // run stops at bravo.
    std::fs::write(f.migrations.path().join("V3__notes.sql"), "CREATE TABLE notes (id int);").unwrap();
    for slug in ["bravo", "charlie"] {
        admin.batch_execute(&format!("CREATE TABLE \"{}\".notes (x int)", f.schema(slug))).await.unwrap();
    }
    let strict = RunOptions { concurrency: 1, max_failures: Some(0), ..Default::default() };
    let report = control_plane::fleet::apply(&f.cp, &with(strict), "test", &Quiet).await.unwrap();
    assert_eq!(report.state, "halted", "{report:?}");
    assert!(report.halt_reason.as_deref().unwrap_or_default().contains("more than 0"), "{report:?}");
    assert_eq!((report.migrated, report.failed, report.not_started), (1, 1, 3), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_changes_nothing_and_a_tampered_history_is_drift_and_not_migrated() {
    let f = fleet().await;
    let admin = f.db.tenants_client().await;
    let delta = f.schema("delta");
    // Someone edited delta's history: V1's checksum no longer matches the file.
    admin
        .execute(
            &format!("UPDATE \"{delta}\".refinery_schema_history SET checksum = '12345' WHERE version = 1"),
            &[],
        )
        .await
        .unwrap();
    // And echo's so badly that it is not even a number.
    let echo = f.schema("echo");
    admin
        .execute(&format!("UPDATE \"{echo}\".refinery_schema_history SET checksum = 'garbage'"), &[])
        .await
        .unwrap();

    let snapshot = || async {
        let client = f.db.client().await;
        let catalog: String = client
            .query_one(
                "SELECT format('%s/%s/%s', (SELECT count(*) FROM control.migration_runs),
                               (SELECT count(*) FROM control.migration_items),
                               (SELECT string_agg(slug || '=' || coalesce(schema_version::text, '-'), ',' ORDER BY slug)
                                  FROM control.tenants))",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let histories =
            f.db.tenants_count("SELECT count(*) FROM pg_class WHERE relname = 'refinery_schema_history'")
                .await;
        let columns = f
            .db
            .tenants_count("SELECT count(*) FROM information_schema.columns WHERE column_name = 'priority'")
            .await;
        (catalog, histories, columns)
    };
    let before = snapshot().await;
    let options = PlanOptions { selection: Default::default(), concurrency: 4, drift: true };
    let planned = plan(&f.cp, &options).await.unwrap();
    assert_eq!(snapshot().await, before, "plan changed something");

    assert_eq!((planned.target_version, planned.tenants, planned.pending_tenants), (2, 5, 5), "{planned:?}");
    assert_eq!(planned.versions.len(), 1);
    assert_eq!((planned.versions[0].version, planned.versions[0].tenants), (Some(1), 5));
    assert!(planned.pending.iter().all(|p| p.pending == [2]), "{planned:?}");
    let drift = planned.drift.clone().unwrap();
    let drifted: Vec<&str> = drift.iter().map(|d| d.slug.as_str()).collect();
    assert_eq!(drifted, ["delta", "echo"], "{drift:?}");
    assert!(drift[0].problem.contains("V1") && drift[0].problem.contains("checksum"), "{drift:?}");
    let headroom = &planned.headroom[0];
    assert!(headroom.relations_per_tenant > 10 && headroom.lock_slots > 0, "{headroom:?}");

    let report = control_plane::fleet::apply(&f.cp, &all(2), "test", &Quiet).await.unwrap();
    assert_eq!((report.migrated, report.drift, report.failed), (3, 2, 0), "{report:?}");
    for slug in ["delta", "echo"] {
        let result = report.results.iter().find(|r| r.slug == slug).unwrap();
        assert_eq!(result.state, ItemState::Drift, "{result:?}");
        assert_eq!(f.v2(slug).await, (0, false), "a drifted tenant is not migrated");
    }
    assert_eq!(report.state, "failed");

    // Afterwards the plan shows only the drifted tenants pending, the others at V2 (from the
    // catalog).
    let planned = plan(&f.cp, &options).await.unwrap();
    let pending: Vec<&str> = planned.pending.iter().map(|p| p.slug.as_str()).collect();
    assert_eq!(pending, ["delta", "echo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_while_a_run_goes_ends_at_the_target() {
    let f = fleet().await;
    // A provisioner that still has the old migrations directory (another host, not yet
    // deployed): its tenants are created at V1.
    let stale_dir = tempfile::tempdir().unwrap();
    std::fs::copy(f.migrations.path().join("V1__init.sql"), stale_dir.path().join("V1__init.sql")).unwrap();
    let mut settings = crate::provisioning(&f.db);
    settings.migrations_dir = stale_dir.path().to_owned();
    let common = testkit::common_settings(&f.db, testkit::SecretsFor::Local);
    let stale = ControlPlane::start(&common, &settings).await.unwrap();

    // The run is held up by a lock on charlie; meanwhile two tenants are created, one by each
    // provisioner.
    let blocker = f.lock_tasks_of("charlie").await;
    let run = {
        let cp = f.cp.clone();
        let options = with(RunOptions { concurrency: 2, lock_timeout_ms: 0, ..Default::default() });
        tokio::spawn(async move { control_plane::fleet::apply(&cp, &options, "test", &Quiet).await })
    };
    wait_for_items(&f, "the others done", |items| {
        items.iter().filter(|i| i.state == control_plane::fleet::ItemState::Done).count() == 4
    })
    .await;
    let current = create_active(&f.cp, "foxtrot").await;
    let behind = create_active(&stale, "golf").await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.state, "completed", "{report:?}");

    // Both are at V2: foxtrot from provisioning, golf migrated by the run's last sweep.
    for tenant in [&current, &behind] {
        let schema = tenant.schema_name.as_str();
        let version = f
            .db
            .tenants_count(&format!("SELECT max(version)::bigint FROM \"{schema}\".refinery_schema_history"))
            .await;
        assert_eq!(version, 2, "{}", tenant.slug);
    }
    let items = f.items(report.run_id).await;
    assert_eq!(items.len(), 7, "{items:?}");
    assert!(
        items.iter().all(|i| i.state == control_plane::fleet::ItemState::Done && i.to_version == Some(2)),
        "{items:?}"
    );
    assert_eq!(report.tenants, 7);
    assert_eq!(report.results.iter().find(|r| r.slug == "golf").map(|r| r.applied.clone()), Some(vec![2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_started_and_watched_over_the_api() {
    use serde_json::{json, Value};
    let f = fleet().await;
    let settings = control_plane::settings::ServeSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        http: tenancy::listener::HttpSettings::default(),
        billing_webhook_secret: None,
        worker_concurrency: 1,
        routers: Vec::new(),
        shutdown_grace: std::time::Duration::from_secs(5),
    };
    let server =
        control_plane::http::spawn(f.cp.clone(), &settings, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    let token = {
        let client = f.cp.catalog.get().await.unwrap();
        control_plane::catalog::tokens::create(
            &**client,
            &control_plane::catalog::tokens::NewToken::admin("fleet-test"),
        )
        .await
        .unwrap()
        .0
    };
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http.request(method, format!("{base}{path}")).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let blocker = f.lock_tasks_of("charlie").await;

    // Bad input is refused with what was wrong; nothing starts.
    for (body, code) in [
        (json!({"concurrency": 0}), "invalid_options"),
        (json!({"tenant": "Not A Slug"}), "invalid_options"),
        (json!({"colour": "red"}), "invalid_body"),
    ] {
        let (status, answer) = call(reqwest::Method::POST, "/v1/migrations/runs", Some(body.clone())).await;
        assert_eq!((status, &answer["error"]["code"]), (400, &json!(code)), "{body}: {answer}");
    }
    let (status, runs) = call(reqwest::Method::GET, "/v1/migrations/runs", None).await;
    assert_eq!((status, runs), (200, json!([])));

    let (status, run) = call(
        reqwest::Method::POST,
        "/v1/migrations/runs",
        Some(json!({"concurrency": 2, "lock_timeout_ms": 0})),
    )
    .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(
        (&run["state"], &run["tenants"], &run["target_version"]),
        (&json!("running"), &json!(5), &json!(2))
    );
    let id = run["id"].as_str().unwrap().to_owned();

    // While charlie is held: a second run is refused, and the run shows its progress.
    let (status, refused) = call(reqwest::Method::POST, "/v1/migrations/runs", None).await;
    assert_eq!((status, &refused["error"]["code"]), (409, &json!("run_in_progress")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains(&id), "{refused}");
    wait_for_items(&f, "the others done", |items| {
        items.iter().filter(|i| i.state == control_plane::fleet::ItemState::Done).count() == 4
    })
    .await;
    let (status, running) =
        call(reqwest::Method::GET, &format!("/v1/migrations/runs/{id}?state=running"), None).await;
    assert_eq!(status, 200);
    assert_eq!(running["items"].as_array().map(Vec::len), Some(1), "{running}");
    assert_eq!(running["items"][0]["slug"], json!("charlie"));
    assert_eq!(running["counts"]["done"], json!(4));

    blocker.batch_execute("ROLLBACK").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let finished = loop {
        let (_, run) = call(reqwest::Method::GET, &format!("/v1/migrations/runs/{id}"), None).await;
        if run["state"] != json!("running") {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "the run did not end: {run}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(finished["state"], json!("completed"), "{finished}");
    assert_eq!(finished["items"].as_array().map(Vec::len), Some(5));
    assert!(finished["items"].as_array().unwrap().iter().all(|i| i["to_version"] == json!(2)), "{finished}");

    for (path, status, code) in [
        (format!("/v1/migrations/runs/{id}?state=weird"), 400, "invalid_query"),
        ("/v1/migrations/runs/not-a-uuid".to_owned(), 400, "invalid_run_id"),
        ("/v1/migrations/runs/ffffffff".to_owned(), 404, "not_found"),
        (format!("/v1/migrations/runs/{}", uuid::Uuid::new_v4()), 404, "not_found"),
    ] {
        let (got, answer) = call(reqwest::Method::GET, &path, None).await;
        assert_eq!((got, &answer["error"]["code"]), (status, &json!(code)), "{path}: {answer}");
    }
    let openapi: Value =
        http.get(format!("{base}/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(openapi["paths"]["/v1/migrations/runs/{id}"]["get"].is_object(), "{openapi}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_migration_leaves_in_its_session_reaches_the_next_tenant() {
    let f = fleet().await;
    // One worker, so one session migrates every tenant in turn. The migration changes a
    // setting and takes an advisory lock in its session (tenant roles and the owner may not
    // create temporary tables); each tenant must see the session as it was at the start.
    std::fs::write(
        f.migrations.path().join("V3__carry.sql"),
        "CREATE TABLE seen AS
           SELECT current_setting('application_name') AS app,
                  (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42
                      AND pid = pg_backend_pid()) AS locks;
         SET application_name = 'left behind';
         SELECT pg_advisory_lock(42);",
    )
    .unwrap();
    let one = RunOptions { concurrency: 1, ..Default::default() };
    let report = control_plane::fleet::apply(&f.cp, &with(one), "test", &Quiet).await.unwrap();
    assert_eq!((report.state.as_str(), report.migrated), ("completed", 5), "{report:?}");
    for tenant in &f.tenants {
        let schema = tenant.schema_name.as_str();
        let rows =
            f.db.tenants_client()
                .await
                .query(&format!("SELECT app, locks FROM \"{schema}\".seen"), &[])
                .await
                .unwrap();
        let seen: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(seen, [("tenantctl".to_owned(), 0)], "{}", tenant.slug);
        assert_eq!(
            report.results.iter().find(|r| r.slug == tenant.slug.as_str()).unwrap().from_version,
            Some(1)
        );
    }
    // Out-of-range options are refused before anything starts.
    let wild = RunOptions { retries: 1000, ..Default::default() };
    assert!(matches!(
        control_plane::fleet::apply(&f.cp, &with(wild), "test", &Quiet).await,
        Err(control_plane::fleet::FleetError::InvalidOptions(_))
    ));
}
