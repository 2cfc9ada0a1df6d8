//! The sweep: what earlier test runs left on the shared PostgreSQL (databases of failed or
//! killed tests, with their roles and the databases their control plane created), dropped
//! when no process claims it and its run is over.

use super::claims::{Key, LOCK_CLASS};
use super::run::Run;
use super::{drop_everything, role_prefix};
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// What one key left: its test database (`None` when only the control plane's databases or
/// roles are left) and that database's comment.
#[derive(Default)]
struct Leftover {
    database: Option<String>,
    comment: Option<String>,
}

enum Outcome {
    Swept,
    /// A live process claims it.
    InUse,
    /// Its process is gone but its run is not: a failed test's database, kept for inspection.
    KeptForRun,
}

/// Sweeps every stale key; returns what it dropped (each key's test database, or its prefix
/// when that is gone).
pub(crate) async fn sweep(admin: &Client) -> Vec<String> {
    let leftovers = match leftovers(admin).await {
        Ok(leftovers) => leftovers,
        Err(e) => {
            eprintln!("testkit: cannot list earlier runs' test databases: {e}");
            return Vec::new();
        }
    };
    let mut swept = Vec::new();
    for (key, leftover) in leftovers {
        match sweep_one(admin, key, &leftover).await {
            Ok(Outcome::Swept) => swept.push(leftover.database.unwrap_or_else(|| role_prefix(key))),
            Ok(Outcome::InUse | Outcome::KeptForRun) => {}
            Err(e) => eprintln!("testkit: cannot sweep {}: {e}", role_prefix(key)),
        }
    }
    swept
}

/// Test databases (`test_<test>_<key>`) and the databases and roles under a test's prefix
/// (`tk<key>_…`), by key.
async fn leftovers(admin: &Client) -> Result<BTreeMap<Key, Leftover>, String> {
    let rows = admin
        .query(
            r"SELECT substring(datname FROM '^test_.*_([0-9a-f]{8})$'), datname,
                     shobj_description(oid, 'pg_database')
                FROM pg_database WHERE datname ~ '^test_.*_[0-9a-f]{8}$'
              UNION ALL
              SELECT substring(datname FROM '^tk([0-9a-f]{8})_'), NULL, NULL
                FROM pg_database WHERE datname ~ '^tk[0-9a-f]{8}_'
              UNION ALL
              SELECT substring(rolname FROM '^tk([0-9a-f]{8})_'), NULL, NULL
                FROM pg_roles WHERE rolname ~ '^tk[0-9a-f]{8}_'",
            &[],
        )
        .await
        .map_err(|e| tenancy::pg::describe_error(&e))?;
    let mut leftovers: BTreeMap<Key, Leftover> = BTreeMap::new();
    for row in rows {
        let Some(key) = Key::parse(row.get(0)) else { continue };
        let leftover = leftovers.entry(key).or_default();
        if let Some(database) = row.get::<_, Option<String>>(1) {
            leftover.database = Some(database);
            leftover.comment = row.get(2);
        }
    }
    Ok(leftovers)
}

/// Takes the key's claim for the time of the sweep (so no two sweeps drop the same key, and
/// no live process's key is touched), drops what the key left unless its run is still going.
async fn sweep_one(admin: &Client, key: Key, leftover: &Leftover) -> Result<Outcome, String> {
    let free: bool = admin
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key.lock_id()])
        .await
        .map_err(|e| tenancy::pg::describe_error(&e))?
        .get(0);
    if !free {
        return Ok(Outcome::InUse);
    }
    let run = leftover.comment.as_deref().and_then(Run::of_comment);
    let outcome = if run.is_some_and(|run| run.is_going()) {
        Ok(Outcome::KeptForRun)
    } else {
        drop_everything(admin, leftover.database.as_deref(), &role_prefix(key)).await.map(|()| Outcome::Swept)
    };
    admin
        .execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &key.lock_id()])
        .await
        .map_err(|e| tenancy::pg::describe_error(&e))?;
    outcome
}
