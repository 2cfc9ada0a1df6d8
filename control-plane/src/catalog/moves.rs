//! Tenant moves in `control.tenant_moves` (what [`crate::moves`] does with them), and the
//! tenant's pause while a move switches it over.

use chrono::{DateTime, Utc};
use tenancy::catalog::{TenantRecord, TENANT_COLUMNS};
use tenancy::domain::{DatabaseName, Isolation, MoveMethod, RoleName, SchemaName, TenantId};
use tokio_postgres::{GenericClient, Row};

/// Where a tenant's data is: the cluster, schema or own database, and the role and secret it
/// is reached with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub cluster: String,
    pub isolation: Isolation,
    pub schema: SchemaName,
    pub database: Option<DatabaseName>,
    pub role: RoleName,
    pub secret_ref: Option<String>,
}

impl Placement {
    /// Where `tenant` is now.
    pub(crate) fn of(tenant: &TenantRecord) -> Self {
        Self {
            cluster: tenant.cluster.clone(),
            isolation: tenant.isolation,
            schema: tenant.schema_name.clone(),
            database: tenant.database_name.clone(),
            role: tenant.role_name.clone(),
            secret_ref: tenant.secret_ref.clone(),
        }
    }

    /// `tenant` as if it were here (what the provisioning steps need to build it here).
    pub(crate) fn apply(&self, tenant: &TenantRecord) -> TenantRecord {
        TenantRecord {
            cluster: self.cluster.clone(),
            isolation: self.isolation,
            schema_name: self.schema.clone(),
            database_name: self.database.clone(),
            role_name: self.role.clone(),
            secret_ref: self.secret_ref.clone(),
            ..tenant.clone()
        }
    }
}

/// Where a move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveState {
    Running,
    Done,
    Aborted,
    Failed,
}

impl MoveState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Aborted => "aborted",
            Self::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [Self::Running, Self::Done, Self::Aborted, Self::Failed].into_iter().find(|s| s.as_str() == raw)
    }
}

/// One move of one tenant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MoveRecord {
    pub id: i64,
    pub tenant_id: TenantId,
    pub state: MoveState,
    /// The last step done (`None`: none yet).
    pub step: Option<String>,
    pub requested_by: String,
    pub from: Placement,
    pub to: Placement,
    pub schema_version: Option<i64>,
    /// How the tenant's data is copied.
    pub method: MoveMethod,
    pub drop_source: bool,
    pub abort_requested: bool,
    pub last_error: Option<String>,
    /// How long the tenant's new requests were held at the switch.
    pub pause_ms: Option<i32>,
    pub switched_at: Option<DateTime<Utc>>,
    pub source_dropped_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const MOVE_COLUMNS: &str = "id, tenant_id, state, step, requested_by, from_cluster, from_isolation, \
    from_schema, from_database, from_role, from_secret_ref, to_cluster, to_isolation, to_schema, \
    to_database, to_role, to_secret_ref, schema_version, method, drop_source, abort_requested, last_error, \
    pause_ms, switched_at, source_dropped_at, created_at, finished_at";

/// A row the catalog holds that does not parse (names are validated on the way in).
#[derive(Debug, thiserror::Error)]
#[error("move {id}: {reason}")]
pub(crate) struct CorruptMove {
    id: i64,
    reason: String,
}

fn placement(row: &Row, side: &str) -> Result<Placement, String> {
    let column = |name: &str| format!("{side}_{name}");
    let isolation: String = row.get(column("isolation").as_str());
    let schema: String = row.get(column("schema").as_str());
    let database: Option<String> = row.get(column("database").as_str());
    let role: String = row.get(column("role").as_str());
    Ok(Placement {
        cluster: row.get(column("cluster").as_str()),
        isolation: isolation.parse().map_err(|e: tenancy::domain::UnknownValue| e.to_string())?,
        schema: SchemaName::parse(&schema).map_err(|e| e.to_string())?,
        database: database.map(|d| DatabaseName::parse(&d)).transpose().map_err(|e| e.to_string())?,
        role: RoleName::parse(&role).map_err(|e| e.to_string())?,
        secret_ref: row.get(column("secret_ref").as_str()),
    })
}

fn from_row(row: &Row) -> Result<MoveRecord, CorruptMove> {
    let id: i64 = row.get("id");
    let corrupt = |reason: String| CorruptMove { id, reason };
    let state: String = row.get("state");
    let method: String = row.get("method");
    Ok(MoveRecord {
        id,
        tenant_id: TenantId(row.get("tenant_id")),
        state: MoveState::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state:?}")))?,
        step: row.get("step"),
        requested_by: row.get("requested_by"),
        from: placement(row, "from").map_err(corrupt)?,
        to: placement(row, "to").map_err(corrupt)?,
        schema_version: row.get("schema_version"),
        method: method.parse().map_err(|e: tenancy::domain::UnknownValue| corrupt(e.to_string()))?,
        drop_source: row.get("drop_source"),
        abort_requested: row.get("abort_requested"),
        last_error: row.get("last_error"),
        pause_ms: row.get("pause_ms"),
        switched_at: row.get("switched_at"),
        source_dropped_at: row.get("source_dropped_at"),
        created_at: row.get("created_at"),
        finished_at: row.get("finished_at"),
    })
}

/// Why reading a move failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MoveReadError {
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptMove),
}

/// The id the next move gets (its names are made from it before it is recorded).
pub(crate) async fn next_id(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let row =
        client.query_one("SELECT nextval(pg_get_serial_sequence('control.tenant_moves', 'id'))", &[]).await?;
    Ok(row.get(0))
}

/// How a move goes, besides where.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoveOptions {
    pub(crate) method: MoveMethod,
    pub(crate) drop_source: bool,
}

/// Records a running move `id` of `tenant` from where it is to `to`. Fails with a unique
/// violation when the tenant has a running move already.
pub(crate) async fn insert(
    client: &impl GenericClient,
    id: i64,
    tenant: &TenantRecord,
    to: &Placement,
    requested_by: &str,
    schema_version: Option<i64>,
    options: MoveOptions,
) -> Result<(), tokio_postgres::Error> {
    let from = Placement::of(tenant);
    let database = |p: &Placement| p.database.as_ref().map(|d| d.as_str().to_owned());
    client
        .execute(
            "INSERT INTO control.tenant_moves (id, tenant_id, requested_by, from_cluster, from_isolation,
                from_schema, from_database, from_role, from_secret_ref, to_cluster, to_isolation,
                to_schema, to_database, to_role, to_secret_ref, schema_version, drop_source, method)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            &[
                &id,
                &tenant.id.0,
                &requested_by,
                &from.cluster,
                &from.isolation.as_str(),
                &from.schema.as_str(),
                &database(&from),
                &from.role.as_str(),
                &from.secret_ref,
                &to.cluster,
                &to.isolation.as_str(),
                &to.schema.as_str(),
                &database(to),
                &to.role.as_str(),
                &to.secret_ref,
                &schema_version,
                &options.drop_source,
                &options.method.as_str(),
            ],
        )
        .await
        .map(|_| ())
}

pub(crate) async fn by_id(client: &impl GenericClient, id: i64) -> Result<Option<MoveRecord>, MoveReadError> {
    let sql = format!("SELECT {MOVE_COLUMNS} FROM control.tenant_moves WHERE id = $1");
    let row = client.query_opt(sql.as_str(), &[&id]).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Whether `tenant` has a running move.
pub(crate) async fn running_for(
    client: &impl GenericClient,
    tenant: TenantId,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM control.tenant_moves WHERE tenant_id = $1 AND state = 'running'",
            &[&tenant.0],
        )
        .await?;
    Ok(row.is_some())
}

/// The tenant's moves, newest first.
pub(crate) async fn of_tenant(
    client: &impl GenericClient,
    tenant: TenantId,
    limit: i64,
) -> Result<Vec<MoveRecord>, MoveReadError> {
    let sql = format!(
        "SELECT {MOVE_COLUMNS} FROM control.tenant_moves WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2"
    );
    let rows = client.query(sql.as_str(), &[&tenant.0, &limit]).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Records that the running move went from step `from` to `to`; `false` when it is not at
/// `from` (or not running: another mover went on meanwhile, and this one must stop), or when
/// `to` is past the point of no return and an abort was asked for meanwhile.
pub(crate) async fn set_step(
    client: &impl GenericClient,
    id: i64,
    from: Option<&str>,
    to: &str,
) -> Result<bool, tokio_postgres::Error> {
    let changed = client
        .execute(
            "UPDATE control.tenant_moves SET step = $3, last_error = NULL, updated_at = now()
              WHERE id = $1 AND state = 'running' AND step IS NOT DISTINCT FROM $2
                AND NOT (abort_requested AND $3 IN ('locked', 'switched'))",
            &[&id, &from, &to],
        )
        .await?;
    Ok(changed == 1)
}

/// Counts a switch that was tried and undone; returns how many there were.
pub(crate) async fn count_switch_attempt(
    client: &impl GenericClient,
    id: i64,
) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "UPDATE control.tenant_moves SET switch_attempts = switch_attempts + 1, updated_at = now()
              WHERE id = $1 RETURNING switch_attempts",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

/// Records why the move's last attempt failed (it goes on, or is rolled back).
pub(crate) async fn set_error(
    client: &impl GenericClient,
    id: i64,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenant_moves SET last_error = $2, updated_at = now() WHERE id = $1",
            &[&id, &error],
        )
        .await
        .map(|_| ())
}

/// Asks a running move to stop; `false` when it is not running or past its point of no return
/// (the source locked, or the tenant switched).
pub(crate) async fn request_abort(
    client: &impl GenericClient,
    id: i64,
) -> Result<bool, tokio_postgres::Error> {
    let changed = client
        .execute(
            "UPDATE control.tenant_moves SET abort_requested = true, updated_at = now()
              WHERE id = $1 AND state = 'running' AND coalesce(step, '') NOT IN ('locked', 'switched')",
            &[&id],
        )
        .await?;
    Ok(changed == 1)
}

pub(crate) async fn finish(
    client: &impl GenericClient,
    id: i64,
    state: MoveState,
    error: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenant_moves
                SET state = $2, last_error = coalesce($3, last_error), finished_at = now(), updated_at = now()
              WHERE id = $1",
            &[&id, &state.as_str(), &error],
        )
        .await
        .map(|_| ())
}

pub(crate) async fn set_source_dropped(
    client: &impl GenericClient,
    id: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.tenant_moves SET source_dropped_at = now(), updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .map(|_| ())
}

/// Holds the tenant's new requests for `pause` (routers see it with the new generation);
/// returns the tenant as it is now.
pub(crate) async fn pause(
    client: &impl GenericClient,
    tenant: TenantId,
    pause: std::time::Duration,
) -> Result<Option<TenantRecord>, tokio_postgres::Error> {
    let ms = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
    let sql = format!(
        "UPDATE control.tenants t
            SET paused_until = now() + make_interval(secs => $2::bigint / 1000.0),
                generation = generation + 1, updated_at = now()
          WHERE id = $1
      RETURNING {TENANT_COLUMNS}"
    );
    let row = client.query_opt(sql.as_str(), &[&tenant.0, &ms]).await?;
    Ok(row.as_ref().and_then(|row| TenantRecord::from_row(row).ok()))
}

/// Has routers hold the tenant's writes (a move by dump copies it under locks) for `lease`
/// from now, or renews that lease; returns the tenant as it is now. Lifted by [`unpause`] or
/// [`switch`], or when the lease runs out.
pub(crate) async fn pause_writes(
    client: &impl GenericClient,
    tenant: TenantId,
    lease: std::time::Duration,
) -> Result<Option<TenantRecord>, tokio_postgres::Error> {
    let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let sql = format!(
        "UPDATE control.tenants t
            SET writes_paused_until = now() + make_interval(secs => $2::bigint / 1000.0),
                generation = generation + 1, updated_at = now()
          WHERE id = $1
      RETURNING {TENANT_COLUMNS}"
    );
    let row = client.query_opt(sql.as_str(), &[&tenant.0, &ms]).await?;
    Ok(row.as_ref().and_then(|row| TenantRecord::from_row(row).ok()))
}

/// Lets the tenant's requests (and writes) go again, where it is; `false` when neither was
/// paused.
pub(crate) async fn unpause(
    client: &impl GenericClient,
    tenant: TenantId,
) -> Result<bool, tokio_postgres::Error> {
    let changed = client
        .execute(
            "UPDATE control.tenants
                SET paused_until = NULL, writes_paused_until = NULL, generation = generation + 1, updated_at = now()
              WHERE id = $1 AND (paused_until IS NOT NULL OR writes_paused_until IS NOT NULL)",
            &[&tenant.0],
        )
        .await?;
    Ok(changed == 1)
}

/// The switch: the tenant is where the move put it from now on, its requests released (one
/// transaction with the move's step, so a crash leaves it either side, never both); `false`
/// (nothing changed) when the move is no longer at `locked`.
pub(crate) async fn switch(
    client: &impl GenericClient,
    record: &MoveRecord,
    pause_ms: i32,
) -> Result<bool, tokio_postgres::Error> {
    let moving = client
        .execute(
            "UPDATE control.tenant_moves
                SET step = 'switched', pause_ms = $2, switched_at = now(), last_error = NULL, updated_at = now()
              WHERE id = $1 AND state = 'running' AND step = 'locked'",
            &[&record.id, &pause_ms],
        )
        .await?;
    if moving != 1 {
        return Ok(false);
    }
    let to = &record.to;
    client
        .execute(
            "UPDATE control.tenants
                SET cluster = $2, isolation = $3, schema_name = $4, database_name = $5, role_name = $6,
                    secret_ref = $7, paused_until = NULL, writes_paused_until = NULL,
                    credential_version = credential_version + 1,
                    generation = generation + 1, updated_at = now()
              WHERE id = $1",
            &[
                &record.tenant_id.0,
                &to.cluster,
                &to.isolation.as_str(),
                &to.schema.as_str(),
                &to.database.as_ref().map(DatabaseName::as_str),
                &to.role.as_str(),
                &to.secret_ref,
            ],
        )
        .await?;
    Ok(true)
}
