//! A tenant's config (modules, module settings, theme): what its plan template gave it, replaced
//! by an operator.

use super::lifecycle::{catalog_error, reload};
use super::{Announcement, LifecycleError, Recorded};
use crate::control_plane::ControlPlane;
use tenancy::catalog::TenantRecord;
use tenancy::domain::Slug;

/// A tenant's config with what it was built from (`tenantctl tenants config get --json`,
/// `GET /v1/tenants/{slug}/config`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct TenantProfile {
    pub(crate) tenant: String,
    pub(crate) display_name: String,
    pub(crate) data_source: DataSource,
    /// The plan template it was built from, and that template's version.
    pub(crate) template: String,
    pub(crate) template_version: i32,
    /// Whether `tenantctl templates upgrade` upgrades it without being named.
    pub(crate) template_upgrades: bool,
    /// Enabled modules, module settings and theme.
    #[schema(value_type = Object)]
    pub(crate) config: serde_json::Value,
}

/// Where a tenant's data is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct DataSource {
    pub(crate) cluster: String,
    /// `schema` or `database`.
    pub(crate) isolation: String,
    pub(crate) schema: String,
    /// The tenant's own database, with `database` isolation.
    pub(crate) database: Option<String>,
}

/// The profile of tenant `slug`.
pub(crate) async fn profile_of(cp: &ControlPlane, slug: &Slug) -> Result<TenantProfile, LifecycleError> {
    let client = cp.catalog.get().await.map_err(|e| LifecycleError::Catalog(e.to_string()))?;
    let tenant = tenancy::catalog::tenant_by_slug(&**client, slug)
        .await
        .map_err(|e| LifecycleError::Catalog(e.to_string()))?
        .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
    let (template, template_version, template_upgrades) =
        crate::catalog::tenants::template_of(&**client, tenant.id)
            .await
            .map_err(|e| LifecycleError::Catalog(e.to_string()))?
            .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
    Ok(TenantProfile {
        tenant: tenant.slug.to_string(),
        display_name: tenant.display_name,
        data_source: DataSource {
            cluster: tenant.cluster,
            isolation: tenant.isolation.to_string(),
            schema: tenant.schema_name.to_string(),
            database: tenant.database_name.as_ref().map(ToString::to_string),
        },
        template,
        template_version,
        template_upgrades,
        config: tenant.config,
    })
}

/// Changes the config of the live tenant `slug` with `change` (given the config as it is, with
/// the tenant's row locked): a JSON merge patch, or a replacement checked against what the
/// caller last read. The result must be a JSON object.
pub(crate) async fn update_config(
    cp: &ControlPlane,
    slug: &Slug,
    change: ConfigChange,
    actor: &str,
) -> Result<TenantRecord, LifecycleError> {
    super::in_transaction(cp, LifecycleError::Catalog, async |tx| {
        let (current, template) = crate::catalog::tenants::config_for_update(&**tx, slug)
            .await
            .map_err(|e| catalog_error(&e))?
            .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
        let config = match change {
            ConfigChange::Patch(patch) => {
                let mut config = current;
                crate::profile::merge_patch(&mut config, &patch);
                config
            }
            ConfigChange::Replace(config) => config,
            ConfigChange::ReplaceIf { expected, config } => {
                if current != expected {
                    return Err(LifecycleError::Changed(slug.to_string()));
                }
                config
            }
        };
        if !config.is_object() {
            return Err(LifecycleError::InvalidConfig("the config must be a JSON object".into()));
        }
        // The JSON Schema the tenant's template declares.
        let unreadable = |error: String| {
            tracing::error!(tenant = %slug, %error, "the tenant's template cannot be read");
            LifecycleError::Template(template.clone())
        };
        let template = tenancy::domain::PlanName::parse(&template)
            .map_err(|e| unreadable(e.to_string()))
            .and_then(|plan| cp.templates.load(&plan).map_err(|e| unreadable(e.to_string())))?;
        template.check_profile(&config).map_err(LifecycleError::InvalidConfig)?;
        set_config_in(tx, slug, config, actor).await.map(Recorded::into_parts)
    })
    .await
}

/// How [`update_config`] changes a config.
#[derive(Debug, Clone)]
pub(crate) enum ConfigChange {
    /// A JSON merge patch (RFC 7386).
    Patch(serde_json::Value),
    /// A whole new config.
    Replace(serde_json::Value),
    /// `config`, if the config is still `expected` (what an editor started from).
    ReplaceIf { expected: serde_json::Value, config: serde_json::Value },
}

/// Records the live tenant `slug`'s new config (bumping its generation) and the audit entry
/// within `tx`. The caller commits, then sends the announcement.
async fn set_config_in(
    tx: &deadpool_postgres::Transaction<'_>,
    slug: &Slug,
    config: serde_json::Value,
    actor: &str,
) -> Result<Recorded, LifecycleError> {
    let id = crate::catalog::tenants::set_config(&**tx, slug, &config)
        .await
        .map_err(|e| catalog_error(&e))?
        .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
    crate::catalog::audit::record(
        &**tx,
        actor,
        "tenant.set_config",
        Some(id),
        serde_json::json!({ "config": config }),
    )
    .await
    .map_err(|e| catalog_error(&e))?;
    let tenant = reload(tx, id, slug).await?;
    let announcement = Announcement::tenant(&tenant, Vec::new());
    Ok(Recorded { tenant, announcement })
}

/// What upgrading a tenant's profile to its template's current version did, or would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProfileOutcome {
    /// Built from the template's current version already.
    UpToDate,
    /// Upgraded (or, in a dry run, would be).
    Upgraded,
    /// Left as it is: keys both the template and the tenant changed, and no side preferred.
    Conflicts,
    /// No longer on that template (its plan changed meanwhile): left to the plan change.
    OtherTemplate,
    /// Left as it is: the merged profile does not match the template's schema (why).
    Invalid(String),
}

/// Upgrades the profile of tenant `id` to `template` (its plan's current template), merging the
/// template's change into the tenant's own edits ([`crate::profile::merge`]); conflicts are
/// resolved by `prefer`, or leave the tenant as it is when it is `None`. A `dry_run` writes
/// nothing. Returns the outcome and the conflicts met.
pub(crate) async fn upgrade_profile(
    cp: &ControlPlane,
    id: tenancy::domain::TenantId,
    template: &crate::plans::Template,
    prefer: Option<crate::profile::merge::Prefer>,
    dry_run: bool,
    actor: &str,
) -> Result<(ProfileOutcome, Vec<crate::profile::merge::Conflict>), LifecycleError> {
    use crate::profile::merge::{merge, Prefer};
    super::in_transaction(cp, LifecycleError::Catalog, async |tx| {
        let profile = crate::catalog::tenants::profile_for_update(&**tx, id)
            .await
            .map_err(|e| catalog_error(&e))?
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        if profile.template != template.plan.as_str() {
            return Ok(((ProfileOutcome::OtherTemplate, Vec::new()), Announcement::none()));
        }
        if profile.template_version == template.version
            && profile.template_config.as_ref() == Some(&template.config)
        {
            return Ok(((ProfileOutcome::UpToDate, Vec::new()), Announcement::none()));
        }
        let base = crate::profile::base_of(&profile, &cp.templates);
        let merged = merge(&base, &template.config, &profile.config, prefer.unwrap_or(Prefer::Tenant));
        if !merged.conflicts.is_empty() && prefer.is_none() {
            return Ok(((ProfileOutcome::Conflicts, merged.conflicts), Announcement::none()));
        }
        if let Err(why) = template.check_profile(&merged.profile) {
            return Ok(((ProfileOutcome::Invalid(why), merged.conflicts), Announcement::none()));
        }
        if dry_run {
            return Ok(((ProfileOutcome::Upgraded, merged.conflicts), Announcement::none()));
        }
        crate::catalog::tenants::set_profile(&**tx, id, &merged.profile, template.version, &template.config)
            .await
            .map_err(|e| catalog_error(&e))?;
        let detail = serde_json::json!({
            "template": template.plan.as_str(),
            "from_version": profile.template_version,
            "to_version": template.version,
            "prefer": prefer,
            "conflicts": merged.conflicts,
        });
        crate::catalog::audit::record(&**tx, actor, "tenant.template_upgrade", Some(id), detail)
            .await
            .map_err(|e| catalog_error(&e))?;
        let tenant = tenancy::catalog::tenant_by_id(&**tx, id)
            .await
            .map_err(|e| LifecycleError::Catalog(e.to_string()))?
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        Ok(((ProfileOutcome::Upgraded, merged.conflicts), Announcement::tenant(&tenant, Vec::new())))
    })
    .await
}

/// Whether `tenantctl templates upgrade` upgrades tenant `slug` without it being named.
pub(crate) async fn set_template_upgrades(
    cp: &ControlPlane,
    slug: &Slug,
    enabled: bool,
    actor: &str,
) -> Result<(), LifecycleError> {
    super::in_transaction(cp, LifecycleError::Catalog, async |tx| {
        let id = crate::catalog::tenants::set_template_upgrades(&**tx, slug, enabled)
            .await
            .map_err(|e| catalog_error(&e))?
            .ok_or_else(|| LifecycleError::NotFound(slug.to_string()))?;
        let detail = serde_json::json!({ "template_upgrades": enabled });
        crate::catalog::audit::record(&**tx, actor, "tenant.set_template_upgrades", Some(id), detail)
            .await
            .map_err(|e| catalog_error(&e))?;
        Ok(((), Announcement::none()))
    })
    .await
}
