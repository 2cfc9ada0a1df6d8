//! One connection pool per tenant and [`Access`], created on first use from the tenant's
//! secret, sized by its plan, logged in as the tenant's own role (its runtime role, or its
//! read-only role for requests that may only read), all of them under one connection budget
//! (`ROUTER_MAX_CONNECTIONS`) shared by the rules of [`budget`]. Idle connections are closed
//! after `ROUTER_POOL_IDLE_TIMEOUT`, and pools nobody used for as long are forgotten.
//! Between requests the session is reset (see [`crate::session`]) unless the request is known
//! not to have changed it, so nothing one request does to its session — `BEGIN`,
//! `SET search_path`, `SET ROLE`, `PREPARE` — reaches the next. What the pools hold and have
//! served is shown to operators by [`view`].

mod budget;
pub(crate) mod connection;
pub mod view;

use budget::{Attempt, Budget, Grant, Handoff, PoolId, Returned};
pub use connection::{Connection, Door};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::future::Cache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq as _;
use tenancy::catalog::TenantRecord;
use tenancy::domain::TenantId;
use tenancy::secrets::{DbCredentials, SharedSecretStore};
use tokio::sync::oneshot;
use view::PoolInfo;

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
    #[error(
        "read-only requests are refused: the tenant has no read-only role yet (rotating its credentials creates one)"
    )]
    NoReader,
    #[error("secret store unavailable: {0}")]
    Secrets(String),
    #[error("no connection to the tenant's database could be had within the checkout timeout")]
    Exhausted,
    #[error("the tenant's database refused the router's credentials")]
    AuthFailed,
    #[error("tenant database unavailable: {0}")]
    Database(String),
}

/// What a pool's role may do: read and write (the tenant's runtime role), or only read (its
/// read-only role, which PostgreSQL allows `SELECT` and nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Access {
    #[serde(rename = "runtime")]
    ReadWrite,
    #[serde(rename = "read_only")]
    ReadOnly,
}

/// A tenant's pool and the credentials it was built with. Dropped (once the pool cache has
/// let go of it and no request holds it), its idle connections are closed.
pub struct TenantPool {
    id: PoolId,
    shared: Arc<Shared>,
    config: tenancy::pg::PgConfig,
    /// The credentials this pool logs in with.
    pub credentials: DbCredentials,
    /// Whose pool this is, for which access and door, and what it counts.
    info: Arc<PoolInfo>,
    /// The secret as last re-read for a client whose password did not match (rotation).
    fresh: tokio::sync::Mutex<Option<(Instant, DbCredentials)>>,
    /// The last `Neon-Connection-String` found to name this tenant and carry this pool's
    /// credentials: the same header again is accepted without parsing it or resolving its host.
    /// (A change to the tenant, its domains or its credentials comes with a new generation, and
    /// so with a new pool.)
    accepted: std::sync::RwLock<Option<Box<str>>>,
    /// What SCRAM needs of this pool's password, derived on first use (PBKDF2 is slow on
    /// purpose): the PostgreSQL-protocol door checks its clients against it.
    scram: std::sync::OnceLock<crate::wire::ServerKeys>,
}

impl TenantPool {
    pub fn access(&self) -> Access {
        self.info.access
    }

    pub fn door(&self) -> Door {
        self.info.door
    }

    /// The tenant's generation this pool was built for.
    pub fn generation(&self) -> i64 {
        self.info.generation
    }

    /// Counts a server connection handed to a PostgreSQL-protocol client for a transaction.
    pub(crate) fn transaction_started(&self) {
        self.info.counters.transaction();
    }

    /// Whether `header` is, byte for byte, the connection string last accepted for this pool
    /// (compared in constant time).
    pub fn was_accepted(&self, header: &str) -> bool {
        let accepted = self.accepted.read().unwrap_or_else(PoisonError::into_inner);
        accepted.as_deref().is_some_and(|known| bool::from(known.as_bytes().ct_eq(header.as_bytes())))
    }

    /// The SCRAM keys of this pool's password.
    pub(crate) fn scram_keys(&self) -> &crate::wire::ServerKeys {
        self.scram.get_or_init(|| crate::wire::ServerKeys::new(self.credentials.password.as_bytes()))
    }

    /// Remembers `header` as checked against this pool's own credentials.
    pub fn remember_accepted(&self, header: &str) {
        *self.accepted.write().unwrap_or_else(PoisonError::into_inner) = Some(header.into());
    }
}

impl Drop for TenantPool {
    fn drop(&mut self) {
        let idle = self.shared.budget().remove_pool(self.id);
        drop(idle);
    }
}

/// How often a tenant's secret may be re-read because of a password mismatch (or its pool
/// rebuilt after PostgreSQL refused the pool's password): often enough for back-to-back
/// rotations, rarely enough that a client with a wrong password cannot flood the secret store.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// What the pool layer counts (`tenant_router_connections_opened_total`,
/// `tenant_router_connections_shed_total`, `tenant_router_checkout_waiting`).
#[derive(Clone, Debug, Default)]
pub struct ConnectionCounters {
    /// Connections opened.
    pub opened: Counter,
    /// Connections closed to make room for another tenant's.
    pub shed: Counter,
    /// Requests waiting for a connection now.
    pub waiting: Gauge,
}

/// How the tenant pools are sized.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// A connection idle this long is closed; a pool unused this long is forgotten.
    pub idle_timeout: Duration,
    /// How long a request waits for a connection.
    pub checkout_timeout: Duration,
    /// Server connections of all pools together (`ROUTER_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Server connections of one tenant, whatever its plan says (`ROUTER_TENANT_MAX_CONNECTIONS`).
    pub tenant_max_connections: usize,
    /// With the budget in use, another tenant's connection idle at least this long may be
    /// closed to open one for a tenant that wants more (`ROUTER_RECLAIM_IDLE_AFTER`).
    pub reclaim_after: Duration,
    /// Most connections opened per second, all tenants together; 0 for no limit
    /// (`ROUTER_MAX_CONNECTS_PER_SECOND`).
    pub connects_per_second: u32,
}

/// The budget's books: connections, the requests waiting for one, and each pool's label.
type Books = Budget<Connection, Queued, Arc<PoolInfo>>;

/// What every pool shares: the budget and its bookkeeping.
struct Shared {
    budget: Mutex<Books>,
    counters: ConnectionCounters,
    next_pool: AtomicU64,
}

/// A request waiting for a connection: where to hand it one, and since when.
struct Queued {
    handed: oneshot::Sender<Handed>,
    since: Instant,
}

impl budget::Waiter for Queued {
    fn is_waiting(&self) -> bool {
        !self.handed.is_closed()
    }

    fn since(&self) -> Instant {
        self.since
    }
}

impl Shared {
    fn budget(&self) -> MutexGuard<'_, Books> {
        self.budget.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands what the budget decided to the waiting requests. A request that gave up meanwhile
    /// drops what it was handed, which gives it back.
    fn deliver(self: &Arc<Self>, handoffs: Vec<Handoff<Connection, Queued>>) {
        for Handoff { waiter, pool, grant } in handoffs {
            let handed = match grant {
                Grant::Reuse(connection) => {
                    Handed::Reuse(Box::new(Checkout::new(self.clone(), pool, connection)))
                }
                Grant::Open => Handed::Open(OpenPermit { shared: self.clone(), pool, used: false }),
            };
            drop(waiter.handed.send(handed));
        }
    }

    fn unit_released(self: &Arc<Self>) {
        let handoffs = self.budget().unit_released();
        self.deliver(handoffs);
    }

    /// Closes `connection`, whose unit goes to another connection (not back to the budget),
    /// and returns once PostgreSQL has let go of it: the new connection is opened only then, so
    /// PostgreSQL never sees more than the budget. `false` when its socket had given the unit
    /// back already (see [`Budget::replace_lost_unit`]).
    async fn shed(&self, connection: Connection) -> bool {
        let handed_over = connection.hand_over_unit();
        self.counters.shed.inc();
        // Boxed: a connection (its TLS state) is large, and checkouts carry this future.
        Box::pin(connection.close()).await;
        handed_over
    }

    /// Closes `evicted` (if any) to make room, and hands its unit on as `handoffs` say.
    fn hand_over(self: &Arc<Self>, evicted: Option<Connection>, handoffs: Vec<Handoff<Connection, Queued>>) {
        let Some(evicted) = evicted else {
            self.deliver(handoffs);
            return;
        };
        let shared = self.clone();
        tokio::spawn(async move {
            if !shared.shed(evicted).await && !shared.budget().replace_lost_unit() {
                let mut budget = shared.budget();
                for handoff in handoffs {
                    budget.take_back(handoff);
                }
                return;
            }
            shared.deliver(handoffs);
        });
    }

    /// Gives back, or closes, a connection checked out of `pool`.
    fn check_in(self: &Arc<Self>, pool: PoolId, connection: Connection) {
        if connection.retire || connection.is_closed() {
            let handoffs = self.budget().closed(pool);
            drop(connection);
            self.deliver(handoffs);
            return;
        }
        let returned = self.budget().give_back(pool, connection, Instant::now());
        match returned {
            Returned::Kept(handoff) => self.deliver(handoff.into_iter().collect()),
            Returned::HandedOver(connection, handoff) => self.hand_over(Some(connection), vec![handoff]),
            Returned::Close(connection) => drop(connection),
        }
    }
}

/// Counts a request as waiting for a connection while it lives.
struct Waiting<'a>(&'a Gauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a waiting request is handed.
enum Handed {
    Reuse(Box<Checkout>),
    Open(OpenPermit),
}

/// A budget unit reserved for a pool: open a connection with it. Dropped unused, the unit is
/// given back.
struct OpenPermit {
    shared: Arc<Shared>,
    pool: PoolId,
    used: bool,
}

impl OpenPermit {
    /// The unit now belongs to an open connection (whose socket gives it back).
    fn spent(mut self) {
        self.used = true;
        self.shared.budget().opened(self.pool);
    }
}

impl Drop for OpenPermit {
    fn drop(&mut self) {
        if !self.used {
            let handoffs = self.shared.budget().open_failed(self.pool);
            self.shared.deliver(handoffs);
        }
    }
}

pub struct TenantPools {
    secrets: SharedSecretStore,
    /// What tenants' `verify-ca` and `verify-full` connections trust (`PG_SSL_ROOT_CERT`).
    ca_bundle: tenancy::pg::CaBundle,
    pools: Cache<(TenantId, Access, Door), Arc<TenantPool>>,
    limits: PoolLimits,
    shared: Arc<Shared>,
    connects: Option<DefaultDirectRateLimiter>,
}

impl TenantPools {
    /// The pools, and a task that closes idle connections until the pools are dropped.
    pub fn new(
        secrets: SharedSecretStore,
        ca_bundle: tenancy::pg::CaBundle,
        limits: PoolLimits,
        counters: ConnectionCounters,
    ) -> Self {
        // A pool leaving the cache (idle, replaced after a change) is not closed here: requests
        // may still hold it; its idle connections close as the last of them lets go.
        let pools = Cache::builder().time_to_idle(limits.idle_timeout).build();
        let shared = Arc::new(Shared {
            budget: Mutex::new(Budget::new(limits.max_connections, limits.reclaim_after)),
            counters,
            next_pool: AtomicU64::new(0),
        });
        spawn_idle_sweeper(Arc::downgrade(&shared), limits.idle_timeout);
        let connects = NonZeroU32::new(limits.connects_per_second)
            .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        Self { secrets, ca_bundle, pools, limits, shared, connects }
    }

    /// Server connections open now (or being opened or closed), across all tenants.
    pub fn connections_in_use(&self) -> usize {
        self.shared.budget().units()
    }

    /// The tenant's read-write pool (on its runtime role), built if missing or older than the
    /// tenant's generation.
    pub async fn pool_for(&self, tenant: &TenantRecord) -> Result<Arc<TenantPool>, PoolCheckoutError> {
        self.pool(tenant, Access::ReadWrite).await
    }

    /// The tenant's pool for `access`, built if missing or older than the tenant's generation.
    /// A read-only pool logs in as the tenant's read-only role, never as its runtime role:
    /// without one in the secret, [`PoolCheckoutError::NoReader`].
    pub async fn pool(
        &self,
        tenant: &TenantRecord,
        access: Access,
    ) -> Result<Arc<TenantPool>, PoolCheckoutError> {
        self.pool_for_door(tenant, access, Door::Http).await
    }

    /// The tenant's pool for `access` whose connections serve `door`.
    pub async fn pool_for_door(
        &self,
        tenant: &TenantRecord,
        access: Access,
        door: Door,
    ) -> Result<Arc<TenantPool>, PoolCheckoutError> {
        let key = (tenant.id, access, door);
        if let Some(existing) = self.pools.get(&key).await {
            if existing.generation() >= tenant.generation {
                return Ok(existing);
            }
            self.pools.invalidate(&key).await;
        }
        self.pools
            .try_get_with(key, self.build(tenant, access, door))
            .await
            .map_err(|e: Arc<PoolCheckoutError>| (*e).clone())
    }

    async fn build(
        &self,
        tenant: &TenantRecord,
        access: Access,
        door: Door,
    ) -> Result<Arc<TenantPool>, PoolCheckoutError> {
        let name = tenant.secret_name().ok_or(PoolCheckoutError::NoCredentials)?;
        let secret = self
            .secrets
            .get(&name)
            .await
            .map_err(|e| PoolCheckoutError::Secrets(e.to_string()))?
            .ok_or(PoolCheckoutError::NoCredentials)?;
        let credentials = match access {
            Access::ReadWrite => secret,
            Access::ReadOnly => secret.reader().ok_or(PoolCheckoutError::NoReader)?,
        };
        let mut config = credentials.config(&self.ca_bundle);
        config.application_name("tenant-router");
        // The HTTP doors answer in UTC; a PostgreSQL-protocol client gets the server's default
        // time zone, or the one it asks for at startup.
        let mut options: Vec<String> = Vec::new();
        if door == Door::Http {
            options.push("-c TimeZone=UTC".into());
        }
        if let Some(ms) = tenant.statement_timeout_ms {
            options.push(format!("-c statement_timeout={ms}"));
        }
        config.options(options.join(" "));
        let size = usize::try_from(tenant.pool_size)
            .unwrap_or(1)
            .clamp(1, self.limits.tenant_max_connections.max(1));
        let id = self.shared.next_pool.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(PoolInfo {
            tenant_id: tenant.id,
            slug: tenant.slug.clone(),
            access,
            door,
            generation: tenant.generation,
            built_at: Instant::now(),
            counters: view::PoolCounters::default(),
        });
        self.shared.budget().add_pool(id, size, info.clone());
        Ok(Arc::new(TenantPool {
            id,
            shared: self.shared.clone(),
            config,
            credentials,
            info,
            fresh: tokio::sync::Mutex::new(None),
            accepted: std::sync::RwLock::new(None),
            scram: std::sync::OnceLock::new(),
        }))
    }

    /// A connection from the tenant's pool, within the checkout timeout: an idle one of its
    /// own, or a new one when the budget has room (or makes room, see [`budget`]); otherwise
    /// the request waits for one, and gets [`PoolCheckoutError::Exhausted`] at the timeout.
    pub async fn checkout(&self, pool: &TenantPool) -> Result<Checkout, PoolCheckoutError> {
        let started = Instant::now();
        let checkout = self.checkout_within_timeout(pool).await;
        pool.info.counters.checkout(&checkout, started.elapsed());
        checkout
    }

    /// What is rare on this path (waiting in line, opening a connection, shedding another's,
    /// resetting a session) is boxed: the future of every client of the PostgreSQL door holds
    /// this one's room for its whole life, idle or not.
    async fn checkout_within_timeout(&self, pool: &TenantPool) -> Result<Checkout, PoolCheckoutError> {
        let deadline = tokio::time::Instant::now() + self.limits.checkout_timeout;
        loop {
            let mut receiver = None;
            let now = Instant::now();
            let attempt = self.shared.budget().checkout(pool.id, now, || {
                let (handed, waiting) = oneshot::channel();
                receiver = Some(waiting);
                Queued { handed, since: now }
            });
            let handed = match attempt {
                Attempt::Reuse(connection) => {
                    match ready(Checkout::new(self.shared.clone(), pool.id, connection), deadline).await {
                        Some(ready) => return Ok(ready),
                        None => continue,
                    }
                }
                Attempt::Open { evicted } => {
                    if let Some(evicted) = evicted {
                        if !Box::pin(self.shared.shed(evicted)).await
                            && !self.shared.budget().replace_lost_unit()
                        {
                            // The room made was not there after all: give the claim up, retry.
                            let handoffs = self.shared.budget().open_abandoned(pool.id);
                            self.shared.deliver(handoffs);
                            continue;
                        }
                    }
                    Handed::Open(OpenPermit { shared: self.shared.clone(), pool: pool.id, used: false })
                }
                Attempt::Queued => {
                    let Some(receiver) = receiver else { continue };
                    match Box::pin(self.wait(pool, receiver, deadline)).await {
                        Some(handed) => handed,
                        None => return Err(PoolCheckoutError::Exhausted),
                    }
                }
            };
            match handed {
                Handed::Reuse(checkout) => {
                    if let Some(ready) = ready(*checkout, deadline).await {
                        return Ok(ready);
                    }
                }
                Handed::Open(permit) => return Box::pin(self.open(pool, permit, deadline)).await,
            }
        }
    }

    /// Waits in line for what the budget hands this request, until `deadline`. Every
    /// `reclaim_after`, looks whether another tenant's connection went cold meanwhile (the
    /// request keeps its place in line: the room made goes to the pool's first waiter).
    async fn wait(
        &self,
        pool: &TenantPool,
        mut receiver: oneshot::Receiver<Handed>,
        deadline: tokio::time::Instant,
    ) -> Option<Handed> {
        let _waiting = Waiting::new(&self.shared.counters.waiting);
        loop {
            let look_again =
                tokio::time::Instant::now() + self.limits.reclaim_after.max(Duration::from_millis(1));
            match tokio::time::timeout_at(deadline.min(look_again), &mut receiver).await {
                Ok(handed) => return handed.ok(),
                Err(_) if tokio::time::Instant::now() >= deadline => return None,
                Err(_) => {
                    let (evicted, handoffs) = self.shared.budget().reclaim_for(pool.id, Instant::now());
                    self.shared.hand_over(evicted, handoffs);
                }
            }
        }
    }

    /// Opens a connection for `pool` with the unit `permit` reserved, at the bounded rate. The
    /// request waits until `deadline` at most; a connection that opens later is not wasted: it
    /// goes to the pool for the next request.
    async fn open(
        &self,
        pool: &TenantPool,
        permit: OpenPermit,
        deadline: tokio::time::Instant,
    ) -> Result<Checkout, PoolCheckoutError> {
        if let Some(connects) = &self.connects {
            tokio::time::timeout_at(deadline, connects.until_ready())
                .await
                .map_err(|_| PoolCheckoutError::Exhausted)?;
        }
        let (config, shared, id, door) = (pool.config.clone(), self.shared.clone(), pool.id, pool.door());
        let opening = tokio::spawn(async move {
            let released = Arc::downgrade(&shared);
            let opened = connection::open(&config, door, move || {
                if let Some(shared) = released.upgrade() {
                    shared.unit_released();
                }
            })
            .await;
            let connection = opened?;
            shared.counters.opened.inc();
            permit.spent();
            Ok::<_, tokio_postgres::Error>(Checkout::new(shared, id, connection))
        });
        let opened = match tokio::time::timeout_at(deadline, opening).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(panicked)) => return Err(PoolCheckoutError::Database(panicked.to_string())),
            Err(_) => return Err(PoolCheckoutError::Exhausted),
        };
        let mut checkout = opened.map_err(|pg| match pg.code() {
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) => PoolCheckoutError::AuthFailed,
            _ => PoolCheckoutError::Database(tenancy::pg::describe_error(&pg)),
        })?;
        checkout.clean = false;
        Ok(checkout)
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
        if let Some((_, credentials)) = pool.fresh.lock().await.as_ref() {
            if credentials_match(credentials, user, password) {
                return true;
            }
        }
        self.current_credentials(tenant, pool)
            .await
            .is_some_and(|credentials| credentials_match(&credentials, user, password))
    }

    /// The tenant's credentials as its secret holds them now (read again at most once per
    /// [`REFRESH_INTERVAL`] per pool: a request that finds it read too recently waits out the
    /// interval, and concurrent requests share one read). `None` when it cannot be read.
    pub async fn current_credentials(
        &self,
        tenant: &TenantRecord,
        pool: &TenantPool,
    ) -> Option<DbCredentials> {
        let mut fresh = pool.fresh.lock().await;
        if let Some((at, _)) = fresh.as_ref() {
            let age = at.elapsed();
            if age < REFRESH_INTERVAL {
                tokio::time::sleep(REFRESH_INTERVAL - age).await;
            }
        }
        let name = tenant.secret_name()?;
        let credentials = self.secrets.get(&name).await.ok()??;
        *fresh = Some((Instant::now(), credentials.clone()));
        Some(credentials)
    }

    /// A pool rebuilt from the secret as it is now, after PostgreSQL refused the old pool's
    /// password (a rotation whose invalidation has not arrived). Rebuilt at most once per
    /// [`REFRESH_INTERVAL`]; `None` when it was just rebuilt.
    pub async fn rebuild(&self, tenant: &TenantRecord, stale: &TenantPool) -> Option<Arc<TenantPool>> {
        let key = (tenant.id, stale.access(), stale.door());
        if let Some(current) = self.pools.get(&key).await {
            if !std::ptr::eq(&*current, stale) {
                return Some(current); // another request rebuilt it already
            }
        }
        if stale.info.built_at.elapsed() < REFRESH_INTERVAL {
            return None;
        }
        self.pools.invalidate(&key).await;
        self.pool_for_door(tenant, stale.access(), stale.door()).await.ok()
    }

    /// Number of open tenant pools.
    pub fn open_pools(&self) -> u64 {
        self.pools.entry_count()
    }
}

/// A connection handed out for reuse: reset first unless its last request left it clean.
/// `None` when its socket is gone or the reset failed or did not finish by `deadline` (the
/// connection is closed; look for another).
async fn ready(mut checkout: Checkout, deadline: tokio::time::Instant) -> Option<Checkout> {
    if checkout.is_closed() || checkout.socket().is_some_and(|socket| !socket.is_quiet()) {
        checkout.retire = true;
        return None;
    }
    if !checkout.clean {
        let reset = tokio::time::timeout_at(deadline, Box::pin(checkout.reset_session())).await;
        if !matches!(reset, Ok(Ok(()))) {
            checkout.retire = true;
            return None;
        }
    }
    // Handed out now: whatever the next request does makes it unclean.
    checkout.clean = false;
    Some(checkout)
}

/// Closes connections idle longer than `idle_timeout`, until the pools are dropped.
fn spawn_idle_sweeper(shared: Weak<Shared>, idle_timeout: Duration) {
    let every = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let Some(shared) = shared.upgrade() else { return };
            let expired = shared.budget().expire_idle(Instant::now(), idle_timeout);
            drop(expired);
        }
    });
}

/// A connection checked out of a tenant's pool. Dropping it gives the connection back to its
/// pool (where the budget's rules decide who gets it next), or closes it when it is marked to
/// be retired or its socket is gone.
pub struct Checkout {
    shared: Arc<Shared>,
    pool: PoolId,
    connection: Option<Connection>,
}

impl Checkout {
    fn new(shared: Arc<Shared>, pool: PoolId, connection: Connection) -> Self {
        Self { shared, pool, connection: Some(connection) }
    }

    /// Takes the connection out of its pool for good and closes it (its budget unit is freed
    /// once the socket is closed).
    pub fn close(mut self) {
        if let Some(mut connection) = self.connection.take() {
            connection.retire = true;
            self.shared.check_in(self.pool, connection);
        }
    }
}

impl std::ops::Deref for Checkout {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.connection.as_ref().expect("a checkout holds its connection until dropped or closed")
    }
}

impl std::ops::DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("a checkout holds its connection until dropped or closed")
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.shared.check_in(self.pool, connection);
        }
    }
}
