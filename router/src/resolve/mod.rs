//! Host → tenant resolution: normalise the `Host`, pick the slug (subdomain of the base domain)
//! or custom domain, then look it up through the in-process cache (one load per key at a time,
//! "not found" cached briefly), the routing records shared in Redis ([`crate::redis::routes`]) and the catalog. Every
//! router remembers the newest generation it has heard of per tenant and never keeps a fill
//! older than that.

mod unknown_hosts;

use deadpool_postgres::Pool;
use moka::future::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenancy::catalog::{CatalogError, TenantRecord};
use tenancy::domain::{normalize_host, BaseDomain, HostError, Slug, TenantStatus};

/// Why a request could not be mapped to a servable tenant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveTenantError {
    #[error("invalid Host header: {0}")]
    InvalidHost(#[from] HostError),
    #[error("missing Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("no tenant at this host")]
    NotFound,
    #[error("tenant is suspended")]
    Suspended,
    #[error("tenant is being provisioned; retry shortly")]
    Provisioning,
    #[error("tenant directory unavailable")]
    Unavailable(String),
    #[error("too many lookups of unknown hosts; retry shortly")]
    UnknownHostsThrottled,
    #[error("tenant is being moved and its switch is taking longer than it should; retry shortly")]
    Moving,
    #[error("tenant is being moved and its writes are paused while its data is copied; retry later")]
    WritesPaused,
}

impl ResolveTenantError {
    /// Stable error code for clients and the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidHost(_) | Self::MissingHost | Self::DuplicateHost => "invalid_host",
            Self::NotFound => "tenant_not_found",
            Self::Suspended => "tenant_suspended",
            Self::Provisioning => "tenant_provisioning",
            Self::Unavailable(_) => "catalog_unavailable",
            Self::UnknownHostsThrottled => "unknown_hosts_throttled",
            Self::Moving | Self::WritesPaused => "tenant_moving",
        }
    }
}

/// The request's `Host` (`None` when absent). Two `Host` headers are refused (RFC 9112
/// §3.2: a server must answer 400), as the router and whatever is behind it could each read
/// a different one.
pub fn host_of(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ResolveTenantError> {
    let mut hosts = headers.get_all(axum::http::header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(ResolveTenantError::DuplicateHost);
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

/// A cached lookup: the tenant, or the fact that there is none.
type Lookup = Option<Arc<TenantRecord>>;

struct Ttl {
    found: Duration,
    missing: Duration,
}

impl moka::Expiry<String, Lookup> for Ttl {
    fn expire_after_create(&self, _key: &String, value: &Lookup, _now: Instant) -> Option<Duration> {
        Some(if value.is_some() { self.found } else { self.missing })
    }
}

pub struct Resolver {
    base_domain: BaseDomain,
    catalog: Pool,
    cache: Cache<String, Lookup>,
    shared: Option<crate::redis::routes::SharedRoutes>,
    /// The newest generation heard of (from invalidations), per tenant.
    generations: moka::sync::Cache<tenancy::domain::TenantId, i64>,
    metrics: Arc<crate::metrics::RouterMetrics>,
    unknown_hosts: unknown_hosts::UnknownHosts,
    /// Woken on every invalidation: requests held while their tenant is paused look again.
    changed: tokio::sync::Notify,
    /// How long a tenant found stays cached.
    ttl: Duration,
    /// Counts invalidations: what was resolved before it last moved may have changed since.
    epoch: std::sync::atomic::AtomicU64,
}

/// How often a request held by a tenant's pause looks again without being told of a change
/// (an invalidation message may be lost).
const PAUSE_POLL: Duration = Duration::from_millis(100);
/// Longest a request is held by a pause, whatever the pause says (clocks may disagree).
const PAUSE_MAX_HOLD: Duration = Duration::from_secs(30);
/// How often a write held while its tenant's writes are paused looks at the tenant again (an
/// invalidation wakes it sooner): a copy may last long, and many writes may be held.
const WRITES_POLL: Duration = Duration::from_secs(1);

/// How long [`Resolver::hold_while`] holds a request, how often it looks again, and the error
/// when it gives up.
struct Hold {
    longest: Duration,
    poll: Duration,
    expired: ResolveTenantError,
}
/// How much longer than the pause's end a request is held: the switch's own end may arrive
/// just after it.
const PAUSE_SLACK: Duration = Duration::from_millis(500);

/// Why a host could not be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("the unknown-host lookup budget is spent")]
    Throttled,
}

impl Resolver {
    pub fn new(
        base_domain: BaseDomain,
        catalog: Pool,
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
        shared: Option<crate::redis::routes::SharedRoutes>,
        metrics: Arc<crate::metrics::RouterMetrics>,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(Ttl { found: ttl, missing: negative_ttl })
            .support_invalidation_closures()
            .build();
        let generations = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(Duration::from_secs(3600))
            .build();
        let unknown_hosts = unknown_hosts::UnknownHosts::new(0, capacity);
        Self {
            base_domain,
            catalog,
            cache,
            shared,
            generations,
            metrics,
            unknown_hosts,
            changed: tokio::sync::Notify::new(),
            epoch: std::sync::atomic::AtomicU64::new(0),
            ttl,
        }
    }

    /// How many invalidations this router has heard of: a tenant resolved when it was `n` is
    /// the tenant as this router knows it for as long as it is still `n` (and the cache's own
    /// time to live has not passed).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How long a tenant found stays in the in-process cache (`ROUTER_CACHE_TTL`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn note_change(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Bounds catalog lookups that find no tenant to `per_second` for the whole router (see
    /// [`unknown_hosts`]; 0: no bound).
    #[must_use]
    pub fn with_unknown_host_lookups_per_second(mut self, per_second: u32) -> Self {
        self.unknown_hosts = unknown_hosts::UnknownHosts::new(
            per_second,
            self.cache.policy().max_capacity().unwrap_or(100_000),
        );
        self
    }

    /// The domain tenants' subdomains are under (`TENANT_BASE_DOMAIN`).
    pub fn base_domain(&self) -> &BaseDomain {
        &self.base_domain
    }

    /// The servable (active) tenant behind `raw_host`.
    pub async fn resolve(&self, raw_host: Option<&str>) -> Result<Arc<TenantRecord>, ResolveTenantError> {
        let host = normalize_host(raw_host.ok_or(ResolveTenantError::MissingHost)?)?;
        let mut tenant = self.lookup(&host).await?.ok_or(ResolveTenantError::NotFound)?;
        if let Some(until) = tenant.paused_until {
            tenant = Box::pin(self.wait_out_pause(&host, until)).await?;
        }
        match tenant.status {
            TenantStatus::Active => Ok(tenant),
            TenantStatus::Suspended => Err(ResolveTenantError::Suspended),
            TenantStatus::Provisioning => Err(ResolveTenantError::Provisioning),
            TenantStatus::Failed | TenantStatus::Deprovisioning | TenantStatus::Deleted => {
                Err(ResolveTenantError::NotFound)
            }
        }
    }

    /// Holds a request while its tenant is paused (a move switching it over), until the
    /// tenant is released (an invalidation, or a look every [`PAUSE_POLL`]) or the pause's
    /// end (`until`, plus [`PAUSE_SLACK`]) has passed; then the tenant as it is now.
    async fn wait_out_pause(
        &self,
        host: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<TenantRecord>, ResolveTenantError> {
        let left = (until - chrono::Utc::now()).to_std().unwrap_or_default();
        let hold = Hold {
            longest: left.min(PAUSE_MAX_HOLD) + PAUSE_SLACK,
            poll: PAUSE_POLL,
            expired: ResolveTenantError::Moving,
        };
        self.hold_while(host, hold, |tenant| tenant.paused_until.is_some()).await
    }

    /// Holds a write of the tenant behind `raw_host` while its writes are paused (a move by
    /// dump copying it), for at most [`PAUSE_MAX_HOLD`]; then the servable tenant as it is now.
    /// Returns at once when they are not. The copy may take long: the tenant is looked at again
    /// on an invalidation, or every [`WRITES_POLL`], and a directory briefly away does not end
    /// the hold.
    pub async fn hold_writes(&self, raw_host: Option<&str>) -> Result<Arc<TenantRecord>, ResolveTenantError> {
        let host = normalize_host(raw_host.ok_or(ResolveTenantError::MissingHost)?)?;
        let tenant = self.lookup(&host).await?.ok_or(ResolveTenantError::NotFound)?;
        if tenant.writes_paused() {
            let hold = Hold {
                longest: PAUSE_MAX_HOLD,
                poll: WRITES_POLL,
                expired: ResolveTenantError::WritesPaused,
            };
            self.hold_while(&host, hold, |tenant| {
                tenant.writes_paused() && tenant.status == TenantStatus::Active
            })
            .await?;
        }
        self.resolve(Some(&host)).await
    }

    /// Holds a request while `held` says so of the tenant behind `host`, until an
    /// invalidation (or a look every `hold.poll`) finds it released, or `hold.longest` has
    /// passed (`hold.expired`); then the tenant as it is now. While the directory cannot be
    /// read, the request is held on.
    async fn hold_while(
        &self,
        host: &str,
        hold: Hold,
        held: impl Fn(&TenantRecord) -> bool,
    ) -> Result<Arc<TenantRecord>, ResolveTenantError> {
        let deadline = tokio::time::Instant::now() + hold.longest;
        self.metrics.held_by_pause.inc();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.lookup(host).await {
                Ok(Some(tenant)) if !held(&tenant) => return Ok(tenant),
                Ok(Some(_)) | Err(ResolveTenantError::Unavailable(_)) => {}
                Ok(None) => return Err(ResolveTenantError::NotFound),
                Err(err) => return Err(err),
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(hold.poll) => self.cache.invalidate(host).await,
                () = tokio::time::sleep_until(deadline) => return Err(hold.expired),
            }
        }
    }

    /// Whether `tenant` is older than the newest generation this router has heard of.
    fn is_stale(&self, tenant: &TenantRecord) -> bool {
        self.generations.get(&tenant.id).is_some_and(|newest| tenant.generation < newest)
    }

    /// The tenant (any status) a host names, through the caches. Concurrent misses for one host
    /// share a single load.
    pub async fn lookup(&self, host: &str) -> Result<Lookup, ResolveTenantError> {
        let first = self.lookup_once(host).await?;
        // A load that began before an invalidation may have filled the cache with the old
        // record: drop it and load again.
        match first {
            Some(tenant) if self.is_stale(&tenant) => {
                self.cache.invalidate(host).await;
                self.lookup_once(host).await
            }
            other => Ok(other),
        }
    }

    async fn lookup_once(&self, host: &str) -> Result<Lookup, ResolveTenantError> {
        use crate::metrics::{Layer, Outcome};
        // A hit (the common case) needs no loader; a miss's (large) future is boxed, so that a
        // PostgreSQL client's future, which holds room for this one, stays small.
        if let Some(hit) = self.cache.get(host).await {
            self.metrics
                .resolution(Layer::L1, if hit.is_some() { Outcome::Found } else { Outcome::NotFound });
            return Ok(hit);
        }
        Box::pin(self.load_through_cache(host)).await
    }

    /// [`Resolver::lookup_once`] past the in-process cache: concurrent misses share one load.
    async fn load_through_cache(&self, host: &str) -> Result<Lookup, ResolveTenantError> {
        use crate::metrics::{Layer, Outcome};
        use std::sync::atomic::{AtomicU8, Ordering};
        // 0: the in-process cache answered; 1: Redis; 2: the catalog.
        let layer = AtomicU8::new(0);
        // By reference: a hit (the common case) copies no key.
        let result = self.cache.try_get_with_by_ref(host, self.load(host, &layer)).await;
        let layer = match layer.load(Ordering::Relaxed) {
            0 => Layer::L1,
            1 => Layer::L2,
            _ => Layer::Catalog,
        };
        let outcome = match &result {
            Ok(Some(_)) => Outcome::Found,
            Ok(None) => Outcome::NotFound,
            Err(_) => Outcome::Error,
        };
        self.metrics.resolution(layer, outcome);
        result.map_err(|e: Arc<LoadError>| match &*e {
            LoadError::Throttled => ResolveTenantError::UnknownHostsThrottled,
            LoadError::Catalog(err) => ResolveTenantError::Unavailable(err.to_string()),
        })
    }

    async fn load(&self, host: &str, layer: &std::sync::atomic::AtomicU8) -> Result<Lookup, LoadError> {
        use std::sync::atomic::Ordering;
        let slug = self.base_domain.subdomain_of(host).map(Slug::parse);
        if let (Some(Ok(slug)), Some(shared)) = (&slug, &self.shared) {
            if let Some(tenant) = shared.get(slug).await.filter(|t| !self.is_stale(t)) {
                layer.store(1, Ordering::Relaxed);
                return Ok(Some(Arc::new(tenant)));
            }
        }
        layer.store(2, Ordering::Relaxed);
        if !self.unknown_hosts.admits(host) {
            return Err(LoadError::Throttled);
        }
        let client = self.catalog.get().await.map_err(|e| CatalogError::Unavailable(e.to_string()))?;
        let found = match &slug {
            Some(Ok(slug)) => tenancy::catalog::tenant_by_slug(&**client, slug).await?,
            Some(Err(_)) => None,
            None => tenancy::catalog::tenant_by_custom_domain(&**client, host).await?,
        };
        match &found {
            Some(_) => self.unknown_hosts.found(host),
            None => self.unknown_hosts.missed(),
        }
        let found = found.map(Arc::new);
        if let (Some(tenant), Some(shared), Some(Ok(_))) = (&found, &self.shared, &slug) {
            shared.put(tenant).await;
        }
        Ok(found)
    }

    /// Forgets a tenant (on an invalidation message): its subdomain and any custom domain that
    /// resolved to it.
    pub async fn evict_tenant(&self, invalidation: &tenancy::invalidation::Invalidation) {
        let newest =
            self.generations.get(&invalidation.tenant_id).unwrap_or(i64::MIN).max(invalidation.generation);
        self.generations.insert(invalidation.tenant_id, newest);
        self.cache.invalidate(&self.base_domain.host_for(&invalidation.slug)).await;
        for host in &invalidation.hosts {
            self.cache.invalidate(host).await;
        }
        let id = invalidation.tenant_id;
        if let Err(err) =
            self.cache.invalidate_entries_if(move |_host, lookup| lookup.as_ref().is_some_and(|t| t.id == id))
        {
            tracing::warn!(error = %err, "could not evict custom domains; forgetting the whole cache");
            self.evict_all();
        }
        self.note_change();
    }

    /// Forgets everything (after losing invalidation messages).
    pub fn evict_all(&self) {
        self.cache.invalidate_all();
        self.note_change();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(ResolveTenantError::Suspended.code(), "tenant_suspended");
        assert_eq!(ResolveTenantError::NotFound.code(), "tenant_not_found");
        assert_eq!(ResolveTenantError::InvalidHost(HostError::Empty).code(), "invalid_host");
    }
}
