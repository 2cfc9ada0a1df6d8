//! Prometheus metrics of the router, on the admin listener. Labels are fixed and low-cardinality:
//! never a tenant.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// `2xx`, `4xx`, `5xx`.
    pub status: &'static str,
}

impl StatusLabels {
    /// The class of an HTTP status (`"2xx"` for 204), without allocating.
    pub const fn of(status: u16) -> Self {
        const CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
        let class = (status / 100) as usize;
        Self { status: if class < CLASSES.len() { CLASSES[class] } else { "other" } }
    }
}

/// A request's route (`sql`, `v2`, `proxy`) and status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: &'static str,
}

/// Where a resolution was answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Layer {
    /// The in-process cache.
    L1,
    /// The routing records shared in Redis.
    L2,
    /// The catalog.
    Catalog,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Found,
    NotFound,
    Error,
}

// Label values in snake_case, as Prometheus users expect: `l1`, `l2`, `catalog`; `found`,
// `not_found`, `error`.
impl EncodeLabelValue for Layer {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::L1 => "l1",
                Self::L2 => "l2",
                Self::Catalog => "catalog",
            },
        )
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Found => "found",
                Self::NotFound => "not_found",
                Self::Error => "error",
            },
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResolutionLabels {
    pub layer: Layer,
    pub outcome: Outcome,
}

pub struct RouterMetrics {
    registry: Registry,
    pub requests: Family<StatusLabels, Counter>,
    /// Tenant requests' time to their response's head, by route and status class.
    pub request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub resolutions: Family<ResolutionLabels, Counter>,
    pub invalidations: Counter,
    /// Requests held while their tenant was paused by a move's switch, and writes held while a
    /// move by dump copied it.
    pub held_by_pause: Counter,
    pub shared_records_rejected: Counter,
    pub redis_connected: Gauge,
    pub pools_open: Gauge,
    pub connections_in_use: Gauge,
    pub connection_budget: Gauge,
    pub checkout_wait: Histogram,
    pub rate_limited: Counter<u64, AtomicU64>,
    pub connections: crate::pool::ConnectionCounters,
    /// PostgreSQL-protocol clients connected now.
    pub wire_clients: Gauge,
    /// Server connections handed to PostgreSQL-protocol clients (about one per transaction).
    pub wire_transactions: Counter,
    /// PostgreSQL-protocol logins refused for a wrong user or password.
    pub wire_auth_failures: Counter,
    /// PostgreSQL-protocol clients refused because `ROUTER_PG_MAX_CLIENTS` were connected.
    pub wire_refused_full: Counter,
    /// Internal users' accesses written to the audit log.
    pub internal_accesses: Counter,
    /// Internal users' accesses waiting to be written to the audit log.
    pub audit_pending: Gauge,
    /// Internal users refused because their accesses could not be audited.
    pub audit_refused: Counter,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenant_router");
        let requests = Family::<StatusLabels, Counter>::default();
        // 0.5 ms to ~16 s.
        let request_duration: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16))
            });
        let resolutions = Family::<ResolutionLabels, Counter>::default();
        let invalidations = Counter::default();
        let held_by_pause = Counter::default();
        let shared_records_rejected = Counter::default();
        let redis_connected = Gauge::default();
        let pools_open = Gauge::default();
        let connections_in_use = Gauge::default();
        let connection_budget = Gauge::default();
        // 0.1 ms to ~6.5 s.
        let checkout_wait =
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17));
        let rate_limited = Counter::default();
        let connections = crate::pool::ConnectionCounters::default();
        let (wire_clients, wire_transactions) = (Gauge::default(), Counter::default());
        let (wire_auth_failures, wire_refused_full) = (Counter::default(), Counter::default());
        registry.register(
            "pg_clients_refused",
            "PostgreSQL-protocol clients refused because ROUTER_PG_MAX_CLIENTS were connected",
            wire_refused_full.clone(),
        );
        registry.register("pg_clients", "PostgreSQL-protocol clients connected now", wire_clients.clone());
        registry.register(
            "pg_transactions",
            "Server connections handed to PostgreSQL-protocol clients (about one per transaction)",
            wire_transactions.clone(),
        );
        registry.register(
            "pg_auth_failures",
            "PostgreSQL-protocol logins refused for a wrong user or password",
            wire_auth_failures.clone(),
        );
        let (internal_accesses, audit_pending, audit_refused) =
            (Counter::default(), Gauge::default(), Counter::default());
        registry.register(
            "internal_accesses",
            "Accesses by internal users (tenant claim *) written to the audit log",
            internal_accesses.clone(),
        );
        registry.register(
            "audit_pending",
            "Internal users' accesses waiting to be written to the audit log",
            audit_pending.clone(),
        );
        registry.register(
            "audit_refused",
            "Internal users refused because too many of their accesses could not be audited yet",
            audit_refused.clone(),
        );
        registry.register("requests", "Requests by status class", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Tenant requests' time to the response's head by route (sql, v2, proxy) and status class",
            request_duration.clone(),
        );
        registry.register("resolutions", "Host resolutions by layer and outcome", resolutions.clone());
        registry.register("invalidations", "Tenant invalidations received from Redis", invalidations.clone());
        registry.register(
            "held_by_pause",
            "Requests held while their tenant was paused by a move's switch, or writes while a move by dump copied it",
            held_by_pause.clone(),
        );
        registry.register(
            "shared_records_rejected",
            "Routing records in Redis ignored: a bad signature, expired, or another tenant's",
            shared_records_rejected.clone(),
        );
        registry.register(
            "redis_connected",
            "1 while the invalidation listener is subscribed",
            redis_connected.clone(),
        );
        registry.register("pools_open", "Tenant connection pools open", pools_open.clone());
        registry.register(
            "connections_in_use",
            "Connections to PostgreSQL open now",
            connections_in_use.clone(),
        );
        registry.register("connection_budget", "ROUTER_MAX_CONNECTIONS", connection_budget.clone());
        registry.register(
            "checkout_wait_seconds",
            "Time to get a connection from a tenant pool",
            checkout_wait.clone(),
        );
        registry.register("rate_limited", "Requests refused by a plan's rate limit", rate_limited.clone());
        registry.register(
            "connections_opened",
            "Connections to PostgreSQL opened",
            connections.opened.clone(),
        );
        registry.register(
            "connections_shed",
            "Idle connections of one tenant closed to open one for another (the budget was in use)",
            connections.shed.clone(),
        );
        registry.register(
            "checkout_waiting",
            "Requests waiting for a connection now",
            connections.waiting.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            resolutions,
            invalidations,
            held_by_pause,
            shared_records_rejected,
            redis_connected,
            pools_open,
            connections_in_use,
            connection_budget,
            checkout_wait,
            rate_limited,
            connections,
            wire_clients,
            wire_transactions,
            wire_auth_failures,
            wire_refused_full,
            internal_accesses,
            audit_pending,
            audit_refused,
        }
    }
}

impl RouterMetrics {
    pub fn resolution(&self, layer: Layer, outcome: Outcome) {
        self.resolutions.get_or_create(&ResolutionLabels { layer, outcome }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::StatusLabels;

    #[test]
    fn status_classes() {
        assert_eq!(StatusLabels::of(204).status, "2xx");
        assert_eq!(StatusLabels::of(429).status, "4xx");
        assert_eq!(StatusLabels::of(503).status, "5xx");
        assert_eq!(StatusLabels::of(999).status, "other");
    }
}
