//! Per-tenant rate limits from the plan (`rate_limit_per_second`): a noisy tenant gets 429 and
//! cannot starve the others. One GCRA limiter (governor) per tenant, burst = one second's worth,
//! rebuilt when the tenant's generation changes (a plan change), forgotten when idle.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::TenantId;

struct Limiter {
    generation: i64,
    limiter: DefaultDirectRateLimiter,
}

pub struct RateLimits {
    limiters: Cache<TenantId, Arc<Limiter>>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            limiters: Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(600)).build(),
        }
    }
}

impl RateLimits {
    /// Whether the tenant may make one more request now. Tenants without a limit always may.
    pub fn allow(&self, tenant: &TenantRecord) -> bool {
        let Some(per_second) =
            tenant.rate_limit_per_second.and_then(|r| NonZeroU32::new(u32::try_from(r).ok()?))
        else {
            return true;
        };
        let current = self.limiters.get(&tenant.id).filter(|l| l.generation == tenant.generation);
        let limiter = current.unwrap_or_else(|| {
            let fresh = Arc::new(Limiter {
                generation: tenant.generation,
                limiter: RateLimiter::direct(Quota::per_second(per_second)),
            });
            self.limiters.insert(tenant.id, fresh.clone());
            fresh
        });
        limiter.limiter.check().is_ok()
    }
}
