//! The `tenantctl` command line (clap). Each command is a thin shell over the library: the API
//! and the CLI call the same functions.

mod billing;
mod migrate;

pub(crate) use billing::*;
pub(crate) use migrate::*;

use crate::settings::{ProvisioningSettings, ServeSettings};
use clap::{Args, Parser, Subcommand};
use tenancy::settings::CommonSettings;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation ran and failed (e.g. provisioning failed, some tenants failed to migrate)
  2  usage error (unknown flag, missing argument)
  3  invalid input (bad slug, unknown plan, malformed value)
  4  not found
  5  conflict (duplicate slug or subscription)
  6  a dependency is unavailable (catalog, secret store, webhook endpoint)
  7  timed out waiting (--timeout): the work stays queued, a running `tenantctl serve` does it

Every command takes -o table|wide|json|yaml (or --json). `-h` shows a command's own options;
`--help` also the global ones and the settings (catalog, Redis, secret store, directories), each
of which can be set from its environment variable instead.";

/// tenantctl: the control plane of schema-per-tenant PostgreSQL.
///
/// Provisions tenants (role, schema, migrations, plan template, credentials, domains), receives
/// billing webhooks, and applies migrations across the fleet. Every flag can also be set with
/// the environment variable shown in its help.
#[derive(Debug, Parser)]
#[command(name = "tenantctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables (errors too); anywhere on the command
    /// line, e.g. `tenantctl tenants list --json`. The same as `-o json`.
    #[arg(long, global = true, help_heading = "Global options", hide_short_help = true)]
    pub(crate) json: bool,
    /// Go through the operator API with this saved context (`tenantctl login`) rather than
    /// the catalog; without it, commands use the current context when no DATABASE_URL is given.
    #[arg(
        long,
        global = true,
        env = "TENANTCTL_CONTEXT",
        help_heading = "Global options",
        hide_short_help = true
    )]
    pub(crate) context: Option<String>,
    /// Output format: table (default), wide (more columns), json or yaml (errors too).
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        value_name = "FORMAT",
        conflicts_with = "json",
        help_heading = "Global options",
        hide_short_help = true
    )]
    pub(crate) output: Option<crate::output::Format>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The output format asked for (`--json` is `-o json`).
    pub(crate) fn format(&self) -> crate::output::Format {
        self.output.unwrap_or(if self.json {
            crate::output::Format::Json
        } else {
            crate::output::Format::Table
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the control-plane API, the billing webhook and the provisioning workers.
    Serve(ServeArgs),
    /// Create and inspect tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Apply tenant schema migrations across the fleet.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Send signed test billing events (like `stripe trigger`).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Received billing events and what the control plane did with them.
    #[command(subcommand)]
    Billing(BillingCommand),
    /// Manage bearer tokens of the operator API.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Register and list the PostgreSQL clusters that hold tenants.
    #[command(subcommand)]
    Clusters(ClustersCommand),
    /// The routers: the catalog credentials they use, and their connection pools.
    #[command(subcommand)]
    Routers(RoutersCommand),
    /// Plan templates: carry a new template version into the tenants built from it.
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Save a context: an operator API (--api-url) and a token for it (checked with the API),
    /// and make it the current one, as `kubectl config` keeps clusters. With a current context
    /// and no DATABASE_URL, `tenants`, `migrate`, `tokens` and `audit` commands go through the
    /// API with that token (its scope applies); `--context` picks another.
    Login(LoginArgs),
    /// Forget a context and its token (the current one, or --context). The token still works
    /// until it is revoked.
    Logout,
    /// The saved contexts.
    #[command(subcommand)]
    Config(ContextsCommand),
    /// Check the configuration and what it points at, changing nothing: the migrations and
    /// templates directories, the catalog (reachable, its schema against this tenantctl's),
    /// Redis, the secret store and its key (it reads one tenant's credentials back), and the
    /// fleet (tenants behind the newest migration, failed ones). Each problem comes with what
    /// to do. Exit code 1 when any check fails (warnings do not).
    Doctor(CatalogArgs),
    /// Print a completion script for your shell, e.g. `source <(tenantctl completion bash)` in
    /// ~/.bashrc, `tenantctl completion zsh > "${fpath[1]}/_tenantctl"`, or `tenantctl completion
    /// fish > ~/.config/fish/completions/tenantctl.fish`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The audit log, newest first: who changed which tenant (operators, billing events), and
    /// every access by the platform's internal users to a tenant through a router (action
    /// `tenant.access`, actor `user:<id>`, with the role, door, read or write, and request).
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The operator API, e.g. https://ops.example.com (what `tenantctl serve` listens on).
    #[arg(long)]
    pub(crate) api_url: String,
    /// The token (`tenantctl tokens create`); without it, one is read from standard input, so
    /// that it need not be in your shell's history.
    #[arg(long, env = "TENANTCTL_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<tenancy::secret::Secret>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContextsCommand {
    /// The saved contexts; the current one is marked.
    GetContexts,
    /// The current context's name.
    CurrentContext,
    /// Make a saved context the current one.
    UseContext {
        /// The context's name (as `config get-contexts` lists it).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TemplatesCommand {
    /// Bring tenants' profiles (their config: modules, module settings, theme) to their
    /// template's current version with a three-way merge: the template's changes to keys the
    /// tenant did not touch are taken, the tenant's own edits are kept, and a key both changed
    /// is a conflict — resolved by --prefer, or else the tenant is left as it is and reported.
    /// A merge that does not match the template's schema leaves the tenant as it is too.
    /// Tenants that opted out (`tenants template-upgrades <slug> off`) are skipped unless named
    /// with --tenant. One row per tenant: its outcome (up_to_date, upgraded, conflicts, invalid,
    /// opted_out, other_template, error) and the conflicting keys. Exit code 5 when a tenant is
    /// left with conflicts or an invalid merge (0 in a dry run), 1 when one could not be
    /// upgraded (the others are still tried).
    Upgrade(UpgradeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UpgradeArgs {
    /// Only tenants of this plan's template.
    #[arg(long)]
    pub(crate) plan: Option<String>,
    /// Only this tenant (slug; repeat for several), even if it opted out.
    #[arg(long = "tenant")]
    pub(crate) tenants: Vec<String>,
    /// Show what would change; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Resolve conflicts with the template's value or the tenant's (unset: leave such tenants
    /// as they are).
    #[arg(long, value_enum)]
    pub(crate) prefer: Option<crate::profile::merge::Prefer>,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only entries about these tenants (slugs): repeat the flag, or separate them with commas.
    #[arg(long = "tenant", value_name = "SLUG", value_delimiter = ',')]
    pub(crate) tenants: Vec<String>,
    /// Only entries by this actor: an operator token's name, `billing`, or `user:<id>`.
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// Only this action, e.g. `tenant.access` or `tenant.suspend`.
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Only entries from this long ago or later (e.g. `1h`, `7days`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) since: Option<std::time::Duration>,
    /// At most this many entries.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub(crate) limit: i64,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RouterCredentialsArgs {
    #[command(flatten)]
    pub(crate) confirm: ConfirmArgs,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RoutersCommand {
    /// Give the routers' catalog role (`<TENANT_ROLE_PREFIX>_router`, which may read routing
    /// records and nothing else) a new password, and print the DATABASE_URL routers should use.
    /// Routers with the old password lose the catalog at once: update their DATABASE_URL (e.g.
    /// `aws secretsmanager put-secret-value`) and restart them. The URL holds a password: it is
    /// printed to standard output only.
    Credentials(Box<RouterCredentialsArgs>),
    /// Each router's connection pools now, like PgBouncer's SHOW POOLS (from `GET /pools` on its
    /// admin listener). First a line per router for its connection budget: MAX
    /// (ROUTER_MAX_CONNECTIONS), CONNECTIONS counted against it, of which ACTIVE (serving a
    /// request or a client's transaction), IDLE, OPENING and CLOSING (closed, not yet let go
    /// of by PostgreSQL), WAITING (requests and clients waiting for a connection) and POOLS.
    /// Then a row per pool (one per tenant, access and door): SIZE (most connections it may
    /// hold), ACTIVE, IDLE, OPENING, WAITING, MAXWAIT_MS (how long the first waiting client
    /// has waited), GEN (the tenant's generation the pool was built for) and AGE_S. A router
    /// that does not answer is reported on stderr and makes the exit code 6; the others are
    /// still shown.
    Pools(RouterAdminArgs),
    /// Each pool's counters since it was built, like PgBouncer's SHOW STATS (from `GET /stats`
    /// on each router's admin listener): CHECKOUTS (connections handed out: one per HTTP
    /// request; on the PostgreSQL door one per client transaction plus one per login),
    /// WAIT_MS (their total wait for a connection), TIMEOUTS (checkouts that got none within
    /// ROUTER_CHECKOUT_TIMEOUT), XACTS (PostgreSQL door: client transactions), and connections
    /// OPENED, CLOSED after use (broken or not reusable), EXPIRED (idle timeout) and RECLAIMED
    /// (closed to make room for another tenant's). A pool rebuilt after a change to its tenant,
    /// or forgotten after ROUTER_POOL_IDLE_TIMEOUT unused, starts again from zero. A router
    /// that does not answer is reported on stderr and makes the exit code 6.
    Stats(RouterAdminArgs),
}

/// Which routers to ask, and about which tenant.
#[derive(Debug, Args)]
pub(crate) struct RouterAdminArgs {
    /// A router's admin listener (its ROUTER_ADMIN_LISTEN), e.g. http://10.0.1.5:9091 or
    /// 10.0.1.5:9091; repeat the flag for several routers (the variable takes a comma-separated
    /// list).
    #[arg(
        long = "router",
        env = "TENANTCTL_ROUTERS",
        value_name = "URL",
        value_delimiter = ',',
        required = true
    )]
    pub(crate) routers: Vec<String>,
    /// Only these tenants' pools (slugs): repeat the flag, or separate them with commas.
    #[arg(long = "tenant", value_name = "SLUG", value_delimiter = ',')]
    pub(crate) tenants: Vec<String>,
    /// Give up on a router that has not answered after this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: std::time::Duration,
    /// Ask again every --interval until interrupted (on a terminal, in place).
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// How often --watch asks.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) interval: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClustersCommand {
    /// Register a cluster: its admin connection is checked, then kept in the secret store. New
    /// tenants go to the least loaded cluster (tenants / capacity) that has room.
    Add(AddClusterArgs),
    /// List clusters with their load.
    List(CatalogArgs),
    /// Empty a cluster: it takes no new tenants, and each of its active tenants is moved to
    /// another cluster (`--to`, or the least loaded with room), a few at a time, with a line
    /// per tenant as its move ends. Exits 1 if any tenant is left.
    Drain(DrainArgs),
    /// Retire an empty cluster (no tenants, no move running from or to it, no old copy kept on
    /// it): its admin secret is deleted, and it is no longer listed or used.
    Remove(RemoveClusterArgs),
    /// Open a drained (or draining) cluster to new tenants and moves again, as `kubectl
    /// uncordon` does a node. Tenants a drain moved away stay where they went; a drain still
    /// running goes on moving the tenants it started with.
    Undrain(ClusterArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    /// The cluster to empty.
    pub(crate) name: String,
    /// Move every tenant to this cluster (default: each to the least loaded with room).
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Moves at a time.
    #[arg(long, default_value_t = 2)]
    pub(crate) concurrency: usize,
    /// Drop each tenant's old copy right after its switch (else after MOVE_SOURCE_RETENTION),
    /// so the cluster can be removed at once.
    #[arg(long)]
    pub(crate) drop_source: bool,
    /// How each tenant's data is copied (see `tenants move --help`).
    #[arg(long, value_parser = ["replication", "dump"], default_value = "replication")]
    pub(crate) method: String,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveClusterArgs {
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
    #[command(flatten)]
    pub(crate) confirm: ConfirmArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// The cluster's name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AddClusterArgs {
    /// Cluster name (a-z, 0-9, '-').
    #[arg(long)]
    pub(crate) name: String,
    /// Admin connection URL (a role that may create roles and schemas), e.g.
    /// postgres://admin:password@db.internal:5432/tenants.
    #[arg(long, env = "CLUSTER_ADMIN_URL", hide_env_values = true)]
    pub(crate) url: tenancy::secret::Secret,
    /// Most tenants this cluster takes.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) capacity: i32,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a token and print it (only now: the catalog keeps just its hash).
    Create(TokenArgs),
    /// The tokens (never the tokens themselves): name, scope, state (active, expired,
    /// revoked), expiry, last use.
    List(TokenListArgs),
    /// Revoke a token by its id (from `tokens list`): its next request is refused.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// Who or what the token is for; recorded as the actor in the audit log.
    #[arg(long)]
    pub(crate) name: String,
    /// What the token may do: read_only (sees everything, changes nothing), operator (runs
    /// the fleet: tenants, migrations, moves) or admin (also manages tokens).
    #[arg(long, value_enum, default_value_t = crate::catalog::tokens::Scope::Operator)]
    pub(crate) scope: crate::catalog::tokens::Scope,
    /// Lifetime, e.g. 90d or 12h (1 minute to 10 years); without it the token lives until
    /// revoked.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) expires_in: Option<std::time::Duration>,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct TokenListArgs {
    /// Also revoked tokens.
    #[arg(long)]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct TokenRevokeArgs {
    /// The token's id (the ID column of `tokens list`).
    pub(crate) id: i64,
    #[command(flatten)]
    pub(crate) confirm: ConfirmArgs,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) common: CommonSettings,
    #[command(flatten)]
    pub(crate) provisioning: ProvisioningSettings,
    #[command(flatten)]
    pub(crate) serve: ServeSettings,
}

/// Settings every catalog command needs.
#[derive(Debug, Args)]
pub(crate) struct CatalogArgs {
    #[command(flatten)]
    pub(crate) common: CommonSettings,
    #[command(flatten)]
    pub(crate) provisioning: ProvisioningSettings,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Create a tenant and (unless --no-wait) provision it now: role, schema, migrations,
    /// template, credentials, domains.
    Create(CreateArgs),
    /// List tenants.
    List(ListArgs),
    /// Show one tenant (--watch: until it is no longer provisioning or being deleted).
    Show(WatchedArgs),
    /// Print a tenant's connection string (includes its password: handle with care). Usable
    /// as `Neon-Connection-String` for the router's POST /sql.
    ConnectionString(ConnectionStringArgs),
    /// Suspend a tenant: its role can no longer log in, its sessions end, routers answer 403.
    Suspend(OperationArgs),
    /// Resume a suspended tenant.
    Resume(OperationArgs),
    /// Move a tenant to another plan: new pool size, rate limit, config (no data is moved).
    SetPlan(SetPlanArgs),
    /// Give a tenant a new password (secret first, then its role); routers pick it up.
    RotateCredentials(OperationArgs),
    /// Deprovision a tenant: routers answer 404 at once; after the retention period its schema,
    /// role and secret are dropped (archived first with DEPROVISION_ARCHIVE_DIR) and a tombstone
    /// stays in the catalog. Deleting a tenant that is already being deprovisioned moves its
    /// drop to the new retention (e.g. `--retention 0s`: now).
    Delete(DeleteArgs),
    /// Bring a tenant that is being deprovisioned back, before its data is dropped: the drop is
    /// cancelled and the tenant gets the status it had before the delete (active, suspended).
    Restore(OperationArgs),
    /// Provision a failed tenant again, from the step that failed.
    Retry(OperationArgs),
    /// List a tenant's host names (its subdomain and custom domains).
    Domains(ShowArgs),
    /// Let a tenant be reached at a host name of its own (e.g. shop.acme.com).
    AddDomain(DomainArgs),
    /// Remove a custom domain from a tenant.
    RemoveDomain(DomainArgs),
    /// Move a tenant to another cluster, or into a database of its own (or back into a
    /// schema), while it is in use: its tables are copied with logical replication, then its
    /// new requests are held for a short switch (at most MOVE_PAUSE_MAX) and released to the
    /// new place. Its old copy is kept, unable to log in, for MOVE_SOURCE_RETENTION. Where the
    /// source has no logical replication, `--method dump` copies it with pg_dump/pg_restore
    /// while its writes wait.
    Move(MoveArgs),
    /// List a tenant's moves, newest first (--watch: until none is running).
    Moves(WatchedArgs),
    /// A tenant's profile (its config: modules, module settings, theme, contacts): get, set or
    /// edit it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Whether `templates upgrade` upgrades this tenant's profile without it being named (on,
    /// the default) or leaves it as it is (off: upgraded only when named with --tenant, or by a
    /// plan change).
    TemplateUpgrades(TemplateUpgradesArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the tenant's config (JSON). With --json: also its display name, its data source
    /// (cluster, isolation, schema, database), its template, the template version its config
    /// was last built from, and whether template upgrades apply to it.
    Get(ShowArgs),
    /// Change the tenant's config: --merge applies a JSON merge patch (RFC 7386: objects merge
    /// key by key, null removes a key), --file replaces it with a file's JSON object (`-`:
    /// standard input). Routers see the change at once.
    Set(ConfigSetArgs),
    /// Open the tenant's config in $VISUAL or $EDITOR (vi by default) and save what you leave
    /// there, as kubectl edit does: unchanged or empty, nothing is saved; invalid JSON is refused
    /// (your edit is kept in the file named); changed by someone else meanwhile, nothing is saved
    /// (exit 5).
    Edit(ShowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ConfigSetArgs {
    /// The tenant's slug.
    pub(crate) slug: String,
    /// A JSON merge patch, e.g. '{"theme": {"logo": "acme.svg"}, "beta": null}'.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub(crate) merge: Option<String>,
    /// A file holding the whole new config (a JSON object); `-` reads standard input.
    #[arg(long)]
    pub(crate) file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct TemplateUpgradesArgs {
    /// The tenant's slug.
    pub(crate) slug: String,
    /// `on` or `off`.
    #[arg(value_parser = ["on", "off"])]
    pub(crate) state: String,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct MoveArgs {
    /// The tenant's slug.
    pub(crate) slug: String,
    /// The cluster to move it to (default: the one it is on).
    #[arg(long, conflicts_with = "abort")]
    pub(crate) to_cluster: Option<String>,
    /// `schema` (a schema in the cluster's shared database) or `database` (its own database);
    /// default: the isolation it has.
    #[arg(long, value_parser = ["schema", "database"], conflicts_with = "abort")]
    pub(crate) isolation: Option<String>,
    /// Drop the old copy right after the switch instead of keeping it for the retention period.
    #[arg(long, conflicts_with = "abort")]
    pub(crate) drop_source: bool,
    /// How the tenant's data is copied. `replication`: PostgreSQL's logical replication (the
    /// source needs wal_level = logical); the tenant reads and writes throughout, and only its
    /// switch pauses it. `dump`: pg_dump piped into pg_restore (PG_DUMP, PG_RESTORE), for a
    /// source without logical replication; the tenant's reads go on while its data is copied,
    /// its writes wait for the copy (one still waiting at the switch fails with SQLSTATE 57014
    /// and may be sent again).
    #[arg(long, value_parser = ["replication", "dump"], default_value = "replication", conflicts_with = "abort")]
    pub(crate) method: String,
    /// Stop the tenant's running move before its switch: what it made is removed and the
    /// tenant stays where it is.
    #[arg(long)]
    pub(crate) abort: bool,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DomainArgs {
    /// The tenant's slug.
    pub(crate) slug: String,
    /// The host name.
    #[arg(long)]
    pub(crate) host: String,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct OperationArgs {
    /// The tenant's slug.
    pub(crate) slug: String,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

/// A dangerous command asks to be confirmed when run on a terminal.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct ConfirmArgs {
    /// Do not ask for confirmation (commands run without a terminal never ask).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

/// A tenant's status, once or (`--watch`) again and again.
#[derive(Debug, Args)]
pub(crate) struct WatchedArgs {
    /// The tenant's slug.
    pub(crate) slug: String,
    /// Show it again every --interval until what it shows has settled (on a terminal, in
    /// place); the exit code is then 1 if it failed.
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// How often --watch looks again.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) interval: std::time::Duration,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

impl WatchedArgs {
    /// The interval to watch at, with `--watch`.
    pub(crate) fn watching(&self) -> Option<std::time::Duration> {
        self.watch.then_some(self.interval)
    }
}

/// Whether and how long a command waits for the work it queued.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct WaitArgs {
    /// Only queue the work (a running `tenantctl serve` does it).
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Give up waiting after this long (exit code 7; the work stays queued).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct SetPlanArgs {
    /// The new plan.
    #[arg(long)]
    pub(crate) plan: String,
    #[command(flatten)]
    pub(crate) operation: OperationArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Keep the data this long before dropping it (default DEPROVISION_RETENTION); `0s` drops
    /// it now.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) retention: Option<std::time::Duration>,
    #[command(flatten)]
    pub(crate) confirm: ConfirmArgs,
    #[command(flatten)]
    pub(crate) operation: OperationArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The tenant's slug: 3-63 characters of a-z, 0-9 and '-', starting with a letter; it
    /// becomes the subdomain <slug>.<TENANT_BASE_DOMAIN>.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) slug: String,
    /// Plan: the name of a template in TENANT_TEMPLATES_DIR (starter, pro, enterprise, …).
    #[arg(long)]
    pub(crate) plan: String,
    /// Display name (default: the slug).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// `schema` (a schema in the cluster's shared database) or `database` (a database of its
    /// own); default: what the plan's template says.
    #[arg(long)]
    pub(crate) isolation: Option<tenancy::domain::Isolation>,
    /// Place it on this cluster (default: the least loaded with room); `tenants move` moves it
    /// later.
    #[arg(long)]
    pub(crate) cluster: Option<String>,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only tenants with this status.
    #[arg(long)]
    pub(crate) status: Option<tenancy::domain::TenantStatus>,
    /// Only tenants on this plan.
    #[arg(long)]
    pub(crate) plan: Option<tenancy::domain::PlanName>,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectionStringArgs {
    /// Print a psql command that connects through a router's PostgreSQL listener, as printed
    /// (the password in it: handle with care), instead of the connection string.
    #[arg(long)]
    pub(crate) psql: bool,
    /// The routers' PostgreSQL host for --psql (default: the tenant's host, <slug>.<base
    /// domain>, which names it by TLS SNI).
    #[arg(long, env = "TENANTCTL_PG_HOST")]
    pub(crate) pg_host: Option<String>,
    /// The routers' PostgreSQL port for --psql.
    #[arg(long, env = "TENANTCTL_PG_PORT", default_value_t = 6432)]
    pub(crate) pg_port: u16,
    /// libpq's sslmode for --psql: require, verify-full, … (disable only for a local router
    /// with ROUTER_PG_ALLOW_PLAINTEXT).
    #[arg(long, env = "TENANTCTL_PG_SSLMODE", default_value = "require",
          value_parser = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])]
    pub(crate) pg_sslmode: String,
    #[command(flatten)]
    pub(crate) show: ShowArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The tenant's slug.
    pub(crate) slug: String,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory as _;

    /// The bash completion script loads in bash and completes `tenantctl`'s commands.
    #[test]
    fn completion_scripts_load_in_their_shell() {
        let mut script = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut Cli::command(), "tenantctl", &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("templates") && script.contains("audit"), "subcommands completed");
        let dir = std::env::temp_dir().join(format!("tenantctl-completion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tenantctl.bash");
        std::fs::write(&file, &script).unwrap();
        let loaded = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p tenantctl", file.display()))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
        assert!(String::from_utf8_lossy(&loaded.stdout).contains("tenantctl"));
    }

    /// The configuration names terraform and operators rely on are all in `serve --help`.
    #[test]
    fn serve_help_lists_the_fixed_configuration_names() {
        let mut command = Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        for name in tenancy::settings::SHARED_ENV_NAMES
            .iter()
            .copied()
            .chain(["TENANTCTL_LISTEN", "BILLING_WEBHOOK_SECRET"])
        {
            assert!(help.contains(&format!("[env: {name}")), "{name} missing from `tenantctl serve --help`");
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
