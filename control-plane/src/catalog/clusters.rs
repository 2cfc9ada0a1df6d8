//! `control.clusters`: the registered clusters, their capacity and where their admin
//! connection is kept, and their load (live tenants placed on each).

use tokio_postgres::GenericClient;

/// A cluster as `clusters list` shows it (the API's view has no `admin_secret`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub(crate) capacity: i32,
    /// Live (not deleted) tenants placed on it.
    pub tenants: i64,
    /// Where its admin connection is kept; `None` for the catalog's own server.
    #[serde(default)]
    pub(crate) admin_secret: Option<String>,
    /// Being drained: it takes no new tenants.
    pub draining: bool,
}

/// The secret holding cluster `name`'s admin connection; `None` when no such cluster is
/// registered (or it is the catalog's own server, which has none).
pub(crate) async fn admin_secret_ref(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row =
        client.query_opt("SELECT admin_secret_ref FROM control.clusters WHERE name = $1", &[&name]).await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Whether cluster `name` is registered (and not removed).
pub(crate) async fn exists(client: &impl GenericClient, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT 1 FROM control.clusters WHERE name = $1 AND removed_at IS NULL", &[&name])
        .await?;
    Ok(row.is_some())
}

/// Whether cluster `name` is being drained; `None` when no such cluster is registered.
pub(crate) async fn draining(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<bool>, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT draining FROM control.clusters WHERE name = $1 AND removed_at IS NULL", &[&name])
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Marks cluster `name` as being drained (or not); `false` when there is no such cluster.
pub(crate) async fn set_draining(
    client: &impl GenericClient,
    name: &str,
    draining: bool,
) -> Result<bool, tokio_postgres::Error> {
    let changed = client
        .execute(
            "UPDATE control.clusters SET draining = $2 WHERE name = $1 AND removed_at IS NULL",
            &[&name, &draining],
        )
        .await?;
    Ok(changed == 1)
}

/// The slugs and statuses of the live tenants placed on cluster `name`, by slug.
pub(crate) async fn tenants_on(
    client: &impl GenericClient,
    name: &str,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT slug, status FROM control.tenants WHERE cluster = $1 AND status <> 'deleted' ORDER BY slug",
            &[&name],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Moves that still need cluster `name`: running ones from or to it, and finished ones whose
/// old copy on it is not dropped yet.
pub(crate) async fn moves_needing(
    client: &impl GenericClient,
    name: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(*) FROM control.tenant_moves
              WHERE (state = 'running' AND (from_cluster = $1 OR to_cluster = $1))
                 OR (state = 'done' AND from_cluster = $1 AND source_dropped_at IS NULL)",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

/// Marks cluster `name` removed (the row stays for the tombstones and moves that name it).
pub(crate) async fn mark_removed(
    client: &impl GenericClient,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    let changed = client
        .execute(
            "UPDATE control.clusters SET removed_at = now(), draining = false WHERE name = $1 AND removed_at IS NULL",
            &[&name],
        )
        .await?;
    Ok(changed == 1)
}

/// Registers a cluster; `false` when one of that name is registered already.
pub(crate) async fn insert(
    client: &impl GenericClient,
    name: &str,
    admin_secret_ref: &str,
    capacity: i32,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = client
        .execute(
            "INSERT INTO control.clusters (name, admin_secret_ref, capacity) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &admin_secret_ref, &capacity],
        )
        .await?;
    Ok(inserted == 1)
}

/// Every registered cluster with its load, by name.
pub(crate) async fn list(client: &impl GenericClient) -> Result<Vec<ClusterInfo>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.name, c.capacity, count(t.id), c.admin_secret_ref, c.draining
               FROM control.clusters c
               LEFT JOIN control.tenants t ON t.cluster = c.name AND t.status <> 'deleted'
              WHERE c.removed_at IS NULL
              GROUP BY c.name, c.capacity, c.admin_secret_ref, c.draining
              ORDER BY c.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ClusterInfo {
            name: r.get(0),
            capacity: r.get(1),
            tenants: r.get(2),
            admin_secret: r.get(3),
            draining: r.get(4),
        })
        .collect())
}

/// The least loaded cluster (live tenants, and tenants being moved there, / capacity) that has
/// room, if any; neither one being drained nor a removed one, nor `except`.
pub(crate) async fn least_loaded_with_room(
    client: &impl GenericClient,
    except: Option<&str>,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT c.name
               FROM control.clusters c
               LEFT JOIN control.tenants t ON t.cluster = c.name AND t.status <> 'deleted'
              WHERE NOT c.draining AND c.removed_at IS NULL AND c.name IS DISTINCT FROM $1
              GROUP BY c.name, c.capacity
             HAVING count(t.id) + (SELECT count(*) FROM control.tenant_moves m
                                    WHERE m.to_cluster = c.name AND m.state = 'running') < c.capacity
              ORDER BY (count(t.id) + (SELECT count(*) FROM control.tenant_moves m
                                        WHERE m.to_cluster = c.name AND m.state = 'running'))::float8 / c.capacity,
                       c.name
              LIMIT 1",
            &[&except],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Takes the placement lock ([`crate::clusters::PLACEMENT_LOCK`]) for the rest of the
/// transaction: placements are made one at a time.
pub(crate) async fn lock_placement(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client.execute("SELECT pg_advisory_xact_lock($1)", &[&crate::clusters::PLACEMENT_LOCK]).await.map(|_| ())
}
