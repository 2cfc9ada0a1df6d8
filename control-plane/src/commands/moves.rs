//! `tenantctl tenants move` and `tenantctl tenants moves`.

use super::{find, parse_slug, start, wait_for_jobs, CliError, Deadline};
use crate::cli::{MoveArgs, ShowArgs};
use crate::moves::{self, Destination, MoveRecord, MoveState};
use crate::output;
use std::process::ExitCode;

const HEADERS: &[&str] = &["MOVE", "STATE", "STEP", "FROM", "TO", "PAUSE", "STARTED", "ERROR"];

fn place(placement: &moves::Placement) -> String {
    let database = placement.database.as_ref().map_or_else(String::new, |db| format!("/{db}"));
    format!("{}{database} ({})", placement.cluster, placement.isolation.as_str())
}

fn row(record: &MoveRecord) -> Vec<String> {
    vec![
        record.id.to_string(),
        record.state.as_str().to_owned(),
        record.step.clone().unwrap_or_else(|| "-".into()),
        place(&record.from),
        place(&record.to),
        record.pause_ms.map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
        record.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        record.last_error.clone().unwrap_or_default(),
    ]
}

fn print(records: &[MoveRecord], json: bool) {
    if json {
        output::json(&records);
    } else if records.is_empty() {
        output::line("No moves found.");
    } else {
        output::table(HEADERS, &records.iter().map(row).collect::<Vec<_>>());
    }
}

/// Starts (or aborts) a move and, unless `--no-wait`, runs it to its end here.
pub(super) async fn move_tenant(args: MoveArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let isolation =
        args.isolation.as_deref().map(str::parse).transpose().map_err(
            |e: tenancy::domain::UnknownValue| CliError::invalid("invalid_isolation", e.to_string()),
        )?;
    let cp = start(&args.catalog).await?;
    let record = if args.abort {
        moves::abort(&cp, &slug, "cli").await?
    } else {
        let destination = Destination { cluster: args.to_cluster, isolation, drop_source: args.drop_source };
        moves::start(&cp, &slug, &destination, "cli").await?
    };
    let record = if args.wait.no_wait {
        record
    } else {
        let deadline = Deadline::after(args.wait.timeout);
        let tenant = find(&cp, slug.as_str()).await?;
        wait_for_jobs(&cp, tenant, &deadline).await?;
        moves::load(&cp, record.id).await?
    };
    print(std::slice::from_ref(&record), json);
    Ok(match record.state {
        MoveState::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

pub(super) async fn list(args: ShowArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    print(&moves::of_tenant(&cp, &slug, 50).await?, json);
    Ok(ExitCode::SUCCESS)
}
