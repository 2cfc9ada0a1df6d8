//! A tenant's profile from the command line: `tenantctl tenants config get|set|edit`,
//! `tenantctl templates upgrade` and `tenantctl tenants template-upgrades`.

use super::{parse_slug, start, CliError};
use crate::cli::{ConfigSetArgs, ShowArgs, TemplateUpgradesArgs, UpgradeArgs};
use crate::output;
use crate::profile::upgrade::{upgrade, UpgradeOptions};
use crate::tenants::ConfigChange;
use std::process::ExitCode;
use tenancy::catalog::CatalogError;
use tenancy::domain::PlanName;
use tenancy::error::ErrorKind;

/// Who the audit log names for changes made from the command line.
const ACTOR: &str = "tenantctl";

pub(super) async fn upgrade_templates(args: UpgradeArgs, json: bool) -> Result<ExitCode, CliError> {
    for slug in &args.tenants {
        parse_slug(slug)?;
    }
    let plan = args
        .plan
        .as_deref()
        .map(PlanName::parse)
        .transpose()
        .map_err(|e| CliError::invalid("invalid_plan", e.to_string()))?;
    let cp = start(&args.catalog).await?;
    let options = UpgradeOptions { plan, tenants: args.tenants, dry_run: args.dry_run, prefer: args.prefer };
    let report = upgrade(&cp, &options, ACTOR).await?;
    let left = report.iter().filter(|row| matches!(row.outcome, "conflicts" | "invalid")).count();
    let failed = report.iter().filter(|row| row.outcome == "error").count();
    if json {
        output::json(&report);
    } else {
        let rows: Vec<Vec<String>> = report
            .iter()
            .map(|row| {
                let outcome = match (row.outcome, args.dry_run) {
                    ("upgraded", true) => "would upgrade",
                    (outcome, _) => outcome,
                };
                let mut conflicts: Vec<&str> = row.conflicts.iter().map(|c| c.path.as_str()).collect();
                conflicts.extend(row.invalid.as_deref());
                conflicts.extend(row.error.as_deref());
                vec![
                    row.tenant.clone(),
                    row.template.clone(),
                    format!("{} → {}", row.from_version, row.to_version),
                    outcome.replace('_', " "),
                    conflicts.join(" "),
                ]
            })
            .collect();
        output::listing("tenants", &["tenant", "template", "version", "outcome", "conflicts"], &rows);
        if left > 0 {
            output::note(&format!(
                "{left} tenant(s) left as they are: keys both they and the template changed (run again with --prefer \
                 template|tenant), or a merge that does not match the template's schema (fix the tenant's config first)"
            ));
        }
    }
    if failed > 0 {
        return Ok(ExitCode::from(super::exit_code(ErrorKind::Failed)));
    }
    if left > 0 && !args.dry_run {
        return Ok(ExitCode::from(super::exit_code(ErrorKind::Conflict)));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn template_upgrades(args: TemplateUpgradesArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    let enabled = args.state == "on";
    crate::tenants::set_template_upgrades(&cp, &slug, enabled, ACTOR).await?;
    if json {
        output::json(&serde_json::json!({ "tenant": slug.as_str(), "template_upgrades": enabled }));
    } else {
        output::line(&format!(
            "{slug}: template upgrades {}",
            if enabled { "on" } else { "off (upgraded only when named with --tenant, or by a plan change)" }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The config of `slug` with what it was built from, as `config get --json` prints it.
async fn read_profile(
    cp: &crate::control_plane::ControlPlane,
    slug: &str,
) -> Result<serde_json::Value, CliError> {
    let tenant = super::find(cp, slug).await?;
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    let (template, version, upgrades) = crate::catalog::tenants::template_of(&**client, tenant.id)
        .await
        .map_err(CatalogError::from)?
        .ok_or_else(|| CliError::new(ErrorKind::NotFound, "not_found", format!("no tenant {slug}")))?;
    Ok(serde_json::json!({
        "tenant": tenant.slug.as_str(),
        "display_name": tenant.display_name,
        "data_source": {
            "cluster": tenant.cluster,
            "isolation": tenant.isolation.as_str(),
            "schema": tenant.schema_name.as_str(),
            "database": tenant.database_name.as_ref().map(|d| d.as_str().to_owned()),
        },
        "template": template,
        "template_version": version,
        "template_upgrades": upgrades,
        "config": tenant.config,
    }))
}

pub(super) async fn config_get(args: ShowArgs, json: bool) -> Result<ExitCode, CliError> {
    parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    let profile = read_profile(&cp, &args.slug).await?;
    output::json(if json { &profile } else { &profile["config"] });
    Ok(ExitCode::SUCCESS)
}

fn parse_config(text: &str, what: &str) -> Result<serde_json::Value, CliError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CliError::invalid("invalid_config", format!("{what} is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(CliError::invalid("invalid_config", format!("{what} must be a JSON object")));
    }
    Ok(value)
}

pub(super) async fn config_set(args: ConfigSetArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let change = match (&args.merge, &args.file) {
        (Some(patch), _) => ConfigChange::Patch(parse_config(patch, "--merge")?),
        (None, Some(path)) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            }
            .map_err(|e| CliError::invalid("invalid_config", format!("{}: {e}", path.display())))?;
            // The whole config: a merge patch that removes every key it does not name.
            let config = parse_config(&text, &path.display().to_string())?;
            ConfigChange::Replace(config)
        }
        (None, None) => return Err(CliError::invalid("invalid_config", "give --merge or --file")),
    };
    let cp = start(&args.catalog).await?;
    crate::tenants::update_config(&cp, &slug, change, ACTOR).await?;
    let profile = read_profile(&cp, slug.as_str()).await?;
    output::json(if json { &profile } else { &profile["config"] });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn config_edit(args: ShowArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    let before = read_profile(&cp, slug.as_str()).await?["config"].clone();
    let failed = |what: String| CliError::new(ErrorKind::Failed, "edit_failed", what);
    // Readable by this user only, a name no one can guess or have made first.
    let file =
        std::env::temp_dir().join(format!("tenantctl-{slug}-config-{:016x}.json", rand::random::<u64>()));
    let text = serde_json::to_string_pretty(&before).unwrap_or_default();
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| failed(format!("{}: {e}", file.display())))?;
        writeln!(out, "{text}").map_err(|e| failed(format!("{}: {e}", file.display())))?;
    }
    let editor =
        std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".to_owned());
    // As git and kubectl do: the editor may come with arguments (`code --wait`).
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("tenantctl-editor")
        .arg(&file)
        .status()
        .map_err(|e| failed(format!("cannot run {editor}: {e}; the config is in {}", file.display())))?;
    if !status.success() {
        let _ = std::fs::remove_file(&file);
        return Err(failed(format!("{editor} exited with {status}; nothing saved")));
    }
    let edited = std::fs::read_to_string(&file).map_err(|e| failed(format!("{}: {e}", file.display())))?;
    if edited.trim().is_empty() {
        let _ = std::fs::remove_file(&file);
        output::line("Edit cancelled (empty file): nothing saved.");
        return Ok(ExitCode::SUCCESS);
    }
    // Until it is saved, the edit stays in its file, named in any error.
    let kept = |mut err: CliError| {
        err.message = format!("{}; your edit is kept in {}", err.message, file.display());
        err
    };
    let config = parse_config(&edited, "the edited config").map_err(kept)?;
    if config == before {
        let _ = std::fs::remove_file(&file);
        output::line("Edit cancelled, no changes made.");
        return Ok(ExitCode::SUCCESS);
    }
    let change = ConfigChange::ReplaceIf { expected: before, config };
    crate::tenants::update_config(&cp, &slug, change, ACTOR).await.map_err(|e| kept(e.into()))?;
    let _ = std::fs::remove_file(&file);
    let profile = read_profile(&cp, slug.as_str()).await?;
    if json {
        output::json(&profile);
    } else {
        output::line(&format!("{slug}: config saved"));
    }
    Ok(ExitCode::SUCCESS)
}
