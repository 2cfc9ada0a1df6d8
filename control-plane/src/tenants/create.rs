//! Creating a tenant: a request records the tenant as `provisioning` and enqueues a job in the
//! same transaction; a worker runs the job's steps ([`crate::jobs::provision`]), each idempotent, so a crash at
//! any point is finished by the next attempt with nothing duplicated or orphaned.

use super::{Announcement, Recorded};
use crate::catalog::jobs;
use crate::catalog::tenants::{self, NewTenant};
use crate::control_plane::ControlPlane;
use crate::jobs::JobKind;
use crate::plans::TemplateError;
use tenancy::catalog::{CatalogError, TenantRecord};
use tenancy::domain::{DatabaseName, Isolation, PlanName, RoleName, SchemaName, Slug, SlugError, TenantId};
use tenancy::error::{ErrorKind, OperationError};

/// A request to create a tenant, from the API, the CLI or a billing event.
#[derive(Debug, Clone, Default)]
pub struct TenantRequest {
    pub slug: String,
    pub display_name: Option<String>,
    pub plan: String,
    /// Own schema or own database; by default what the plan's template says.
    pub isolation: Option<Isolation>,
    /// The cluster to place it on; by default the least loaded with room.
    pub cluster: Option<String>,
    pub billing_customer_id: Option<String>,
    pub billing_subscription_id: Option<String>,
}

impl TenantRequest {
    /// A request for `slug` on `plan`, everything else by default.
    pub fn new(slug: impl Into<String>, plan: impl Into<String>) -> Self {
        Self { slug: slug.into(), plan: plan.into(), ..Self::default() }
    }
}

/// Why a tenant could not be created. Nothing is created when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("invalid slug {slug:?}: {reason}")]
    InvalidSlug { slug: String, reason: SlugError },
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    #[error("invalid display name: {0}")]
    InvalidName(&'static str),
    #[error("a tenant with slug {0:?} already exists")]
    DuplicateSlug(String),
    #[error("a tenant for billing subscription {0:?} already exists")]
    DuplicateSubscription(String),
    #[error("no cluster has room for another tenant; register one with `tenantctl clusters add`")]
    NoCapacity,
    #[error("no cluster {0} is registered")]
    UnknownCluster(String),
    #[error("cluster {0} is being drained: it takes no new tenants")]
    ClusterDraining(String),
    #[error("catalog unavailable: {0}")]
    Catalog(String),
}

impl OperationError for CreateTenantError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidSlug { .. } | Self::InvalidPlan(_) | Self::InvalidName(_) => ErrorKind::Invalid,
            Self::DuplicateSlug(_) | Self::DuplicateSubscription(_) => ErrorKind::Conflict,
            Self::NoCapacity | Self::Catalog(_) => ErrorKind::Unavailable,
            Self::UnknownCluster(_) => ErrorKind::NotFound,
            Self::ClusterDraining(_) => ErrorKind::WrongState,
        }
    }

    /// "No cluster has room" tells the operator what to do, and names nothing internal; so do
    /// the errors about the cluster the request named.
    fn public_message(&self) -> Option<String> {
        matches!(self, Self::NoCapacity | Self::UnknownCluster(_) | Self::ClusterDraining(_))
            .then(|| self.to_string())
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidSlug { .. } => "invalid_slug",
            Self::InvalidPlan(_) => "invalid_plan",
            Self::InvalidName(_) => "invalid_name",
            Self::DuplicateSlug(_) => "duplicate_slug",
            Self::DuplicateSubscription(_) => "duplicate_subscription",
            Self::NoCapacity => "no_capacity",
            Self::UnknownCluster(_) => "unknown_cluster",
            Self::ClusterDraining(_) => "cluster_draining",
            Self::Catalog(_) => "catalog_unavailable",
        }
    }
}

fn validate_display_name(raw: Option<&str>, slug: &Slug) -> Result<String, CreateTenantError> {
    let name = raw.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(slug.as_str());
    if name.chars().count() > 200 {
        return Err(CreateTenantError::InvalidName("at most 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(CreateTenantError::InvalidName("control characters are not allowed"));
    }
    Ok(name.to_owned())
}

/// Creates a tenant in a transaction of its own (see [`create_in`]); the workers are woken once
/// it has committed. Returns the new tenant.
pub async fn create(
    cp: &ControlPlane,
    request: &TenantRequest,
    actor: &str,
) -> Result<TenantRecord, CreateTenantError> {
    super::in_transaction(cp, CreateTenantError::Catalog, async |tx| {
        create_in(tx, cp, request, actor).await.map(Recorded::into_parts)
    })
    .await
}

/// Validates the request, places the tenant on a cluster, records it as `provisioning` and
/// enqueues its provisioning job, within `tx` (which holds the placement lock until it ends).
/// Nothing is written when it is refused. The caller commits, then sends the announcement.
pub(crate) async fn create_in(
    tx: &deadpool_postgres::Transaction<'_>,
    cp: &ControlPlane,
    request: &TenantRequest,
    actor: &str,
) -> Result<Recorded, CreateTenantError> {
    let slug = Slug::parse(&request.slug)
        .map_err(|reason| CreateTenantError::InvalidSlug { slug: request.slug.clone(), reason })?;
    let plan = PlanName::parse(&request.plan).map_err(|e| CreateTenantError::InvalidPlan(e.to_string()))?;
    let template = cp.templates.load(&plan).map_err(|e| match e {
        TemplateError::UnknownPlan { plan, .. } => {
            CreateTenantError::InvalidPlan(format!("no plan named {plan:?}"))
        }
        other => CreateTenantError::InvalidPlan(other.to_string()),
    })?;
    let isolation = request.isolation.unwrap_or(template.isolation);
    let display_name = validate_display_name(request.display_name.as_deref(), &slug)?;
    let mut new = NewTenant {
        id: TenantId::new(),
        schema_name: match isolation {
            Isolation::Schema => SchemaName::for_tenant(&slug),
            Isolation::Database => SchemaName::database_tenant(),
        },
        database_name: (isolation == Isolation::Database)
            .then(|| DatabaseName::for_tenant(&cp.role_prefix, &slug)),
        role_name: RoleName::for_tenant(&cp.role_prefix, &slug),
        slug,
        display_name,
        plan,
        isolation,
        cluster: String::new(),
        billing_customer_id: request.billing_customer_id.clone(),
        billing_subscription_id: request.billing_subscription_id.clone(),
    };

    new.cluster = crate::clusters::placement::place(tx, request.cluster.as_deref()).await?;
    if let Err(err) = tenants::insert(&**tx, &new).await {
        return Err(classify_insert_error(&err, &new).unwrap_or_else(|| catalog_error(&err)));
    }
    jobs::enqueue(&**tx, JobKind::Provision, Some(new.id), &serde_json::json!({}))
        .await
        .map_err(|e| catalog_error(&e))?;
    crate::catalog::audit::record(
        &**tx,
        actor,
        "tenant.create",
        Some(new.id),
        serde_json::json!({ "slug": new.slug, "plan": new.plan }),
    )
    .await
    .map_err(|e| catalog_error(&e))?;
    let record = tenancy::catalog::tenant_by_id(&**tx, new.id)
        .await
        .map_err(|e: CatalogError| CreateTenantError::Catalog(e.to_string()))?
        .ok_or_else(|| CreateTenantError::Catalog("tenant vanished after insert".into()))?;
    tracing::info!(tenant = %record.slug, tenant_id = %record.id, plan = %record.plan, actor, "tenant requested");
    Ok(Recorded { tenant: record, announcement: Announcement::jobs() })
}

fn catalog_error(e: &tokio_postgres::Error) -> CreateTenantError {
    CreateTenantError::Catalog(tenancy::pg::describe_error(e))
}

fn classify_insert_error(err: &tokio_postgres::Error, new: &NewTenant) -> Option<CreateTenantError> {
    let db = err.as_db_error()?;
    if db.code() != &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
        return None;
    }
    match db.constraint() {
        Some("tenants_live_subscription") => Some(CreateTenantError::DuplicateSubscription(
            new.billing_subscription_id.clone().unwrap_or_default(),
        )),
        Some("tenants_live_slug" | "tenants_live_role") => {
            Some(CreateTenantError::DuplicateSlug(new.slug.to_string()))
        }
        _ => None,
    }
}
