//! `tenant-router` configuration: flags with matching environment variables.

use std::net::SocketAddr;
use std::time::Duration;
use tenancy::settings::CommonSettings;

/// tenant-router: maps a request's subdomain to its tenant and serves it on that tenant's own
/// connection pool, whose PostgreSQL role can only see that tenant's schema.
///
/// Every flag can also be set with the environment variable shown in its help.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "tenant-router", version)]
pub struct RouterSettings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address tenant traffic (POST /sql) is served on.
    #[arg(long, env = "ROUTER_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "ROUTER_ADMIN_LISTEN", default_value = "127.0.0.1:9091")]
    pub admin_listen: SocketAddr,

    /// The PostgreSQL-protocol listener.
    #[command(flatten)]
    pub postgres: PostgresSettings,

    /// Header read and idle timeouts and connection limits of both listeners.
    #[command(flatten)]
    pub http: tenancy::listener::HttpSettings,

    /// How long a resolved tenant is cached in process.
    #[arg(long, env = "ROUTER_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub cache_ttl: Duration,

    /// How long "no such tenant" is cached in process.
    #[arg(long, env = "ROUTER_NEGATIVE_CACHE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub negative_cache_ttl: Duration,

    /// Key that signs the routing records routers share in Redis (HMAC-SHA256), at least 32
    /// bytes, the same on every router of a deployment. A record that fails it is ignored and
    /// read from the catalog, so write access to Redis cannot route one tenant's requests to
    /// another. Without it, routers do not share records (each reads the catalog on a miss).
    #[arg(long, env = "ROUTER_RECORDS_KEY")]
    pub records_key: Option<tenancy::secret::Secret>,

    /// How long a routing record stays in Redis (the control plane deletes it on every change).
    #[arg(long, env = "ROUTER_SHARED_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub shared_cache_ttl: Duration,

    /// Most tenants kept in the in-process cache.
    #[arg(long, env = "ROUTER_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,

    /// A tenant pool unused this long is closed.
    #[arg(long, env = "ROUTER_POOL_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub pool_idle_timeout: Duration,

    /// Most connections to PostgreSQL from this router, all tenants together.
    #[arg(long, env = "ROUTER_MAX_CONNECTIONS", default_value_t = 100)]
    pub max_connections: usize,

    /// Most connections one tenant may have, whatever its plan's pool size.
    #[arg(long, env = "ROUTER_TENANT_MAX_CONNECTIONS", default_value_t = 20)]
    pub tenant_max_connections: usize,

    /// With every connection of the budget open, another tenant's connection idle at least this
    /// long may be closed to open one for a tenant that wants more than it holds. (A tenant
    /// holding none takes the coldest idle connection at once; a tenant holding some otherwise
    /// waits for its own.)
    #[arg(long, env = "ROUTER_RECLAIM_IDLE_AFTER", default_value = "1s", value_parser = humantime::parse_duration)]
    pub reclaim_idle_after: Duration,

    /// Most connections to PostgreSQL opened per second, all tenants together (0: no limit).
    /// Each costs PostgreSQL a process start and an authentication; past this rate requests
    /// wait for a connection instead.
    #[arg(long, env = "ROUTER_MAX_CONNECTS_PER_SECOND", default_value_t = 500)]
    pub max_connects_per_second: u32,

    /// When a pooled connection's session is reset between requests: `auto` after a request
    /// whose statements can change the session (judged with PostgreSQL's own grammar), or
    /// `always` (a second query cycle per request).
    #[arg(long, env = "ROUTER_SESSION_RESET", value_enum, default_value_t = crate::session::ResetPolicy::Auto)]
    pub session_reset: crate::session::ResetPolicy,

    /// How long a request waits for a connection from its tenant's pool.
    #[arg(long, env = "ROUTER_CHECKOUT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub checkout_timeout: Duration,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ROUTER_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest response a query may produce, in bytes (larger results are refused, never cut).
    #[arg(long, env = "ROUTER_MAX_RESPONSE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_response_bytes: usize,

    /// Bearer tokens: the identity provider's keys, claims and roles.
    #[command(flatten)]
    pub identity: crate::identity::IdentitySettings,

    /// Failed authentications (and requests for hosts with no tenant) allowed per client
    /// address and minute, as a burst of that many; past them the address gets 429 with
    /// Retry-After until the allowance refills (0: no limit). IPv6 addresses count per /64.
    #[arg(long, env = "ROUTER_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,

    /// Catalog lookups that find no tenant allowed per second for the whole router, as a burst
    /// of that many; past them, only hosts that named a tenant within the last hour are looked
    /// up until the allowance refills (others get 503 `unknown_hosts_throttled`; 0: no limit).
    #[arg(long, env = "ROUTER_UNKNOWN_HOST_LOOKUPS_PER_SECOND", default_value_t = 50)]
    pub unknown_host_lookups_per_second: u32,

    /// Proxies in front of the router that append the client's address to X-Forwarded-For
    /// (1 behind one load balancer such as AWS ALB): the client address is that many entries
    /// from the right. 0: the address the connection comes from (X-Forwarded-For ignored).
    #[arg(long, env = "ROUTER_TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: usize,

    /// The application every path but /sql is forwarded to (e.g. http://127.0.0.1:3000), with
    /// X-Tenant-Id, X-Tenant-Slug and X-Tenant-Plan set by the router.
    #[arg(long, env = "ROUTER_UPSTREAM")]
    pub upstream: Option<axum::http::Uri>,

    /// How long the application may take to answer before the client gets 504.
    #[arg(long, env = "ROUTER_UPSTREAM_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,

    /// Fraction of tenant requests written to the access log (0 to 1; server errors always
    /// are): one JSON object per line with LOG_FORMAT=json (tenant, method, route, status,
    /// duration_ms, bytes_in, bytes_out). 1 logs every request: a write per request.
    #[arg(long, env = "ROUTER_ACCESS_LOG_SAMPLE", default_value_t = 0.01, value_parser = crate::access_log::parse_fraction)]
    pub access_log_sample: f64,

    /// How long to wait for in-flight requests on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

#[cfg(test)]
mod tests {
    use super::RouterSettings;
    use clap::CommandFactory as _;

    /// The configuration names terraform and operators rely on are all in `--help`.
    #[test]
    fn help_lists_the_fixed_configuration_names() {
        let help = RouterSettings::command().render_long_help().to_string();
        for name in tenancy::settings::SHARED_ENV_NAMES.iter().copied().chain([
            "ROUTER_LISTEN",
            "ROUTER_ADMIN_LISTEN",
            "ROUTER_PG_LISTEN",
            "ROUTER_PG_HOST",
            "ROUTER_TLS_CERT_FILE",
            "ROUTER_TLS_KEY_FILE",
            "ROUTER_TLS_CERT",
            "ROUTER_TLS_KEY",
        ]) {
            assert!(help.contains(&format!("[env: {name}")), "{name} missing from `tenant-router --help`");
        }
        RouterSettings::command().debug_assert();
    }
}

/// Where PostgreSQL clients connect, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct PostgresSettings {
    /// Address PostgreSQL clients (psql, drivers, ORMs) connect to, or `off`. A client names
    /// its tenant by the TLS SNI host, `options=-c tenant=<slug>` or the database name, and
    /// logs in as the tenant's role with its password.
    #[arg(long = "pg-listen", env = "ROUTER_PG_LISTEN", default_value = "127.0.0.1:6432")]
    pub pg_listen: ListenAddress,

    /// Certificate chain (PEM) the PostgreSQL listener presents to TLS clients; it should name
    /// `*.<TENANT_BASE_DOMAIN>` (and any custom domains, and `ROUTER_PG_HOST`) for clients that
    /// verify it.
    #[arg(long, env = "ROUTER_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<std::path::PathBuf>,

    /// Private key (PEM) of `ROUTER_TLS_CERT_FILE`.
    #[arg(long, env = "ROUTER_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<std::path::PathBuf>,

    /// The certificate chain itself (PEM text), instead of `ROUTER_TLS_CERT_FILE`: for a
    /// certificate injected as an environment variable from a secret store.
    #[arg(
        long,
        env = "ROUTER_TLS_CERT",
        hide_env_values = true,
        allow_hyphen_values = true,
        requires = "tls_key",
        conflicts_with_all = ["tls_cert_file", "tls_key_file"]
    )]
    pub tls_cert: Option<String>,

    /// The private key itself (PEM text) of `ROUTER_TLS_CERT`, instead of `ROUTER_TLS_KEY_FILE`.
    /// Never printed.
    #[arg(
        long,
        env = "ROUTER_TLS_KEY",
        hide_env_values = true,
        allow_hyphen_values = true,
        requires = "tls_cert",
        conflicts_with_all = ["tls_cert_file", "tls_key_file"]
    )]
    pub tls_key: Option<tenancy::secret::Secret>,

    /// The router's own host name for PostgreSQL clients that name their tenant by `options`
    /// or the database name, e.g. `postgres.<TENANT_BASE_DOMAIN>` behind a TCP load balancer:
    /// a TLS SNI of this host names no tenant.
    #[arg(long = "pg-host", env = "ROUTER_PG_HOST", value_parser = parse_host)]
    pub pg_host: Option<String>,

    /// Accept PostgreSQL clients without TLS (passwords still never cross the wire: SCRAM), on
    /// a private network or behind a load balancer that ends TLS. Without it, only TLS clients
    /// are served.
    #[arg(long = "pg-allow-plaintext", env = "ROUTER_PG_ALLOW_PLAINTEXT", default_value_t = false)]
    pub allow_plaintext: bool,

    /// A PostgreSQL client that leaves a transaction open and idle this long is disconnected,
    /// so that it cannot hold one of its tenant's connections forever (whatever it sets its
    /// session's own `idle_in_transaction_session_timeout` to).
    #[arg(long = "pg-idle-transaction-timeout", env = "ROUTER_PG_IDLE_TRANSACTION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_transaction_timeout: Duration,

    /// Most PostgreSQL clients connected at once (each costs the router memory, not a server
    /// connection); past it, clients are refused with 53300.
    #[arg(long = "pg-max-clients", env = "ROUTER_PG_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: usize,
}

/// A host name, normalised as hosts are compared (lower case, no trailing dot), without a port.
fn parse_host(raw: &str) -> Result<String, String> {
    if raw.contains(':') {
        return Err(format!("{raw:?}: a host name, without a port"));
    }
    tenancy::domain::normalize_host(raw).map_err(|e| format!("{raw:?}: {e}"))
}

/// A listen address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddress(pub Option<SocketAddr>);

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        raw.parse().map(|addr| Self(Some(addr))).map_err(|e| format!("{raw:?}: {e} (or `off`)"))
    }
}
