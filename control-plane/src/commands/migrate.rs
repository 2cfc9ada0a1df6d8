//! `tenantctl migrate plan|apply|resume|status`.

use super::{start, CliError};
use crate::catalog::fleet_runs;
use crate::cli::{ApplyArgs, HaltArgs, PlanArgs, ResumeArgs, SelectionArgs, StatusArgs};
use crate::fleet::{self, ApplyReport, ItemState};
use crate::output;
use std::process::ExitCode;
use std::time::Duration;
use tenancy::error::ErrorKind;

/// Rows of a text listing before "… and N more" (`--json` has them all).
const LISTED: usize = 50;

fn selection(args: SelectionArgs) -> fleet_runs::Selection {
    fleet_runs::Selection {
        tenants: args.tenants.iter().map(ToString::to_string).collect(),
        plan: args.plan.map(|p| p.to_string()),
        cluster: args.cluster.map(|c| c.to_string()),
        templates: args.include_templates,
    }
}

/// Who starts a run, for the ledger: the operating-system user.
fn operator() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "tenantctl".into())
}

fn more(total: usize) -> Option<String> {
    (total > LISTED).then(|| format!("… and {} more (--json lists them all)", total - LISTED))
}

pub(super) async fn plan(args: PlanArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let options = fleet::plan::PlanOptions {
        selection: selection(args.selection),
        concurrency: usize::try_from(args.concurrency).unwrap_or(1),
        drift: !args.no_drift,
    };
    print_plan(&fleet::plan::plan(&cp, &options).await.map_err(CliError::from)?, json);
    Ok(ExitCode::SUCCESS)
}

/// A plan as `migrate plan` prints it (from the catalog, or through the API).
pub(super) fn print_plan(plan: &fleet::plan::Plan, json: bool) {
    if json {
        output::json(plan);
        return;
    }
    output::line(&format!(
        "target V{}: {} tenants, {} with pending migrations",
        plan.target_version, plan.tenants, plan.pending_tenants
    ));
    output::line("\nversions (as the catalog records them):");
    let rows: Vec<Vec<String>> = plan
        .versions
        .iter()
        .map(|v| vec![v.version.map_or_else(|| "unknown".into(), |v| format!("V{v}")), v.tenants.to_string()])
        .collect();
    output::table(&["version", "tenants"], &rows);
    if !plan.pending.is_empty() {
        output::line("\npending:");
        let rows: Vec<Vec<String>> = plan
            .pending
            .iter()
            .take(LISTED)
            .map(|p| {
                let pending = p.pending.iter().map(|v| format!("V{v}")).collect::<Vec<_>>().join(",");
                vec![
                    p.slug.clone(),
                    p.cluster.clone(),
                    p.version.map(|v| format!("V{v}")).unwrap_or_default(),
                    pending,
                ]
            })
            .collect();
        output::table(&["tenant", "cluster", "at", "pending"], &rows);
        more(plan.pending.len()).inspect(|m| output::line(m));
    }
    output::line(&format!(
        "\ntemplate databases (database tenants are cloned from them; {}):",
        if plan.templates.iter().any(|t| t.moved) {
            "apply migrates them"
        } else {
            "apply leaves them alone: only a run over the whole fleet, or --include-templates, migrates them"
        }
    ));
    let rows: Vec<Vec<String>> = plan
        .templates
        .iter()
        .map(|t| {
            vec![
                t.cluster.clone(),
                t.database.clone(),
                t.state.to_owned(),
                t.version.map(|v| format!("V{v}")).unwrap_or_default(),
                t.pending.iter().map(|v| format!("V{v}")).collect::<Vec<_>>().join(","),
                t.drift.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["cluster", "template", "state", "at", "pending", "drift"], &rows);
    let drifted_templates = plan.templates.iter().filter(|t| t.drift.is_some()).count();
    match &plan.drift {
        None => output::line("\ndrift: not checked (--no-drift)"),
        Some(drift) if drift.is_empty() && drifted_templates == 0 => output::line("\ndrift: none"),
        Some(drift) if drift.is_empty() => output::line(&format!(
            "\ndrift: {drifted_templates} template databases (see above); new database tenants cannot be \
             created on their clusters until it is fixed"
        )),
        Some(drift) => {
            if drifted_templates > 0 {
                output::line(&format!("\ndrift: {drifted_templates} template databases (see above)"));
            }
            output::line(&format!("\ndrift: {} tenants (apply does not migrate them):", drift.len()));
            let rows: Vec<Vec<String>> = drift
                .iter()
                .take(LISTED)
                .map(|d| vec![d.slug.clone(), d.cluster.clone(), d.problem.clone()])
                .collect();
            output::table(&["tenant", "cluster", "problem"], &rows);
            more(drift.len()).inspect(|m| output::line(m));
        }
    }
    output::line("\nheadroom:");
    for h in &plan.headroom {
        output::line(&format!(
            "  {}: {} of {} connections in use; lock table {} of {} slots in use, the run needs up to {} \
             ({} relations per tenant); {}",
            h.cluster,
            h.connections_in_use,
            h.max_connections,
            h.locks_in_use,
            h.lock_slots,
            h.locks_needed,
            h.relations_per_tenant,
            if h.ok { "ok" } else { "WARNING" }
        ));
        for warning in &h.warnings {
            output::line(&format!("    {warning}"));
        }
    }
}

pub(super) async fn apply(args: ApplyArgs, json: bool) -> Result<ExitCode, CliError> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let options = fleet::ApplyOptions {
        selection: selection(args.selection),
        run: fleet::RunOptions {
            concurrency: args.concurrency as usize,
            canary: args.canary,
            max_failures: args.max_failures,
            retries: args.retries,
            lock_timeout_ms: millis(args.lock_timeout),
            statement_timeout_ms: millis(args.statement_timeout),
            grouped: args.grouped,
            tenants_per_connection: args.tenants_per_connection as usize,
        },
    };
    let cp = start(&args.catalog).await?;
    let progress = output::FleetProgress::new(json);
    let report = fleet::apply(&cp, &options, &operator(), &progress).await.map_err(CliError::from)?;
    Ok(print_report(&report, json))
}

pub(super) async fn resume(args: ResumeArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let progress = output::FleetProgress::new(json);
    let run = fleet::resolve_run(&cp, &args.run).await?;
    let report =
        fleet::resume(&cp, run, args.concurrency, &operator(), &progress).await.map_err(CliError::from)?;
    Ok(print_report(&report, json))
}

fn print_report(report: &ApplyReport, json: bool) -> ExitCode {
    if json {
        output::json(report);
    } else {
        let problems: Vec<_> = report.results.iter().filter(|r| r.state != ItemState::Done).collect();
        if !problems.is_empty() {
            let rows: Vec<Vec<String>> = problems
                .iter()
                .take(LISTED)
                .map(|r| {
                    vec![
                        r.slug.clone(),
                        r.state.as_str().into(),
                        r.attempts.to_string(),
                        r.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["tenant", "state", "attempts", "error"], &rows);
            more(problems.len()).inspect(|m| output::line(m));
            output::line("");
        }
        let rows = [
            ("migrated", report.migrated),
            ("already up to date", report.up_to_date),
            ("failed", report.failed),
            ("drift (not touched)", report.drift),
            ("lock timeout", report.lock_timeout),
            ("not started (halted)", report.not_started),
        ]
        .iter()
        .filter(|(label, n)| *n > 0 || *label == "migrated")
        .map(|(label, n)| vec![(*label).to_owned(), n.to_string()])
        .collect::<Vec<_>>();
        output::table(&["tenants", "count"], &rows);
        output::line(&format!(
            "\nrun {} ({}), target V{}: {} tenants in {:.1}s ({:.1} tenants/s)",
            report.run_id,
            report.state,
            report.target_version,
            report.tenants,
            Duration::from_millis(report.duration_ms).as_secs_f64(),
            report.rate,
        ));
        if let Some(reason) = &report.halt_reason {
            output::line(&format!("{}: {reason}", report.state));
        }
        if report.state != "completed" {
            output::line(&format!("fix what failed, then: tenantctl migrate resume {}", report.run_id));
        }
    }
    if report.state == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub(super) async fn status(args: StatusArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let run = match &args.run {
        Some(raw) => Some(fleet::resolve_run(&cp, raw).await?),
        None => None,
    };
    let states = (!args.all).then_some(&ItemState::NOT_DONE[..]);
    let Some(interval) = args.watch.then_some(args.interval) else {
        print_status(&run_status(&cp, run, states).await?, json);
        return Ok(ExitCode::SUCCESS);
    };
    // The run watched stays the one first shown, even if another starts meanwhile.
    let run = Some(run_status(&cp, run, Some(&[])).await?.run.id);
    output::Watch::until(
        interval,
        async || run_status(&cp, run, states).await,
        |status| print_status(status, json),
        |status| run_ended(&status.state),
    )
    .await
}

/// The exit code of a run that has ended: 0 when it completed; `None` while it runs.
pub(super) fn run_ended(state: &str) -> Option<ExitCode> {
    match state {
        "running" => None,
        "completed" => Some(ExitCode::SUCCESS),
        _ => Some(ExitCode::from(1)),
    }
}

async fn run_status(
    cp: &crate::control_plane::ControlPlane,
    run: Option<uuid::Uuid>,
    states: Option<&[ItemState]>,
) -> Result<fleet::RunStatus, CliError> {
    fleet::status(cp, run, states)
        .await
        .map_err(CliError::from)?
        .ok_or_else(|| CliError::new(ErrorKind::NotFound, "not_found", "no such fleet migration run"))
}

fn print_status(status: &fleet::RunStatus, json: bool) {
    if json {
        output::json(status);
        return;
    }
    let run = &status.run;
    let summary = status.counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
    output::line(&format!(
        "run {} by {} at {}: {}, target V{}, {} tenants ({summary})",
        run.id, run.created_by, run.created_at, status.state, run.target_version, run.tenants
    ));
    if let Some(reason) = &run.halt_reason {
        output::line(&format!("{}: {reason}", run.state));
    }
    let rows: Vec<Vec<String>> = status
        .items
        .iter()
        .map(|i| {
            vec![
                i.slug.clone(),
                i.state.as_str().into(),
                i.attempts.to_string(),
                i.to_version.map(|v| format!("V{v}")).unwrap_or_default(),
                i.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        output::table(&["tenant", "state", "attempts", "at", "error"], &rows);
    }
    if status.state == "interrupted" {
        output::line(&format!("its process is gone: tenantctl migrate resume {}", run.id));
    }
}

pub(super) async fn halt(args: HaltArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let run = fleet::resolve_run(&cp, &args.run).await?;
    let status = fleet::halt(&cp, run, &operator()).await?;
    if json {
        output::json(&status);
    } else if status.state == "running" {
        output::note(&format!("run {run}: halt requested; it starts no further tenant and ends halted"));
    } else {
        output::note(&format!("run {run} is {}", status.state));
    }
    Ok(ExitCode::SUCCESS)
}
