//! A tenant's profile from the command line: `tenantctl tenants config get|set|edit`,
//! `tenantctl templates upgrade` and `tenantctl tenants template-upgrades`.

use super::{parse_slug, start, CliError};
use crate::cli::{ConfigSetArgs, ShowArgs, TemplateUpgradesArgs, UpgradeArgs};
use crate::output;
use crate::profile::upgrade::{upgrade, UpgradeOptions};
use crate::tenants::ConfigChange;
use std::process::ExitCode;
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
    print_template_upgrades(&slug, enabled, json);
    Ok(ExitCode::SUCCESS)
}

/// What `tenants template-upgrades` did.
pub(super) fn print_template_upgrades(slug: &tenancy::domain::Slug, enabled: bool, json: bool) {
    if json {
        output::json(&serde_json::json!({ "tenant": slug.as_str(), "template_upgrades": enabled }));
    } else {
        output::line(&format!(
            "{slug}: template upgrades {}",
            if enabled { "on" } else { "off (upgraded only when named with --tenant, or by a plan change)" }
        ));
    }
}

pub(super) async fn config_get(args: ShowArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    print_profile(&crate::tenants::profile_of(&cp, &slug).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// A profile as `config get` prints it: the config, or (`--json`) all of it.
pub(super) fn print_profile(profile: &crate::tenants::TenantProfile, json: bool) {
    if json {
        output::json(profile);
    } else {
        output::json(&profile.config);
    }
}

/// The change `config set` asks for: `--merge`'s patch, or `--file`'s whole config.
pub(super) fn config_change(args: &ConfigSetArgs) -> Result<ConfigChange, CliError> {
    match (&args.merge, &args.file) {
        (Some(patch), _) => Ok(ConfigChange::Patch(parse_config(patch, "--merge")?)),
        (None, Some(path)) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            }
            .map_err(|e| CliError::invalid("invalid_config", format!("{}: {e}", path.display())))?;
            // The whole config: a merge patch that removes every key it does not name.
            Ok(ConfigChange::Replace(parse_config(&text, &path.display().to_string())?))
        }
        (None, None) => Err(CliError::invalid("invalid_config", "give --merge or --file")),
    }
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
    let change = config_change(&args)?;
    let cp = start(&args.catalog).await?;
    crate::tenants::update_config(&cp, &slug, change, ACTOR).await?;
    print_profile(&crate::tenants::profile_of(&cp, &slug).await?, json);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn config_edit(args: ShowArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    let before = crate::tenants::profile_of(&cp, &slug).await?.config;
    let Some(edit) = Edit::start(&slug, &before)? else { return Ok(ExitCode::SUCCESS) };
    let change = ConfigChange::ReplaceIf { expected: before, config: edit.config.clone() };
    crate::tenants::update_config(&cp, &slug, change, ACTOR).await.map_err(|e| edit.kept(e.into()))?;
    edit.saved(&slug, &crate::tenants::profile_of(&cp, &slug).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// A config edited in the operator's editor (`$VISUAL`, `$EDITOR`, or vi), kept in its file
/// until it is saved.
pub(super) struct Edit {
    file: std::path::PathBuf,
    /// The edited config.
    pub(super) config: serde_json::Value,
}

impl Edit {
    /// Opens `before` in the editor; `None` (said on stdout) when the edit changed nothing or
    /// was emptied.
    pub(super) fn start(
        slug: &tenancy::domain::Slug,
        before: &serde_json::Value,
    ) -> Result<Option<Self>, CliError> {
        let failed = |what: String| CliError::new(ErrorKind::Failed, "edit_failed", what);
        // Readable by this user only, a name no one can guess or have made first.
        let file =
            std::env::temp_dir().join(format!("tenantctl-{slug}-config-{:016x}.json", rand::random::<u64>()));
        let text = serde_json::to_string_pretty(before).unwrap_or_default();
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
        let edited =
            std::fs::read_to_string(&file).map_err(|e| failed(format!("{}: {e}", file.display())))?;
        if edited.trim().is_empty() {
            let _ = std::fs::remove_file(&file);
            output::line("Edit cancelled (empty file): nothing saved.");
            return Ok(None);
        }
        let edit = Self { config: serde_json::Value::Null, file };
        let config = parse_config(&edited, "the edited config").map_err(|e| edit.kept(e))?;
        if config == *before {
            let _ = std::fs::remove_file(&edit.file);
            output::line("Edit cancelled, no changes made.");
            return Ok(None);
        }
        Ok(Some(Self { config, ..edit }))
    }

    /// `err`, naming the file the edit is kept in (until it is saved).
    pub(super) fn kept(&self, mut err: CliError) -> CliError {
        err.message = format!("{}; your edit is kept in {}", err.message, self.file.display());
        err
    }

    /// The edit was saved: its file goes.
    pub(super) fn saved(
        self,
        slug: &tenancy::domain::Slug,
        profile: &crate::tenants::TenantProfile,
        json: bool,
    ) {
        let _ = std::fs::remove_file(&self.file);
        if json {
            output::json(profile);
        } else {
            output::line(&format!("{slug}: config saved"));
        }
    }
}
