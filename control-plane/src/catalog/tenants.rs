//! `control.tenants`: the control plane's writes and reads (the reads shared with the router
//! live in `tenancy::catalog`).

use tenancy::catalog::{CatalogError, TenantRecord, TENANT_COLUMNS};
use tenancy::domain::{
    DatabaseName, Isolation, PlanName, RoleName, SchemaName, Slug, TenantId, TenantStatus,
};
use tokio_postgres::GenericClient;

/// A tenant about to be recorded as `provisioning`.
#[derive(Debug, Clone)]
pub(crate) struct NewTenant {
    pub(crate) id: TenantId,
    pub(crate) slug: Slug,
    pub(crate) display_name: String,
    pub(crate) plan: PlanName,
    pub(crate) isolation: Isolation,
    pub(crate) cluster: String,
    pub(crate) schema_name: SchemaName,
    pub(crate) database_name: Option<DatabaseName>,
    pub(crate) role_name: RoleName,
    pub(crate) billing_customer_id: Option<String>,
    pub(crate) billing_subscription_id: Option<String>,
}

/// Inserts the tenant row. Unique violations (slug, role, subscription) surface as the
/// PostgreSQL error for the caller to classify.
pub(crate) async fn insert(
    client: &impl GenericClient,
    new: &NewTenant,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO control.tenants
               (id, slug, display_name, plan, template, isolation, cluster, schema_name, role_name,
                status, billing_customer_id, billing_subscription_id, database_name)
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, 'provisioning', $9, $10, $11)",
            &[
                &new.id.0,
                &new.slug.as_str(),
                &new.display_name,
                &new.plan.as_str(),
                &new.isolation.as_str(),
                &new.cluster,
                &new.schema_name.as_str(),
                &new.role_name.as_str(),
                &new.billing_customer_id,
                &new.billing_subscription_id,
                &new.database_name.as_ref().map(DatabaseName::as_str),
            ],
        )
        .await
        .map(|_| ())
}

pub(crate) async fn set_provision_step(
    client: &impl GenericClient,
    id: TenantId,
    step: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants SET provision_step = $2, updated_at = now() WHERE id = $1",
            &[&id.0, &step],
        )
        .await
        .map(|_| ())
}

/// Records the newest tenant migration applied to the tenant's schema (a fleet run skips tenants
/// already at its target without connecting to them).
pub(crate) async fn set_schema_version(
    client: &impl GenericClient,
    id: TenantId,
    version: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("UPDATE control.tenants SET schema_version = $2 WHERE id = $1", &[&id.0, &version])
        .await
        .map(|_| ())
}

/// The schema version the tenant's migrations are at (`None`: not recorded).
pub(crate) async fn schema_version(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client.query_opt("SELECT schema_version FROM control.tenants WHERE id = $1", &[&id.0]).await?;
    Ok(row.and_then(|row| row.get(0)))
}

/// Records the plan template's effect on the tenant.
pub(crate) struct TemplateSettings<'a> {
    pub(crate) template: &'a str,
    pub(crate) template_version: i32,
    /// The tenant's profile: the template's config merged into the tenant's own edits.
    pub(crate) config: serde_json::Value,
    /// The template's config itself: the base of the next merge.
    pub(crate) template_config: &'a serde_json::Value,
    pub(crate) pool_size: i32,
    pub(crate) pool_mode: tenancy::domain::PoolMode,
    pub(crate) rate_limit_per_second: Option<i32>,
    pub(crate) statement_timeout_ms: Option<i32>,
}

pub(crate) async fn apply_template_settings(
    client: &impl GenericClient,
    id: TenantId,
    settings: &TemplateSettings<'_>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants
                SET template = $2, template_version = $3, config = $4, pool_size = $5,
                    rate_limit_per_second = $6, statement_timeout_ms = $7, pool_mode = $8,
                    template_config = $9, updated_at = now()
              WHERE id = $1",
            &[
                &id.0,
                &settings.template,
                &settings.template_version,
                &settings.config,
                &settings.pool_size,
                &settings.rate_limit_per_second,
                &settings.statement_timeout_ms,
                &settings.pool_mode.as_str(),
                settings.template_config,
            ],
        )
        .await
        .map(|_| ())
}

/// The config of the live tenant `slug` and the template it was built from, locked for update.
pub(crate) async fn config_for_update(
    client: &impl GenericClient,
    slug: &Slug,
) -> Result<Option<(serde_json::Value, String)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT config, template FROM control.tenants WHERE slug = $1 AND status <> 'deleted' FOR UPDATE",
            &[&slug.as_str()],
        )
        .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// The template tenant `id`'s profile was last built from, its version, and whether template
/// upgrades apply to it.
pub(crate) async fn template_of(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<Option<(String, i32, bool)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT template, template_version, template_upgrades FROM control.tenants WHERE id = $1",
            &[&id.0],
        )
        .await?;
    Ok(row.map(|row| (row.get(0), row.get(1), row.get(2))))
}

/// A tenant's profile and what it was built from, read for an update (the row locked until the
/// transaction ends).
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) template: String,
    pub(crate) template_version: i32,
    pub(crate) config: serde_json::Value,
    /// The template config the profile was last built from (`None`: built before it was kept).
    pub(crate) template_config: Option<serde_json::Value>,
}

/// The profile of tenant `id`, locked for update.
pub(crate) async fn profile_for_update(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<Option<Profile>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT template, template_version, config, template_config
               FROM control.tenants WHERE id = $1 FOR UPDATE",
            &[&id.0],
        )
        .await?;
    Ok(row.map(|row| Profile {
        template: row.get("template"),
        template_version: row.get("template_version"),
        config: row.get("config"),
        template_config: row.get("template_config"),
    }))
}

/// Records a profile upgraded to `template_version` of its template (whose config is
/// `template_config`), bumping the tenant's generation.
pub(crate) async fn set_profile(
    client: &impl GenericClient,
    id: TenantId,
    config: &serde_json::Value,
    template_version: i32,
    template_config: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants
                SET config = $2, template_version = $3, template_config = $4,
                    generation = generation + 1, updated_at = now()
              WHERE id = $1",
            &[&id.0, config, &template_version, template_config],
        )
        .await
        .map(|_| ())
}

/// A tenant a template upgrade may concern.
#[derive(Debug, Clone)]
pub(crate) struct UpgradeCandidate {
    pub(crate) id: TenantId,
    pub(crate) slug: String,
    pub(crate) template: String,
    pub(crate) template_version: i32,
    pub(crate) template_upgrades: bool,
}

/// The live tenants (active or suspended) on `template` (all when `None`), or only those named
/// in `slugs` when it is not empty; by slug.
pub(crate) async fn upgrade_candidates(
    client: &impl GenericClient,
    template: Option<&str>,
    slugs: &[String],
) -> Result<Vec<UpgradeCandidate>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, slug, template, template_version, template_upgrades FROM control.tenants
              WHERE status IN ('active', 'suspended')
                AND ($1::text IS NULL OR template = $1)
                AND (cardinality($2::text[]) = 0 OR slug = ANY($2))
              ORDER BY slug",
            &[&template, &slugs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| UpgradeCandidate {
            id: TenantId(row.get("id")),
            slug: row.get("slug"),
            template: row.get("template"),
            template_version: row.get("template_version"),
            template_upgrades: row.get("template_upgrades"),
        })
        .collect())
}

/// Whether `tenantctl templates upgrade` upgrades the tenant without being named.
pub(crate) async fn set_template_upgrades(
    client: &impl GenericClient,
    slug: &Slug,
    enabled: bool,
) -> Result<Option<TenantId>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "UPDATE control.tenants SET template_upgrades = $2, updated_at = now()
              WHERE slug = $1 AND status <> 'deleted' RETURNING id",
            &[&slug.as_str(), &enabled],
        )
        .await?;
    Ok(row.map(|row| TenantId(row.get(0))))
}

pub(crate) async fn set_secret_ref(
    client: &impl GenericClient,
    id: TenantId,
    secret_ref: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants SET secret_ref = $2, updated_at = now() WHERE id = $1",
            &[&id.0, &secret_ref],
        )
        .await
        .map(|_| ())
}

/// Moves the tenant to `status`, bumping its generation; returns the new generation.
pub(crate) async fn set_status(
    client: &impl GenericClient,
    id: TenantId,
    status: TenantStatus,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "UPDATE control.tenants
                SET status = $2, generation = generation + 1, failed_step = NULL, last_error = NULL,
                    updated_at = now()
              WHERE id = $1
          RETURNING generation",
            &[&id.0, &status.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

/// Leaves a provisioning tenant `failed` at `step` with `error` (retryable); a tenant that has
/// moved on (suspended, deprovisioning, …) keeps its status.
pub(crate) async fn mark_failed(
    client: &impl GenericClient,
    id: TenantId,
    step: &str,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants
                SET status = 'failed', failed_step = $2, last_error = $3,
                    generation = generation + 1, updated_at = now()
              WHERE id = $1 AND status IN ('provisioning', 'failed')",
            &[&id.0, &step, &error],
        )
        .await
        .map(|_| ())
}

/// Which tenants to list: filters, and a page (by slug, after `after`, at most `limit`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TenantFilter {
    pub(crate) status: Option<TenantStatus>,
    pub(crate) plan: Option<PlanName>,
    pub(crate) cluster: Option<String>,
    /// Only tenants whose slug or display name contains this (case-insensitive).
    pub(crate) search: Option<String>,
    /// Only tenants at this schema version (the fleet ledger's record of them).
    pub(crate) schema_version: Option<i64>,
    pub(crate) include_deleted: bool,
    pub(crate) after: Option<String>,
    pub(crate) limit: Option<i64>,
}

/// Tenants matching `filter`, by slug, each with its schema version (`None` before its first
/// migration is recorded).
pub(crate) async fn list(
    client: &impl GenericClient,
    filter: &TenantFilter,
) -> Result<Vec<(TenantRecord, Option<i64>)>, CatalogError> {
    let sql = format!(
        "SELECT {TENANT_COLUMNS}, t.schema_version FROM control.tenants t
          WHERE ($1::text IS NULL OR t.status = $1)
            AND ($2::text IS NULL OR t.plan = $2)
            AND ($3 OR t.status <> 'deleted')
            AND ($4::text IS NULL OR t.cluster = $4)
            AND ($5::text IS NULL OR t.slug > $5)
            AND ($7::text IS NULL OR strpos(lower(t.slug || ' ' || t.display_name), lower($7)) > 0)
            AND ($8::bigint IS NULL OR t.schema_version = $8)
          ORDER BY t.slug, t.created_at
          LIMIT $6"
    );
    let status = filter.status.map(TenantStatus::as_str);
    let plan = filter.plan.as_ref().map(PlanName::as_str);
    let rows = client
        .query(
            sql.as_str(),
            &[
                &status,
                &plan,
                &filter.include_deleted,
                &filter.cluster,
                &filter.after,
                &filter.limit,
                &filter.search,
                &filter.schema_version,
            ],
        )
        .await
        .map_err(|e| CatalogError::from_pg(&e))?;
    rows.iter().map(|row| Ok((TenantRecord::from_row(row)?, row.get("schema_version")))).collect()
}

/// How many tenants have each status (deleted ones included).
pub(crate) async fn count_by_status(
    client: &impl GenericClient,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let rows = client.query("SELECT status, count(*) FROM control.tenants GROUP BY status", &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The tenant's billing subscription and customer, as the billing event that created it named
/// them (`None` for a tenant created otherwise).
pub(crate) async fn billing_ids(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<(Option<String>, Option<String>), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT billing_subscription_id, billing_customer_id FROM control.tenants WHERE id = $1",
            &[&id.0],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Locks the live tenant `slug`'s row for the rest of the transaction; its id, or `None` when
/// there is no such live tenant.
pub(crate) async fn lock_live(
    client: &impl GenericClient,
    slug: &Slug,
) -> Result<Option<TenantId>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT id FROM control.tenants WHERE slug = $1 AND status <> 'deleted' FOR UPDATE",
            &[&slug.as_str()],
        )
        .await?;
    Ok(row.map(|row| TenantId(row.get(0))))
}

/// Whether a live tenant `slug` exists.
pub(crate) async fn live_exists(
    client: &impl GenericClient,
    slug: &Slug,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT 1 FROM control.tenants WHERE slug = $1 AND status <> 'deleted'", &[&slug.as_str()])
        .await?;
    Ok(row.is_some())
}

/// Bumps the tenant's generation (its status unchanged), for a change routers must see.
pub(crate) async fn bump_generation(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants SET generation = generation + 1, updated_at = now() WHERE id = $1",
            &[&id.0],
        )
        .await
        .map(|_| ())
}

pub(crate) async fn set_plan(
    client: &impl GenericClient,
    id: TenantId,
    plan: &PlanName,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants SET plan = $2, updated_at = now() WHERE id = $1",
            &[&id.0, &plan.as_str()],
        )
        .await
        .map(|_| ())
}

/// Records when the tenant's data is to be dropped: `retention` from now.
pub(crate) async fn schedule_deprovision(
    client: &impl GenericClient,
    id: TenantId,
    retention: std::time::Duration,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants SET deprovision_after = now() + make_interval(secs => $2::bigint / 1000.0)
              WHERE id = $1",
            &[&id.0, &i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)],
        )
        .await
        .map(|_| ())
}

/// The tenant's data is no longer to be dropped (it was restored).
pub(crate) async fn clear_deprovision(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("UPDATE control.tenants SET deprovision_after = NULL WHERE id = $1", &[&id.0])
        .await
        .map(|_| ())
}

/// Replaces the live tenant `slug`'s config, bumping its generation; its id, or `None` when
/// there is no such live tenant.
pub(crate) async fn set_config(
    client: &impl GenericClient,
    slug: &Slug,
    config: &serde_json::Value,
) -> Result<Option<TenantId>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "UPDATE control.tenants SET config = $2, generation = generation + 1, updated_at = now()
              WHERE slug = $1 AND status <> 'deleted' RETURNING id",
            &[&slug.as_str(), config],
        )
        .await?;
    Ok(row.map(|row| TenantId(row.get(0))))
}

/// Records that the tenant's data is gone (and where its archive is, if one was written); its
/// status is set apart ([`set_status`]).
pub(crate) async fn mark_deleted(
    client: &impl GenericClient,
    id: TenantId,
    archive_path: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants SET deleted_at = now(), archive_path = coalesce($2, archive_path) WHERE id = $1",
            &[&id.0, &archive_path],
        )
        .await
        .map(|_| ())
}

/// The live tenant of a billing subscription, as billing events see it.
pub(crate) struct SubscriptionTenant {
    pub(crate) slug: String,
    pub(crate) plan: String,
    pub(crate) status: String,
    /// When the newest billing event applied to the tenant was created.
    pub(crate) billing_event_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The live tenant of billing subscription `subscription`, if any.
pub(crate) async fn live_by_subscription(
    client: &impl GenericClient,
    subscription: &str,
) -> Result<Option<SubscriptionTenant>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT slug, plan, status, billing_event_at FROM control.tenants
              WHERE billing_subscription_id = $1 AND status <> 'deleted'",
            &[&subscription],
        )
        .await?;
    Ok(row.map(|row| SubscriptionTenant {
        slug: row.get("slug"),
        plan: row.get("plan"),
        status: row.get("status"),
        billing_event_at: row.get("billing_event_at"),
    }))
}

/// Records when the newest billing event applied to the tenant was created.
pub(crate) async fn set_billing_event_at(
    client: &impl GenericClient,
    id: TenantId,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("UPDATE control.tenants SET billing_event_at = $2 WHERE id = $1", &[&id.0, &at])
        .await
        .map(|_| ())
}

/// [`set_billing_event_at`] for the live tenant of billing subscription `subscription`.
pub(crate) async fn set_billing_event_at_by_subscription(
    client: &impl GenericClient,
    subscription: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenants SET billing_event_at = $2 WHERE billing_subscription_id = $1 AND status <> 'deleted'",
            &[&subscription, &at],
        )
        .await
        .map(|_| ())
}
