//! Tenant moves: a tenant's data goes to another placement (another cluster, its own database
//! or back into a schema) while it is in use, and the tenant is switched over with a pause of
//! its new requests that routers hold (they wait, they do not fail).
//!
//! A move is a durable state machine (`control.tenant_moves`, run by a `move` job), each step
//! safe to run again after a crash:
//!
//! 1. **target** — the tenant's roles, schema or database and credentials where it goes, at its
//!    schema version, under names of the move's own ([`tenancy::domain::RoleName::for_move`]);
//!    the tables keep their schema's name while they are copied (logical replication matches
//!    tables by name).
//! 2. **published** — on the source, a publication of the tenant's tables and a logical
//!    replication slot ([`replication`]).
//! 3. **subscribed** — on the target, a subscription: the initial copy, then streaming.
//! 4. **copied** — every table copied.
//! 5. **locked** — the switch's first half ([`switch`]): the tenant paused, its transactions on
//!    the source finished (or ended after a grace period), its roles there unable to log in,
//!    and everything they committed applied on the target. Until here a move can be aborted,
//!    and a switch that takes longer than `MOVE_PAUSE_MAX` is undone and tried again.
//! 6. **switched** — sequences carried over, the subscription dropped, and in one catalog
//!    transaction the tenant's placement, credentials and generation changed and its pause
//!    lifted: routers send the held requests to the target.
//! 7. **done** — the replication objects removed; the source (read-only: its roles cannot log
//!    in) is dropped after `MOVE_SOURCE_RETENTION`, or at once with `--drop-source`.
//!
//! An abort (or a failure that trying again cannot mend) before the switch removes everything
//! the move made and leaves the tenant where it was.
//!
//! Where logical replication is not available, a move chosen with [`MoveMethod::Dump`] copies
//! the tenant with `pg_dump` and `pg_restore` instead ([`dump`]): steps 2 to 5 become one, in
//! which the tenant's writes wait while its data is copied, and which starts again from the
//! beginning if it is cut short.

mod dump;
mod replication;
mod run;
mod switch;
pub(crate) mod view;

pub use crate::catalog::moves::{MoveRecord, MoveState, Placement};
pub(crate) use run::{drop_source, run};

use crate::catalog::{audit, jobs, moves, tenants};
use crate::control_plane::ControlPlane;
use crate::jobs::JobKind;
pub use tenancy::domain::MoveMethod;
use tenancy::domain::{DatabaseName, Isolation, SchemaName, Slug, TenantStatus};
use tenancy::error::{ErrorKind, OperationError};
use tenancy::secrets::SecretName;

/// Why a move could not start, go on or stop.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no tenant {0}")]
    NotFound(String),
    #[error("tenant is {0}; only an active tenant can be moved")]
    WrongState(TenantStatus),
    #[error("tenant {slug} is already on cluster {cluster} with {isolation} isolation")]
    AlreadyThere { slug: String, cluster: String, isolation: &'static str },
    #[error("no cluster {0} is registered")]
    UnknownCluster(String),
    #[error("tenant {slug} is being moved already (move {id}); wait for it, or abort it with --abort")]
    Running { slug: String, id: i64 },
    #[error("cluster {cluster} has wal_level = {wal_level}: logical replication is not available there; set wal_level = logical (and restart it), or move with --method dump (the tenant's writes wait while its data is copied)")]
    NoLogicalReplication { cluster: String, wal_level: String },
    #[error("--method dump needs {0}")]
    DumpTools(String),
    #[error("tenant {slug} has migrations pending (at version {at:?}, the migrations are at {target}): apply them first")]
    PendingMigrations { slug: String, at: Option<i64>, target: i64 },
    #[error("tenant {0} has no move to abort")]
    NothingToAbort(String),
    #[error("move {0} is past its point of no return (the source is locked, or the tenant switched): it only goes forward; move the tenant back once it is done")]
    Switched(i64),
    #[error("move {id}: aborted")]
    Aborted { id: i64 },
    #[error("move {id}, step {step}: {message}")]
    Step { id: i64, step: &'static str, message: String, kind: ErrorKind },
    #[error("catalog: {0}")]
    Catalog(String),
}

impl OperationError for MoveError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) | Self::UnknownCluster(_) => ErrorKind::NotFound,
            Self::WrongState(_)
            | Self::PendingMigrations { .. }
            | Self::NothingToAbort(_)
            | Self::Switched(_)
            | Self::NoLogicalReplication { .. } => ErrorKind::WrongState,
            Self::DumpTools(_) => ErrorKind::Misconfigured,
            Self::AlreadyThere { .. } => ErrorKind::Invalid,
            Self::Running { .. } => ErrorKind::Conflict,
            Self::Aborted { .. } => ErrorKind::Failed,
            Self::Step { kind, .. } => *kind,
            Self::Catalog(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::WrongState(_) => "wrong_state",
            Self::AlreadyThere { .. } => "already_there",
            Self::UnknownCluster(_) => "unknown_cluster",
            Self::Running { .. } => "move_running",
            Self::PendingMigrations { .. } => "migrations_pending",
            Self::NoLogicalReplication { .. } => "logical_replication_unavailable",
            Self::DumpTools(_) => "dump_tools_missing",
            Self::NothingToAbort(_) => "no_move",
            Self::Switched(_) => "move_switched",
            Self::Aborted { .. } => "move_aborted",
            Self::Step { .. } => "move_failed",
            Self::Catalog(_) => "catalog_unavailable",
        }
    }
}

/// One of a tenant's tables, as a move copies it.
pub(super) struct Table {
    pub(super) name: String,
    /// Schema-qualified and quoted.
    pub(super) quoted: String,
    /// Its updates and deletes can be replicated (it has a primary key or a replica identity).
    pub(super) identified: bool,
}

/// The tables of `schema` where `db` is (its migration history aside: the target has its
/// own); a partitioned table stands for its partitions.
pub(super) async fn tables_of(
    db: &tokio_postgres::Client,
    schema: &SchemaName,
) -> Result<Vec<Table>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT c.relname::text,
                    c.relreplident = 'f' OR (c.relreplident IN ('d', 'i') AND EXISTS (
                      SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)))
               FROM pg_class c
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
                AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $2
              ORDER BY 1",
            &[&schema.as_str(), &crate::tenant_migrations::HISTORY_TABLE],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let name: String = row.get(0);
            let quoted = format!("{}.{}", schema.quoted(), tenancy::domain::quote_ident(&name));
            Table { name, quoted, identified: row.get(1) }
        })
        .collect())
}

/// Names a point of a move (a step's end, or a point inside the switch) at which the process
/// exits at once, as if killed, with status 137: the end-to-end tests kill a mover at each
/// point this way and check that the move resumes, or rolls back, from there.
pub const CRASH_AFTER_VARIABLE: &str = "TENANCY_MOVE_CRASH_AFTER";

/// Every point [`CRASH_AFTER_VARIABLE`] may name in a move by logical replication, in the
/// order the move passes them.
pub const CRASH_POINTS: [&str; 11] = [
    "target",
    "published",
    "subscribed",
    "copied",
    "paused",
    "locked_out",
    "locked",
    "sequences",
    "unsubscribed",
    "roles_swapped",
    "switched",
];

/// Every point [`CRASH_AFTER_VARIABLE`] may name in a move by `pg_dump` ([`MoveMethod::Dump`]),
/// in order.
pub const DUMP_CRASH_POINTS: [&str; 9] = [
    "target",
    "restored",
    "paused",
    "locked_out",
    "locked",
    "sequences",
    "unsubscribed",
    "roles_swapped",
    "switched",
];

/// Exits the process at once when [`CRASH_AFTER_VARIABLE`] names `point`.
fn crash_point(point: &str) {
    if std::env::var_os(CRASH_AFTER_VARIABLE).is_some_and(|named| named == point) {
        tracing::error!(point, "{CRASH_AFTER_VARIABLE}: exiting as if killed");
        std::process::exit(137);
    }
}

fn catalog_error(err: &tokio_postgres::Error) -> MoveError {
    MoveError::Catalog(tenancy::pg::describe_error(err))
}

/// Where an operator (or a plan change) asks a tenant to go; what is not given stays as it is.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    pub cluster: Option<String>,
    pub isolation: Option<Isolation>,
    /// Drop the source right after the switch instead of keeping it for the retention period.
    pub drop_source: bool,
    /// How the tenant's data is copied (logical replication unless asked otherwise).
    pub method: MoveMethod,
}

/// Starts moving tenant `slug` to `destination`: records the move and queues its job. The
/// tenant stays where it is, serving, until the switch.
pub async fn start(
    cp: &ControlPlane,
    slug: &Slug,
    destination: &Destination,
    actor: &str,
) -> Result<MoveRecord, MoveError> {
    let mut client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let tx = client.transaction().await.map_err(|e| catalog_error(&e))?;
    let id = tenants::lock_live(&*tx, slug)
        .await
        .map_err(|e| catalog_error(&e))?
        .ok_or_else(|| MoveError::NotFound(slug.to_string()))?;
    let tenant = tenancy::catalog::tenant_by_id(&*tx, id)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .ok_or_else(|| MoveError::NotFound(slug.to_string()))?;
    if tenant.status != TenantStatus::Active {
        return Err(MoveError::WrongState(tenant.status));
    }
    let cluster = destination.cluster.clone().unwrap_or_else(|| tenant.cluster.clone());
    let isolation = destination.isolation.unwrap_or(tenant.isolation);
    if cluster == tenant.cluster && isolation == tenant.isolation {
        return Err(MoveError::AlreadyThere {
            slug: slug.to_string(),
            cluster,
            isolation: isolation.as_str(),
        });
    }
    // Before the placement lock (they reach another server, or run a program).
    match destination.method {
        MoveMethod::Replication => replication::check_available(cp, &tenant.cluster).await?,
        MoveMethod::Dump => dump::check_tools(cp).await?,
    }
    // Under the placement lock: a cluster being removed is not moved to meanwhile.
    crate::catalog::clusters::lock_placement(&*tx).await.map_err(|e| catalog_error(&e))?;
    if !crate::catalog::clusters::exists(&*tx, &cluster).await.map_err(|e| catalog_error(&e))? {
        return Err(MoveError::UnknownCluster(cluster));
    }
    if let Some(running) = moves::of_tenant(&*tx, tenant.id, 1)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .into_iter()
        .find(|m| m.state == MoveState::Running)
    {
        return Err(MoveError::Running { slug: slug.to_string(), id: running.id });
    }
    let target = cp
        .migrations()
        .map_err(|e| MoveError::Step {
            id: 0,
            step: "start",
            message: e.to_string(),
            kind: ErrorKind::Misconfigured,
        })?
        .target_version();
    let at = tenants::schema_version(&*tx, tenant.id).await.map_err(|e| catalog_error(&e))?;
    if at != Some(target) {
        return Err(MoveError::PendingMigrations { slug: slug.to_string(), at, target });
    }
    let move_id = moves::next_id(&*tx).await.map_err(|e| catalog_error(&e))?;
    let to = Placement {
        cluster,
        isolation,
        schema: final_schema(&tenant.slug, &tenant.schema_name, isolation),
        database: (isolation == Isolation::Database)
            .then(|| DatabaseName::for_move(&cp.role_prefix, &tenant.slug, move_id)),
        // The same name (and password) where it goes: clients log in as before.
        role: tenant.role_name.clone(),
        secret_ref: Some(SecretName::for_move(&cp.secrets_prefix, tenant.id, move_id).as_str().to_owned()),
    };
    let options = moves::MoveOptions { method: destination.method, drop_source: destination.drop_source };
    moves::insert(&*tx, move_id, &tenant, &to, actor, at, options).await.map_err(|e| catalog_error(&e))?;
    let job = jobs::enqueue(&*tx, JobKind::Move, Some(tenant.id), &serde_json::json!({ "move": move_id }))
        .await
        .map_err(|e| catalog_error(&e))?;
    jobs::keep_trying(&*tx, job).await.map_err(|e| catalog_error(&e))?;
    let detail = serde_json::json!({
        "move": move_id,
        "from": Placement::of(&tenant),
        "to": &to,
        "method": destination.method,
    });
    audit::record(&*tx, actor, "tenant.move", Some(tenant.id), detail)
        .await
        .map_err(|e| catalog_error(&e))?;
    tx.commit().await.map_err(|e| catalog_error(&e))?;
    cp.jobs_enqueued.notify_waiters();
    tracing::info!(tenant = %tenant.slug, move_id, method = destination.method.as_str(), "tenant move started");
    load(cp, move_id).await
}

/// The schema a tenant has where it goes: in a database of its own, the one it had (its tables
/// are copied under their schema's name, and nothing else is in that database); in a shared
/// database, `t_<slug>`.
fn final_schema(slug: &Slug, current: &SchemaName, isolation: Isolation) -> SchemaName {
    match isolation {
        Isolation::Database => current.clone(),
        Isolation::Schema => SchemaName::for_tenant(slug),
    }
}

/// Asks tenant `slug`'s running move to stop; the move's job removes what it made and leaves
/// the tenant where it was. Refused once the move has switched the tenant over.
pub async fn abort(cp: &ControlPlane, slug: &Slug, actor: &str) -> Result<MoveRecord, MoveError> {
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let tenant = tenancy::catalog::tenant_by_slug(&**client, slug)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .ok_or_else(|| MoveError::NotFound(slug.to_string()))?;
    let running = moves::of_tenant(&**client, tenant.id, 1)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .into_iter()
        .find(|m| m.state == MoveState::Running)
        .ok_or_else(|| MoveError::NothingToAbort(slug.to_string()))?;
    if run::past_return(&running) {
        return Err(MoveError::Switched(running.id));
    }
    if !moves::request_abort(&**client, running.id).await.map_err(|e| catalog_error(&e))? {
        // It went past its point of no return since it was read.
        return Err(MoveError::Switched(running.id));
    }
    // A job that failed for good leaves nobody to act on it: queue one (a job running now
    // sees the request between its steps).
    if !jobs::has_queued(&**client, tenant.id, JobKind::Move).await.map_err(|e| catalog_error(&e))? {
        let job = jobs::enqueue(
            &**client,
            JobKind::Move,
            Some(tenant.id),
            &serde_json::json!({ "move": running.id }),
        )
        .await
        .map_err(|e| catalog_error(&e))?;
        jobs::keep_trying(&**client, job).await.map_err(|e| catalog_error(&e))?;
        cp.jobs_enqueued.notify_waiters();
    }
    audit::record(
        &**client,
        actor,
        "tenant.move.abort",
        Some(tenant.id),
        serde_json::json!({ "move": running.id }),
    )
    .await
    .map_err(|e| catalog_error(&e))?;
    load(cp, running.id).await
}

/// Tenant `slug`'s moves, newest first.
pub async fn of_tenant(cp: &ControlPlane, slug: &Slug, limit: i64) -> Result<Vec<MoveRecord>, MoveError> {
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    let tenant = tenancy::catalog::tenant_by_slug(&**client, slug)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .ok_or_else(|| MoveError::NotFound(slug.to_string()))?;
    moves::of_tenant(&**client, tenant.id, limit).await.map_err(|e| MoveError::Catalog(e.to_string()))
}

/// Move `id` as the catalog has it now.
pub async fn load(cp: &ControlPlane, id: i64) -> Result<MoveRecord, MoveError> {
    let client = cp.catalog.get().await.map_err(|e| MoveError::Catalog(e.to_string()))?;
    moves::by_id(&**client, id)
        .await
        .map_err(|e| MoveError::Catalog(e.to_string()))?
        .ok_or_else(|| MoveError::Catalog(format!("move {id} is not in the catalog")))
}
