//! The rules that share the router's connection budget (`ROUTER_MAX_CONNECTIONS`) among the
//! tenant pools. Pure bookkeeping, no I/O: the pool layer ([`super`]) holds it behind one lock,
//! carries out what it decides (opening, closing, handing over) and feeds it the clock.
//!
//! A **unit** of the budget is one server connection, from the moment a request starts opening
//! it until its socket is closed. The rules, when the budget is all in use:
//!
//! - **Own connections first.** A request whose tenant already holds connections waits for one of
//!   them to come back rather than take another tenant's. It takes another tenant's only when
//!   that one has been idle for at least `reclaim_after` (it is unlikely to be needed soon), the
//!   coldest first.
//! - **Nobody starves.** A tenant that holds no connection takes the coldest idle connection of
//!   any tenant at once; when every connection is busy it waits, and the next connection given
//!   back by a tenant that has no request of its own waiting goes to it. Once its first request
//!   has waited `reclaim_after`, longer than any of the giver's, it gets the next connection
//!   given back by anyone (tenants holding none are served longest-waiting first).
//! - **Fair shares.** A connection given back by a tenant that holds at least two more than a
//!   tenant waiting to grow is handed over to that tenant (closed, and its unit lets the other
//!   open one). Active tenants converge on equal shares; a tenant alone may use everything the
//!   others leave idle.
//! - Idle connections are reused last in, first out, so a tenant that needs fewer connections
//!   than it holds lets the surplus go cold, where others may reclaim it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A tenant pool, as the budget knows it (one per pool object: a rebuilt pool is a new one).
pub(crate) type PoolId = u64;

/// Where a checkout stands after the budget's decision.
#[derive(Debug)]
pub(crate) enum Attempt<C> {
    /// An idle connection of the tenant's own.
    Reuse(C),
    /// A unit is reserved for the pool: open a connection. `evicted` is another tenant's idle
    /// connection whose unit was taken over: close it (its socket must not give the unit back).
    Open { evicted: Option<C> },
    /// Nothing now: the request's waiter was queued and will be handed a [`Grant`].
    Queued,
}

/// What a queued request is handed.
#[derive(Debug)]
pub(crate) enum Grant<C> {
    /// A connection of its tenant, given back by another request.
    Reuse(C),
    /// A unit reserved for its pool: open a connection.
    Open,
}

/// A decision to carry out once the lock is released: hand `grant` to `waiter`.
#[derive(Debug)]
pub(crate) struct Handoff<C, W> {
    pub(crate) waiter: W,
    /// The waiter's pool.
    pub(crate) pool: PoolId,
    pub(crate) grant: Grant<C>,
}

/// What happens to a connection given back.
#[derive(Debug)]
pub(crate) enum Returned<C, W> {
    /// Kept idle, or handed to a request of the same tenant.
    Kept(Option<Handoff<C, W>>),
    /// Closed, its unit handed to another tenant's request (its socket must not give it back).
    HandedOver(C, Handoff<C, W>),
    /// Closed: its pool is gone. Its socket gives the unit back when it closes.
    Close(C),
}

/// A queued request. `is_waiting` is false once it gave up (timed out, or its client left).
pub(crate) trait Waiter {
    fn is_waiting(&self) -> bool;
    /// When the request started waiting.
    fn since(&self) -> Instant;
}

struct Slot<C, W, L> {
    /// What the pool layer says this pool is (shown in [`Budget::pools_now`]).
    label: L,
    /// Most connections this pool may hold.
    max: usize,
    /// Its connections open or being opened.
    claimed: usize,
    /// Of those, the ones being opened (a unit reserved, the connection not there yet).
    opening: usize,
    /// Idle connections, most recently given back last.
    idle: Vec<(C, IdleKey)>,
    waiters: VecDeque<W>,
    events: PoolEvents,
}

/// What happened to a pool's connections since the pool was added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolEvents {
    /// Connections opened.
    pub(crate) opened: u64,
    /// Connections closed after use: broken, or not reusable (their session could not be reset).
    pub(crate) closed: u64,
    /// Idle connections closed at the idle timeout.
    pub(crate) expired: u64,
    /// Connections closed to make room for another pool's (the budget was all in use).
    pub(crate) reclaimed: u64,
}

/// One pool as it stands (see [`Budget::pools_now`]).
#[derive(Debug)]
pub(crate) struct PoolNow<'a, L> {
    pub(crate) label: &'a L,
    /// Most connections the pool may hold.
    pub(crate) max: usize,
    /// Connections handed out to requests.
    pub(crate) active: usize,
    pub(crate) idle: usize,
    pub(crate) opening: usize,
    /// Requests waiting for a connection (not counting those that gave up).
    pub(crate) waiting: usize,
    /// How long the request first in line has waited.
    pub(crate) oldest_wait: Option<Duration>,
    pub(crate) events: PoolEvents,
}

/// The whole budget as it stands (see [`Budget::totals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// `ROUTER_MAX_CONNECTIONS`.
    pub(crate) max: usize,
    /// Units in use: connections open, being opened, or closing.
    pub(crate) units: usize,
    pub(crate) idle: usize,
    pub(crate) pools: usize,
}

/// Why an idle connection is taken out of its pool to be closed.
#[derive(Clone, Copy)]
enum Taken {
    Expired,
    Reclaimed,
}

impl<C, W: Waiter, L> Slot<C, W, L> {
    fn next_waiter(&mut self) -> Option<W> {
        while let Some(waiter) = self.waiters.pop_front() {
            if waiter.is_waiting() {
                return Some(waiter);
            }
        }
        None
    }

    fn has_waiters(&mut self) -> bool {
        while self.waiters.front().is_some_and(|w| !w.is_waiting()) {
            self.waiters.pop_front();
        }
        !self.waiters.is_empty()
    }
}

/// Orders idle connections by when they went idle (ties broken by a sequence number).
type IdleKey = (Instant, u64);

/// The budget's books: `C` a connection, `W` a queued request, `L` what the pool layer labels
/// each pool with.
pub(crate) struct Budget<C, W, L = ()> {
    max: usize,
    reclaim_after: Duration,
    /// Units in use: connections open, being opened, or closing.
    units: usize,
    pools: HashMap<PoolId, Slot<C, W, L>>,
    /// Every idle connection, coldest first.
    idle: BTreeMap<IdleKey, PoolId>,
    /// Pools with requests queued (some may have given up since).
    waiting: HashSet<PoolId>,
    sequence: u64,
}

impl<C, W: Waiter, L> Budget<C, W, L> {
    pub(crate) fn new(max: usize, reclaim_after: Duration) -> Self {
        Self {
            max: max.max(1),
            reclaim_after,
            units: 0,
            pools: HashMap::new(),
            idle: BTreeMap::new(),
            waiting: HashSet::new(),
            sequence: 0,
        }
    }

    /// Units in use (connections open, being opened or closing).
    pub(crate) fn units(&self) -> usize {
        self.units
    }

    /// Connections idle now, all pools together.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.len()
    }

    /// The budget's totals now.
    pub(crate) fn totals(&self) -> Totals {
        Totals { max: self.max, units: self.units, idle: self.idle.len(), pools: self.pools.len() }
    }

    /// Every pool as it stands at `now`, in no particular order.
    pub(crate) fn pools_now(&self, now: Instant) -> impl Iterator<Item = PoolNow<'_, L>> {
        self.pools.values().map(move |slot| {
            let mut waiting = slot.waiters.iter().filter(|waiter| waiter.is_waiting());
            let oldest_wait = waiting.next().map(|first| now.saturating_duration_since(first.since()));
            PoolNow {
                label: &slot.label,
                max: slot.max,
                active: slot.claimed.saturating_sub(slot.idle.len() + slot.opening),
                idle: slot.idle.len(),
                opening: slot.opening,
                waiting: usize::from(oldest_wait.is_some()) + waiting.count(),
                oldest_wait,
                events: slot.events,
            }
        })
    }

    /// A new pool that may hold up to `max` connections.
    pub(crate) fn add_pool(&mut self, pool: PoolId, max: usize, label: L) {
        self.pools.insert(
            pool,
            Slot {
                label,
                max: max.max(1),
                claimed: 0,
                opening: 0,
                idle: Vec::new(),
                waiters: VecDeque::new(),
                events: PoolEvents::default(),
            },
        );
    }

    /// Forgets a pool nobody uses any more; returns its idle connections, to be closed (their
    /// sockets give their units back).
    pub(crate) fn remove_pool(&mut self, pool: PoolId) -> Vec<C> {
        let Some(slot) = self.pools.remove(&pool) else { return Vec::new() };
        self.waiting.remove(&pool);
        slot.idle
            .into_iter()
            .map(|(connection, key)| {
                self.idle.remove(&key);
                connection
            })
            .collect()
    }

    /// A request of `pool` wants a connection.
    ///
    /// # Panics
    /// When `pool` was never added (or was removed): a pool in use is always known.
    pub(crate) fn checkout(&mut self, pool: PoolId, now: Instant, waiter: impl FnOnce() -> W) -> Attempt<C> {
        let slot = self.pools.get_mut(&pool).expect("a pool in use is registered");
        if let Some((connection, key)) = slot.idle.pop() {
            self.idle.remove(&key);
            return Attempt::Reuse(connection);
        }
        if slot.claimed < slot.max {
            if self.units < self.max {
                self.units += 1;
                slot.claimed += 1;
                slot.opening += 1;
                return Attempt::Open { evicted: None };
            }
            // A tenant that holds nothing may take the coldest connection there is; one that
            // holds some only a connection idle long enough to be unlikely to be missed.
            let min_idle = if slot.claimed == 0 { Duration::ZERO } else { self.reclaim_after };
            if let Some(evicted) = self.take_coldest(now, min_idle, Taken::Reclaimed) {
                let slot = self.pools.get_mut(&pool).expect("registered");
                slot.claimed += 1;
                slot.opening += 1;
                return Attempt::Open { evicted: Some(evicted) };
            }
        }
        let slot = self.pools.get_mut(&pool).expect("registered");
        slot.waiters.push_back(waiter());
        self.waiting.insert(pool);
        Attempt::Queued
    }

    /// A connection of `pool` is given back after use.
    pub(crate) fn give_back(&mut self, pool: PoolId, connection: C, now: Instant) -> Returned<C, W> {
        let Some(slot) = self.pools.get_mut(&pool) else { return Returned::Close(connection) };
        let claimed = slot.claimed;
        let own_waiting = slot.has_waiters();
        let own_since = slot.waiters.front().map(Waiter::since);
        if let Some(other) = self.neediest(Some(pool)) {
            let other_slot = &self.pools[&other];
            let other_claimed = other_slot.claimed;
            // A tenant holding nothing whose first request has waited `reclaim_after`, longer
            // than any of this tenant's: it is starving, and gets this connection even though
            // its owner has requests waiting (handovers stay rare: one per starved wait).
            let starving = other_claimed == 0
                && other_slot.waiters.front().map(Waiter::since).is_some_and(|since| {
                    now.saturating_duration_since(since) >= self.reclaim_after
                        && own_since.is_none_or(|own| since < own)
                });
            if claimed >= other_claimed + 2 || (other_claimed == 0 && !own_waiting) || starving {
                if let Some(handoff) = self.reserve_for(other) {
                    let slot = self.pools.get_mut(&pool).expect("registered");
                    slot.claimed -= 1;
                    slot.events.reclaimed += 1;
                    return Returned::HandedOver(connection, handoff);
                }
            }
        }
        let slot = self.pools.get_mut(&pool).expect("registered");
        if let Some(waiter) = slot.next_waiter() {
            return Returned::Kept(Some(Handoff { waiter, pool, grant: Grant::Reuse(connection) }));
        }
        self.sequence += 1;
        let key = (now, self.sequence);
        slot.idle.push((connection, key));
        self.idle.insert(key, pool);
        Returned::Kept(None)
    }

    /// A connection of `pool` was closed instead of given back (broken, retired, or dropped
    /// mid-query). Its socket gives the unit back when it closes.
    pub(crate) fn closed(&mut self, pool: PoolId) -> Vec<Handoff<C, W>> {
        if let Some(slot) = self.pools.get_mut(&pool) {
            slot.claimed = slot.claimed.saturating_sub(1);
            slot.events.closed += 1;
        }
        self.grant_free_units()
    }

    /// The connection a unit was reserved for in `pool` is open.
    pub(crate) fn opened(&mut self, pool: PoolId) {
        if let Some(slot) = self.pools.get_mut(&pool) {
            slot.opening = slot.opening.saturating_sub(1);
            slot.events.opened += 1;
        }
    }

    /// A unit reserved for `pool` was not used (opening failed, or the request gave up).
    pub(crate) fn open_failed(&mut self, pool: PoolId) -> Vec<Handoff<C, W>> {
        self.open_given_up(pool);
        self.units = self.units.saturating_sub(1);
        self.grant_free_units()
    }

    /// The claim to open a connection for `pool` is given up before the unit was backed (the
    /// room made was not there after all, see [`Budget::replace_lost_unit`]).
    pub(crate) fn open_abandoned(&mut self, pool: PoolId) -> Vec<Handoff<C, W>> {
        self.open_given_up(pool);
        self.grant_free_units()
    }

    fn open_given_up(&mut self, pool: PoolId) {
        if let Some(slot) = self.pools.get_mut(&pool) {
            slot.claimed = slot.claimed.saturating_sub(1);
            slot.opening = slot.opening.saturating_sub(1);
        }
    }

    /// A socket closed: its unit is free again.
    pub(crate) fn unit_released(&mut self) -> Vec<Handoff<C, W>> {
        debug_assert!(self.units > 0, "a unit given back that was not counted");
        self.units = self.units.saturating_sub(1);
        self.grant_free_units()
    }

    /// For a request of `pool` that has been waiting: a connection of another tenant that went
    /// cold meanwhile (or any, when the pool holds none), closed to open one for the pool's
    /// first waiter; or free units, if any appeared.
    pub(crate) fn reclaim_for(&mut self, pool: PoolId, now: Instant) -> (Option<C>, Vec<Handoff<C, W>>) {
        let handoffs = self.grant_free_units();
        if !handoffs.is_empty() {
            return (None, handoffs);
        }
        let Some(slot) = self.pools.get_mut(&pool) else { return (None, handoffs) };
        if slot.claimed >= slot.max {
            return (None, handoffs);
        }
        let min_idle = if slot.claimed == 0 { Duration::ZERO } else { self.reclaim_after };
        let Some(waiter) = slot.next_waiter() else { return (None, handoffs) };
        let Some(evicted) = self.take_coldest(now, min_idle, Taken::Reclaimed) else {
            self.pools.get_mut(&pool).expect("registered").waiters.push_front(waiter);
            return (None, handoffs);
        };
        let slot = self.pools.get_mut(&pool).expect("registered");
        slot.claimed += 1;
        slot.opening += 1;
        (Some(evicted), vec![Handoff { waiter, pool, grant: Grant::Open }])
    }

    /// The unit of a connection closed to make room had been given back by its socket already
    /// (PostgreSQL closed it while it was idle): takes a free one instead. `false` when the
    /// budget has none; the one who made room must then give its claim up
    /// ([`Budget::closed`] or [`Budget::take_back`]).
    pub(crate) fn replace_lost_unit(&mut self) -> bool {
        if self.units < self.max {
            self.units += 1;
            true
        } else {
            false
        }
    }

    /// A unit granted to `handoff`'s waiter could not be backed (see
    /// [`Budget::replace_lost_unit`]): the waiter is queued again, first in line.
    pub(crate) fn take_back(&mut self, handoff: Handoff<C, W>) {
        let Some(slot) = self.pools.get_mut(&handoff.pool) else { return };
        if matches!(handoff.grant, Grant::Open) {
            slot.claimed = slot.claimed.saturating_sub(1);
            slot.opening = slot.opening.saturating_sub(1);
        }
        slot.waiters.push_front(handoff.waiter);
        self.waiting.insert(handoff.pool);
    }

    /// Takes the connections idle longer than `idle_timeout`, to be closed.
    pub(crate) fn expire_idle(&mut self, now: Instant, idle_timeout: Duration) -> Vec<C> {
        let mut expired = Vec::new();
        while let Some(evicted) = self.take_coldest(now, idle_timeout, Taken::Expired) {
            expired.push(evicted);
        }
        expired
    }

    /// Hands free units to queued requests whose pools may grow, neediest first.
    fn grant_free_units(&mut self) -> Vec<Handoff<C, W>> {
        let mut handoffs = Vec::new();
        while self.units < self.max {
            let Some(pool) = self.neediest(None) else { break };
            // None: its waiters all gave up just now (the next look skips the pool).
            let Some(handoff) = self.reserve_for(pool) else { continue };
            self.units += 1;
            handoffs.push(handoff);
        }
        handoffs
    }

    /// Counts a unit (already taken) for `pool` and hands it to its first waiter.
    fn reserve_for(&mut self, pool: PoolId) -> Option<Handoff<C, W>> {
        let slot = self.pools.get_mut(&pool)?;
        let waiter = slot.next_waiter()?;
        slot.claimed += 1;
        slot.opening += 1;
        if !slot.has_waiters() {
            self.waiting.remove(&pool);
        }
        Some(Handoff { waiter, pool, grant: Grant::Open })
    }

    /// The pool, other than `except`, with requests queued that may grow, holding the fewest
    /// connections.
    fn neediest(&mut self, except: Option<PoolId>) -> Option<PoolId> {
        let mut best: Option<((usize, Option<Instant>), PoolId)> = None;
        let mut gone = Vec::new();
        for &pool in &self.waiting {
            let Some(slot) = self.pools.get_mut(&pool) else {
                gone.push(pool);
                continue;
            };
            if !slot.has_waiters() {
                gone.push(pool);
                continue;
            }
            if Some(pool) == except || slot.claimed >= slot.max {
                continue;
            }
            // The fewest connections first; among equals, the one waiting longest.
            let rank = (slot.claimed, slot.waiters.front().map(Waiter::since));
            if best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, pool));
            }
        }
        for pool in gone {
            self.waiting.remove(&pool);
        }
        best.map(|(_, pool)| pool)
    }

    /// Removes the coldest idle connection if it has been idle at least `min_idle`.
    fn take_coldest(&mut self, now: Instant, min_idle: Duration, why: Taken) -> Option<C> {
        let (&key, &pool) = self.idle.first_key_value()?;
        if now.saturating_duration_since(key.0) < min_idle {
            return None;
        }
        self.idle.remove(&key);
        let slot = self.pools.get_mut(&pool).expect("an idle connection's pool is registered");
        let at = slot.idle.iter().position(|(_, k)| *k == key).expect("indexed idle connection");
        let (connection, _) = slot.idle.remove(at);
        slot.claimed -= 1;
        match why {
            Taken::Expired => slot.events.expired += 1,
            Taken::Reclaimed => slot.events.reclaimed += 1,
        }
        Some(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::{Attempt, Budget, Grant, Returned, Waiter};
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    /// A queued request in the tests: its id, whether it still waits, and since when.
    #[derive(Debug, Clone)]
    struct Request(u32, Rc<Cell<bool>>, Instant);

    impl Waiter for Request {
        fn is_waiting(&self) -> bool {
            self.1.get()
        }

        fn since(&self) -> Instant {
            self.2
        }
    }

    const RECLAIM: Duration = Duration::from_secs(1);

    fn request(id: u32) -> Request {
        Request(id, Rc::new(Cell::new(true)), Instant::now())
    }

    /// Connections are numbered; `open` hands out the next number.
    struct Harness {
        /// Each pool labelled with its id.
        budget: Budget<u32, Request, u64>,
        next: u32,
        now: Instant,
    }

    impl Harness {
        fn new(max: usize, pools: &[(u64, usize)]) -> Self {
            let mut budget = Budget::new(max, RECLAIM);
            for &(pool, size) in pools {
                budget.add_pool(pool, size, pool);
            }
            Self { budget, next: 0, now: Instant::now() }
        }

        fn elapse(&mut self, by: Duration) {
            self.now += by;
        }

        /// A checkout that must get a connection at once (opened or reused).
        fn get(&mut self, pool: u64) -> u32 {
            match self.budget.checkout(pool, self.now, || request(0)) {
                Attempt::Reuse(c) => c,
                Attempt::Open { .. } => {
                    self.budget.opened(pool);
                    self.next += 1;
                    self.next
                }
                Attempt::Queued => panic!("pool {pool} had to wait"),
            }
        }
    }

    #[test]
    fn a_tenant_holding_connections_waits_for_its_own_rather_than_take_a_warm_one() {
        let mut h = Harness::new(2, &[(1, 5), (2, 5)]);
        let busy = h.get(1);
        let other = h.get(2);
        assert!(matches!(h.budget.give_back(2, other, h.now), Returned::Kept(None)));
        // Budget in use, tenant 1 holds one (busy) connection, tenant 2's went idle just now.
        assert!(matches!(h.budget.checkout(1, h.now, || request(7)), Attempt::Queued));
        // Its own connection comes back: handed to the waiting request, tenant 2 untouched.
        match h.budget.give_back(1, busy, h.now) {
            Returned::Kept(Some(handoff)) => {
                assert_eq!(handoff.waiter.0, 7);
                assert!(matches!(handoff.grant, Grant::Reuse(c) if c == busy));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.budget.idle(), 1);
    }

    #[test]
    fn a_cold_connection_is_reclaimed_for_a_tenant_that_wants_to_grow() {
        let mut h = Harness::new(2, &[(1, 5), (2, 5)]);
        let _busy = h.get(1);
        let other = h.get(2);
        let _ = h.budget.give_back(2, other, h.now);
        h.elapse(RECLAIM);
        match h.budget.checkout(1, h.now, || request(0)) {
            Attempt::Open { evicted: Some(c) } => assert_eq!(c, other),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.budget.units(), 2);
    }

    #[test]
    fn a_tenant_with_no_connection_takes_the_coldest_at_once() {
        let mut h = Harness::new(2, &[(1, 5), (2, 5), (3, 5)]);
        let a = h.get(1);
        let b = h.get(2);
        let _ = h.budget.give_back(1, a, h.now);
        h.elapse(Duration::from_millis(1));
        let _ = h.budget.give_back(2, b, h.now);
        match h.budget.checkout(3, h.now, || request(0)) {
            Attempt::Open { evicted: Some(c) } => assert_eq!(c, a, "the coldest first"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_starving_tenant_gets_the_next_connection_nobody_of_its_owner_waits_for() {
        let mut h = Harness::new(2, &[(1, 5), (2, 5), (3, 5)]);
        let a = h.get(1);
        let b = h.get(2);
        assert!(matches!(h.budget.checkout(3, h.now, || request(3)), Attempt::Queued));
        match h.budget.give_back(1, a, h.now) {
            Returned::HandedOver(c, handoff) => {
                assert_eq!(c, a);
                assert_eq!(handoff.waiter.0, 3);
                assert!(matches!(handoff.grant, Grant::Open));
            }
            other => panic!("{other:?}"),
        }
        // Tenant 2 has a request of its own waiting: it keeps its connection.
        assert!(matches!(h.budget.checkout(1, h.now, || request(1)), Attempt::Queued));
        assert!(matches!(h.budget.checkout(2, h.now, || request(2)), Attempt::Queued));
        assert!(matches!(h.budget.give_back(2, b, h.now), Returned::Kept(Some(_))));
    }

    #[test]
    fn a_tenant_starved_for_reclaim_after_gets_a_connection_whose_owner_has_waiters_too() {
        // Budget 2, both connections kept busy by tenants 1 and 2 with requests always queued.
        let mut h = Harness::new(2, &[(1, 5), (2, 5), (3, 5), (4, 5)]);
        let a = h.get(1);
        let b = h.get(2);
        assert!(matches!(h.budget.checkout(3, h.now, || request(3)), Attempt::Queued));
        h.elapse(Duration::from_millis(1));
        assert!(matches!(h.budget.checkout(4, h.now, || request(4)), Attempt::Queued));
        h.elapse(Duration::from_millis(1));
        assert!(matches!(h.budget.checkout(1, h.now, || request(1)), Attempt::Queued));
        assert!(matches!(h.budget.checkout(2, h.now, || request(2)), Attempt::Queued));
        // Before tenant 3 has waited `reclaim_after`, the owners serve their own.
        let a = match h.budget.give_back(1, a, h.now) {
            Returned::Kept(Some(handoff)) if handoff.waiter.0 == 1 => a,
            other => panic!("{other:?}"),
        };
        assert!(matches!(h.budget.checkout(1, h.now, || request(1)), Attempt::Queued));
        // Past it, the next connection given back goes to the longest-starved tenant, 3, then 4.
        h.elapse(RECLAIM);
        assert!(
            matches!(h.budget.give_back(1, a, h.now), Returned::HandedOver(c, ref x) if c == a && x.waiter.0 == 3)
        );
        assert!(
            matches!(h.budget.give_back(2, b, h.now), Returned::HandedOver(c, ref x) if c == b && x.waiter.0 == 4)
        );
    }

    #[test]
    fn a_tenant_two_connections_above_another_waiting_one_hands_one_over() {
        let mut h = Harness::new(4, &[(1, 5), (2, 5)]);
        let held: Vec<u32> = (0..3).map(|_| h.get(1)).collect();
        let _b = h.get(2);
        assert!(matches!(h.budget.checkout(2, h.now, || request(2)), Attempt::Queued));
        // Tenant 1 has a request of its own waiting too, but holds 3 against 1.
        assert!(matches!(h.budget.checkout(1, h.now, || request(1)), Attempt::Queued));
        assert!(
            matches!(h.budget.give_back(1, held[0], h.now), Returned::HandedOver(_, ref x) if x.waiter.0 == 2)
        );
        // Now 2 against 2: its own request gets the next one.
        assert!(
            matches!(h.budget.give_back(1, held[1], h.now), Returned::Kept(Some(ref x)) if x.waiter.0 == 1)
        );
    }

    #[test]
    fn idle_connections_are_reused_last_in_first_out_so_the_surplus_goes_cold() {
        let mut h = Harness::new(3, &[(1, 5), (2, 5)]);
        let a = h.get(1);
        let b = h.get(1);
        let _ = h.budget.give_back(1, a, h.now);
        h.elapse(Duration::from_millis(5));
        let _ = h.budget.give_back(1, b, h.now);
        for _ in 0..10 {
            h.elapse(Duration::from_millis(200));
            let c = h.get(1);
            assert_eq!(c, b);
            let _ = h.budget.give_back(1, c, h.now);
        }
        let _c = h.get(2);
        match h.budget.checkout(2, h.now, || request(0)) {
            Attempt::Open { evicted: Some(c) } => assert_eq!(c, a, "the unused surplus went cold"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_freed_unit_goes_to_the_pool_holding_the_fewest() {
        let mut h = Harness::new(3, &[(1, 5), (2, 5), (3, 5)]);
        let _a = h.get(1);
        let _a2 = h.get(1);
        let _b = h.get(2);
        assert!(matches!(h.budget.checkout(2, h.now, || request(2)), Attempt::Queued));
        assert!(matches!(h.budget.checkout(3, h.now, || request(3)), Attempt::Queued));
        let handoffs = h.budget.closed(1);
        assert!(handoffs.is_empty(), "the closed connection's socket still holds its unit");
        let handoffs = h.budget.unit_released();
        assert_eq!(handoffs.len(), 1);
        assert_eq!(handoffs[0].waiter.0, 3, "tenant 3 holds none");
    }

    #[test]
    fn requests_that_gave_up_are_skipped() {
        let mut h = Harness::new(1, &[(1, 5), (2, 5)]);
        let a = h.get(1);
        let gone = request(2);
        let gone_flag = gone.1.clone();
        assert!(matches!(h.budget.checkout(2, h.now, move || gone), Attempt::Queued));
        gone_flag.set(false);
        assert!(matches!(h.budget.give_back(1, a, h.now), Returned::Kept(None)));
        assert_eq!(h.budget.idle(), 1);
    }

    #[test]
    fn idle_connections_expire() {
        let mut h = Harness::new(2, &[(1, 5)]);
        let a = h.get(1);
        let _ = h.budget.give_back(1, a, h.now);
        assert!(h.budget.expire_idle(h.now, Duration::from_secs(60)).is_empty());
        h.elapse(Duration::from_secs(60));
        assert_eq!(h.budget.expire_idle(h.now, Duration::from_secs(60)), vec![a]);
        assert_eq!(h.budget.units(), 1, "the unit is given back when the socket closes");
    }

    #[test]
    fn the_pools_now_count_active_idle_opening_and_waiting() {
        let mut h = Harness::new(3, &[(1, 2), (2, 5)]);
        let a = h.get(1);
        let _b = h.get(1);
        assert!(matches!(h.budget.checkout(2, h.now, || request(0)), Attempt::Open { evicted: None }));
        let _ = h.budget.give_back(1, a, h.now);
        let waiter = request(9);
        let since = waiter.2;
        assert!(matches!(h.budget.checkout(1, h.now, || request(8)), Attempt::Reuse(_)));
        assert!(matches!(h.budget.checkout(1, h.now, move || waiter), Attempt::Queued));
        h.elapse(Duration::from_millis(250));
        let mut pools: Vec<_> = h
            .budget
            .pools_now(h.now)
            .map(|p| (p.max, p.active, p.idle, p.opening, p.waiting, p.oldest_wait))
            .collect();
        pools.sort();
        let waited = h.now.saturating_duration_since(since);
        assert_eq!(pools, [(2, 2, 0, 0, 1, Some(waited)), (5, 0, 0, 1, 0, None)]);
        assert_eq!(h.budget.totals(), super::Totals { max: 3, units: 3, idle: 0, pools: 2 });
    }

    #[test]
    fn a_pool_counts_what_happened_to_its_connections() {
        let mut h = Harness::new(2, &[(1, 5), (2, 5)]);
        let a = h.get(1);
        let _b = h.get(1);
        let _ = h.budget.give_back(1, a, h.now);
        let _ = h.budget.closed(1);
        h.elapse(Duration::from_secs(60));
        assert_eq!(h.budget.expire_idle(h.now, Duration::from_secs(60)), vec![a]);
        // Both sockets closed.
        let _ = h.budget.unit_released();
        let _ = h.budget.unit_released();
        let c = h.get(1);
        let _ = h.budget.give_back(1, c, h.now);
        let _d = h.get(2);
        h.elapse(RECLAIM);
        // Pool 2 grows into pool 1's cold connection.
        assert!(matches!(h.budget.checkout(2, h.now, || request(0)), Attempt::Open { evicted: Some(_) }));
        let events = |pool: u64| h.budget.pools_now(h.now).find(|p| *p.label == pool).map(|p| p.events);
        assert_eq!(events(1), Some(super::PoolEvents { opened: 3, closed: 1, expired: 1, reclaimed: 1 }),);
        assert_eq!(events(2), Some(super::PoolEvents { opened: 1, ..Default::default() }));
    }

    /// One step of a random workload.
    #[derive(Debug, Clone)]
    enum Step {
        Checkout(u64),
        Opened(usize),
        OpenFailed(usize),
        GiveBack(usize),
        Close(usize),
        GiveUp(usize),
        SocketClosed,
        Elapse(u64),
        LookAgain(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..6u64).prop_map(Step::Checkout),
            any::<usize>().prop_map(Step::Opened),
            any::<usize>().prop_map(Step::OpenFailed),
            any::<usize>().prop_map(Step::GiveBack),
            any::<usize>().prop_map(Step::Close),
            any::<usize>().prop_map(Step::GiveUp),
            Just(Step::SocketClosed),
            (0..1500u64).prop_map(Step::Elapse),
            (0..6u64).prop_map(Step::LookAgain),
        ]
    }

    /// What the workload holds, outside the budget.
    #[derive(Default)]
    struct Held {
        in_use: Vec<(u64, u32)>,
        /// Units reserved, their connections being opened.
        opening: Vec<u64>,
        queued: Vec<(u64, Request)>,
        closing: usize,
    }

    impl Held {
        fn apply(&mut self, handoffs: Vec<super::Handoff<u32, Request>>) {
            for handoff in handoffs {
                let at =
                    self.queued.iter().position(|(_, r)| r.0 == handoff.waiter.0).expect("a queued request");
                let (pool, request) = self.queued.remove(at);
                assert!(request.is_waiting(), "granted to a request that gave up");
                request.1.set(false);
                match handoff.grant {
                    Grant::Reuse(c) => self.in_use.push((pool, c)),
                    Grant::Open => self.opening.push(pool),
                }
            }
        }
    }

    proptest! {
        /// Whatever happens, the budget is never exceeded, no pool passes its size, and every
        /// connection is accounted for exactly once (in use, being opened, idle, or closing),
        /// as the pools' numbers say too.
        #[test]
        fn the_budget_holds_under_any_sequence(max in 1usize..6, steps in proptest::collection::vec(step(), 1..200)) {
            let mut h = Harness::new(max, &[(0, 1), (1, 2), (2, 3), (3, 5), (4, 5), (5, 2)]);
            let mut held = Held::default();
            let mut next_id = 0u32;
            for step in steps {
                match step {
                    Step::Checkout(pool) => {
                        next_id += 1;
                        let request = Request(next_id, Rc::new(Cell::new(true)), h.now);
                        let queued_copy = request.clone();
                        match h.budget.checkout(pool, h.now, move || queued_copy) {
                            Attempt::Reuse(c) => held.in_use.push((pool, c)),
                            // An evicted connection's unit is taken over: not closing.
                            Attempt::Open { .. } => held.opening.push(pool),
                            Attempt::Queued => held.queued.push((pool, request)),
                        }
                    }
                    Step::Opened(i) if !held.opening.is_empty() => {
                        let pool = held.opening.remove(i % held.opening.len());
                        h.budget.opened(pool);
                        h.next += 1;
                        held.in_use.push((pool, 1000 + h.next));
                    }
                    Step::OpenFailed(i) if !held.opening.is_empty() => {
                        let pool = held.opening.remove(i % held.opening.len());
                        let handoffs = h.budget.open_failed(pool);
                        held.apply(handoffs);
                    }
                    Step::GiveBack(i) if !held.in_use.is_empty() => {
                        let (pool, c) = held.in_use.remove(i % held.in_use.len());
                        match h.budget.give_back(pool, c, h.now) {
                            Returned::Kept(handoff) => held.apply(handoff.into_iter().collect()),
                            Returned::HandedOver(_, handoff) => held.apply(vec![handoff]),
                            Returned::Close(_) => held.closing += 1,
                        }
                    }
                    Step::Close(i) if !held.in_use.is_empty() => {
                        let (pool, _) = held.in_use.remove(i % held.in_use.len());
                        held.closing += 1;
                        let handoffs = h.budget.closed(pool);
                        held.apply(handoffs);
                    }
                    Step::GiveUp(i) if !held.queued.is_empty() => {
                        let (_, request) = held.queued.remove(i % held.queued.len());
                        request.1.set(false);
                    }
                    Step::SocketClosed if held.closing > 0 => {
                        held.closing -= 1;
                        let handoffs = h.budget.unit_released();
                        held.apply(handoffs);
                    }
                    Step::LookAgain(pool) => {
                        // A waiting request of `pool` looks for a connection gone cold.
                        let (_evicted, handoffs) = h.budget.reclaim_for(pool, h.now);
                        held.apply(handoffs);
                    }
                    Step::Elapse(ms) => {
                        h.elapse(Duration::from_millis(ms));
                        held.closing += h.budget.expire_idle(h.now, Duration::from_secs(5)).len();
                    }
                    _ => {}
                }
                prop_assert!(h.budget.units() <= max, "units {} over the budget {max}", h.budget.units());
                prop_assert_eq!(
                    h.budget.units(),
                    held.in_use.len() + held.opening.len() + h.budget.idle() + held.closing,
                    "every unit accounted for"
                );
                for (&pool, slot) in &h.budget.pools {
                    let used = held.in_use.iter().filter(|(p, _)| *p == pool).count();
                    let opening = held.opening.iter().filter(|p| **p == pool).count();
                    prop_assert_eq!(slot.claimed, used + opening + slot.idle.len(), "pool {} claimed", pool);
                    prop_assert_eq!(slot.opening, opening, "pool {} opening", pool);
                    prop_assert!(slot.claimed <= slot.max);
                }
                let now = h.budget.pools_now(h.now).fold((0, 0, 0, 0), |sum, p| {
                    (sum.0 + p.active, sum.1 + p.opening, sum.2 + p.idle, sum.3 + p.waiting)
                });
                let waiting = held.queued.iter().filter(|(_, r)| r.is_waiting()).count();
                prop_assert_eq!(now, (held.in_use.len(), held.opening.len(), h.budget.idle(), waiting));
            }
        }
    }
}
