//! Reading the catalog: the tenant rows both binaries need. The catalog schema itself (and all
//! writes) belongs to the control plane, which migrates it at start-up.

use crate::domain::{
    DatabaseName, Isolation, PlanName, PoolMode, RoleName, SchemaName, Slug, TenantId, TenantStatus,
};
use crate::secrets::SecretName;
use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

/// What went wrong reading the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
    #[error("catalog query failed: {0}")]
    Query(String),
    #[error("catalog row for tenant {tenant} is invalid: {reason}")]
    Corrupt { tenant: String, reason: String },
}

impl CatalogError {
    pub fn from_pg(err: &tokio_postgres::Error) -> Self {
        if crate::error::pg_error_kind(err).is_retryable() || err.is_closed() {
            Self::Unavailable(crate::pg::describe_error(err))
        } else {
            Self::Query(crate::pg::describe_error(err))
        }
    }
}

impl From<tokio_postgres::Error> for CatalogError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::from_pg(&err)
    }
}

impl From<deadpool_postgres::PoolError> for CatalogError {
    /// No catalog connection could be had (the server is unreachable, or the pool timed out).
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(pg) => Self::from_pg(&pg),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl crate::error::OperationError for CatalogError {
    fn kind(&self) -> crate::error::ErrorKind {
        // A query on the catalog that fails is the catalog failing the request (a timeout, a
        // cancelled statement): worth another attempt, as an unreachable catalog is.
        match self {
            Self::Unavailable(_) | Self::Query(_) => crate::error::ErrorKind::Unavailable,
            Self::Corrupt { .. } => crate::error::ErrorKind::Failed,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) | Self::Query(_) => "catalog_unavailable",
            Self::Corrupt { .. } => "catalog_corrupt",
        }
    }
}

/// One tenant as the catalog records it (also the routing record routers share in Redis).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub slug: Slug,
    pub display_name: String,
    pub plan: PlanName,
    pub status: TenantStatus,
    pub isolation: Isolation,
    pub cluster: String,
    pub schema_name: SchemaName,
    pub database_name: Option<DatabaseName>,
    pub role_name: RoleName,
    pub secret_ref: Option<String>,
    pub pool_size: i32,
    /// How the PostgreSQL-protocol door lends the tenant's connections (records shared by
    /// routers from before it have none: transaction pooling).
    #[serde(default)]
    pub pool_mode: PoolMode,
    pub rate_limit_per_second: Option<i32>,
    pub statement_timeout_ms: Option<i32>,
    pub config: serde_json::Value,
    pub provision_step: Option<String>,
    pub failed_step: Option<String>,
    pub last_error: Option<String>,
    pub generation: i64,
    /// While set, a move is switching the tenant to its new placement: routers hold its new
    /// requests until the switch (at most until then). Records shared by routers from before
    /// moves have none.
    #[serde(default)]
    pub paused_until: Option<DateTime<Utc>>,
    /// While in the future, a move by dump copies the tenant with its tables locked: routers
    /// hold its writes (not its reads) until the move switches it, gives up, or stops renewing
    /// this lease.
    #[serde(default)]
    pub writes_paused_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns [`TenantRecord::from_row`] reads (by name); use in `SELECT {TENANT_COLUMNS} FROM
/// control.tenants t`.
pub const TENANT_COLUMNS: &str = "t.id, t.slug, t.display_name, t.plan, t.status, t.isolation, \
    t.cluster, t.schema_name, t.database_name, t.role_name, t.secret_ref, t.pool_size, \
    t.pool_mode, t.rate_limit_per_second, t.statement_timeout_ms, t.config, t.provision_step, t.failed_step, \
    t.last_error, t.generation, t.paused_until, t.writes_paused_until, t.created_at, t.updated_at";

impl TenantRecord {
    pub fn from_row(row: &Row) -> Result<Self, CatalogError> {
        let id = TenantId(row.get("id"));
        let corrupt = |reason: String| CatalogError::Corrupt { tenant: id.to_string(), reason };
        let slug: String = row.get("slug");
        let plan: String = row.get("plan");
        let status: String = row.get("status");
        let isolation: String = row.get("isolation");
        let schema: String = row.get("schema_name");
        let database: Option<String> = row.get("database_name");
        let role: String = row.get("role_name");
        let pool_mode: String = row.get("pool_mode");
        Ok(Self {
            id,
            slug: Slug::parse(&slug).map_err(|e| corrupt(e.to_string()))?,
            display_name: row.get("display_name"),
            plan: PlanName::parse(&plan).map_err(|e| corrupt(e.to_string()))?,
            status: status.parse().map_err(|e: crate::domain::UnknownValue| corrupt(e.to_string()))?,
            isolation: isolation.parse().map_err(|e: crate::domain::UnknownValue| corrupt(e.to_string()))?,
            cluster: row.get("cluster"),
            schema_name: SchemaName::parse(&schema).map_err(|e| corrupt(e.to_string()))?,
            database_name: database
                .map(|d| DatabaseName::parse(&d))
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            role_name: RoleName::parse(&role).map_err(|e| corrupt(e.to_string()))?,
            secret_ref: row.get("secret_ref"),
            pool_size: row.get("pool_size"),
            pool_mode: pool_mode.parse().map_err(|e: crate::domain::UnknownValue| corrupt(e.to_string()))?,
            rate_limit_per_second: row.get("rate_limit_per_second"),
            statement_timeout_ms: row.get("statement_timeout_ms"),
            config: row.get("config"),
            provision_step: row.get("provision_step"),
            failed_step: row.get("failed_step"),
            last_error: row.get("last_error"),
            generation: row.get("generation"),
            paused_until: row.get("paused_until"),
            writes_paused_until: row.get("writes_paused_until"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        })
    }

    /// Whether a move by dump holds the tenant's writes now (its lease has not run out).
    pub fn writes_paused(&self) -> bool {
        self.writes_paused_until.is_some_and(|until| until > Utc::now())
    }

    pub fn secret_name(&self) -> Option<SecretName> {
        self.secret_ref.clone().map(SecretName::from_catalog)
    }
}

async fn one_tenant(
    client: &impl GenericClient,
    filter: &str,
    param: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<TenantRecord>, CatalogError> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM control.tenants t WHERE {filter}");
    let row = client.query_opt(sql.as_str(), &[param]).await.map_err(|e| CatalogError::from_pg(&e))?;
    row.as_ref().map(TenantRecord::from_row).transpose()
}

/// The live (not deleted) tenant with this slug.
pub async fn tenant_by_slug(
    client: &impl GenericClient,
    slug: &Slug,
) -> Result<Option<TenantRecord>, CatalogError> {
    one_tenant(client, "t.slug = $1 AND t.status <> 'deleted'", &slug.as_str()).await
}

pub async fn tenant_by_id(
    client: &impl GenericClient,
    id: TenantId,
) -> Result<Option<TenantRecord>, CatalogError> {
    one_tenant(client, "t.id = $1", &id.0).await
}

/// The live tenant that owns a custom domain (normalised host name).
pub async fn tenant_by_custom_domain(
    client: &impl GenericClient,
    host: &str,
) -> Result<Option<TenantRecord>, CatalogError> {
    one_tenant(
        client,
        "t.id = (SELECT d.tenant_id FROM control.domains d WHERE d.host = $1) AND t.status <> 'deleted'",
        &host,
    )
    .await
}
