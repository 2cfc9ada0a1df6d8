//! `control.clusters`: the registered clusters, their capacity and where their admin
//! connection is kept, and their load (live tenants placed on each).

use tokio_postgres::GenericClient;

/// A cluster as `clusters list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterInfo {
    pub name: String,
    pub(crate) capacity: i32,
    /// Live (not deleted) tenants placed on it.
    pub tenants: i64,
    /// Where its admin connection is kept; `None` for the catalog's own server.
    pub(crate) admin_secret: Option<String>,
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

pub(crate) async fn exists(client: &impl GenericClient, name: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client.query_opt("SELECT 1 FROM control.clusters WHERE name = $1", &[&name]).await?.is_some())
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
            "SELECT c.name, c.capacity, count(t.id), c.admin_secret_ref
               FROM control.clusters c
               LEFT JOIN control.tenants t ON t.cluster = c.name AND t.status <> 'deleted'
              GROUP BY c.name, c.capacity, c.admin_secret_ref
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
        })
        .collect())
}

/// The least loaded cluster (live tenants / capacity) that has room, if any.
pub(crate) async fn least_loaded_with_room(
    client: &impl GenericClient,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT c.name
               FROM control.clusters c
               LEFT JOIN control.tenants t ON t.cluster = c.name AND t.status <> 'deleted'
              GROUP BY c.name, c.capacity
             HAVING count(t.id) < c.capacity
              ORDER BY count(t.id)::float8 / c.capacity, c.name
              LIMIT 1",
            &[],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Takes the placement lock ([`crate::clusters::PLACEMENT_LOCK`]) for the rest of the
/// transaction: placements are made one at a time.
pub(crate) async fn lock_placement(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client.execute("SELECT pg_advisory_xact_lock($1)", &[&crate::clusters::PLACEMENT_LOCK]).await.map(|_| ())
}
