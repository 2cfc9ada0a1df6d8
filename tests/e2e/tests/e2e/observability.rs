//! What operators watch: the router's access log (JSON lines with `LOG_FORMAT=json`: tenant,
//! route, status, duration, bytes; sampled, server errors always) and latency histograms by
//! route and status class, on the router (a process of its own, as deployed) and the control
//! plane; label values in snake_case; the latest fleet migration run's progress in the control
//! plane's metrics.

use e2e_tests::{connection_string, provisioned, Catalog, RouterProcess};
use serde_json::Value;
use testkit::TestDb;

/// The access log lines of a router's stderr.
fn access_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "tenant_router::access")
        .collect()
}

async fn sql(http: &reqwest::Client, router: &RouterProcess, host: &str, credentials: &str) -> u16 {
    http.post(format!("http://{}/sql", router.addr))
        .header("Host", host)
        .header("Neon-Connection-String", credentials)
        .json(&serde_json::json!({"query": "SELECT 1 AS one", "params": []}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_access_log_and_latency_histograms_say_what_each_request_did() {
    let Catalog { db, common, cp } = Catalog::create().await;
    provisioned(&cp, "acme", "pro").await;
    // 150 requests in a moment: above the plan's limit.
    db.lift_rate_limits().await;
    let credentials = connection_string(&cp, "acme").await;
    let http = reqwest::Client::new();

    // Every request logged.
    let router = RouterProcess::start(
        env!("CARGO_BIN_EXE_tenant-router-under-test"),
        &common,
        &[
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "warn,tenant_router::access=info"),
            ("ROUTER_ACCESS_LOG_SAMPLE", "1"),
        ],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(sql(&http, &router, "acme.app.localhost", &credentials).await, 200);
    }
    assert_eq!(sql(&http, &router, "nobody.app.localhost", &credentials).await, 404);
    // Two PostgreSQL sessions: one closed by its client after two transactions, one still
    // open when the router shuts down.
    let mut config: tokio_postgres::Config = credentials.parse().unwrap();
    config.host("127.0.0.1").port(router.pg_addr.port()).options("-c tenant=acme");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client.batch_execute("SELECT 1").await.unwrap();
    client.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
    drop(client);
    connection.await.unwrap().unwrap();
    let (lingering, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let lingering_connection = tokio::spawn(connection);
    lingering.batch_execute("SELECT 1").await.unwrap();
    let metrics =
        http.get(format!("http://{}/metrics", router.admin)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"tenant_router_request_duration_seconds_count{route="sql",status="2xx"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tenant_router_request_duration_seconds_count{route="sql",status="4xx"} 1"#));
    assert!(metrics.contains(r#"tenant_router_request_duration_seconds_bucket{le="#), "a histogram");
    // Label values in snake_case.
    assert!(metrics.contains(r#"layer="catalog",outcome="not_found""#), "{metrics}");
    assert!(!metrics.contains("NotFound") && !metrics.contains(r#"layer="L1""#));
    router.terminate();
    let (status, stderr) = router.exit().await;
    assert!(status.success(), "{stderr}");
    let (lines, sessions): (Vec<Value>, Vec<Value>) =
        access_lines(&stderr).into_iter().partition(|line| line["status"].is_u64());
    assert_eq!(lines.len(), 4, "a line per request: {stderr}");
    assert_eq!(sessions.len(), 2, "a line per PostgreSQL session: {stderr}");
    let closed = sessions.iter().find(|s| s["ended"] == "closed").unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        (&closed["tenant"], &closed["route"], &closed["transactions"]),
        (&"acme".into(), &"postgres".into(), &2.into()),
        "{closed}"
    );
    assert!(closed["duration_ms"].as_f64().unwrap() > 0.0 && closed["error"].is_null(), "{closed}");
    let ended =
        sessions.iter().find(|s| s["ended"] == "ended_by_router").unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        (&ended["error"], &ended["transactions"]),
        (&"57P01".into(), &1.into()),
        "at shutdown: {ended}"
    );
    drop(lingering);
    let _ = lingering_connection.await;
    let ok = &lines[0];
    assert_eq!(
        (&ok["tenant"], &ok["route"], &ok["status"], &ok["method"]),
        (&"acme".into(), &"sql".into(), &200.into(), &"POST".into()),
        "{ok}"
    );
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0, "{ok}");
    assert!(ok["bytes_in"].as_u64().unwrap() > 0 && ok["bytes_out"].as_u64().unwrap() > 0, "{ok}");
    let unknown = &lines[3];
    assert_eq!((&unknown["tenant"], &unknown["status"]), (&"-".into(), &404.into()), "{unknown}");
    assert!(!stderr.contains(&credentials) && !stderr.contains("npg_"), "no credentials in the log");

    // The default: a sample (1 in 100), and every server error.
    let router = RouterProcess::start(
        env!("CARGO_BIN_EXE_tenant-router-under-test"),
        &common,
        &[("LOG_FORMAT", "json"), ("RUST_LOG", "warn,tenant_router::access=info")],
    )
    .await;
    for _ in 0..150 {
        assert_eq!(sql(&http, &router, "acme.app.localhost", &credentials).await, 200);
    }
    router.terminate();
    let (_, stderr) = router.exit().await;
    assert_eq!(access_lines(&stderr).len(), 1, "1 in 100 of 150 requests: {stderr}");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_times_its_requests_and_shows_the_latest_runs_progress() {
    let db = TestDb::create().await;
    let common = testkit::common_settings(&db, testkit::SecretsFor::Local);
    let control = e2e_tests::spawn_control_plane(&db, &common).await;
    e2e_tests::provisioned_by(&control, "acme", "starter").await;
    let client = control.cp.catalog.get().await.unwrap();
    let (token, _) = control_plane::catalog::tokens::create(
        &**client,
        &control_plane::catalog::tokens::NewToken::admin("metrics-test"),
    )
    .await
    .unwrap();
    drop(client);
    let http = reqwest::Client::new();
    let call = |request: reqwest::RequestBuilder| async {
        request.bearer_auth(&token).send().await.unwrap().json::<Value>().await.unwrap()
    };
    let run = call(http.post(format!("{}/v1/migrations/runs", control.url))).await;
    let id = run["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let run = call(http.get(format!("{}/v1/migrations/runs/{id}", control.url))).await;
        if run["state"] != "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = http.get(format!("{}/metrics", control.url)).send().await.unwrap().text().await.unwrap();
    for expected in [
        r#"tenantctl_http_request_duration_seconds_count{method="POST",route="/v1/migrations/runs",status="2xx"} 1"#,
        r#"tenantctl_fleet_run_tenants{state="done"} 1"#,
        r#"tenantctl_fleet_run_tenants{state="remaining"} 0"#,
        r#"tenantctl_fleet_run_tenants{state="failed"} 0"#,
        "tenantctl_fleet_run_running 0",
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }
    control.server.stop().await.unwrap();
}
