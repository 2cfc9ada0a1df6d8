//! Fleet migrations: apply the migrations directory to every selected tenant, in waves (an
//! optional canary wave first), with bounded parallelism per cluster, one tenant's failure never
//! stopping the others unless `max_failures` says so. Every run is recorded in the fleet ledger
//! ([`crate::catalog::fleet_runs`]) as it goes — one item per tenant — so it can be watched, and a run whose process
//! died can be resumed without redoing what is done. One run at a time.
//!
//! Tenants the catalog records at the target version are marked done without connecting to
//! them; [`plan`] shows what a run would do without changing anything. The clusters' template
//! databases move only with a whole-fleet run or when asked for ([`templates`]); a template that
//! fails to migrate fails the run, before any tenant is started.

mod execute;
pub mod plan;
pub mod templates;

pub use crate::catalog::fleet_runs::Selection;
use crate::catalog::fleet_runs::{self, Candidate, NewItem};
use crate::control_plane::ControlPlane;
use crate::tenant_migrations::{MigrateSettings, TenantMigrations};
use std::time::{Duration, Instant};
use tenancy::catalog::TenantRecord;

/// How a run migrates (recorded with the run; `resume` goes on with the same options).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// Tenants migrated at the same time on each cluster.
    pub concurrency: usize,
    /// Tenants in the canary wave: migrated first; the rest only if all of them succeed.
    pub canary: usize,
    /// Halt the run (no new tenant is started) once more tenants than this have failed.
    pub max_failures: Option<usize>,
    /// Further attempts for a tenant that hit the lock timeout (it goes back to the end of the
    /// queue each time).
    pub retries: u32,
    pub lock_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    /// One transaction per tenant instead of one per migration.
    pub grouped: bool,
    /// A worker's migrator session is replaced after this many tenants, so one backend does not
    /// accumulate the catalog caches of thousands of schemas.
    pub tenants_per_connection: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            canary: 0,
            max_failures: None,
            retries: 3,
            lock_timeout_ms: 5_000,
            statement_timeout_ms: 600_000,
            grouped: false,
            tenants_per_connection: 200,
        }
    }
}

/// The largest timeout PostgreSQL takes (`int4` milliseconds).
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;
/// Retries beyond this keep a locked tenant (and its run) waiting for hours.
const MAX_RETRIES: u32 = 20;

impl RunOptions {
    /// Refuses options PostgreSQL would refuse for every tenant, or that make no sense.
    ///
    /// # Errors
    /// [`FleetError::InvalidOptions`] saying which.
    pub(crate) fn validate(&self) -> Result<(), FleetError> {
        let problem = if !(1..=256).contains(&self.concurrency) {
            format!("concurrency must be 1 to 256, got {}", self.concurrency)
        } else if self.tenants_per_connection == 0 {
            "tenants per connection must be at least 1".to_owned()
        } else if self.retries > MAX_RETRIES {
            format!("retries must be at most {MAX_RETRIES}, got {}", self.retries)
        } else if self.lock_timeout_ms > MAX_TIMEOUT_MS || self.statement_timeout_ms > MAX_TIMEOUT_MS {
            format!("timeouts must be at most {MAX_TIMEOUT_MS} ms")
        } else {
            return Ok(());
        };
        Err(FleetError::InvalidOptions(problem))
    }

    fn migrate_settings(&self) -> MigrateSettings {
        MigrateSettings {
            lock_timeout: (self.lock_timeout_ms > 0).then(|| Duration::from_millis(self.lock_timeout_ms)),
            statement_timeout: (self.statement_timeout_ms > 0)
                .then(|| Duration::from_millis(self.statement_timeout_ms)),
            grouped: self.grouped,
        }
    }
}

/// Which tenants, and how.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub selection: Selection,
    pub run: RunOptions,
}

/// Where a tenant's item of a run is (the ledger's `state`, whose CHECK constraint allows
/// exactly these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Not started yet.
    Pending,
    /// Being migrated (or was, when its run was interrupted).
    Running,
    Done,
    Failed,
    /// Its applied migrations differ from the files; not touched.
    Drift,
    /// Still locked by another session after every retry.
    LockTimeout,
}

impl ItemState {
    pub(crate) const ALL: [Self; 6] =
        [Self::Pending, Self::Running, Self::Done, Self::Failed, Self::Drift, Self::LockTimeout];

    /// Every state but `done`: what `migrate status` lists unless `--all`.
    pub(crate) const NOT_DONE: [Self; 5] =
        [Self::Pending, Self::Running, Self::Failed, Self::Drift, Self::LockTimeout];

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Drift => "drift",
            Self::LockTimeout => "lock_timeout",
        }
    }
}

/// One tenant's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantResult {
    pub slug: String,
    pub(crate) tenant_id: String,
    pub state: ItemState,
    /// The version the tenant was at, when known.
    pub from_version: Option<i64>,
    pub applied: Vec<i64>,
    pub attempts: u32,
    pub error: Option<String>,
    pub(crate) duration_ms: u64,
}

/// The whole run (or, after `resume`, what this invocation did).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    pub run_id: uuid::Uuid,
    /// `completed`; `failed` when any tenant of the run is not migrated, or a template it moves
    /// did not migrate (see `halt_reason`; no tenant was started); `halted` when the run stopped
    /// early (see `halt_reason`).
    pub state: String,
    pub halt_reason: Option<String>,
    pub(crate) target_version: i64,
    /// Tenants in this invocation: worked on, or already at the target.
    pub tenants: usize,
    pub migrated: usize,
    /// At the target already: the catalog said so (no connection), or the history did.
    pub up_to_date: usize,
    pub failed: usize,
    pub drift: usize,
    pub lock_timeout: usize,
    /// Tenants left pending because the run halted.
    pub not_started: usize,
    pub duration_ms: u64,
    /// Tenants per second over the tenants worked on.
    pub rate: f64,
    /// The tenants worked on (not those skipped as up to date), by slug.
    pub results: Vec<TenantResult>,
}

/// Told about the run's progress (drives the progress bar).
pub trait Progress: Sync {
    /// `more` tenants are to be migrated (called again when tenants join the run).
    fn start(&self, more: usize);
    fn tenant_done(&self, result: &TenantResult);
    fn finish(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("catalog unavailable: {0}")]
    Catalog(String),
    #[error("{0}")]
    Migrations(String),
    #[error("another fleet migration is running{}; wait for it, or watch it with `tenantctl migrate status`", .0.map(|id| format!(" (run {id})")).unwrap_or_default())]
    Busy(Option<uuid::Uuid>),
    #[error("no fleet migration run {0}")]
    NoSuchRun(uuid::Uuid),
    #[error("run {run} was for V{run_target} but the migrations directory now ends at V{now}; start a new `migrate apply`")]
    TargetChanged { run: uuid::Uuid, run_target: i64, now: i64 },
    #[error("{0}")]
    InvalidOptions(String),
    #[error("{0:?} is not a run id: give the id `migrate status` prints, or a prefix of it")]
    BadRunId(String),
    #[error("no fleet migration run's id starts with {0:?}")]
    NoRunMatches(String),
    #[error("{prefix:?} matches several runs ({}); give more of the id", .matches.join(", "))]
    AmbiguousRun { prefix: String, matches: Vec<String> },
    #[error("run {run} is {state}, not running: there is nothing to halt")]
    NotRunning { run: uuid::Uuid, state: String },
}

impl tenancy::error::OperationError for FleetError {
    fn kind(&self) -> tenancy::error::ErrorKind {
        use tenancy::error::ErrorKind;
        match self {
            Self::Catalog(_) => ErrorKind::Unavailable,
            Self::Migrations(_) => ErrorKind::Misconfigured,
            Self::Busy(_) | Self::TargetChanged { .. } => ErrorKind::Conflict,
            Self::NoSuchRun(_) | Self::NoRunMatches(_) => ErrorKind::NotFound,
            Self::InvalidOptions(_) => ErrorKind::Invalid,
            Self::NotRunning { .. } => ErrorKind::WrongState,
            Self::BadRunId(_) | Self::AmbiguousRun { .. } => ErrorKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Catalog(_) => "catalog_unavailable",
            Self::Migrations(_) => "invalid_migrations",
            Self::Busy(_) => "run_in_progress",
            Self::TargetChanged { .. } => "target_changed",
            Self::NoSuchRun(_) | Self::NoRunMatches(_) => "not_found",
            Self::InvalidOptions(_) => "invalid_options",
            Self::NotRunning { .. } => "not_running",
            Self::BadRunId(_) => "invalid_run_id",
            Self::AmbiguousRun { .. } => "ambiguous_run_id",
        }
    }
}

fn catalog_error(e: impl std::fmt::Display) -> FleetError {
    FleetError::Catalog(e.to_string())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A run that has started: the lock is held, the run and its items are in the ledger, nothing
/// is migrated yet. [`Begun::execute`] does the work.
pub(crate) struct Begun {
    lock: fleet_runs::RunLock,
    run: uuid::Uuid,
    migrations: TenantMigrations,
    options: RunOptions,
    selection: Selection,
    /// The canary wave and the rest.
    waves: [Vec<TenantRecord>; 2],
    up_to_date: usize,
    started: Instant,
    /// Why migrating the run's templates failed: the run fails without starting a tenant.
    template_failure: Option<String>,
}

/// Starts a new run: takes the run lock, selects the tenants (one catalog query), records the
/// run and migrates the templates it moves (first, so a database tenant provisioned meanwhile
/// is cloned at the target). A template that fails is recorded: [`Begun::execute`] then fails
/// the run without starting a tenant.
///
/// # Errors
/// [`FleetError::Busy`] when another run is going; catalog and migrations errors before
/// anything is recorded.
pub(crate) async fn begin(
    cp: &ControlPlane,
    options: &ApplyOptions,
    created_by: &str,
) -> Result<Begun, FleetError> {
    let started = Instant::now();
    options.run.validate()?;
    let migrations = cp.migrations().map_err(|e| FleetError::Migrations(e.to_string()))?;
    let lock = lock(cp).await?;
    let candidates = {
        let client = cp.catalog.get().await.map_err(catalog_error)?;
        fleet_runs::select(&**client, &options.selection, None).await.map_err(catalog_error)?
    };
    let (items, waves, up_to_date) = plan_items(&candidates, migrations.target_version(), options.run.canary);
    let run = {
        let mut client = cp.catalog.get().await.map_err(catalog_error)?;
        let selection = serde_json::to_value(&options.selection).unwrap_or_default();
        let run_options = serde_json::to_value(&options.run).unwrap_or_default();
        fleet_runs::create_run(
            &mut client,
            created_by,
            migrations.target_version(),
            &selection,
            &run_options,
            &items,
        )
        .await
        .map_err(catalog_error)?
    };
    let template_failure =
        templates::migrate(cp, &migrations, &options.selection, candidates.iter().map(|c| &c.tenant))
            .await
            .err();
    Ok(Begun {
        lock,
        run,
        migrations,
        options: options.run.clone(),
        selection: options.selection.clone(),
        waves,
        up_to_date,
        started,
        template_failure,
    })
}

/// Items for `candidates`: those at `target` done at once, the first `canary` of the others in
/// wave 0, the rest in wave 1. Also the tenants of each wave, and how many are up to date.
fn plan_items(
    candidates: &[Candidate],
    target: i64,
    canary: usize,
) -> (Vec<NewItem<'_>>, [Vec<TenantRecord>; 2], usize) {
    let mut waves = [Vec::new(), Vec::new()];
    let mut up_to_date = 0;
    let items = candidates
        .iter()
        .map(|c| {
            if c.schema_version.is_some_and(|v| v >= target) {
                up_to_date += 1;
                return NewItem { tenant: &c.tenant, wave: 1, done_at: c.schema_version };
            }
            let wave = i16::from(waves[0].len() >= canary);
            waves[usize::from(wave == 1)].push(c.tenant.clone());
            NewItem { tenant: &c.tenant, wave, done_at: None }
        })
        .collect();
    (items, waves, up_to_date)
}

/// Applies pending migrations to every selected tenant, as a new run in the ledger.
///
/// # Errors
/// As [`begin`].
pub async fn apply(
    cp: &ControlPlane,
    options: &ApplyOptions,
    created_by: &str,
    progress: &dyn Progress,
) -> Result<ApplyReport, FleetError> {
    begin(cp, options, created_by).await?.execute(cp, progress).await
}

/// Continues a run whose process died, that halted, or that finished with failures once they
/// are fixed: every tenant not done yet is migrated (canary wave first); done tenants are not
/// touched again. `concurrency` overrides the run's.
///
/// # Errors
/// As [`apply`]; [`FleetError::NoSuchRun`]; [`FleetError::TargetChanged`] when migrations were
/// added since the run began.
pub async fn resume(
    cp: &ControlPlane,
    run: uuid::Uuid,
    concurrency: Option<usize>,
    by: &str,
    progress: &dyn Progress,
) -> Result<ApplyReport, FleetError> {
    resume_begin(cp, run, concurrency, by).await?.execute(cp, progress).await
}

/// The first part of [`resume`]: the run reopened (its halt request cleared) and its tenants
/// planned, ready to [`Begun::execute`].
pub(crate) async fn resume_begin(
    cp: &ControlPlane,
    run: uuid::Uuid,
    concurrency: Option<usize>,
    by: &str,
) -> Result<Begun, FleetError> {
    let started = Instant::now();
    let migrations = cp.migrations().map_err(|e| FleetError::Migrations(e.to_string()))?;
    let lock = lock(cp).await?;
    let client = cp.catalog.get().await.map_err(catalog_error)?;
    let recorded =
        fleet_runs::run(&**client, run).await.map_err(catalog_error)?.ok_or(FleetError::NoSuchRun(run))?;
    if recorded.target_version != migrations.target_version() {
        return Err(FleetError::TargetChanged {
            run,
            run_target: recorded.target_version,
            now: migrations.target_version(),
        });
    }
    let mut options: RunOptions = serde_json::from_value(recorded.options.clone()).unwrap_or_default();
    if let Some(concurrency) = concurrency {
        options.concurrency = concurrency;
    }
    options.validate()?;
    let selection: Selection = serde_json::from_value(recorded.selection.clone()).unwrap_or_default();
    let candidates = fleet_runs::unfinished(&**client, run).await.map_err(catalog_error)?;
    fleet_runs::reopen_run(&**client, run, recorded.halt_requested_by.as_deref())
        .await
        .map_err(catalog_error)?;
    let detail = serde_json::json!({ "run": run, "halted": recorded.halt_reason, "halt_requested_by": recorded.halt_requested_by });
    crate::catalog::audit::record(&**client, by, "migration.resume", None, detail)
        .await
        .map_err(catalog_error)?;
    drop(client);
    let template_failure =
        templates::migrate(cp, &migrations, &selection, candidates.iter().map(|c| &c.tenant)).await.err();
    let target = migrations.target_version();
    let mut waves = [Vec::new(), Vec::new()];
    let mut up_to_date = 0;
    for candidate in candidates {
        if let Some(version) = candidate.schema_version.filter(|v| *v >= target) {
            // Migrated by someone else meanwhile (provisioning): done without connecting.
            let client = cp.catalog.get().await.map_err(catalog_error)?;
            let outcome = fleet_runs::Outcome {
                state: "done",
                from_version: Some(version),
                to_version: Some(version),
                duration_ms: 0,
                error: None,
            };
            fleet_runs::mark_finished(&**client, run, candidate.tenant.id, &outcome)
                .await
                .map_err(catalog_error)?;
            up_to_date += 1;
        } else {
            waves[usize::from(candidate.wave != 0)].push(candidate.tenant);
        }
    }
    Ok(Begun { lock, run, migrations, options, selection, waves, up_to_date, started, template_failure })
}

/// The run whose id is `raw`, or starts with it (at least 4 characters; hex digits and `-`).
///
/// # Errors
/// [`FleetError::BadRunId`], [`FleetError::NoRunMatches`], [`FleetError::AmbiguousRun`].
pub(crate) async fn resolve_run(cp: &ControlPlane, raw: &str) -> Result<uuid::Uuid, FleetError> {
    let prefix = raw.trim().to_ascii_lowercase();
    if let Ok(id) = uuid::Uuid::parse_str(&prefix) {
        return Ok(id);
    }
    if prefix.len() < 4 || prefix.len() > 36 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(FleetError::BadRunId(raw.to_owned()));
    }
    let client = cp.catalog.get().await.map_err(catalog_error)?;
    let matches = fleet_runs::ids_starting_with(&**client, &prefix).await.map_err(catalog_error)?;
    match matches.as_slice() {
        [] => Err(FleetError::NoRunMatches(prefix)),
        [one] => Ok(*one),
        several => Err(FleetError::AmbiguousRun {
            prefix,
            matches: several.iter().map(uuid::Uuid::to_string).collect(),
        }),
    }
}

/// Asks run `run` to halt, as `by`: the process running it starts no more tenants (those
/// running finish) and records the run `halted`. A run whose process is gone is recorded
/// halted at once, once it is sure no process runs it (it holds the run lock meanwhile).
///
/// # Errors
/// [`FleetError::NoSuchRun`]; [`FleetError::NotRunning`] for a run that ended.
pub(crate) async fn halt(cp: &ControlPlane, run: uuid::Uuid, by: &str) -> Result<RunStatus, FleetError> {
    let status = self::status(cp, Some(run), Some(&[])).await?.ok_or(FleetError::NoSuchRun(run))?;
    if !matches!(status.state.as_str(), "running" | "interrupted") {
        return Err(FleetError::NotRunning { run, state: status.state });
    }
    {
        // Recorded first, whatever happens next: a process running the run (or resuming it
        // right now) sees it before it starts its next tenant.
        let client = cp.catalog.get().await.map_err(catalog_error)?;
        if fleet_runs::request_halt(&**client, run, by).await.map_err(catalog_error)? {
            crate::catalog::audit::record(
                &**client,
                by,
                "migration.halt",
                None,
                serde_json::json!({ "run": run }),
            )
            .await
            .map_err(catalog_error)?;
        }
    }
    if status.state == "interrupted" {
        // Nobody runs it if the run lock is free: then it is ended here. Held, some process
        // runs (or just resumed) it, and it will see the request.
        if let Ok(lock) = lock(cp).await {
            let reason = format!("halted by {by} while its process was gone (resume it to go on)");
            let client = cp.catalog.get().await.map_err(catalog_error)?;
            let ended = fleet_runs::finish_run(&**client, run, Some(&reason)).await;
            drop(client);
            lock.release().await;
            ended.map_err(catalog_error)?;
        }
    }
    self::status(cp, Some(run), Some(&[])).await?.ok_or(FleetError::NoSuchRun(run))
}

impl Begun {
    pub(crate) fn run_id(&self) -> uuid::Uuid {
        self.run
    }

    /// Ends a run that failed before any tenant was started (a template did not migrate):
    /// recorded as failed with `reason`, its tenants left pending for `resume`.
    async fn fail(self, cp: &ControlPlane, reason: String) -> Result<ApplyReport, FleetError> {
        {
            let client = cp.catalog.get().await.map_err(catalog_error)?;
            fleet_runs::fail_run(&**client, self.run, &reason).await.map_err(catalog_error)?;
        }
        self.lock.release().await;
        let not_started = self.waves.iter().map(Vec::len).sum::<usize>();
        Ok(ApplyReport {
            run_id: self.run,
            state: "failed".to_owned(),
            halt_reason: Some(reason),
            target_version: self.migrations.target_version(),
            tenants: self.up_to_date + not_started,
            migrated: 0,
            up_to_date: self.up_to_date,
            failed: 0,
            drift: 0,
            lock_timeout: 0,
            not_started,
            duration_ms: millis(self.started.elapsed()),
            rate: 0.0,
            results: Vec::new(),
        })
    }

    /// Migrates the run's tenants: the canary wave, then (if it succeeded) the rest, then any
    /// tenant of the selection that became live meanwhile and is not at the target.
    ///
    /// # Errors
    /// The catalog failing while the ledger is written (the run can be resumed).
    pub(crate) async fn execute(
        mut self,
        cp: &ControlPlane,
        progress: &dyn Progress,
    ) -> Result<ApplyReport, FleetError> {
        if let Some(reason) = self.template_failure.take() {
            return self.fail(cp, reason).await;
        }
        let [canary, rest] = self.waves;
        let exec = execute::Execution::new(cp, &self.migrations, self.run, &self.options, progress);
        let mut planned = canary.len() + rest.len();
        progress.start(planned);
        let canary_size = canary.len();
        let mut results = exec.wave(canary).await?;
        let mut halt_reason = None;
        let canary_failed = results.iter().filter(|r| r.state != ItemState::Done).count();
        if canary_failed > 0 {
            halt_reason = Some(format!(
                "the canary wave failed ({canary_failed} of {canary_size} tenants not migrated); \
                 the other {} tenants were not started",
                rest.len()
            ));
        } else {
            results.extend(exec.wave(rest).await?);
        }
        let mut up_to_date = self.up_to_date;
        if halt_reason.is_none() && !exec.halted() {
            // Tenants that became live while the run went, with a schema below the target.
            for _ in 0..3 {
                let candidates = {
                    let client = cp.catalog.get().await.map_err(catalog_error)?;
                    fleet_runs::select(&**client, &self.selection, Some(self.run))
                        .await
                        .map_err(catalog_error)?
                };
                if candidates.is_empty() || exec.halted() {
                    break;
                }
                let target = self.migrations.target_version();
                let (items, [_, newcomers], at_target) = plan_items(&candidates, target, 0);
                {
                    let mut client = cp.catalog.get().await.map_err(catalog_error)?;
                    fleet_runs::add_items(&mut client, self.run, &items).await.map_err(catalog_error)?;
                }
                planned += newcomers.len();
                up_to_date += at_target;
                progress.start(newcomers.len());
                results.extend(exec.wave(newcomers).await?);
            }
        }
        if let Some(by) = exec.halt_requested_by() {
            halt_reason =
                Some(format!("halted by {by}; the run stopped starting tenants (resume it to go on)"));
        } else if let Some(max) = exec.halted().then_some(self.options.max_failures).flatten() {
            halt_reason = Some(format!("more than {max} tenants failed; the run stopped starting tenants"));
        }
        progress.finish();
        let state = {
            let client = cp.catalog.get().await.map_err(catalog_error)?;
            fleet_runs::finish_run(&**client, self.run, halt_reason.as_deref())
                .await
                .map_err(catalog_error)?
        };
        self.lock.release().await;
        results.sort_by(|a, b| a.slug.cmp(&b.slug));
        let count = |state: ItemState| results.iter().filter(|r| r.state == state).count();
        let migrated = results.iter().filter(|r| r.state == ItemState::Done && !r.applied.is_empty()).count();
        let elapsed = self.started.elapsed();
        Ok(ApplyReport {
            run_id: self.run,
            state,
            halt_reason,
            target_version: self.migrations.target_version(),
            tenants: up_to_date + planned,
            migrated,
            up_to_date: up_to_date + count(ItemState::Done) - migrated,
            failed: count(ItemState::Failed),
            drift: count(ItemState::Drift),
            lock_timeout: count(ItemState::LockTimeout),
            not_started: planned - results.len(),
            duration_ms: millis(elapsed),
            rate: results.len() as f64 / elapsed.as_secs_f64().max(0.001),
            results,
        })
    }
}

/// A run as `migrate status` and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RunStatus {
    pub(crate) run: fleet_runs::Run,
    /// The run's state, or `interrupted` for a run marked running that no process holds.
    pub(crate) state: String,
    /// Items by state.
    pub(crate) counts: std::collections::BTreeMap<String, i64>,
    pub(crate) items: Vec<fleet_runs::Item>,
}

/// A run's status (the latest run without `run`), with its items in `states` (all without).
///
/// # Errors
/// The catalog being unavailable.
pub(crate) async fn status(
    cp: &ControlPlane,
    run: Option<uuid::Uuid>,
    states: Option<&[ItemState]>,
) -> Result<Option<RunStatus>, FleetError> {
    let client = cp.catalog.get().await.map_err(catalog_error)?;
    // Which run is going, first: a run that ends between these reads and the run's own row
    // shows as finished (its row, read last, already says how it ended), not as interrupted.
    // Only the newest running run can hold the lock; an older one still marked running was
    // interrupted, whatever runs now.
    let live = if fleet_runs::is_locked(&**client).await.map_err(catalog_error)? {
        fleet_runs::newest_running(&**client).await.map_err(catalog_error)?
    } else {
        None
    };
    let recorded = match run {
        Some(id) => fleet_runs::run(&**client, id).await,
        None => fleet_runs::latest_run(&**client).await,
    }
    .map_err(catalog_error)?;
    let Some(run) = recorded else { return Ok(None) };
    let counts = fleet_runs::counts(&**client, run.id).await.map_err(catalog_error)?.into_iter().collect();
    let items = fleet_runs::items(&**client, run.id, states).await.map_err(catalog_error)?;
    let interrupted = run.state == "running" && live != Some(run.id);
    let state = if interrupted { "interrupted".to_owned() } else { run.state.clone() };
    Ok(Some(RunStatus { run, state, counts, items }))
}

/// The run lock, or [`FleetError::Busy`] naming the run that holds it.
async fn lock(cp: &ControlPlane) -> Result<fleet_runs::RunLock, FleetError> {
    let client = cp.catalog.get().await.map_err(catalog_error)?;
    fleet_runs::try_lock(client).await.map_err(catalog_error)?.map_err(FleetError::Busy)
}
