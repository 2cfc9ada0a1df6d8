//! `tenantctl templates upgrade` and `tenantctl tenants template-upgrades`.

use super::{parse_slug, start, CliError};
use crate::cli::{TemplateUpgradesArgs, UpgradeArgs};
use crate::output;
use crate::profile::upgrade::{upgrade, UpgradeOptions};
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
    let left = report.iter().filter(|row| row.outcome == "conflicts").count();
    if json {
        output::json(&report);
    } else if report.is_empty() {
        output::line("No tenants found.");
    } else {
        let rows: Vec<Vec<String>> = report
            .iter()
            .map(|row| {
                let outcome = match (row.outcome, args.dry_run) {
                    ("upgraded", true) => "would upgrade",
                    (outcome, _) => outcome,
                };
                let conflicts: Vec<&str> = row.conflicts.iter().map(|c| c.path.as_str()).collect();
                vec![
                    row.tenant.clone(),
                    row.template.clone(),
                    format!("{} → {}", row.from_version, row.to_version),
                    outcome.replace('_', " "),
                    conflicts.join(" "),
                ]
            })
            .collect();
        output::table(&["tenant", "template", "version", "outcome", "conflicts"], &rows);
        if left > 0 {
            output::note(&format!(
                "{left} tenant(s) left as they are: keys both they and the template changed; run again with --prefer template|tenant"
            ));
        }
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
