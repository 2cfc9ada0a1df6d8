//! `tenantctl tenants move`, `tenants moves`, `clusters drain` and `clusters remove`.

use super::{find, parse_slug, start, wait_for_jobs, CliError, Deadline};
use crate::cli::{ClusterArgs, DrainArgs, MoveArgs, RemoveClusterArgs, WatchedArgs};
use crate::moves::{self, Destination, MoveRecord, MoveState};
use crate::output;
use std::process::ExitCode;

fn print(records: &[MoveRecord], json: bool) {
    moves::view::print(&records.iter().map(moves::view::Move::from).collect::<Vec<_>>(), json);
}

fn parse_method(raw: &str) -> Result<moves::MoveMethod, CliError> {
    raw.parse().map_err(|e: tenancy::domain::UnknownValue| CliError::invalid("invalid_method", e.to_string()))
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
        let destination = Destination {
            cluster: args.to_cluster,
            isolation,
            drop_source: args.drop_source,
            method: parse_method(&args.method)?,
        };
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

pub(super) async fn list(args: WatchedArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let cp = start(&args.catalog).await?;
    let look = async || {
        let records = moves::of_tenant(&cp, &slug, 50).await?;
        Ok::<_, CliError>(records.iter().map(moves::view::Move::from).collect::<Vec<_>>())
    };
    match args.watching() {
        None => {
            moves::view::print(&look().await?, json);
            Ok(ExitCode::SUCCESS)
        }
        Some(interval) => {
            output::Watch::until(
                interval,
                look,
                |seen| moves::view::print(seen, json),
                |seen| moves::view::settled(seen),
            )
            .await
        }
    }
}

/// Drains a cluster, a line on stderr per tenant as its move ends, then the list (or JSON).
pub(super) async fn drain_cluster(args: DrainArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let settings = crate::clusters::DrainSettings {
        to: args.to,
        concurrency: args.concurrency,
        drop_source: args.drop_source,
        method: parse_method(&args.method)?,
    };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let drained = crate::clusters::drain(&cp, &args.name, &settings, |tenant| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let to = tenant.to.as_deref().unwrap_or("-");
        let error = tenant.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        output::note(&format!("[{n}] {} {} → {to}{error}", tenant.outcome, tenant.slug));
    })
    .await?;
    if json {
        output::json(&drained);
    } else if drained.is_empty() {
        output::line(&format!("No tenants on cluster {}.", args.name));
    } else {
        let rows: Vec<Vec<String>> = drained
            .iter()
            .map(|t| {
                vec![
                    t.slug.clone(),
                    t.outcome.to_owned(),
                    t.to.clone().unwrap_or_else(|| "-".into()),
                    t.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        output::table(&["TENANT", "OUTCOME", "TO", "ERROR"], &rows);
    }
    let left = drained.iter().filter(|t| t.outcome != "moved").count();
    if left > 0 {
        output::note(&format!("{left} tenant(s) are still on cluster {}", args.name));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn undrain_cluster(args: ClusterArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    crate::clusters::undrain(&cp, &args.name, "cli").await?;
    if json {
        output::json(&serde_json::json!({ "cluster": args.name, "draining": false }));
    } else {
        output::line(&format!("Cluster {} takes new tenants again.", args.name));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn remove_cluster(args: RemoveClusterArgs, json: bool) -> Result<ExitCode, CliError> {
    let args_confirm = args.confirm;
    let args = args.cluster;
    super::confirmed(
        &format!("Remove cluster {}: its admin secret is deleted and it is no longer used.", args.name),
        &args.name,
        args_confirm,
    )?;
    let cp = start(&args.catalog).await?;
    crate::clusters::remove(&cp, &args.name, "cli").await?;
    if json {
        output::json(&serde_json::json!({ "cluster": args.name, "removed": true }));
    } else {
        output::line(&format!("Cluster {} removed.", args.name));
    }
    Ok(ExitCode::SUCCESS)
}
