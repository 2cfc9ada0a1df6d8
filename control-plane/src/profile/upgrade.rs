//! `tenantctl templates upgrade`: every tenant on a template (or those named) brought to the
//! template's current version, each with the three-way merge of [`super::merge`] in a catalog
//! transaction of its own. Tenants that opted out are left alone unless named; tenants whose
//! merge meets conflicts are left as they are unless a side is preferred, and reported.

use super::merge::{Conflict, Prefer};
use crate::control_plane::ControlPlane;
use crate::tenants::{LifecycleError, ProfileOutcome};
use std::collections::HashMap;
use tenancy::catalog::CatalogError;
use tenancy::domain::PlanName;
use tenancy::error::{ErrorKind, OperationError};

/// Which tenants, and how.
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// Only tenants on this plan's template.
    pub plan: Option<PlanName>,
    /// Only these tenants (slugs), opted out or not.
    pub tenants: Vec<String>,
    /// Report what would change; write nothing.
    pub dry_run: bool,
    /// How conflicts are resolved; `None`: a tenant with conflicts is left as it is.
    pub prefer: Option<Prefer>,
}

/// What happened to one tenant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantUpgrade {
    pub tenant: String,
    pub template: String,
    pub from_version: i32,
    pub to_version: i32,
    /// `up_to_date`, `upgraded` (in a dry run: would be), `conflicts` (left as it is),
    /// `invalid` (left as it is: the merge does not match the template's schema), `opted_out`,
    /// `other_template` (its plan changed meanwhile), `error` (not upgraded: see `error`).
    pub outcome: &'static str,
    pub conflicts: Vec<Conflict>,
    /// Why an `invalid` merge does not match the template's schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// Why an `error` tenant could not be upgraded (the others are tried all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why the upgrade could not run.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("no live tenant {0}")]
    NotFound(String),
    #[error("catalog unavailable: {0}")]
    Catalog(String),
}

impl OperationError for UpgradeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Catalog(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Catalog(_) => "catalog_unavailable",
        }
    }
}

impl From<LifecycleError> for UpgradeError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(slug) => Self::NotFound(slug),
            other => Self::Catalog(other.to_string()),
        }
    }
}

/// Upgrades the tenants `options` select, one after the other; returns what happened to each.
pub async fn upgrade(
    cp: &ControlPlane,
    options: &UpgradeOptions,
    actor: &str,
) -> Result<Vec<TenantUpgrade>, UpgradeError> {
    let candidates = {
        let client =
            cp.catalog.get().await.map_err(|e| UpgradeError::Catalog(CatalogError::from(e).to_string()))?;
        let plan = options.plan.as_ref().map(PlanName::as_str);
        crate::catalog::tenants::upgrade_candidates(&**client, plan, &options.tenants)
            .await
            .map_err(|e| UpgradeError::Catalog(tenancy::pg::describe_error(&e)))?
    };
    if let Some(missing) = options.tenants.iter().find(|slug| !candidates.iter().any(|c| &c.slug == *slug)) {
        return Err(UpgradeError::NotFound(missing.clone()));
    }
    // Each template read once; one that cannot be read fails its tenants, not the run.
    let mut templates: HashMap<String, Result<crate::plans::Template, String>> = HashMap::new();
    let mut report = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let template = templates.entry(candidate.template.clone()).or_insert_with(|| {
            PlanName::parse(&candidate.template)
                .map_err(|e| e.to_string())
                .and_then(|plan| cp.templates.load(&plan).map_err(|e| e.to_string()))
        });
        let mut row = TenantUpgrade {
            tenant: candidate.slug.clone(),
            template: candidate.template.clone(),
            from_version: candidate.template_version,
            to_version: template.as_ref().map_or(candidate.template_version, |t| t.version),
            outcome: "opted_out",
            conflicts: Vec::new(),
            invalid: None,
            error: None,
        };
        let template = match template {
            Ok(template) => &*template,
            Err(why) => {
                row.outcome = "error";
                row.error = Some(why.clone());
                report.push(row);
                continue;
            }
        };
        if candidate.template_upgrades || options.tenants.contains(&candidate.slug) {
            let upgraded = crate::tenants::upgrade_profile(
                cp,
                candidate.id,
                template,
                options.prefer,
                options.dry_run,
                actor,
            )
            .await;
            let (outcome, conflicts) = match upgraded {
                Ok(done) => done,
                Err(err) => {
                    tracing::warn!(tenant = %candidate.slug, error = %err, "the tenant's profile could not be upgraded");
                    row.outcome = "error";
                    row.error = Some(err.to_string());
                    report.push(row);
                    continue;
                }
            };
            row.outcome = match outcome {
                ProfileOutcome::UpToDate => "up_to_date",
                ProfileOutcome::Upgraded => "upgraded",
                ProfileOutcome::Conflicts => "conflicts",
                ProfileOutcome::OtherTemplate => "other_template",
                ProfileOutcome::Invalid(why) => {
                    row.invalid = Some(why);
                    "invalid"
                }
            };
            row.conflicts = conflicts;
        }
        report.push(row);
    }
    Ok(report)
}
