//! Per-tenant rate limits from the plan (`rate_limit_per_second`): a noisy tenant gets 429 and
//! cannot starve the others. The limit holds across every router of a deployment: its state
//! lives in Redis, updated by one atomic script per request (GCRA, the "generic cell rate
//! algorithm": one timestamp per tenant, burst = one second's worth, time from Redis's own
//! clock so routers' clocks do not matter). While Redis is away each router limits the tenant
//! on its own (the plan's rate per router), so a deployment of N routers then allows up to N
//! times the rate, and never less.
//!
//! Each router also keeps its own limiter for the tenant and asks Redis only when that one
//! allows the request: a tenant flooding one router is refused there without a Redis round
//! trip per request (a router alone never lets through more than the plan's rate, so nothing
//! it refuses the shared limit would have allowed from it).

use crate::redis::RedisLink;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::TenantId;
use tenancy::invalidation::RedisNames;

/// GCRA. KEYS[1]: the tenant's key. ARGV[1]: the emission interval in µs (1 s / rate);
/// ARGV[2]: the burst, in requests. Returns 1 when the request is allowed.
const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > interval * burst then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 1
";

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA));

struct Limiter {
    generation: i64,
    limiter: DefaultDirectRateLimiter,
}

pub struct RateLimits {
    shared: Option<(Arc<RedisLink>, RedisNames)>,
    /// Per-router limiters, used while Redis is away.
    local: Cache<TenantId, Arc<Limiter>>,
}

impl RateLimits {
    /// Limits shared through `redis` when given, per router otherwise.
    pub fn new(redis: Option<(Arc<RedisLink>, RedisNames)>) -> Self {
        Self {
            shared: redis,
            local: Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(600)).build(),
        }
    }

    /// Whether the tenant may make one more request now. Tenants without a limit always may.
    pub async fn allow(&self, tenant: &TenantRecord) -> bool {
        let Some(per_second) =
            tenant.rate_limit_per_second.and_then(|r| NonZeroU32::new(u32::try_from(r).ok()?))
        else {
            return true;
        };
        if !self.allow_here(tenant, per_second) {
            return false;
        }
        let Some((redis, names)) = &self.shared else { return true };
        let interval_us = 1_000_000 / u64::from(per_second.get()).max(1);
        let mut invocation = SCRIPT.prepare_invoke();
        invocation.key(names.rate_limit_key(&tenant.id)).arg(interval_us.max(1)).arg(per_second.get());
        // Redis away: this router's own limiter decided.
        redis.run::<i64>(&invocation).await.is_none_or(|allowed| allowed == 1)
    }

    /// This router's own limiter for the tenant (rebuilt when its generation changes).
    fn allow_here(&self, tenant: &TenantRecord, per_second: NonZeroU32) -> bool {
        let current = self.local.get(&tenant.id).filter(|l| l.generation == tenant.generation);
        let limiter = current.unwrap_or_else(|| {
            let fresh = Arc::new(Limiter {
                generation: tenant.generation,
                limiter: RateLimiter::direct(Quota::per_second(per_second)),
            });
            self.local.insert(tenant.id, fresh.clone());
            fresh
        });
        limiter.limiter.check().is_ok()
    }
}
