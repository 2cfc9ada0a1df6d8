//! `tenantctl migrate`: fleet migration runs.

use super::CatalogArgs;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Show what `apply` would do, changing nothing: pending versions per tenant and a
    /// histogram of versions (from the catalog), tenants whose applied migrations differ from
    /// the files (drift), the clusters' template databases (version, pending, drift, and whether
    /// the run migrates them), and whether each cluster has the connections and lock table for
    /// the run.
    Plan(PlanArgs),
    /// Apply pending migrations from TENANT_MIGRATIONS_DIR to the selected active and suspended
    /// tenants, as a new run in the fleet ledger (refused while another run is going). Tenants
    /// the catalog records at the target are skipped without connecting to them. The template
    /// databases are migrated first, by a run over the whole fleet or with --include-templates
    /// only. Exit code 1 when any tenant was not migrated, a template failed (the run fails
    /// before any tenant is started) or the run halted.
    Apply(ApplyArgs),
    /// Continue a run whose process died, that halted, or that ended with failed tenants once
    /// they are fixed: every tenant of the run not migrated yet is migrated (with the run's
    /// options); none is migrated twice.
    Resume(ResumeArgs),
    /// A run's progress from the fleet ledger: its state, its tenants by state, and the
    /// failed ones with their errors (the latest run when no id is given).
    Status(StatusArgs),
    /// Ask a running run to halt, wherever it runs (another terminal, `tenantctl serve`): it
    /// starts no further tenant, lets the running ones finish and ends `halted`. A run whose
    /// process is gone is marked halted at once. `migrate resume` goes on.
    Halt(HaltArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HaltArgs {
    /// The run's id, or a unique prefix of it.
    pub(crate) run: String,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

/// Which tenants a run covers: all active and suspended ones, or those matching every filter.
#[derive(Debug, Args)]
pub(crate) struct SelectionArgs {
    /// Only these tenants (slugs): repeat the flag, or separate them with commas
    /// (`--tenant acme,globex`).
    #[arg(long = "tenant", value_name = "SLUG", value_delimiter = ',')]
    pub(crate) tenants: Vec<tenancy::domain::Slug>,
    /// Only tenants on this plan.
    #[arg(long)]
    pub(crate) plan: Option<tenancy::domain::PlanName>,
    /// Only tenants on this cluster.
    #[arg(long)]
    pub(crate) cluster: Option<tenancy::domain::ClusterName>,
    /// Also migrate the template databases (database tenants are cloned from them) of the
    /// selected tenants' clusters. A run without --tenant, --plan or --cluster always does; any
    /// other run migrates exactly its tenants.
    #[arg(long)]
    pub(crate) include_templates: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) selection: SelectionArgs,
    /// The concurrency the run would use, for the headroom check.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) concurrency: u32,
    /// Skip reading every tenant's history table (no drift check).
    #[arg(long)]
    pub(crate) no_drift: bool,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The run's id (as `migrate apply` and `migrate status` print it), or a unique prefix of it.
    pub(crate) run: String,
    /// Tenants migrated at the same time on each cluster (default: the run's).
    #[arg(long)]
    pub(crate) concurrency: Option<usize>,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The run's id, or a unique prefix of it (e.g. its first 8 characters); the latest run
    /// when omitted.
    pub(crate) run: Option<String>,
    /// List every tenant of the run, not only those not done.
    #[arg(long)]
    pub(crate) all: bool,
    /// Show the run again every --interval until it ends (on a terminal, in place); the exit
    /// code is then 0 for a completed run, 1 otherwise.
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// How often --watch looks again.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) interval: std::time::Duration,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub(crate) selection: SelectionArgs,
    /// Tenants migrated at the same time on each cluster (each on a session of its own).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) concurrency: u32,
    /// Migrate this many tenants first; the rest only if all of them succeed.
    #[arg(long, default_value_t = 0)]
    pub(crate) canary: usize,
    /// Halt the run (start no further tenant) once more than this many tenants failed.
    #[arg(long)]
    pub(crate) max_failures: Option<usize>,
    /// Further attempts for a tenant that hits the lock timeout; it goes to the back of the
    /// queue each time, so it does not delay the others.
    #[arg(long, default_value_t = 3)]
    pub(crate) retries: u32,
    /// lock_timeout of every tenant transaction (e.g. 5s, 500ms; 0 = wait forever).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) lock_timeout: std::time::Duration,
    /// statement_timeout of every tenant transaction (0 = none).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) statement_timeout: std::time::Duration,
    /// One transaction per tenant for all its pending migrations, instead of one per migration.
    #[arg(long)]
    pub(crate) grouped: bool,
    /// Replace a worker's migrator connection after this many tenants.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) tenants_per_connection: u32,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}
