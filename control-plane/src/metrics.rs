//! Prometheus metrics of the control plane. Labels are fixed and low-cardinality: never a tenant.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) method: String,
    /// The route pattern (`/v1/tenants/{slug}`), never the concrete path.
    pub(crate) route: String,
    /// `2xx`, `4xx`, `5xx`.
    pub(crate) status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct JobLabels {
    pub(crate) kind: String,
    /// `done`, `retrying`, `failed`.
    pub(crate) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WebhookLabels {
    /// `accepted`, `duplicate`, `rejected`.
    pub(crate) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    /// Where the error ended: `http` (an API answer) or `job` (a job attempt).
    pub(crate) edge: &'static str,
    /// Its kind (`tenancy::error::ErrorKind`): `invalid`, `not_found`, `unavailable`, …
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub(crate) status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RunItemLabels {
    /// `done`, `failed` (failed, drift or lock timeout) or `remaining` (pending or running).
    pub(crate) state: &'static str,
}

/// The latest fleet migration run, as the ledger says at scrape time (wherever it runs: this
/// server, another, or `tenantctl migrate apply` in a terminal).
pub(crate) struct FleetRunGauges {
    pub(crate) tenants: Family<RunItemLabels, Gauge>,
    /// 1 while the latest run is running, else 0.
    pub(crate) running: Gauge,
    /// Tenants finished per second over the last minute.
    pub(crate) rate: Gauge<f64, std::sync::atomic::AtomicU64>,
}

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) http_requests: Family<HttpLabels, Counter>,
    pub(crate) http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub(crate) fleet_run: FleetRunGauges,
    pub(crate) jobs: Family<JobLabels, Counter>,
    pub(crate) webhook_events: Family<WebhookLabels, Counter>,
    pub(crate) errors: Family<ErrorLabels, Counter>,
    pub(crate) tenants: Family<StatusLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenantctl");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let jobs = Family::<JobLabels, Counter>::default();
        let webhook_events = Family::<WebhookLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let tenants = Family::<StatusLabels, Gauge>::default();
        // 1 ms to ~33 s.
        let http_duration: Family<HttpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16))
            });
        let fleet_run =
            FleetRunGauges { tenants: Family::default(), running: Gauge::default(), rate: Gauge::default() };
        registry.register("http_requests", "HTTP requests by route and status class", http_requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests' time to the response's head by method, route and status class",
            http_duration.clone(),
        );
        registry.register(
            "fleet_run_tenants",
            "Tenants of the latest fleet migration run by state (done, failed, remaining)",
            fleet_run.tenants.clone(),
        );
        registry.register(
            "fleet_run_running",
            "1 while the latest fleet migration run is running",
            fleet_run.running.clone(),
        );
        registry.register(
            "fleet_run_rate",
            "Tenants of the latest fleet migration run finished per second over the last minute",
            fleet_run.rate.clone(),
        );
        registry.register("jobs", "Jobs run, by kind and outcome", jobs.clone());
        registry.register("webhook_events", "Billing webhook deliveries by outcome", webhook_events.clone());
        registry.register("errors", "Operation errors by where they ended and kind", errors.clone());
        registry.register("tenants", "Tenants in the catalog by status", tenants.clone());
        Self { registry, http_requests, http_duration, fleet_run, jobs, webhook_events, errors, tenants }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub(crate) fn job(&self, kind: &str, outcome: &str) {
        self.jobs.get_or_create(&JobLabels { kind: kind.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    pub(crate) fn error(&self, edge: &'static str, kind: tenancy::error::ErrorKind) {
        self.errors.get_or_create(&ErrorLabels { edge, kind: kind.as_str() }).inc();
    }

    pub(crate) fn webhook(&self, outcome: &str) {
        self.webhook_events.get_or_create(&WebhookLabels { outcome: outcome.to_owned() }).inc();
    }
}
