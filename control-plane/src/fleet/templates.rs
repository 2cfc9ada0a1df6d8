//! The clusters' template databases in fleet runs. Database tenants are cloned from their
//! cluster's template, so the template must never hold a migration the directory does not: a
//! run migrates exactly its selection, and the templates are part of it only when the run covers
//! the whole fleet or asks for them (`--include-templates`). `plan` shows each template's
//! version, pending migrations and drift, and whether the run would move it.

use super::FleetError;
use crate::catalog::fleet_runs::Selection;
use crate::clusters::TemplateHistory;
use crate::control_plane::ControlPlane;
use crate::tenant_migrations::TenantMigrations;
use tenancy::catalog::TenantRecord;

/// Whether a run of `selection` migrates the templates.
pub(crate) fn moved_by(selection: &Selection) -> bool {
    selection.templates || selection.is_whole_fleet()
}

/// The clusters whose templates `selection` concerns: those of its tenants and the one it
/// names, and for the whole fleet the default cluster too (the catalog's own server, always
/// there, taking new tenants like any other). A registered cluster without tenants is left out:
/// a database tenant created there later brings the template to the directory's version first,
/// and an unreachable empty cluster does not fail the run.
fn clusters<'a>(selection: &Selection, tenants: impl Iterator<Item = &'a TenantRecord>) -> Vec<String> {
    let mut names: Vec<String> = tenants.map(|t| t.cluster.clone()).collect();
    names.extend(selection.cluster.clone());
    if selection.is_whole_fleet() {
        names.push(tenancy::domain::ClusterName::DEFAULT.to_owned());
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// Migrates the templates a run of `selection` moves (none unless [`moved_by`]); the run's
/// tenants are `tenants`. `Err` says which template failed and why (the run fails with it).
pub(super) async fn migrate<'a>(
    cp: &ControlPlane,
    migrations: &TenantMigrations,
    selection: &Selection,
    tenants: impl Iterator<Item = &'a TenantRecord>,
) -> Result<(), String> {
    if !moved_by(selection) {
        return Ok(());
    }
    for name in clusters(selection, tenants) {
        let failed = |e: crate::clusters::ClusterError| {
            format!("migrating the template database of cluster {name} failed: {e}")
        };
        let cluster = cp.cluster(&name).await.map_err(failed)?;
        cluster.migrate_template_if_present(migrations).await.map_err(failed)?;
    }
    Ok(())
}

/// One cluster's template as `plan` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TemplatePlan {
    pub(crate) cluster: String,
    pub(crate) database: String,
    /// `missing` (no database tenant was created there yet), `busy` (being migrated or cloned
    /// right now: not read) or `present`.
    pub state: String,
    /// The newest migration it has applied.
    pub version: Option<i64>,
    /// Versions a run would apply to it.
    pub pending: Vec<i64>,
    /// What is wrong with its history against the files (a run moving it would fail, and new
    /// database tenants cannot be created until it is fixed).
    pub drift: Option<String>,
    /// Whether `apply` with this selection migrates it.
    pub moved: bool,
}

/// The templates `selection` concerns, read without changing anything.
pub(super) async fn plan<'a>(
    cp: &ControlPlane,
    migrations: &TenantMigrations,
    selection: &Selection,
    tenants: impl Iterator<Item = &'a TenantRecord>,
) -> Result<Vec<TemplatePlan>, FleetError> {
    let moved = moved_by(selection);
    let mut plans = Vec::new();
    for name in clusters(selection, tenants) {
        let unavailable = |e: crate::clusters::ClusterError| FleetError::Catalog(e.to_string());
        let cluster = cp.cluster(&name).await.map_err(unavailable)?;
        let history = cluster.template_history().await.map_err(unavailable)?;
        let mut plan = TemplatePlan {
            cluster: name,
            database: cluster.template.to_string(),
            state: "present".to_owned(),
            version: None,
            pending: Vec::new(),
            drift: None,
            moved,
        };
        match history {
            TemplateHistory::Missing => plan.state = "missing".to_owned(),
            TemplateHistory::Busy => plan.state = "busy".to_owned(),
            TemplateHistory::Applied(applied) => {
                plan.version = applied.iter().map(|a| a.version).max();
                match migrations.pending(&applied) {
                    Ok(pending) => plan.pending = pending.iter().map(|m| i64::from(m.version())).collect(),
                    Err(problem) => plan.drift = Some(problem),
                }
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}
