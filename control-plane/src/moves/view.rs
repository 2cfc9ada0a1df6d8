//! A move as the API answers it and `tenantctl tenants move|moves` print it (from the catalog
//! or through the API: one view, one rendering).

use super::{MoveRecord, Placement};
use crate::output;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a tenant's data is, on one side of a move.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct MovePlacement {
    pub(crate) cluster: String,
    /// `schema` or `database`.
    pub(crate) isolation: String,
    pub(crate) schema: String,
    /// The tenant's own database, with `database` isolation.
    pub(crate) database: Option<String>,
}

impl From<&Placement> for MovePlacement {
    fn from(placement: &Placement) -> Self {
        Self {
            cluster: placement.cluster.clone(),
            isolation: placement.isolation.to_string(),
            schema: placement.schema.to_string(),
            database: placement.database.as_ref().map(ToString::to_string),
        }
    }
}

/// One move of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct Move {
    pub(crate) id: i64,
    pub(crate) tenant_id: String,
    /// running, done, aborted or failed.
    pub(crate) state: String,
    /// The last step done: target, published, subscribed, copied, locked (past it the move
    /// only goes forward), switched.
    pub(crate) step: Option<String>,
    /// `replication` or `dump`.
    pub(crate) method: String,
    pub(crate) from: MovePlacement,
    pub(crate) to: MovePlacement,
    pub(crate) requested_by: String,
    pub(crate) drop_source: bool,
    pub(crate) abort_requested: bool,
    pub(crate) last_error: Option<String>,
    /// How long the tenant's new requests were held at the switch.
    pub(crate) pause_ms: Option<i32>,
    pub(crate) switched_at: Option<String>,
    pub(crate) source_dropped_at: Option<String>,
    pub(crate) created_at: String,
    pub(crate) finished_at: Option<String>,
}

impl From<&MoveRecord> for Move {
    fn from(record: &MoveRecord) -> Self {
        Self {
            id: record.id,
            tenant_id: record.tenant_id.to_string(),
            state: record.state.as_str().to_owned(),
            step: record.step.clone(),
            method: record.method.as_str().to_owned(),
            from: (&record.from).into(),
            to: (&record.to).into(),
            requested_by: record.requested_by.clone(),
            drop_source: record.drop_source,
            abort_requested: record.abort_requested,
            last_error: record.last_error.clone(),
            pause_ms: record.pause_ms,
            switched_at: record.switched_at.map(|at| at.to_rfc3339()),
            source_dropped_at: record.source_dropped_at.map(|at| at.to_rfc3339()),
            created_at: record.created_at.to_rfc3339(),
            finished_at: record.finished_at.map(|at| at.to_rfc3339()),
        }
    }
}

impl MovePlacement {
    /// `cluster[/database] (isolation)`.
    fn place(&self) -> String {
        let database = self.database.as_ref().map_or_else(String::new, |db| format!("/{db}"));
        format!("{}{database} ({})", self.cluster, self.isolation)
    }
}

const HEADERS: &[&str] = &["MOVE", "STATE", "STEP", "METHOD", "FROM", "TO", "PAUSE", "STARTED", "ERROR"];

fn row(view: &Move) -> Vec<String> {
    vec![
        view.id.to_string(),
        view.state.clone(),
        view.step.clone().unwrap_or_else(|| "-".into()),
        view.method.clone(),
        view.from.place(),
        view.to.place(),
        view.pause_ms.map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
        chrono::DateTime::parse_from_rfc3339(&view.created_at)
            .map_or_else(|_| view.created_at.clone(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string()),
        view.last_error.clone().unwrap_or_default(),
    ]
}

/// Prints moves: as JSON, or a table.
pub(crate) fn print(moves: &[Move], json: bool) {
    if json {
        output::json(&moves);
    } else {
        output::listing("moves", HEADERS, &moves.iter().map(row).collect::<Vec<_>>());
    }
}

/// `tenants moves --watch`'s end: once no move runs, exit code 1 if the newest failed.
pub(crate) fn settled(moves: &[Move]) -> Option<std::process::ExitCode> {
    if moves.iter().any(|m| m.state == "running") {
        return None;
    }
    Some(match moves.first() {
        Some(newest) if newest.state == "failed" => std::process::ExitCode::from(1),
        _ => std::process::ExitCode::SUCCESS,
    })
}
