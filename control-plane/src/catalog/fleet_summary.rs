//! The fleet at a glance, for the console: live tenants by status, plan, cluster and schema
//! version now, and hourly counts by status and plan (`control.fleet_snapshots`, written by
//! `tenantctl serve`, kept 90 days).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

/// How many tenants have one status and plan.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Count {
    pub(crate) status: String,
    pub(crate) plan: String,
    pub(crate) tenants: i64,
}

/// The counts of one hour (the last taken in it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Snapshot {
    #[schema(value_type = String, format = DateTime)]
    pub(crate) hour: DateTime<Utc>,
    pub(crate) counts: Vec<Count>,
}

/// Tenants at one schema version (`None`: no migration recorded yet).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionCount {
    pub(crate) version: Option<i64>,
    pub(crate) tenants: i64,
}

/// Tenants now by status and plan (deleted ones left out).
pub(crate) async fn counts(client: &impl GenericClient) -> Result<Vec<Count>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT status, plan, count(*) FROM control.tenants WHERE status <> 'deleted'
              GROUP BY status, plan ORDER BY status, plan",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| Count { status: r.get(0), plan: r.get(1), tenants: r.get(2) }).collect())
}

/// Active and suspended tenants (those fleet migrations cover) by schema version.
pub(crate) async fn by_schema_version(
    client: &impl GenericClient,
) -> Result<Vec<VersionCount>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT schema_version, count(*) FROM control.tenants WHERE status IN ('active', 'suspended')
              GROUP BY schema_version ORDER BY schema_version NULLS FIRST",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| VersionCount { version: r.get(0), tenants: r.get(1) }).collect())
}

/// Records this hour's counts (replacing an earlier count of the same hour) and forgets
/// those older than 90 days.
pub(crate) async fn record_snapshot(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "INSERT INTO control.fleet_snapshots (hour, counts)
             SELECT date_trunc('hour', now(), 'UTC'),
                    coalesce(jsonb_agg(jsonb_build_object('status', status, 'plan', plan, 'tenants', n)), '[]')
               FROM (SELECT status, plan, count(*) AS n FROM control.tenants WHERE status <> 'deleted'
                      GROUP BY status, plan) c
             ON CONFLICT (hour) DO UPDATE SET counts = excluded.counts;
             DELETE FROM control.fleet_snapshots WHERE hour < now() - interval '90 days';",
        )
        .await
}

/// The hourly counts since `since`, oldest first.
pub(crate) async fn history(
    client: &impl GenericClient,
    since: DateTime<Utc>,
) -> Result<Vec<Snapshot>, tokio_postgres::Error> {
    let rows = client
        .query("SELECT hour, counts FROM control.fleet_snapshots WHERE hour >= $1 ORDER BY hour", &[&since])
        .await?;
    Ok(rows
        .iter()
        .map(|r| Snapshot { hour: r.get(0), counts: serde_json::from_value(r.get(1)).unwrap_or_default() })
        .collect())
}
