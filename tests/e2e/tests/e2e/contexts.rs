//! `tenantctl login` and contexts: an operator with a scoped token and no catalog URL runs the
//! tenant lifecycle, fleet runs, tokens and the audit log through the operator API, as kubectl
//! works through a saved context; the token's scope applies.

use control_plane::catalog::tokens::{self, NewToken, Scope};
use serde_json::Value;
use std::process::Stdio;
use testkit::{common_settings, SecretsFor, TestDb};

const TENANTCTL: &str = env!("CARGO_BIN_EXE_tenantctl-under-test");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `tenantctl <args>` with contexts in `config` and no catalog settings at all (nothing from
/// the harness's environment), `stdin` as its input.
async fn tenantctl(config: &std::path::Path, args: &[&str], stdin: &str) -> Run {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(TENANTCTL)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TENANTCTL_CONFIG", config)
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_with_a_token_and_no_catalog_url_works_through_a_saved_context() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = e2e_tests::spawn_control_plane(&db, &common).await;
    e2e_tests::provisioned_by(&control, "acme", "starter").await;
    let client = control.cp.catalog.get().await.unwrap();
    let token = |name, scope| NewToken { name, scope, expires_at: None, created_by: "test" };
    let (operator, _) = tokens::create(&**client, &token("alice", Scope::Operator)).await.unwrap();
    let (viewer, _) = tokens::create(&**client, &token("auditor", Scope::ReadOnly)).await.unwrap();
    drop(client);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenantctl").join("config.toml");
    let url = control.url.clone();

    // A token must not cross a network in clear: http:// only to this machine.
    let plaintext =
        tenantctl(&config, &["login", "--api-url", "http://ops.example.com", "--token", &operator], "").await;
    assert_eq!(plaintext.code, 3, "{}", plaintext.stderr);
    assert!(plaintext.stderr.contains("https://"), "{}", plaintext.stderr);

    // A wrong token saves nothing.
    let refused = tenantctl(&config, &["login", "--api-url", &url, "--token", "tct_nope"], "").await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.contains("unknown or revoked token"), "{}", refused.stderr);
    assert!(!config.exists());

    // The token from standard input (not the shell's history), checked, saved for its owner.
    let login =
        tenantctl(&config, &["login", "--api-url", &url, "--context", "prod"], &format!("{operator}\n"))
            .await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert!(login.stderr.contains("as alice (operator)"), "{}", login.stderr);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    let viewer_login =
        tenantctl(&config, &["login", "--api-url", &url, "--context", "audit", "--token", &viewer], "").await;
    assert_eq!(viewer_login.code, 0, "{}", viewer_login.stderr);
    let used = tenantctl(&config, &["config", "use-context", "prod"], "").await;
    assert_eq!(used.code, 0, "{}", used.stderr);
    let listed = json(&tenantctl(&config, &["config", "get-contexts", "--json"], "").await);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&operator), "contexts are listed without their tokens");
    assert_eq!(tenantctl(&config, &["config", "current-context"], "").await.stdout.trim(), "prod");

    // Through the API: list, show, suspend (as alice, in the audit log), resume.
    let tenants = json(&tenantctl(&config, &["tenants", "list", "-o", "json"], "").await);
    assert_eq!(tenants[0]["slug"], "acme", "{tenants}");
    let table = tenantctl(&config, &["tenants", "list"], "").await;
    assert!(table.stdout.starts_with("SLUG") && table.stdout.contains("acme"), "{}", table.stdout);
    let suspended = tenantctl(&config, &["tenants", "suspend", "acme", "--json"], "").await;
    assert_eq!(
        (suspended.code, &json(&suspended)["status"]),
        (0, &Value::from("suspended")),
        "{}",
        suspended.stderr
    );
    let audit = json(&tenantctl(&config, &["audit", "--tenant", "acme", "--json"], "").await);
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["actor"] == "alice" && e["action"] == "tenant.suspend"),
        "{audit}"
    );
    let missing = tenantctl(&config, &["tenants", "show", "nobody"], "").await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    let dotted = tenantctl(&config, &["tenants", "suspend", ".."], "").await;
    assert_eq!(dotted.code, 3, "checked before anything is sent: {}", dotted.stderr);

    // Another context's scope: the read-only token is refused a change, with the API's code.
    let forbidden =
        tenantctl(&config, &["--context", "audit", "tenants", "resume", "acme", "--json"], "").await;
    assert_eq!(forbidden.code, 3, "{}", forbidden.stdout);
    assert_eq!(json(&forbidden)["error"]["code"], "forbidden");
    let resumed = tenantctl(&config, &["tenants", "resume", "acme", "--json"], "").await;
    assert_eq!(json(&resumed)["status"], "active");

    // A fleet run started and watched through the API.
    let started = tenantctl(&config, &["migrate", "apply", "--json"], "").await;
    assert_eq!(started.code, 0, "{}", started.stderr);
    let id = json(&started)["id"].as_str().unwrap().to_owned();
    let watched =
        tenantctl(&config, &["migrate", "status", &id[..8], "--watch", "--interval", "200ms"], "").await;
    assert_eq!(watched.code, 0, "{}{}", watched.stdout, watched.stderr);
    assert!(watched.stdout.contains("completed"), "{}", watched.stdout);

    // What only the catalog does is refused plainly; forgetting a context forgets its token.
    let catalog_only = tenantctl(&config, &["clusters", "undrain", "default"], "").await;
    assert_eq!(catalog_only.code, 3, "{}", catalog_only.stderr);
    assert!(catalog_only.stderr.contains("set DATABASE_URL"), "{}", catalog_only.stderr);
    assert_eq!(tenantctl(&config, &["logout"], "").await.code, 0);
    assert!(!std::fs::read_to_string(&config).unwrap().contains(&operator));
    let unknown = tenantctl(&config, &["--context", "prod", "tenants", "list"], "").await;
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    control.server.stop().await.unwrap();
}

/// A tenant's domains, profile, template upgrades and move, the clusters, billing events and
/// routers' pools through a context print what the same commands print on the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_domains_profile_move_and_billing_events_through_a_context_read_as_on_the_catalog() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = e2e_tests::spawn_control_plane(&db, &common).await;
    e2e_tests::provisioned_by(&control, "acme", "starter").await;
    e2e_tests::provisioned_by(&control, "globex", "starter").await;
    let client = control.cp.catalog.get().await.unwrap();
    let token = NewToken { name: "alice", scope: Scope::Operator, expires_at: None, created_by: "test" };
    let (operator, _) = tokens::create(&**client, &token).await.unwrap();
    // Two billing events about acme's and globex's subscriptions, one about neither.
    client
        .batch_execute(
            "UPDATE control.tenants SET billing_subscription_id = 'sub_' || slug;
             INSERT INTO control.billing_events (event_id, type, payload, raw_body, received_at, processed_at, outcome)
             SELECT 'evt_' || s, 'customer.subscription.updated',
                    jsonb_build_object('data', jsonb_build_object('object',
                        jsonb_build_object('object', 'subscription', 'id', 'sub_' || s))),
                    '{}', now() - (n || ' s')::interval, now(), 'ignored: a test event'
               FROM unnest(ARRAY['acme', 'globex', 'initech']) WITH ORDINALITY AS e(s, n)",
        )
        .await
        .unwrap();
    drop(client);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let login = tenantctl(&config, &["login", "--api-url", &control.url, "--token", &operator], "").await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    let program = TENANTCTL;
    let catalog = |args: &'static [&'static str]| {
        let (db, common) = (&db, &common);
        async move {
            let (code, value) = e2e_tests::tenantctl_json(program, args, db, common).await;
            assert_eq!(code, 0, "{args:?} on the catalog: {value}");
            value
        }
    };
    let remote = |args: Vec<&'static str>| {
        let config = config.clone();
        async move {
            let run = tenantctl(&config, &[args.as_slice(), &["--json"]].concat(), "").await;
            assert_eq!(run.code, 0, "{args:?} through the context: {}{}", run.stdout, run.stderr);
            json(&run)
        }
    };

    // Tenants: the same view both ways (the API's field names), after a change too.
    assert_eq!(remote(vec!["tenants", "list"]).await, catalog(&["tenants", "list"]).await);
    let shown = remote(vec!["tenants", "show", "globex"]).await;
    assert_eq!((&shown["name"], &shown["schema_version"]), (&"globex".into(), &1.into()), "{shown}");
    assert_eq!(shown, catalog(&["tenants", "show", "globex"]).await);
    let deleted = remote(vec!["tenants", "delete", "globex", "--retention", "1h", "--yes"]).await;
    assert!(deleted["drop_after"].is_string(), "when its data goes: {deleted}");
    assert_eq!(deleted, catalog(&["tenants", "show", "globex"]).await);
    let restored = remote(vec!["tenants", "restore", "globex"]).await;
    assert_eq!(restored["status"], "active", "{restored}");

    // Domains: added through the context, listed the same both ways, removed.
    let added = tenantctl(&config, &["tenants", "add-domain", "acme", "--host", "shop.acme.test"], "").await;
    assert_eq!((added.code, added.stdout.trim()), (0, "shop.acme.test -> acme"), "{}", added.stderr);
    let domains = remote(vec!["tenants", "domains", "acme"]).await;
    assert!(domains
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["host"] == "shop.acme.test" && d["kind"] == "custom"));
    assert_eq!(domains, catalog(&["tenants", "domains", "acme"]).await);
    let removed =
        tenantctl(&config, &["tenants", "remove-domain", "acme", "--host", "shop.acme.test"], "").await;
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert_eq!(catalog(&["tenants", "domains", "acme"]).await.as_array().unwrap().len(), 1);

    // The profile: a merge, then an edit by an "editor" (a script), saved only from what it read.
    let merged = remote(vec![
        "tenants",
        "config",
        "set",
        "acme",
        "--merge",
        r##"{"theme": {"primary_color": "#008080"}}"##,
    ])
    .await;
    assert_eq!(merged["config"]["theme"]["primary_color"], "#008080", "{merged}");
    assert_eq!(merged, catalog(&["tenants", "config", "get", "acme"]).await);
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/#008080/#000080/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let edited = tokio::process::Command::new(TENANTCTL)
        .args(["tenants", "config", "edit", "acme"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TENANTCTL_CONFIG", &config)
        .env("EDITOR", &editor)
        .output()
        .await
        .unwrap();
    assert!(edited.status.success(), "{}", String::from_utf8_lossy(&edited.stderr));
    assert_eq!(
        catalog(&["tenants", "config", "get", "acme"]).await["config"]["theme"]["primary_color"],
        "#000080"
    );
    let opted_out = remote(vec!["tenants", "template-upgrades", "acme", "off"]).await;
    assert_eq!(opted_out, serde_json::json!({ "tenant": "acme", "template_upgrades": false }));
    assert_eq!(catalog(&["tenants", "config", "get", "acme"]).await["template_upgrades"], false);

    // Billing events of two tenants (newest first), the same both ways.
    let events = remote(vec!["billing", "events", "--tenant", "acme", "--tenant", "globex"]).await;
    let ids: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_acme", "evt_globex"], "{events}");
    assert_eq!(events, catalog(&["billing", "events", "--tenant", "acme,globex"]).await);

    // A move started through the context runs in the control plane and is followed to its end.
    let moved = remote(vec!["tenants", "move", "acme", "--isolation", "database", "--timeout", "120s"]).await;
    assert_eq!(
        (&moved[0]["state"], &moved[0]["to"]["isolation"]),
        (&"done".into(), &"database".into()),
        "{moved}"
    );
    assert_eq!(remote(vec!["tenants", "moves", "acme"]).await, catalog(&["tenants", "moves", "acme"]).await);
    // And back, not waited for, but watched until it ends (both ways).
    let started = remote(vec!["tenants", "move", "acme", "--isolation", "schema", "--no-wait"]).await;
    assert_eq!(started[0]["state"], "running", "{started}");
    let watched =
        tenantctl(&config, &["tenants", "moves", "acme", "--watch", "--interval", "200ms", "--json"], "")
            .await;
    assert_eq!(watched.code, 0, "{}{}", watched.stdout, watched.stderr);
    let last =
        serde_json::Deserializer::from_str(&watched.stdout).into_iter::<Value>().last().unwrap().unwrap();
    assert_eq!(
        (&last[0]["state"], &last[0]["to"]["isolation"]),
        (&"done".into(), &"schema".into()),
        "{last}"
    );
    let (code, _) =
        e2e_tests::tenantctl_json(program, &["tenants", "moves", "acme", "--watch"], &db, &common).await;
    assert_eq!(code, 0, "no move runs: the watch ends at once");
    let (code, shown) =
        e2e_tests::tenantctl_json(program, &["tenants", "show", "acme", "--watch"], &db, &common).await;
    assert_eq!((code, &shown["status"]), (0, &"active".into()), "an active tenant has settled: {shown}");
    let table = tenantctl(&config, &["tenants", "moves", "acme"], "").await;
    assert!(table.stdout.starts_with("MOVE") && table.stdout.contains("default/"), "{}", table.stdout);

    // doctor through the context: the API, the token, the versions, the fleet.
    let doctor = remote(vec!["doctor"]).await;
    let verdicts: std::collections::BTreeMap<&str, &str> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(verdicts["operator API"], "ok", "{doctor}");
    assert_eq!(verdicts["token"], "ok", "{doctor}");
    assert_eq!(verdicts["control plane"], "ok", "the same version: {doctor}");
    assert_eq!(verdicts["tenants"], "ok", "{doctor}");
    assert_eq!(doctor["ok"], true, "{doctor}");

    // A fleet migration plan, computed by the control plane: what the catalog's says (but for
    // the connections in use just now).
    let plan = |mut plan: Value| {
        plan.as_object_mut().unwrap().remove("headroom");
        plan
    };
    let planned = plan(remote(vec!["migrate", "plan", "--tenant", "acme,globex"]).await);
    assert_eq!((&planned["tenants"], &planned["drift"]), (&2.into(), &serde_json::json!([])), "{planned}");
    assert_eq!(planned, plan(catalog(&["migrate", "plan", "--tenant", "acme,globex"]).await));

    // Clusters: the API's view has no admin connection; the rest is the catalog's.
    let without_admin = |mut clusters: Value| {
        for cluster in clusters.as_array_mut().unwrap() {
            cluster.as_object_mut().unwrap().remove("admin_secret");
        }
        clusters
    };
    let through = remote(vec!["clusters", "list"]).await;
    assert!(through[0].get("admin_secret").is_none(), "not said by the API: {through}");
    assert_eq!(through, without_admin(catalog(&["clusters", "list"]).await));
    assert_eq!(through[0]["tenants"], 2, "{through}");

    // A tenant deleted at once (no retention) is shown deleted, exit code 0.
    let dropped = remote(vec!["tenants", "delete", "globex", "--retention", "0s", "--yes"]).await;
    assert_eq!(dropped["status"], "deleted", "{dropped}");
    control.server.stop().await.unwrap();
}
