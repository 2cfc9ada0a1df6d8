//! Versioned templates: a fleet of 100 tenants with mixed edits of their own brought to a new
//! template version by `tenantctl templates upgrade` (the three-way merge: untouched keys take
//! the template's change, the tenants' edits stay, keys both changed are conflicts), opting out,
//! and a plan change that no longer wipes a tenant's edits.

use control_plane::control_plane::ControlPlane;
use control_plane::tenants::{request as operate, Operation};
use e2e_tests::provisioned;
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::time::Duration;
use tenancy::domain::Slug;
use testkit::{common_settings, workspace_root, SecretsFor, TestDb};

const TENANTS: usize = 100;

/// The new version of `base.toml`: version 2, with a module added, the theme's colour changed,
/// a support contact added, and the logo untouched.
fn base_v2(v1: &str) -> String {
    let v2 = v1
        .replace("version = 1", "version = 2")
        .replace("modules = [\"projects\", \"tasks\"]", "modules = [\"projects\", \"tasks\", \"reports\"]")
        .replace("primary_color = \"#2563eb\"", "primary_color = \"#1d4ed8\"");
    assert_ne!(v1, v2, "base.toml changed shape: update this test");
    format!("{v2}\n[config.support]\nemail = \"help@example.com\"\n")
}

/// What each tenant did to its profile, by its index: nothing; a key the template leaves alone
/// (its logo); a key the template changes too (the colour); the modules list and a key of its
/// own.
fn edit(i: usize, config: &mut Value) {
    match i % 4 {
        0 => {}
        1 => config["theme"]["logo"] = json!(format!("tenant-{i}.svg")),
        2 => config["theme"]["primary_color"] = json!("#ff0000"),
        _ => {
            config["modules"] = json!(["projects"]);
            config["contact"] = json!(format!("ops@t{i}.test"));
        }
    }
}

fn slug(i: usize) -> String {
    format!("t{i:03}")
}

struct Fleet {
    db: TestDb,
    common: tenancy::settings::CommonSettings,
    templates: std::path::PathBuf,
    cp: std::sync::Arc<ControlPlane>,
}

impl Fleet {
    /// `tenantctl <args> --json` on this fleet's catalog and templates: exit code and output.
    async fn tenantctl(&self, args: &[&str]) -> (i32, Value) {
        let mut flags = e2e_tests::catalog_flags(&self.db, &self.common);
        let at = flags.iter().position(|f| f == "--templates-dir").unwrap();
        flags[at + 1] = self.templates.display().to_string();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl-under-test"))
            .args(args)
            .arg("--json")
            .args(flags)
            .env("RUST_LOG", "error")
            .output()
            .await
            .unwrap();
        let parsed = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code().unwrap(), parsed)
    }

    /// Changes `slug`'s plan and runs the job that applies it.
    async fn change_plan(&self, slug: &str, plan: &str) {
        operate(&self.cp, &Slug::parse(slug).unwrap(), &Operation::ChangePlan(plan.into()), "test")
            .await
            .unwrap();
        let client = self.cp.catalog.get().await.unwrap();
        let id = client
            .query_one("SELECT id FROM control.tenants WHERE slug = $1", &[&slug])
            .await
            .unwrap()
            .get(0);
        control_plane::jobs::runner::drain(&self.cp, tenancy::domain::TenantId(id), Duration::from_secs(60))
            .await
            .unwrap();
    }

    /// Every tenant's config and template version, by slug.
    async fn profiles(&self) -> std::collections::BTreeMap<String, (Value, i32)> {
        let rows = self
            .db
            .client()
            .await
            .query("SELECT slug, config, template_version FROM control.tenants", &[])
            .await
            .unwrap();
        rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect()
    }
}

async fn acme_config(fleet: &Fleet) -> Value {
    fleet.profiles().await["acme"].0.clone()
}

fn outcomes(report: &Value) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for row in report.as_array().unwrap() {
        *counts.entry(row["outcome"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_its_own_edits_is_upgraded_to_a_new_template_version_without_losing_them() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let templates = std::env::temp_dir().join(format!("templates-{}", db.name));
    std::fs::create_dir_all(&templates).unwrap();
    for entry in std::fs::read_dir(workspace_root().join("tenant-templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), templates.join(entry.file_name())).unwrap();
    }
    let settings = control_plane::settings::ProvisioningSettings::new(
        &db.role_prefix,
        workspace_root().join("migrations"),
        templates.clone(),
    );
    let cp = ControlPlane::start(&common, &settings).await.unwrap();
    futures::stream::iter(0..TENANTS)
        .map(|i| {
            let cp = cp.clone();
            async move { provisioned(&cp, &slug(i), "starter").await }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let fleet = Fleet { db, common, templates, cp };

    // The tenants' own edits, made before the template changes.
    let v1_config = fleet.profiles().await[&slug(0)].0.clone();
    let catalog = fleet.db.client().await;
    for i in 0..TENANTS {
        let mut config = v1_config.clone();
        edit(i, &mut config);
        catalog
            .execute("UPDATE control.tenants SET config = $2 WHERE slug = $1", &[&slug(i), &config])
            .await
            .unwrap();
    }
    let base = std::fs::read_to_string(fleet.templates.join("base.toml")).unwrap();
    std::fs::write(fleet.templates.join("base.toml"), base_v2(&base)).unwrap();
    // t000 opted out; it is upgraded only when named.
    assert_eq!(fleet.tenantctl(&["tenants", "template-upgrades", "t000", "off"]).await.0, 0);
    let mut v2_config = v1_config.clone();
    v2_config["modules"] = json!(["projects", "tasks", "reports"]);
    v2_config["theme"]["primary_color"] = json!("#1d4ed8");
    v2_config["support"] = json!({"email": "help@example.com"});

    // A dry run reports and writes nothing.
    let before = fleet.profiles().await;
    let (code, report) = fleet.tenantctl(&["templates", "upgrade", "--plan", "starter", "--dry-run"]).await;
    assert_eq!(code, 0);
    let quarter = TENANTS / 4;
    let expected: std::collections::BTreeMap<String, usize> =
        [("conflicts", 2 * quarter), ("opted_out", 1), ("upgraded", 2 * quarter - 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    assert_eq!(outcomes(&report), expected);
    assert_eq!(fleet.profiles().await, before, "a dry run changes nothing");
    let conflicted = report.as_array().unwrap().iter().find(|r| r["tenant"] == json!("t002")).unwrap();
    assert_eq!(conflicted["conflicts"][0]["path"], json!("/theme/primary_color"));
    assert_eq!(conflicted["conflicts"][0]["tenant"], json!("#ff0000"));
    assert_eq!(conflicted["conflicts"][0]["template"], json!("#1d4ed8"));

    // Without a preference, tenants with conflicts are left as they are (exit 5).
    let (code, report) = fleet.tenantctl(&["templates", "upgrade"]).await;
    assert_eq!(code, 5, "{report}");
    assert_eq!(outcomes(&report), expected);
    let after = fleet.profiles().await;
    for i in 0..TENANTS {
        let (config, version) = &after[&slug(i)];
        let mut want = v2_config.clone();
        edit(i, &mut want);
        match i % 4 {
            0 if i == 0 => assert_eq!((config, *version), (&before[&slug(0)].0, 1), "opted out"),
            // Untouched: exactly the new template. Logo edited: the edit and the template's
            // changes.
            0 | 1 => assert_eq!((config, *version), (&want, 2), "{}", slug(i)),
            _ => assert_eq!((config, *version), (&before[&slug(i)].0, 1), "{} left as it was", slug(i)),
        }
    }

    // Preferring the tenant: the conflicting keys keep the tenant's values, the rest of the
    // template's change is taken.
    let (code, report) = fleet.tenantctl(&["templates", "upgrade", "--prefer", "tenant"]).await;
    assert_eq!(code, 0, "{report}");
    let after = fleet.profiles().await;
    for i in (0..TENANTS).filter(|i| i % 4 >= 2) {
        let mut want = v2_config.clone();
        edit(i, &mut want);
        assert_eq!(after[&slug(i)], (want, 2), "{}", slug(i));
    }
    // Nothing left to do; the opted-out tenant when named.
    let (_, report) = fleet.tenantctl(&["templates", "upgrade"]).await;
    assert_eq!(outcomes(&report).get("upgraded"), None, "{report}");
    let (code, _) = fleet.tenantctl(&["templates", "upgrade", "--tenant", "t000"]).await;
    assert_eq!(code, 0);
    assert_eq!(fleet.profiles().await[&slug(0)], (v2_config.clone(), 2));
    let upgrades: i64 = catalog
        .query_one("SELECT count(*) FROM control.audit_log WHERE action = 'tenant.template_upgrade'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(upgrades, i64::try_from(TENANTS).unwrap());
    // An unknown tenant named is an error, and nothing runs.
    assert_eq!(fleet.tenantctl(&["templates", "upgrade", "--tenant", "nobody"]).await.0, 4);

    // A merge that would not match the template's schema (a key the schema does not allow,
    // written behind the control plane's back) leaves the tenant as it is.
    let mut broken = v2_config.clone();
    broken["theme"]["font"] = json!("Comic Sans");
    catalog.execute("UPDATE control.tenants SET config = $1 WHERE slug = 't004'", &[&broken]).await.unwrap();
    let base = std::fs::read_to_string(fleet.templates.join("base.toml")).unwrap();
    std::fs::write(fleet.templates.join("base.toml"), base.replace("version = 2", "version = 3")).unwrap();
    let (code, report) = fleet.tenantctl(&["templates", "upgrade", "--tenant", "t004"]).await;
    assert_eq!(code, 5, "{report}");
    assert_eq!(report[0]["outcome"], json!("invalid"), "{report}");
    assert!(report[0]["invalid"].as_str().unwrap().contains("/theme"), "{report}");
    assert_eq!(fleet.profiles().await[&slug(4)], (broken, 2));

    // A plan change merges the new plan's config into the tenant's edits (it used to replace
    // them): t001's logo stays, pro's modules arrive.
    fleet.change_plan("t001", "pro").await;
    let (config, _) = &fleet.profiles().await[&slug(1)];
    assert_eq!(config["theme"]["logo"], json!("tenant-1.svg"), "{config}");
    assert_eq!(config["modules"], json!(["projects", "tasks", "comments", "tags"]), "{config}");
    // Where the tenant and the new plan both changed a key, the plan decides (what the tenant is
    // entitled to), and the tenant's value is kept in the audit log: t003 had cut its modules.
    fleet.change_plan("t003", "pro").await;
    let (config, _) = &fleet.profiles().await[&slug(3)];
    assert_eq!(config["modules"], json!(["projects", "tasks", "comments", "tags"]), "{config}");
    assert_eq!(config["contact"], json!("ops@t3.test"), "its own key stays");
    let recorded: Value = catalog
        .query_one(
            "SELECT detail FROM control.audit_log a JOIN control.tenants t ON t.id = a.tenant_id
              WHERE t.slug = 't003' AND a.action = 'tenant.template_conflicts'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded["conflicts"][0]["path"], json!("/modules"), "{recorded}");
    assert_eq!(recorded["conflicts"][0]["tenant"], json!(["projects"]), "{recorded}");
    std::fs::remove_dir_all(&fleet.templates).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_profile_is_read_patched_replaced_and_edited_from_the_command_line() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &e2e_tests::provisioning_settings(&db)).await.unwrap();
    provisioned(&cp, "acme", "starter").await;
    let fleet = Fleet { templates: workspace_root().join("tenant-templates"), db, common, cp };

    // An empty listing says so, as kubectl does, rather than print a bare header.
    let listed = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl-under-test"))
        .args(["tenants", "list", "--status", "suspended"])
        .args(e2e_tests::catalog_flags(&fleet.db, &fleet.common))
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "No tenants found.\n");

    let (code, profile) = fleet.tenantctl(&["tenants", "config", "get", "acme"]).await;
    assert_eq!(code, 0);
    assert_eq!(profile["tenant"], json!("acme"));
    assert_eq!(
        (profile["template"].as_str(), profile["template_version"].as_i64()),
        (Some("starter"), Some(1))
    );
    assert_eq!(profile["template_upgrades"], json!(true));
    assert_eq!(profile["data_source"]["isolation"], json!("schema"));
    assert!(profile["display_name"].is_string());
    assert_eq!(profile["config"], acme_config(&fleet).await);

    // A merge patch: a key changed, one removed.
    let (code, profile) = fleet
        .tenantctl(&[
            "tenants",
            "config",
            "set",
            "acme",
            "--merge",
            r#"{"theme": {"logo": "acme.svg"}, "modules": null}"#,
        ])
        .await;
    assert_eq!(code, 0, "{profile}");
    assert_eq!(profile["config"]["theme"]["logo"], json!("acme.svg"));
    assert!(profile["config"].get("modules").is_none());
    // Not an object, not JSON, no such tenant: refused, nothing changed.
    let before = acme_config(&fleet).await;
    for (args, want) in [
        (vec!["tenants", "config", "set", "acme", "--merge", "[1]"], 3),
        (vec!["tenants", "config", "set", "acme", "--merge", "{not json"], 3),
        (vec!["tenants", "config", "set", "nobody", "--merge", "{}"], 4),
        // Against the schema the template declares: a colour that is not one, an unknown module.
        (vec!["tenants", "config", "set", "acme", "--merge", r#"{"theme": {"primary_color": "red"}}"#], 3),
        (vec!["tenants", "config", "set", "acme", "--merge", r#"{"modules": ["bitcoin"]}"#], 3),
    ] {
        let mut flags = e2e_tests::catalog_flags(&fleet.db, &fleet.common);
        flags.splice(0..0, args.iter().map(|a| (*a).to_owned()));
        let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl-under-test"))
            .args(&flags)
            .env("RUST_LOG", "error")
            .output()
            .await
            .unwrap()
            .status;
        assert_eq!(status.code(), Some(want), "{args:?}");
    }
    assert_eq!(acme_config(&fleet).await, before);

    // A whole new config from a file.
    let dir = std::env::temp_dir().join(format!("config-{}", fleet.db.name));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.json");
    std::fs::write(&file, r#"{"modules": ["projects"], "theme": {"logo": "file.svg"}}"#).unwrap();
    let (code, _) =
        fleet.tenantctl(&["tenants", "config", "set", "acme", "--file", file.to_str().unwrap()]).await;
    assert_eq!(code, 0);
    assert_eq!(acme_config(&fleet).await, json!({"modules": ["projects"], "theme": {"logo": "file.svg"}}));

    // `config edit` with an editor that changes the logo; one that empties the file (nothing
    // saved); one that leaves invalid JSON (refused); one under which someone else changes the
    // config (nothing saved, exit 5).
    let editor = |name: &str, script: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path
    };
    let edit = |editor: std::path::PathBuf| {
        let fleet = &fleet;
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl-under-test"))
                .args(["tenants", "config", "edit", "acme"])
                .args(e2e_tests::catalog_flags(&fleet.db, &fleet.common))
                .env("EDITOR", editor)
                .env_remove("VISUAL")
                .env("RUST_LOG", "error")
                .output()
                .await
                .unwrap();
            (output.status.code().unwrap(), String::from_utf8_lossy(&output.stdout).into_owned())
        }
    };
    let (code, said) = edit(editor("logo.sh", r#"sed -i 's/file.svg/edited.svg/' "$1""#)).await;
    assert_eq!(code, 0, "{said}");
    assert_eq!(acme_config(&fleet).await["theme"]["logo"], json!("edited.svg"));
    let (code, said) = edit(editor("empty.sh", r#": > "$1""#)).await;
    assert_eq!(code, 0);
    assert!(said.contains("nothing saved"), "{said}");
    let (code, _) = edit(editor("broken.sh", r#"echo '{"modules": [' > "$1""#)).await;
    assert_eq!(code, 3);
    assert_eq!(acme_config(&fleet).await["theme"]["logo"], json!("edited.svg"));
    let meanwhile = format!(
        r#"psql "{}" -qc "UPDATE control.tenants SET config = '{{\"by\": \"someone else\"}}' WHERE slug = 'acme'" >/dev/null
sed -i 's/edited.svg/mine.svg/' "$1""#,
        fleet.db.url
    );
    let (code, _) = edit(editor("race.sh", &meanwhile)).await;
    assert_eq!(code, 5);
    assert_eq!(
        acme_config(&fleet).await,
        json!({"by": "someone else"}),
        "the other change stays; the edit was not saved"
    );
    std::fs::remove_dir_all(&dir).ok();
}
