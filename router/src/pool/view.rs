//! The pools as an operator sees them, like PgBouncer's `SHOW POOLS` and `SHOW STATS`: what
//! each pool holds and waits for now (`GET /pools` on the admin listener), and what it has
//! served since it was built (`GET /stats`).
//!
//! Both read the budget's books once, under its lock, and copy out numbers and a reference to
//! each pool's [`PoolInfo`]: no allocation per pool but the one list, sorted by tenant slug
//! after the lock is released.

use super::budget::{PoolEvents, PoolNow, Totals};
use super::{Access, Door, TenantPools};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenancy::domain::{Slug, TenantId};

/// Which pool this is (the budget's label of it), and what is counted outside the budget's
/// books.
#[derive(Debug, Serialize)]
pub struct PoolInfo {
    pub tenant_id: TenantId,
    /// The tenant's slug when the pool was built (a rename bumps the generation: a new pool).
    #[serde(rename = "tenant")]
    pub slug: Slug,
    pub access: Access,
    pub door: Door,
    /// The tenant's generation the pool was built for; a change to the tenant builds a new pool.
    pub generation: i64,
    #[serde(skip)]
    pub(super) built_at: Instant,
    #[serde(skip)]
    pub(super) counters: PoolCounters,
}

/// A pool's [`PoolInfo`] in a view: shared with the pool, shown as its fields.
#[derive(Debug, Clone)]
pub struct Pool(Arc<PoolInfo>);

impl Serialize for Pool {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl std::ops::Deref for Pool {
    type Target = PoolInfo;
    fn deref(&self) -> &PoolInfo {
        &self.0
    }
}

/// What a pool counts as requests use it.
#[derive(Debug, Default)]
pub(super) struct PoolCounters {
    checkouts: AtomicU64,
    wait_us: AtomicU64,
    timed_out: AtomicU64,
    transactions: AtomicU64,
}

impl PoolCounters {
    /// A checkout ended: served after `waited`, or not.
    pub(super) fn checkout<T>(&self, result: &Result<T, super::PoolCheckoutError>, waited: Duration) {
        match result {
            Ok(_) => {
                self.checkouts.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
                self.wait_us.fetch_add(micros, Ordering::Relaxed);
            }
            Err(super::PoolCheckoutError::Exhausted) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    pub(super) fn transaction(&self) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
    }
}

/// `GET /pools`: the budget, and every pool (of one tenant, when asked) by tenant slug.
#[derive(Debug, Serialize)]
pub struct PoolsView {
    pub budget: BudgetView,
    pub pools: Vec<PoolView>,
}

/// The connection budget shared by every pool (always the whole router's, even for one
/// tenant's pools).
#[derive(Debug, Serialize)]
pub struct BudgetView {
    /// `ROUTER_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// Server connections counted against it: active, idle, opening and closing.
    pub connections: usize,
    pub server_active: usize,
    pub server_idle: usize,
    pub server_opening: usize,
    /// Closed by the router, not yet let go of by PostgreSQL (or held by a pool just forgotten).
    pub server_closing: usize,
    pub clients_waiting: usize,
    pub pools: usize,
}

/// One pool now.
#[derive(Debug, Serialize)]
pub struct PoolView {
    #[serde(flatten)]
    pub pool: Pool,
    pub age_seconds: u64,
    /// Most server connections this pool may hold (its plan's size, at most
    /// `ROUTER_TENANT_MAX_CONNECTIONS`).
    pub pool_size: usize,
    /// Server connections serving a request or a client's transaction.
    pub server_active: usize,
    pub server_idle: usize,
    pub server_opening: usize,
    /// Requests (or PostgreSQL clients) waiting for a server connection.
    pub clients_waiting: usize,
    /// How long the first of them has waited (PgBouncer's `maxwait`); 0 when none waits.
    pub max_wait_ms: u64,
}

/// `GET /stats`: every pool's counters (of one tenant, when asked) by tenant slug.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub pools: Vec<PoolStats>,
}

/// What one pool has done since it was built (`age_seconds` ago).
#[derive(Debug, Serialize)]
pub struct PoolStats {
    #[serde(flatten)]
    pub pool: Pool,
    pub age_seconds: u64,
    /// Server connections handed out: one per HTTP request; on the PostgreSQL door one per
    /// client transaction (or statement outside one), plus one at each client's login.
    pub checkouts: u64,
    /// Time those checkouts waited for their connection (opening it included), in total.
    pub checkout_wait_us: u64,
    /// Checkouts that got no connection within `ROUTER_CHECKOUT_TIMEOUT`.
    pub checkouts_timed_out: u64,
    /// PostgreSQL door only: server connections handed to its clients for a transaction (or a
    /// statement outside one); `null` for an HTTP pool.
    pub transactions: Option<u64>,
    pub connections_opened: u64,
    /// Closed after use: broken, or their session could not be reused.
    pub connections_closed: u64,
    /// Closed after `ROUTER_POOL_IDLE_TIMEOUT` idle.
    pub connections_expired: u64,
    /// Closed to make room for another tenant's connection (the budget was all in use).
    pub connections_reclaimed: u64,
}

fn seconds_since(then: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(then).as_secs()
}

/// By tenant slug, then access, door and generation.
fn by_tenant(a: &PoolInfo, b: &PoolInfo) -> std::cmp::Ordering {
    (&a.slug, a.access, a.door, a.generation).cmp(&(&b.slug, b.access, b.door, b.generation))
}

impl BudgetView {
    /// The totals of the budget's books, before the pools' numbers are added in.
    fn of(totals: Totals) -> Self {
        Self {
            max_connections: totals.max,
            connections: totals.units,
            server_active: 0,
            server_idle: totals.idle,
            server_opening: 0,
            server_closing: totals.units.saturating_sub(totals.idle),
            clients_waiting: 0,
            pools: totals.pools,
        }
    }

    fn count(&mut self, pool: &PoolNow<'_, Arc<PoolInfo>>) {
        self.server_active += pool.active;
        self.server_opening += pool.opening;
        self.server_closing = self.server_closing.saturating_sub(pool.active + pool.opening);
        self.clients_waiting += pool.waiting;
    }
}

impl TenantPools {
    /// Every pool (only `tenants`' when any is given) as it stands, and the budget's totals.
    pub fn pools_view(&self, tenants: &[Slug]) -> PoolsView {
        let now = Instant::now();
        let (budget, mut pools) = {
            let books = self.shared.budget();
            let totals = books.totals();
            let mut budget = BudgetView::of(totals);
            let mut pools =
                Vec::with_capacity(if tenants.is_empty() { totals.pools } else { 4 * tenants.len() });
            for pool in books.pools_now(now) {
                budget.count(&pool);
                if selected(tenants, &pool.label.slug) {
                    pools.push(pool_view(&pool, now));
                }
            }
            (budget, pools)
        };
        pools.sort_unstable_by(|a, b| by_tenant(&a.pool, &b.pool));
        PoolsView { budget, pools }
    }

    /// Every pool's counters (only `tenants`' when any is given).
    pub fn stats_view(&self, tenants: &[Slug]) -> StatsView {
        let now = Instant::now();
        let mut pools: Vec<PoolStats> = {
            let books = self.shared.budget();
            books
                .pools_now(now)
                .filter(|pool| selected(tenants, &pool.label.slug))
                .map(|pool| pool_stats(pool.label, pool.events, now))
                .collect()
        };
        pools.sort_unstable_by(|a, b| by_tenant(&a.pool, &b.pool));
        StatsView { pools }
    }
}

/// Whether a pool of `slug` is shown when `tenants` are asked for (none: every pool).
fn selected(tenants: &[Slug], slug: &Slug) -> bool {
    tenants.is_empty() || tenants.contains(slug)
}

fn pool_view(pool: &PoolNow<'_, Arc<PoolInfo>>, now: Instant) -> PoolView {
    PoolView {
        pool: Pool(pool.label.clone()),
        age_seconds: seconds_since(pool.label.built_at, now),
        pool_size: pool.max,
        server_active: pool.active,
        server_idle: pool.idle,
        server_opening: pool.opening,
        clients_waiting: pool.waiting,
        max_wait_ms: pool.oldest_wait.map_or(0, |wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
    }
}

fn pool_stats(info: &Arc<PoolInfo>, events: PoolEvents, now: Instant) -> PoolStats {
    let counters = &info.counters;
    PoolStats {
        pool: Pool(info.clone()),
        age_seconds: seconds_since(info.built_at, now),
        checkouts: counters.checkouts.load(Ordering::Relaxed),
        checkout_wait_us: counters.wait_us.load(Ordering::Relaxed),
        checkouts_timed_out: counters.timed_out.load(Ordering::Relaxed),
        transactions: (info.door == Door::Wire).then(|| counters.transactions.load(Ordering::Relaxed)),
        connections_opened: events.opened,
        connections_closed: events.closed,
        connections_expired: events.expired,
        connections_reclaimed: events.reclaimed,
    }
}
