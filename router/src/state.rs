//! What every door of the router serves with: the resolver and its caches, the tenant pools
//! under the connection budget, the limits, the metrics and the settings requests read
//! ([`AppState`]), built once from the router's settings. The listeners ([`crate::http`]) and
//! an embedding service ([`crate::embed`]) both start from here.

use crate::pool::TenantPools;
use crate::resolve::Resolver;
use crate::settings::RouterSettings;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The router's shared state; cheap to clone (what it shares is behind `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub resolver: Arc<Resolver>,
    pub pools: Arc<TenantPools>,
    pub rate_limits: Arc<crate::rate_limit::RateLimits>,
    /// Failed authentications and unknown hosts, per client address.
    pub failed_attempts: Arc<crate::failed_attempts::FailedAttempts>,
    /// `ROUTER_TRUSTED_PROXY_HOPS`: where the client address is found.
    pub trusted_proxy_hops: usize,
    pub metrics: Arc<crate::metrics::RouterMetrics>,
    /// The application other paths go to (`ROUTER_UPSTREAM`).
    pub upstream: Option<Arc<crate::upstream::Upstream>>,
    /// Bearer-token checking; `None` when no key is configured.
    pub identity: Option<Arc<crate::identity::Verifier>>,
    /// Internal users' accesses, on their way to the audit log.
    pub(crate) audit: Arc<crate::identity::audit::AccessAudit>,
    pub catalog: deadpool_postgres::Pool,
    pub max_response_bytes: usize,
    /// Classifies the SQL requests run (what it can do to a session; read-only or not).
    pub classifier: crate::statement::Classifier,
    /// When sessions are reset between requests (`ROUTER_SESSION_RESET`).
    pub session_reset: crate::session::ResetPolicy,
    /// Which requests the access log writes (`ROUTER_ACCESS_LOG_SAMPLE`).
    pub access_log: Arc<crate::access_log::Sampler>,
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL: {0}")]
    Database(#[from] tenancy::pg::PoolError),
    #[error("secret store: {0}")]
    Secrets(#[from] tenancy::secrets::SecretError),
    #[error("REDIS_URL: {0}")]
    Redis(String),
    #[error("bearer token settings: {0}")]
    Jwt(String),
    #[error("{0}")]
    RecordsKey(String),
    #[error("TLS certificate of the PostgreSQL listener: {0}")]
    Tls(#[from] crate::wire::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// The routing records shared in Redis: only with Redis and a key to sign them with.
fn shared_routes(
    settings: &RouterSettings,
    redis: Option<Arc<crate::redis::RedisLink>>,
    names: &tenancy::invalidation::RedisNames,
    metrics: &crate::metrics::RouterMetrics,
) -> Result<Option<crate::redis::routes::SharedRoutes>, StartError> {
    let (Some(redis), Some(key)) = (redis, &settings.records_key) else {
        if settings.common.redis_url.is_some() {
            tracing::info!("ROUTER_RECORDS_KEY is not set: routing records are not shared through Redis");
        }
        return Ok(None);
    };
    let key = crate::redis::routes::RecordKey::new(key.clone()).map_err(StartError::RecordsKey)?;
    Ok(Some(crate::redis::routes::SharedRoutes::new(
        redis,
        names.clone(),
        settings.shared_cache_ttl,
        key,
        metrics.shared_records_rejected.clone(),
    )))
}

impl AppState {
    pub async fn new(settings: &RouterSettings) -> Result<Self, StartError> {
        let ca_bundle = settings.common.ca_bundle().map_err(tenancy::pg::PoolError::from)?;
        let config = tenancy::pg::parse_config(settings.common.database_url()?.expose(), &ca_bundle)?;
        let catalog = tenancy::pg::pool(&config, 16)?;
        let secrets = settings.common.secrets.build(catalog.clone()).await?;
        let metrics = Arc::new(crate::metrics::RouterMetrics::default());
        let redis = redis_link(settings)?;
        let names = tenancy::invalidation::RedisNames::new(&settings.common.redis_key_prefix);
        metrics.connection_budget.set(i64::try_from(settings.max_connections).unwrap_or(i64::MAX));
        let resolver = Resolver::new(
            settings.common.tenant_base_domain.clone(),
            catalog.clone(),
            settings.cache_capacity,
            settings.cache_ttl,
            settings.negative_cache_ttl,
            shared_routes(settings, redis.clone(), &names, &metrics)?,
            metrics.clone(),
        )
        .with_unknown_host_lookups_per_second(settings.unknown_host_lookups_per_second);
        Ok(Self {
            resolver: Arc::new(resolver),
            pools: Arc::new(TenantPools::new(
                secrets,
                ca_bundle,
                crate::pool::PoolLimits {
                    idle_timeout: settings.pool_idle_timeout,
                    checkout_timeout: settings.checkout_timeout,
                    max_connections: settings.max_connections,
                    tenant_max_connections: settings.tenant_max_connections,
                    reclaim_after: settings.reclaim_idle_after,
                    connects_per_second: settings.max_connects_per_second,
                },
                metrics.connections.clone(),
            )),
            rate_limits: Arc::new(crate::rate_limit::RateLimits::new(redis.map(|link| (link, names)))),
            failed_attempts: Arc::new(crate::failed_attempts::FailedAttempts::new(
                settings.auth_failures_per_minute,
            )),
            trusted_proxy_hops: settings.trusted_proxy_hops,
            metrics: metrics.clone(),
            identity: crate::identity::Verifier::new(&settings.identity)
                .map_err(StartError::Jwt)?
                .map(Arc::new),
            audit: Arc::new(crate::identity::audit::AccessAudit::new(metrics.clone())),
            upstream: settings
                .upstream
                .clone()
                .map(|base| Arc::new(crate::upstream::Upstream::new(base, settings.upstream_timeout))),
            catalog,
            max_response_bytes: settings.max_response_bytes,
            classifier: crate::statement::Classifier::default(),
            session_reset: settings.session_reset,
            access_log: Arc::new(crate::access_log::Sampler::new(settings.access_log_sample)),
        })
    }
}

/// The connection to Redis the router's caches and limits share (when `REDIS_URL` is set).
fn redis_link(settings: &RouterSettings) -> Result<Option<Arc<crate::redis::RedisLink>>, StartError> {
    let Some(url) = &settings.common.redis_url else { return Ok(None) };
    let client =
        tenancy::invalidation::redis_client(url.expose()).map_err(|e| StartError::Redis(e.to_string()))?;
    Ok(Some(Arc::new(crate::redis::RedisLink::new(client))))
}

/// Starts what bearer tokens need in the background (when tokens are accepted): the identity
/// provider's key set kept fresh until `shutdown`, and the writer of internal users' accesses to
/// the audit log, which runs until it is finished ([`crate::identity::audit::AuditWriter::finish`]:
/// once nothing can queue more).
pub fn spawn_identity_tasks(
    state: &AppState,
    shutdown: &CancellationToken,
) -> Option<crate::identity::audit::AuditWriter> {
    let verifier = state.identity.as_ref()?;
    crate::identity::spawn_refresh(verifier, shutdown.clone());
    Some(crate::identity::audit::AuditWriter::spawn(state.audit.clone(), state.catalog.clone()))
}

/// Starts the Redis invalidation listener for `state` (when `REDIS_URL` is set); it runs until
/// `shutdown`.
pub fn spawn_invalidation_listener(
    settings: &RouterSettings,
    state: &AppState,
    shutdown: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, StartError> {
    let Some(url) = &settings.common.redis_url else { return Ok(None) };
    let client =
        tenancy::invalidation::redis_client(url.expose()).map_err(|e| StartError::Redis(e.to_string()))?;
    let names = tenancy::invalidation::RedisNames::new(&settings.common.redis_key_prefix);
    Ok(Some(crate::invalidation::spawn(
        client,
        names,
        state.resolver.clone(),
        state.metrics.clone(),
        shutdown.clone(),
    )))
}

/// The client address of a request, behind the trusted proxies (`ROUTER_TRUSTED_PROXY_HOPS`).
impl FromRequestParts<AppState> for crate::failed_attempts::ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts, state.trusted_proxy_hops))
    }
}
