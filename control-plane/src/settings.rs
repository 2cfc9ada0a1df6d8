//! `tenantctl` configuration: flags with matching environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the provisioning side (used by `serve` and by CLI commands that provision).
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisioningSettings {
    /// Prefix of every PostgreSQL role this deployment creates (roles are cluster-wide):
    /// tenant roles are <prefix>_<slug>, the schema owner is <prefix>_owner.
    #[arg(hide_short_help = true, help_heading = tenancy::settings::SETTINGS_HEADING, long, env = "TENANT_ROLE_PREFIX", default_value = "tenant", value_parser = parse_role_prefix)]
    pub(crate) role_prefix: String,

    /// Directory of the tenant schema migrations (refinery files V<n>__<name>.sql).
    #[arg(
        hide_short_help = true,
        help_heading = tenancy::settings::SETTINGS_HEADING,
        long,
        env = "TENANT_MIGRATIONS_DIR",
        default_value = "migrations"
    )]
    pub migrations_dir: PathBuf,

    /// Directory of the plan templates (<plan>.toml, with `extends`).
    #[arg(
        hide_short_help = true,
        help_heading = tenancy::settings::SETTINGS_HEADING,
        long,
        env = "TENANT_TEMPLATES_DIR",
        default_value = "tenant-templates"
    )]
    pub(crate) templates_dir: PathBuf,

    /// How long a deprovisioned tenant's data is kept before it is dropped (billing
    /// cancellations and `tenants delete` without --retention).
    #[arg(hide_short_help = true, help_heading = tenancy::settings::SETTINGS_HEADING, long, env = "DEPROVISION_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub(crate) deprovision_retention: Duration,

    /// Directory where a `pg_dump` archive of each tenant is written before its data is dropped
    /// (no archive when unset).
    #[arg(
        hide_short_help = true,
        help_heading = tenancy::settings::SETTINGS_HEADING,
        long,
        env = "DEPROVISION_ARCHIVE_DIR"
    )]
    pub archive_dir: Option<PathBuf>,

    /// The `pg_dump` program used for archives and for moves by dump (`tenants move --method
    /// dump`); at least the clusters' major version.
    #[arg(
        hide_short_help = true,
        help_heading = tenancy::settings::SETTINGS_HEADING,
        long,
        env = "PG_DUMP",
        default_value = "pg_dump"
    )]
    pub pg_dump: PathBuf,

    /// The `pg_restore` program used for moves by dump.
    #[arg(
        hide_short_help = true,
        help_heading = tenancy::settings::SETTINGS_HEADING,
        long,
        env = "PG_RESTORE",
        default_value = "pg_restore"
    )]
    pub pg_restore: PathBuf,

    /// Longest a move's switch may hold a tenant's new requests (they wait in the routers,
    /// they do not fail). A switch that cannot finish in time is undone, and tried again.
    #[arg(hide_short_help = true, help_heading = tenancy::settings::SETTINGS_HEADING, long, env = "MOVE_PAUSE_MAX", default_value = "2s", value_parser = humantime::parse_duration)]
    pub move_pause_max: Duration,

    /// How long a moved tenant's old copy is kept (read-only: its roles cannot log in) before
    /// it is dropped, unless the move was asked to drop it at once (`--drop-source`).
    #[arg(hide_short_help = true, help_heading = tenancy::settings::SETTINGS_HEADING, long, env = "MOVE_SOURCE_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub(crate) move_source_retention: Duration,
}

/// Settings of `tenantctl serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeSettings {
    /// Address the control-plane API and billing webhook listen on.
    #[arg(long, env = "TENANTCTL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of a second listener with only /healthz, /readyz and /metrics and a connection
    /// budget of its own (`HTTP_ADMIN_MAX_CONNECTIONS`), so that health checks answer while
    /// the main listener is flooded. Unset: none (they are on TENANTCTL_LISTEN either way).
    #[arg(long, env = "TENANTCTL_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Header read and idle timeouts and connection limits of the listeners.
    #[command(flatten)]
    pub http: tenancy::listener::HttpSettings,

    /// Signing secret of billing webhooks (Stripe's `whsec_…`). Without it the webhook
    /// endpoint refuses every event.
    #[arg(long, env = "BILLING_WEBHOOK_SECRET", hide_env_values = true)]
    pub billing_webhook_secret: Option<tenancy::secret::Secret>,

    /// Jobs (provisioning and other tenant operations) run at the same time by this process.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 4)]
    pub worker_concurrency: usize,

    /// The routers' admin listeners (their ROUTER_ADMIN_LISTEN, e.g. http://10.0.1.5:9091),
    /// comma-separated: the console shows their pools against their connection budgets. None:
    /// the console has no router picture.
    #[arg(long = "router", env = "TENANTCTL_ROUTERS", value_name = "URL", value_delimiter = ',',
          value_parser = crate::routers::admin_url)]
    pub routers: Vec<String>,

    /// How long to wait for in-flight requests and jobs on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

fn parse_role_prefix(raw: &str) -> Result<String, String> {
    tenancy::domain::RoleName::check_prefix(raw).map(|()| raw.to_owned()).map_err(|e| e.to_string())
}

impl ProvisioningSettings {
    /// Settings with the defaults of every optional flag (for embedding and tests).
    pub fn new(role_prefix: &str, migrations_dir: PathBuf, templates_dir: PathBuf) -> Self {
        Self {
            role_prefix: role_prefix.to_owned(),
            migrations_dir,
            templates_dir,
            deprovision_retention: Duration::from_secs(7 * 24 * 3600),
            archive_dir: None,
            pg_dump: PathBuf::from("pg_dump"),
            pg_restore: PathBuf::from("pg_restore"),
            move_pause_max: Duration::from_secs(2),
            move_source_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
