//! A router-wide bound on catalog lookups that find no tenant (`ROUTER_UNKNOWN_HOST_LOOKUPS_PER_SECOND`).
//! Each address is bounded already (see [`crate::failed_attempts`]); this bounds many addresses
//! together. Misses spend the budget; while it is spent, a host missing from the caches is
//! looked up only if it named a tenant recently (within the last hour), so tenants in use keep
//! being served and only hosts never seen (or not for an hour) wait for the budget to refill.

use governor::middleware::StateInformationMiddleware;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) struct UnknownHosts {
    budget: Option<(Quota, DefaultDirectRateLimiter<StateInformationMiddleware>)>,
    /// While the budget is spent: until when.
    spent_until: Mutex<Option<Instant>>,
    /// Hosts that named a tenant recently.
    known: moka::sync::Cache<String, ()>,
}

impl UnknownHosts {
    /// `per_second` misses a second, as a burst of that many (0: no bound).
    pub(crate) fn new(per_second: u32, capacity: u64) -> Self {
        Self {
            budget: NonZeroU32::new(per_second).map(|rate| {
                let quota = Quota::per_second(rate);
                (quota, RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>())
            }),
            spent_until: Mutex::new(None),
            known: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Whether `host` may be looked up in the catalog now.
    pub(crate) fn admits(&self, host: &str) -> bool {
        let spent = self
            .spent_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|u| u > Instant::now());
        !spent || self.known.contains_key(host)
    }

    /// The catalog named a tenant at `host`.
    pub(crate) fn found(&self, host: &str) {
        self.known.insert(host.to_owned(), ());
    }

    /// The catalog had no tenant at a host: spends one of the budget.
    pub(crate) fn missed(&self) {
        let Some((quota, limiter)) = &self.budget else { return };
        let wait = match limiter.check() {
            Ok(state) if state.remaining_burst_capacity() > 0 => return,
            Ok(_) => quota.replenish_interval(),
            Err(not_until) => not_until
                .wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default())),
        };
        *self.spent_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + wait);
    }
}

#[cfg(test)]
mod tests {
    use super::UnknownHosts;

    #[test]
    fn spent_budget_admits_only_known_hosts() {
        let hosts = UnknownHosts::new(2, 100);
        hosts.found("acme.example.com");
        assert!(hosts.admits("ghost-1.example.com"));
        hosts.missed();
        assert!(hosts.admits("ghost-2.example.com"));
        hosts.missed();
        assert!(!hosts.admits("ghost-3.example.com"), "two misses spend a budget of two");
        assert!(hosts.admits("acme.example.com"), "a host that named a tenant is still looked up");
    }

    #[test]
    fn no_bound_when_zero() {
        let hosts = UnknownHosts::new(0, 100);
        for _ in 0..100 {
            hosts.missed();
        }
        assert!(hosts.admits("ghost.example.com"));
    }
}
