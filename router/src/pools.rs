//! One connection pool per tenant, created on first use from the tenant's secret, sized by its
//! plan, logged in as the tenant's own runtime role. Pools unused for a while are closed.
//! Between requests the session is reset (see [`crate::session`]), so nothing one request does
//! to its session — `BEGIN`, `SET search_path`, `SET ROLE`, `PREPARE` — reaches the next; the
//! role's own search_path is restored by `RESET ALL`.

use crate::budget::{BudgetedManager, ConnectError, Object, Pool};
use deadpool::managed::{PoolError, Timeouts};
use moka::future::Cache;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq as _;
use tenancy::catalog::TenantRecord;
use tenancy::domain::TenantId;
use tenancy::secrets::{DbCredentials, SharedSecretStore};
use tokio::sync::{Notify, Semaphore};

/// Constant-time comparison of a client's user and password with `credentials`.
pub fn credentials_match(credentials: &DbCredentials, user: &str, password: &[u8]) -> bool {
    let user_ok = user.as_bytes().ct_eq(credentials.username.as_bytes());
    let password_ok = password.ct_eq(credentials.password.as_bytes());
    bool::from(user_ok & password_ok)
}

/// Why no connection could be had for a tenant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolCheckoutError {
    #[error("tenant has no credentials")]
    NoCredentials,
    #[error("secret store unavailable: {0}")]
    Secrets(String),
    #[error("all of the tenant's connections are busy")]
    Exhausted,
    #[error("the tenant's database refused the router's credentials")]
    AuthFailed,
    #[error("tenant database unavailable: {0}")]
    Database(String),
}

/// A tenant's pool and the credentials it was built with.
pub struct TenantPool {
    pub pool: Pool,
    /// The credentials this pool logs in with.
    pub credentials: DbCredentials,
    pub generation: i64,
    built_at: Instant,
    /// The secret as last re-read for a client whose password did not match (rotation).
    fresh: tokio::sync::Mutex<Option<(Instant, DbCredentials)>>,
    /// The last `Neon-Connection-String` found to name this tenant and carry this pool's
    /// credentials: the same header again is accepted without parsing it or resolving its host.
    /// (A change to the tenant, its domains or its credentials comes with a new generation, and
    /// so with a new pool.)
    accepted: std::sync::RwLock<Option<Box<str>>>,
    /// Woken each time one of this pool's connections is given back (see [`Checkout`]).
    returned: Arc<Notify>,
}

impl TenantPool {
    /// Whether `header` is, byte for byte, the connection string last accepted for this pool
    /// (compared in constant time).
    pub fn was_accepted(&self, header: &str) -> bool {
        let accepted = self.accepted.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.as_deref().is_some_and(|known| bool::from(known.as_bytes().ct_eq(header.as_bytes())))
    }

    /// Remembers `header` as checked against this pool's own credentials.
    pub fn remember_accepted(&self, header: &str) {
        *self.accepted.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(header.into());
    }
}

/// How often a tenant's secret may be re-read because of a password mismatch (or its pool
/// rebuilt after PostgreSQL refused the pool's password): often enough for back-to-back
/// rotations, rarely enough that a client with a wrong password cannot flood the secret store.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// When the budget is all in use and all of a tenant's connections are busy, how long a request
/// waits for one of them to come back before another tenant's idle connection is closed to open
/// one more for this tenant. Opening costs a backend fork and a SCRAM exchange, several
/// milliseconds of CPU between the router and PostgreSQL; a point query gives its connection
/// back in well under one. So a tenant that holds connections waits about as long as opening
/// one would cost (a tenant that holds none makes room at once).
pub const GROW_AFTER: Duration = Duration::from_millis(10);

/// Connections opened, and idle connections closed to make room under the budget
/// (`tenant_router_connections_opened_total`, `tenant_router_connections_shed_total`).
#[derive(Clone, Debug, Default)]
pub struct ConnectionCounters {
    pub opened: Counter,
    pub shed: Counter,
}

/// How the tenant pools are sized.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// A pool unused this long is closed.
    pub idle_timeout: Duration,
    /// How long a request waits for a connection.
    pub checkout_timeout: Duration,
    /// Server connections of all pools together (`ROUTER_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Server connections of one tenant, whatever its plan says (`ROUTER_TENANT_MAX_CONNECTIONS`).
    pub tenant_max_connections: usize,
}

pub struct TenantPools {
    secrets: SharedSecretStore,
    pools: Cache<TenantId, Arc<TenantPool>>,
    limits: PoolLimits,
    budget: Arc<Semaphore>,
    counters: ConnectionCounters,
}

impl TenantPools {
    pub fn new(secrets: SharedSecretStore, limits: PoolLimits, counters: ConnectionCounters) -> Self {
        // A pool leaving the cache (idle, replaced after a change) is not closed here: requests
        // may still hold it; its connections close as the last of them lets go.
        let pools = Cache::builder().time_to_idle(limits.idle_timeout).build();
        let budget = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        Self { secrets, pools, limits, budget, counters }
    }

    /// Server connections open now, across all tenants.
    pub fn connections_in_use(&self) -> usize {
        self.limits.max_connections.max(1) - self.budget.available_permits()
    }

    /// The tenant's pool, built if missing or older than the tenant's generation.
    pub async fn pool_for(&self, tenant: &TenantRecord) -> Result<Arc<TenantPool>, PoolCheckoutError> {
        if let Some(existing) = self.pools.get(&tenant.id).await {
            if existing.generation >= tenant.generation {
                return Ok(existing);
            }
            self.pools.invalidate(&tenant.id).await;
        }
        self.pools
            .try_get_with(tenant.id, self.build(tenant))
            .await
            .map_err(|e: Arc<PoolCheckoutError>| (*e).clone())
    }

    async fn build(&self, tenant: &TenantRecord) -> Result<Arc<TenantPool>, PoolCheckoutError> {
        let name = tenant.secret_name().ok_or(PoolCheckoutError::NoCredentials)?;
        let credentials = self
            .secrets
            .get(&name)
            .await
            .map_err(|e| PoolCheckoutError::Secrets(e.to_string()))?
            .ok_or(PoolCheckoutError::NoCredentials)?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&credentials.host)
            .port(credentials.port)
            .user(&credentials.username)
            .password(&credentials.password)
            .dbname(&credentials.dbname)
            .application_name("tenant-router")
            .connect_timeout(Duration::from_secs(5));
        let mut options = String::from("-c TimeZone=UTC");
        if let Some(ms) = tenant.statement_timeout_ms {
            options.push_str(&format!(" -c statement_timeout={ms}"));
        }
        config.options(&options);
        let manager = BudgetedManager::new(
            config,
            self.budget.clone(),
            self.limits.checkout_timeout,
            self.counters.opened.clone(),
        );
        let size = usize::try_from(tenant.pool_size)
            .unwrap_or(1)
            .clamp(1, self.limits.tenant_max_connections.max(1));
        let pool = Pool::builder(manager)
            .max_size(size)
            .timeouts(Timeouts {
                wait: Some(self.limits.checkout_timeout),
                create: Some(self.limits.checkout_timeout + Duration::from_secs(5)),
                recycle: Some(Duration::from_secs(5)),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| PoolCheckoutError::Database(e.to_string()))?;
        Ok(Arc::new(TenantPool {
            pool,
            credentials,
            generation: tenant.generation,
            built_at: Instant::now(),
            fresh: tokio::sync::Mutex::new(None),
            accepted: std::sync::RwLock::new(None),
            returned: Arc::new(Notify::new()),
        }))
    }

    /// A connection from the tenant's pool. When the pool has none idle, may open one more,
    /// and the budget is all in use, room is made by closing one idle connection of another
    /// tenant (as PgBouncer reuses server connections between pools), but a tenant that already
    /// holds connections first waits up to [`GROW_AFTER`] for one of its own to come back.
    pub async fn checkout(&self, pool: &TenantPool) -> Result<Checkout, PoolCheckoutError> {
        if self.needs_room(pool) {
            // Connections it holds, or that other requests of this tenant are opening.
            let status = pool.pool.status();
            if status.size + status.waiting > 0 {
                self.wait_for_own(pool).await;
            }
            if self.needs_room(pool) {
                self.shed_one_idle(pool);
            }
        }
        let object = pool.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) | PoolError::Backend(ConnectError::Budget) => PoolCheckoutError::Exhausted,
            PoolError::Backend(ConnectError::Postgres(pg))
                if pg.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) =>
            {
                PoolCheckoutError::AuthFailed
            }
            PoolError::Backend(ConnectError::Postgres(pg)) => {
                PoolCheckoutError::Database(tenancy::pg::describe_error(&pg))
            }
            other => PoolCheckoutError::Database(format!("{other:?}")),
        })?;
        Ok(Checkout { object: Some(object), returned: pool.returned.clone() })
    }

    /// Whether getting a connection from `pool` now would open one, with no budget left for it.
    /// (A pool at its size limit makes its requests wait for its own connections instead.)
    fn needs_room(&self, pool: &TenantPool) -> bool {
        // The budget first: an atomic read, and while it has room (the usual case) the pool's
        // status, behind its lock, is not needed.
        let budget_left = self.budget.available_permits();
        if budget_left > 0 {
            return false;
        }
        let status = pool.pool.status();
        // `waiting`: requests inside the pool's `get` without a connection yet, some of them
        // opening one (deadpool counts a connection in `size` only once it is open).
        let claimed = status.size + status.waiting;
        grow_decision(status.available, claimed, status.max_size, budget_left)
    }

    /// Waits, up to [`GROW_AFTER`], until `pool` no longer needs room: woken when one of its
    /// connections comes back (or is closed), it looks again, and so sees a budget permit freed
    /// meanwhile by another tenant too.
    async fn wait_for_own(&self, pool: &TenantPool) {
        let deadline = tokio::time::Instant::now() + GROW_AFTER;
        loop {
            let returned = pool.returned.notified();
            tokio::pin!(returned);
            // Registered before the check, so a connection given back in between still wakes it.
            returned.as_mut().enable();
            if !self.needs_room(pool) || tokio::time::timeout_at(deadline, returned).await.is_err() {
                return;
            }
        }
    }

    /// Closes one idle connection of a pool other than `except`, returning its budget permit.
    fn shed_one_idle(&self, except: &TenantPool) {
        for (_, other) in &self.pools {
            if std::ptr::eq(&*other, except) {
                continue;
            }
            let taken = std::sync::atomic::AtomicBool::new(false);
            // `retain` keeps what the predicate accepts: refuse the first idle connection only.
            let result = other.pool.retain(|_, _| taken.swap(true, std::sync::atomic::Ordering::Relaxed));
            if !result.removed.is_empty() {
                self.counters.shed.inc();
                return;
            }
        }
    }

    /// Whether `user` / `password` are the tenant's credentials as the secret holds them now:
    /// after a rotation a client may hold a newer password than `pool`. The secret is read at
    /// most once per [`REFRESH_INTERVAL`] per tenant; a request that finds it read too recently
    /// waits out the interval instead of being refused, and concurrent requests share one read.
    pub async fn accepts_rotated(
        &self,
        tenant: &TenantRecord,
        pool: &TenantPool,
        user: &str,
        password: &[u8],
    ) -> bool {
        let mut fresh = pool.fresh.lock().await;
        if let Some((at, credentials)) = fresh.as_ref() {
            if credentials_match(credentials, user, password) {
                return true;
            }
            let age = at.elapsed();
            if age < REFRESH_INTERVAL {
                tokio::time::sleep(REFRESH_INTERVAL - age).await;
            }
        }
        let Some(name) = tenant.secret_name() else { return false };
        let Ok(Some(credentials)) = self.secrets.get(&name).await else { return false };
        let accepted = credentials_match(&credentials, user, password);
        *fresh = Some((Instant::now(), credentials));
        accepted
    }

    /// A pool rebuilt from the secret as it is now, after PostgreSQL refused the old pool's
    /// password (a rotation whose invalidation has not arrived). Rebuilt at most once per
    /// [`REFRESH_INTERVAL`]; `None` when it was just rebuilt.
    pub async fn rebuild(&self, tenant: &TenantRecord, stale: &TenantPool) -> Option<Arc<TenantPool>> {
        if let Some(current) = self.pools.get(&tenant.id).await {
            if !std::ptr::eq(&*current, stale) {
                return Some(current); // another request rebuilt it already
            }
        }
        if stale.built_at.elapsed() < REFRESH_INTERVAL {
            return None;
        }
        self.pools.invalidate(&tenant.id).await;
        self.pool_for(tenant).await.ok()
    }

    /// Number of open tenant pools.
    pub fn open_pools(&self) -> u64 {
        self.pools.entry_count()
    }
}

/// Whether a pool with `available` idle connections, `claimed` connections open or being
/// opened (at most `max_size`), must have room made for a new connection, with `budget_left`
/// permits of the budget free.
fn grow_decision(available: usize, claimed: usize, max_size: usize, budget_left: usize) -> bool {
    available == 0 && claimed < max_size && budget_left == 0
}

/// A connection checked out of a tenant's pool. Dropping it gives the connection back to its
/// pool and wakes one request of that tenant waiting in [`TenantPools::checkout`].
pub struct Checkout {
    object: Option<Object>,
    returned: Arc<Notify>,
}

impl Checkout {
    /// Takes the connection out of its pool for good and closes it (its budget permit is freed
    /// once the socket is closed; see [`crate::budget::Connection`]).
    pub fn close(mut self) {
        if let Some(object) = self.object.take() {
            drop(deadpool::managed::Object::take(object));
        }
    }
}

impl std::ops::Deref for Checkout {
    type Target = Object;
    fn deref(&self) -> &Object {
        self.object.as_ref().expect("a checkout holds its connection until dropped or closed")
    }
}

impl std::ops::DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut Object {
        self.object.as_mut().expect("a checkout holds its connection until dropped or closed")
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        drop(self.object.take());
        self.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::grow_decision;

    #[test]
    fn room_is_made_only_for_a_pool_that_would_open_a_connection_with_no_budget_left() {
        // Idle connection of its own: use it.
        assert!(!grow_decision(1, 2, 5, 0));
        // At its size limit, counting the connections being opened: wait for its own, closing
        // nobody's.
        assert!(!grow_decision(0, 5, 5, 0));
        // Budget left: open one without closing anybody's.
        assert!(!grow_decision(0, 2, 5, 3));
        // May grow, nothing idle, no budget: room must be made.
        assert!(grow_decision(0, 2, 5, 0));
        assert!(grow_decision(0, 0, 5, 0));
    }
}
