//! Host → tenant resolution: normalise the `Host`, pick the slug (subdomain of the base domain)
//! or custom domain, then look it up through the in-process cache (one load per key at a time,
//! "not found" cached briefly) and the catalog.

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
    #[error("no tenant at this host")]
    NotFound,
    #[error("tenant is suspended")]
    Suspended,
    #[error("tenant is being provisioned; retry shortly")]
    Provisioning,
    #[error("tenant directory unavailable")]
    Unavailable(String),
}

impl ResolveTenantError {
    /// Stable error code for clients and the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidHost(_) | Self::MissingHost => "invalid_host",
            Self::NotFound => "tenant_not_found",
            Self::Suspended => "tenant_suspended",
            Self::Provisioning => "tenant_provisioning",
            Self::Unavailable(_) => "catalog_unavailable",
        }
    }
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
    metrics: Arc<crate::metrics::RouterMetrics>,
}

impl Resolver {
    pub fn new(
        base_domain: BaseDomain,
        catalog: Pool,
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
        metrics: Arc<crate::metrics::RouterMetrics>,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(Ttl { found: ttl, missing: negative_ttl })
            .support_invalidation_closures()
            .build();
        Self { base_domain, catalog, cache, metrics }
    }

    /// The servable (active) tenant behind `raw_host`.
    pub async fn resolve(&self, raw_host: Option<&str>) -> Result<Arc<TenantRecord>, ResolveTenantError> {
        let host = normalize_host(raw_host.ok_or(ResolveTenantError::MissingHost)?)?;
        let tenant = self.lookup(host).await?.ok_or(ResolveTenantError::NotFound)?;
        match tenant.status {
            TenantStatus::Active => Ok(tenant),
            TenantStatus::Suspended => Err(ResolveTenantError::Suspended),
            TenantStatus::Provisioning => Err(ResolveTenantError::Provisioning),
            TenantStatus::Failed | TenantStatus::Deprovisioning | TenantStatus::Deleted => {
                Err(ResolveTenantError::NotFound)
            }
        }
    }

    /// The tenant (any status) a host names, through the cache. Concurrent misses for one host
    /// share a single catalog query.
    pub async fn lookup(&self, host: String) -> Result<Lookup, ResolveTenantError> {
        use crate::metrics::{Layer, Outcome};
        let key = host.clone();
        let loaded = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            loaded.store(true, std::sync::atomic::Ordering::Relaxed);
            self.load(host).await
        };
        let result = self.cache.try_get_with(key, load).await;
        let layer =
            if loaded.load(std::sync::atomic::Ordering::Relaxed) { Layer::Catalog } else { Layer::L1 };
        let outcome = match &result {
            Ok(Some(_)) => Outcome::Found,
            Ok(None) => Outcome::NotFound,
            Err(_) => Outcome::Error,
        };
        self.metrics.resolution(layer, outcome);
        result.map_err(|e: Arc<CatalogError>| ResolveTenantError::Unavailable(e.to_string()))
    }

    async fn load(&self, host: String) -> Result<Lookup, CatalogError> {
        let client = self.catalog.get().await.map_err(|e| CatalogError::Unavailable(e.to_string()))?;
        let found = match self.base_domain.subdomain_of(&host) {
            Some(label) => match Slug::parse(label) {
                Ok(slug) => tenancy::catalog::tenant_by_slug(&**client, &slug).await?,
                Err(_) => None,
            },
            None => tenancy::catalog::tenant_by_custom_domain(&**client, &host).await?,
        };
        Ok(found.map(Arc::new))
    }

    /// Forgets a tenant (on an invalidation message): its subdomain and any custom domain that
    /// resolved to it.
    pub async fn evict_tenant(&self, invalidation: &tenancy::invalidation::Invalidation) {
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
    }

    /// Forgets everything (after losing invalidation messages).
    pub fn evict_all(&self) {
        self.cache.invalidate_all();
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
