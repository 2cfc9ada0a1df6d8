//! Failed attempts per client address: failed authentications, and requests for a host with no
//! tenant (each of which, uncached, costs a catalog lookup). An address allowed
//! `ROUTER_AUTH_FAILURES_PER_MINUTE` of them (as a burst, refilled at that rate) that goes past
//! them gets 429 with `Retry-After` before anything else is done for it: it can neither guess
//! passwords nor make the router look up hosts faster than that.
//!
//! Tenants' plan limits ([`crate::rate_limit`]) are charged only once a request is
//! authenticated, so that failures, counted here per address, never spend a tenant's limit.
//!
//! The client address is the connection's peer, or the entry of `X-Forwarded-For` that the
//! trusted proxies in front appended (`ROUTER_TRUSTED_PROXY_HOPS`). IPv6 addresses count per
//! /64, the block a single host usually holds.

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The address a request is counted under (`None`: unknown, never limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    /// The address of the request in `parts`, behind `trusted_proxy_hops` proxies (its
    /// extractor reads them from the router's state).
    pub fn of(parts: &Parts, trusted_proxy_hops: usize) -> Self {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        Self(client_address(peer, &parts.headers, trusted_proxy_hops))
    }
}

/// The peer, or the address `hops` trusted proxies put in `X-Forwarded-For` (every header
/// line taken together; none, or too few entries: the request did not come through them, and
/// the peer counts).
fn client_address(peer: Option<IpAddr>, headers: &axum::http::HeaderMap, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    entries.len().checked_sub(hops).and_then(|i| entries[i].parse::<IpAddr>().ok()).or(peer)
}

/// The key an address is counted under.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Too many failures from this address: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed authentications (or unknown hosts) from this address; retry later")]
pub struct Blocked {
    pub retry_after: Duration,
}

pub struct FailedAttempts {
    quota: Option<Quota>,
    limiters: Cache<IpAddr, Arc<DefaultDirectRateLimiter<StateInformationMiddleware>>>,
    /// Addresses out of allowance, and until when.
    blocked: Cache<IpAddr, Instant>,
}

impl FailedAttempts {
    /// `per_minute` failures per address and minute (0: no limit).
    pub fn new(per_minute: u32) -> Self {
        Self {
            quota: NonZeroU32::new(per_minute).map(Quota::per_minute),
            limiters: Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(600)).build(),
            blocked: Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(600)).build(),
        }
    }

    /// Whether `client` may make an attempt now.
    pub fn check(&self, client: ClientAddress) -> Result<(), Blocked> {
        let Some(address) = client.0 else { return Ok(()) };
        match self.blocked.get(&key(address)) {
            Some(until) if until > Instant::now() => Err(Blocked { retry_after: until - Instant::now() }),
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt of `client`.
    pub fn record(&self, client: ClientAddress) {
        let (Some(address), Some(quota)) = (client.0, self.quota) else { return };
        let key = key(address);
        let limiter = self.limiters.get_with(key, || {
            Arc::new(RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>())
        });
        // Blocked as soon as the allowance is spent: the next attempt is not even tried.
        let wait = match limiter.check() {
            Ok(state) if state.remaining_burst_capacity() > 0 => return,
            Ok(_) => quota.replenish_interval(),
            Err(not_until) => not_until
                .wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default())),
        };
        self.blocked.insert(key, Instant::now() + wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn an_address_past_its_allowance_is_blocked_and_others_are_not() {
        let attempts = FailedAttempts::new(3);
        let (a, b) = (ClientAddress(Some(ip("192.0.2.1"))), ClientAddress(Some(ip("192.0.2.2"))));
        for _ in 0..3 {
            assert_eq!(attempts.check(a), Ok(()), "the allowance is a burst of 3");
            attempts.record(a);
        }
        let blocked = attempts.check(a).expect_err("a fourth attempt within the minute is refused");
        assert!(blocked.retry_after > Duration::ZERO && blocked.retry_after <= Duration::from_secs(20));
        assert_eq!(attempts.check(b), Ok(()));
        assert_eq!(attempts.check(ClientAddress(None)), Ok(()));
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let attempts = FailedAttempts::new(2);
        attempts.record(ClientAddress(Some(ip("2001:db8:1:2::1"))));
        attempts.record(ClientAddress(Some(ip("2001:db8:1:2::ffff"))));
        assert!(attempts.check(ClientAddress(Some(ip("2001:db8:1:2:3::9")))).is_err());
        assert_eq!(attempts.check(ClientAddress(Some(ip("2001:db8:1:3::1")))), Ok(()));
    }

    #[test]
    fn no_limit_when_zero() {
        let attempts = FailedAttempts::new(0);
        let a = ClientAddress(Some(ip("192.0.2.1")));
        for _ in 0..100 {
            attempts.record(a);
        }
        assert_eq!(attempts.check(a), Ok(()));
    }

    #[test]
    fn the_client_address_is_the_one_the_trusted_proxies_saw() {
        let peer = Some(ip("10.0.0.5"));
        let mut headers = HeaderMap::new();
        assert_eq!(client_address(peer, &headers, 1), peer, "not through the proxy");
        headers.append("x-forwarded-for", "6.6.6.6, 198.51.100.7".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(client_address(peer, &headers, 0), peer, "no trusted proxy: the header is ignored");
        assert_eq!(
            client_address(peer, &headers, 1),
            Some(ip("198.51.100.7")),
            "what the client wrote is not trusted"
        );
        headers.append("x-forwarded-for", "203.0.113.9".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(client_address(peer, &headers, 2), Some(ip("198.51.100.7")));
    }
}
