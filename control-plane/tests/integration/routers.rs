//! `tenantctl routers pools` and `tenantctl routers stats`, the real binary, against a running
//! router and an address where nothing answers.

use super::{create_active, start};
use clap::Parser as _;
use serde_json::{json, Value};
use testkit::{common_settings, SecretsFor, TestDb};

/// What a run of `tenantctl` gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {:?}\n{}\n[stderr]\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self}"))
    }
}

/// Runs the `tenantctl` binary with `args`, and `TENANTCTL_ROUTERS` when given.
async fn tenantctl(args: &[&str], routers_env: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command.args(args).env_remove("TENANTCTL_ROUTERS");
    if let Some(routers) = routers_env {
        command.env("TENANTCTL_ROUTERS", routers);
    }
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An admin URL nobody listens on (a port just let go of).
fn nobody_listening() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenantctl_shows_each_routers_pools_and_reports_a_router_that_does_not_answer() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = start(&db, &common).await;
    let acme = create_active(&cp, "acme").await;
    let mut settings = tenant_router::settings::RouterSettings::try_parse_from([
        "tenant-router",
        "--database-url",
        db.url.as_str(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--pg-listen",
        "off",
    ])
    .unwrap();
    settings.common = common.clone();
    let router =
        tenant_router::http::spawn(&settings, tokio_util::sync::CancellationToken::new()).await.unwrap();
    // One request gives acme a pool on this router.
    let secret = cp.secrets.get(&acme.secret_name().unwrap()).await.unwrap().unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}/sql", router.addr))
        .header("host", "acme.app.localhost")
        .header(
            "neon-connection-string",
            format!(
                "postgresql://{}:{}@acme.app.localhost/{}",
                secret.username, secret.password, secret.dbname
            ),
        )
        .json(&json!({"query": "SELECT 1 AS one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let live = format!("http://{}", router.admin_addr);
    let dead = nobody_listening();

    // Both routers asked: the live one's pools are shown, the other reported; exit code 6.
    let run = tenantctl(&["routers", "pools", "--json", "--router", &live, "--router", &dead], None).await;
    assert_eq!(run.code, Some(6), "{run}");
    let answer = run.json();
    let routers = answer["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 2, "{run}");
    assert_eq!(routers[0]["router"], json!(live), "{run}");
    assert_eq!(routers[0]["budget"]["max_connections"], 100, "{run}");
    assert_eq!(routers[0]["budget"]["server_idle"], 1, "{run}");
    let pools = routers[0]["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{run}");
    assert_eq!(
        [&pools[0]["tenant"], &pools[0]["access"], &pools[0]["door"], &pools[0]["server_idle"]],
        [&json!("acme"), &json!("runtime"), &json!("http"), &json!(1)],
        "{run}"
    );
    assert_eq!(routers[1]["router"], json!(dead), "{run}");
    assert_eq!(routers[1]["error"]["code"], "router_unreachable", "{run}");

    // The routers from the environment; stats.
    let run = tenantctl(&["routers", "stats", "--json", "--tenant", "acme"], Some(&live)).await;
    assert_eq!(run.code, Some(0), "{run}");
    let stats = &run.json()["routers"][0]["pools"][0];
    assert_eq!([&stats["checkouts"], &stats["connections_opened"]], [&json!(1), &json!(1)], "{run}");
    // Several tenants (one with no pool here): the pools of those that have one.
    let run =
        tenantctl(&["routers", "pools", "--json", "--tenant", "globex", "--tenant", "acme"], Some(&live))
            .await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.json()["routers"][0]["pools"].as_array().map(Vec::len), Some(1), "{run}");
    let run = tenantctl(&["routers", "pools", "--json", "--tenant", "globex"], Some(&live)).await;
    assert_eq!(run.json()["routers"][0]["pools"], json!([]), "{run}");

    // A table, and the router that did not answer on stderr.
    let run = tenantctl(&["routers", "pools"], Some(&format!("{live},{dead}"))).await;
    assert_eq!(run.code, Some(6), "{run}");
    let row = run.stdout.lines().find(|line| line.contains(" acme ")).unwrap_or_else(|| panic!("{run}"));
    assert_eq!(
        row.split_whitespace().take(9).collect::<Vec<_>>(),
        [live.as_str(), "acme", "runtime", "http", "2", "0", "1", "0", "0"],
        "size (the starter plan's 2), active, idle, opening, waiting: {run}"
    );
    assert!(run.stderr.contains(&format!("error: router {dead}: could not reach it")), "{run}");

    // --watch asks again every interval until interrupted: two views in a moment.
    let watching = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .args(["routers", "pools", "--watch", "--interval", "200ms", "--router", &live])
        .env_remove("TENANTCTL_ROUTERS")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = watching.id().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let watched = tokio::time::timeout(std::time::Duration::from_secs(10), watching.wait_with_output())
        .await
        .expect("the watch stops when interrupted")
        .unwrap();
    let stdout = String::from_utf8_lossy(&watched.stdout);
    let views = stdout.lines().filter(|l| l.starts_with("ROUTER") && l.contains(" MAX ")).count();
    assert!(views >= 2, "views of the budget: {}", String::from_utf8_lossy(&watched.stdout));

    // A malformed router address is refused before anyone is asked.
    let run = tenantctl(&["routers", "pools", "--router", "ftp://router"], None).await;
    assert_eq!(run.code, Some(3), "{run}");
    router.stop().await.unwrap();
}
