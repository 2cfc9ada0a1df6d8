//! `tenantctl` as operators use it from a shell: `-o yaml|wide`, dangerous commands confirmed
//! on a terminal (a real pseudo-terminal, from `script`), `connection-string --psql` pasted into
//! a shell as printed, and `tenantctl doctor` on a healthy install, a missing key and a wrong
//! one.

use e2e_tests::{catalog_flags, provisioned, router_settings, spawn_router_with, Catalog};
use serde_json::Value;
use std::process::Stdio;
use tenancy::settings::CommonSettings;
use testkit::TestDb;

const TENANTCTL: &str = env!("CARGO_BIN_EXE_tenantctl-under-test");

/// A word for a POSIX shell.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `tenantctl <args>` against the test's catalog, its stdin `input` (closed when `None`).
async fn tenantctl(args: &[&str], db: &TestDb, common: &CommonSettings) -> Run {
    let output = tokio::process::Command::new(TENANTCTL)
        .args(args)
        .args(catalog_flags(db, common))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `tenantctl <args>` on a pseudo-terminal (`script`), answering `answer` to what it asks.
async fn on_terminal(args: &[&str], answer: &str, db: &TestDb, common: &CommonSettings) -> Run {
    use tokio::io::AsyncWriteExt as _;
    let command = std::iter::once(TENANTCTL.to_owned())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .chain(catalog_flags(db, common))
        .map(|word| quoted(&word))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1), from util-linux");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the command on a terminal did not finish")
        .unwrap();
    drop(stdin);
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_formats_confirmations_and_a_psql_line_that_works_as_printed() {
    let Catalog { db, common, cp } = Catalog::create().await;
    provisioned(&cp, "acme", "starter").await;
    provisioned(&cp, "bravo", "pro").await;

    // -o yaml says what -o json says (read back by a YAML parser); -o wide has more columns.
    let json = tenantctl(&["tenants", "show", "acme", "-o", "json"], &db, &common).await;
    let yaml = tenantctl(&["tenants", "show", "acme", "-o", "yaml"], &db, &common).await;
    assert_eq!((json.code, yaml.code), (0, 0), "{}{}", json.stderr, yaml.stderr);
    let parsed = tokio::process::Command::new(e2e_tests::python())
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"])
        .stdin(
            std::fs::File::open({
                let path = std::env::temp_dir().join(format!("tenantctl-{}.yaml", testkit::unique_suffix()));
                std::fs::write(&path, &yaml.stdout).unwrap();
                path
            })
            .unwrap(),
        )
        .output()
        .await
        .unwrap();
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&parsed.stdout).unwrap(),
        serde_json::from_str::<Value>(&json.stdout).unwrap(),
        "{}",
        yaml.stdout
    );
    let wide = tenantctl(&["tenants", "list", "-o", "wide"], &db, &common).await;
    let header = wide.stdout.lines().next().unwrap();
    assert!(
        header.contains("ISOLATION") && header.contains("CLUSTER") && header.contains("POOL"),
        "{}",
        wide.stdout
    );
    let narrow = tenantctl(&["tenants", "list"], &db, &common).await;
    assert!(!narrow.stdout.lines().next().unwrap().contains("CLUSTER"));
    let both = tenantctl(&["tenants", "list", "--json", "-o", "yaml"], &db, &common).await;
    assert_eq!(both.code, 2, "--json and -o are one choice: {}", both.stderr);

    // On a terminal, a delete asks for the slug: a wrong answer changes nothing.
    let refused = on_terminal(&["tenants", "delete", "bravo"], "acme", &db, &common).await;
    assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("Type bravo to confirm"), "{}", refused.stdout);
    assert!(refused.stdout.contains("not confirmed; nothing was changed"), "{}", refused.stdout);
    assert_eq!(e2e_tests::tenant_status(&db, "bravo").await, "active");
    let done = on_terminal(&["tenants", "delete", "bravo", "--no-wait"], "bravo", &db, &common).await;
    assert_eq!(done.code, 0, "{}{}", done.stdout, done.stderr);
    assert_eq!(e2e_tests::tenant_status(&db, "bravo").await, "deprovisioning");
    // --yes asks nothing; without a terminal nothing is asked either (scripts).
    let restored = tenantctl(&["tenants", "restore", "bravo"], &db, &common).await;
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    let yes = on_terminal(&["tenants", "delete", "bravo", "--yes", "--no-wait"], "", &db, &common).await;
    assert_eq!(yes.code, 0, "{}{}", yes.stdout, yes.stderr);
    assert!(!yes.stdout.contains("to confirm"), "{}", yes.stdout);

    // Several tenants at once (repeated or comma-separated) in the audit log.
    let tenant_ids = |run: &Run| -> std::collections::BTreeSet<String> {
        serde_json::from_str::<Value>(&run.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["tenant_id"].as_str().map(str::to_owned))
            .collect()
    };
    let both = tenantctl(&["audit", "--tenant", "acme,bravo", "--json"], &db, &common).await;
    let one = tenantctl(&["audit", "--tenant", "acme", "--json"], &db, &common).await;
    assert_eq!((tenant_ids(&both).len(), tenant_ids(&one).len()), (2, 1), "{}", both.stdout);

    // connection-string --psql, run by a shell as printed, through the router's PostgreSQL door.
    let router = spawn_router_with(&router_settings(&common)).await;
    let pg = router.pg_addr.unwrap();
    let psql = tenantctl(
        &[
            "tenants",
            "connection-string",
            "acme",
            "--psql",
            "--pg-host",
            &pg.ip().to_string(),
            "--pg-port",
            &pg.port().to_string(),
            "--pg-sslmode",
            "disable",
        ],
        &db,
        &common,
    )
    .await;
    assert_eq!(psql.code, 0, "{}", psql.stderr);
    let line = psql.stdout.trim();
    assert!(line.starts_with("PGPASSWORD='") && line.contains(" psql 'host="), "{line}");
    assert!(!line.split(" psql ").nth(1).unwrap().contains("password"), "not on psql's command line: {line}");
    let bin = std::env::var("TENANCY_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let shell = tokio::process::Command::new("sh")
        .args(["-c", &format!("{line} -tAc 'SELECT current_user, current_schema()'")])
        .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()))
        .output()
        .await
        .unwrap();
    assert!(shell.status.success(), "{line}: {}", String::from_utf8_lossy(&shell.stderr));
    let role = format!("{}_acme", db.role_prefix);
    assert_eq!(String::from_utf8_lossy(&shell.stdout).trim(), format!("{role}|t_acme"));
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_what_is_wrong_and_never_offers_a_new_key_to_an_install_with_tenants() {
    let Catalog { db, common, cp } = Catalog::create().await;
    provisioned(&cp, "acme", "starter").await;

    let healthy = tenantctl(&["doctor", "--json"], &db, &common).await;
    assert_eq!(healthy.code, 0, "{}{}", healthy.stdout, healthy.stderr);
    let report: Value = serde_json::from_str(&healthy.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let verdict = |report: &Value, check: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check)
            .cloned()
            .unwrap_or_else(|| panic!("{check}: {report}"))
    };
    assert_eq!(verdict(&report, "catalog schema")["verdict"], "ok", "{report}");
    assert_eq!(verdict(&report, "secret store")["verdict"], "ok", "{report}");
    assert!(verdict(&report, "secret store")["detail"]
        .as_str()
        .unwrap()
        .contains("reads tenant acme's credentials"));
    assert_eq!(verdict(&report, "tenants")["detail"], "1 live, all at V1");

    // No key, with a tenant whose credentials need it: restore it, never make a new one.
    let mut keyless = common.clone();
    keyless.secrets.secrets_local_key = None;
    let missing = tenantctl(&["doctor", "--json"], &db, &keyless).await;
    assert_eq!(missing.code, 1, "{}", missing.stdout);
    let report: Value = serde_json::from_str(&missing.stdout).unwrap();
    let secret = verdict(&report, "secret store");
    assert_eq!(secret["verdict"], "fail");
    let hint = secret["hint"].as_str().unwrap();
    assert!(hint.contains("do not generate a new one") && !hint.contains("openssl rand"), "{hint}");

    // A wrong key is told apart from a missing one.
    let mut wrong = common.clone();
    wrong.secrets.secrets_local_key = Some(tenancy::secrets::local::LocalKey::generate_base64().into());
    let report: Value =
        serde_json::from_str(&tenantctl(&["doctor", "--json"], &db, &wrong).await.stdout).unwrap();
    let secret = verdict(&report, "secret store");
    assert_eq!(secret["verdict"], "fail", "{report}");
    assert!(secret["hint"].as_str().unwrap().contains("not the one"), "{secret}");

    // A table for people, hints on stderr; nothing changed by any of it.
    let table = tenantctl(&["doctor"], &db, &common).await;
    assert!(table.stdout.starts_with("CHECK"), "{}", table.stdout);
    assert_eq!(e2e_tests::tenant_status(&db, "acme").await, "active");
}

#[tokio::test]
async fn short_help_shows_a_commands_own_options_and_long_help_the_rest() {
    let help = |flag: &'static str| async move {
        let output = tokio::process::Command::new(TENANTCTL)
            .args(["tenants", "suspend", flag])
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let short = help("-h").await;
    assert!(short.contains("--no-wait") && short.contains("--timeout"), "{short}");
    for global in ["--json", "--output", "--redis-url", "--secrets-backend", "--migrations-dir"] {
        assert!(!short.contains(global), "{global} in -h:\n{short}");
    }
    let long = help("--help").await;
    assert!(long.contains("Global options:") && long.contains("--output <FORMAT>"), "{long}");
    assert!(long.contains("--redis-url") && long.contains("[env: REDIS_URL]"), "{long}");
}
