//! Emptying a cluster (`tenantctl clusters drain`): it takes no new tenants, and each of its
//! tenants is moved to another cluster (`--to`, or the least loaded with room), a few at a time;
//! then retiring it (`clusters remove`) once nothing needs it.

use crate::catalog::clusters as catalog;
use crate::control_plane::ControlPlane;
use crate::moves::{self, Destination, MoveState};
use futures::StreamExt as _;
use std::time::Duration;
use tenancy::domain::{ClusterName, Slug};
use tenancy::error::{ErrorKind, OperationError};

/// How a drain goes.
#[derive(Debug, Clone)]
pub struct DrainSettings {
    /// Where every tenant goes; by default each to the least loaded cluster with room.
    pub to: Option<String>,
    /// Moves at a time.
    pub concurrency: usize,
    /// Drop each tenant's old copy right after its switch (else after the retention period).
    pub drop_source: bool,
    /// How each tenant's data is copied.
    pub method: crate::moves::MoveMethod,
}

/// What became of one tenant of a drained cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drained {
    pub slug: String,
    /// `moved`, `failed`, or `skipped` (a tenant that is not active is not moved).
    pub outcome: &'static str,
    pub to: Option<String>,
    pub error: Option<String>,
}

/// Why a cluster could not be drained or removed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterChangeError {
    #[error("no cluster {0} is registered")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cluster {cluster} still holds {tenants} tenant(s) and is needed by {moves} move(s) (running, or an old copy kept there until its retention ends): move them away (`clusters drain {cluster}`), and drop the old copies (`--drop-source`, or wait for MOVE_SOURCE_RETENTION)")]
    NotEmpty { cluster: String, tenants: usize, moves: i64 },
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("secret store: {0}")]
    Secrets(String),
}

impl OperationError for ClusterChangeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unknown(_) => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::NotEmpty { .. } => ErrorKind::WrongState,
            Self::Catalog(_) | Self::Secrets(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown_cluster",
            Self::Invalid(_) => "invalid",
            Self::NotEmpty { .. } => "cluster_not_empty",
            Self::Catalog(_) => "catalog_unavailable",
            Self::Secrets(_) => "secrets_unavailable",
        }
    }
}

fn catalog_error(e: &tokio_postgres::Error) -> ClusterChangeError {
    ClusterChangeError::Catalog(tenancy::pg::describe_error(e))
}

/// Drains cluster `name`: marks it as draining (new tenants go elsewhere), then moves each of
/// its tenants away, `settings.concurrency` at a time, telling `progress` of each as it ends.
pub async fn drain(
    cp: &ControlPlane,
    name: &str,
    settings: &DrainSettings,
    progress: impl Fn(&Drained),
) -> Result<Vec<Drained>, ClusterChangeError> {
    let client = cp.catalog.get().await.map_err(|e| ClusterChangeError::Catalog(e.to_string()))?;
    if let Some(to) = &settings.to {
        if to == name {
            return Err(ClusterChangeError::Invalid(format!(
                "--to names the cluster being drained ({name})"
            )));
        }
        if !catalog::exists(&**client, to).await.map_err(|e| catalog_error(&e))? {
            return Err(ClusterChangeError::Unknown(to.clone()));
        }
    }
    if !catalog::set_draining(&**client, name, true).await.map_err(|e| catalog_error(&e))? {
        return Err(ClusterChangeError::Unknown(name.to_owned()));
    }
    let tenants = catalog::tenants_on(&**client, name).await.map_err(|e| catalog_error(&e))?;
    drop(client);
    tracing::info!(cluster = name, tenants = tenants.len(), "draining cluster");
    let progress = &progress;
    let results = futures::stream::iter(tenants)
        .map(|(slug, status)| async move {
            let drained = move_one(cp, name, settings, &slug, &status).await;
            progress(&drained);
            drained
        })
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    if settings.drop_source {
        // The old copies' drops are queued at once, as jobs of no tenant's: run them here too.
        crate::jobs::runner::run_due(cp).await.map_err(|e| ClusterChangeError::Catalog(e.to_string()))?;
    }
    Ok(results)
}

/// Moves one tenant off the cluster being drained, and waits for the move's end.
async fn move_one(
    cp: &ControlPlane,
    from: &str,
    settings: &DrainSettings,
    slug: &str,
    status: &str,
) -> Drained {
    let failed = |to: Option<String>, error: String| Drained {
        slug: slug.to_owned(),
        outcome: "failed",
        to,
        error: Some(error),
    };
    if status != "active" {
        return Drained {
            slug: slug.to_owned(),
            outcome: "skipped",
            to: None,
            error: Some(format!("tenant is {status}: only an active tenant is moved")),
        };
    }
    let to = match &settings.to {
        Some(to) => to.clone(),
        None => {
            let found = match cp.catalog.get().await {
                Ok(client) => catalog::least_loaded_with_room(&**client, Some(from))
                    .await
                    .map_err(|e| tenancy::pg::describe_error(&e)),
                Err(e) => Err(e.to_string()),
            };
            match found {
                Ok(Some(to)) => to,
                Ok(None) => return failed(None, "no other cluster has room".into()),
                Err(e) => return failed(None, format!("catalog: {e}")),
            }
        }
    };
    let Ok(slug_parsed) = Slug::parse(slug) else {
        return failed(Some(to), "invalid slug in the catalog".into());
    };
    let destination = Destination {
        cluster: Some(to.clone()),
        isolation: None,
        drop_source: settings.drop_source,
        method: settings.method,
    };
    let started = match moves::start(cp, &slug_parsed, &destination, "drain").await {
        Ok(started) => started,
        Err(err) => return failed(Some(to), err.to_string()),
    };
    if let Err(err) = crate::jobs::runner::drain(cp, started.tenant_id, Duration::from_secs(60)).await {
        return failed(Some(to), err.to_string());
    }
    match moves::load(cp, started.id).await {
        Ok(done) if done.state == MoveState::Done => {
            Drained { slug: slug.to_owned(), outcome: "moved", to: Some(to), error: None }
        }
        Ok(other) => failed(
            Some(to),
            other.last_error.unwrap_or_else(|| format!("move {} is {}", other.id, other.state.as_str())),
        ),
        Err(err) => failed(Some(to), err.to_string()),
    }
}

/// Records `action` on cluster `name` by `actor` in the audit log.
async fn audit(
    client: &impl tokio_postgres::GenericClient,
    actor: &str,
    action: &str,
    name: &str,
) -> Result<(), ClusterChangeError> {
    crate::catalog::audit::record(client, actor, action, None, serde_json::json!({ "cluster": name }))
        .await
        .map_err(|e| catalog_error(&e))
}

/// Opens cluster `name` to new tenants and moves again (after a drain, or one given up); a drain
/// running elsewhere goes on with the tenants it started with.
pub async fn undrain(cp: &ControlPlane, name: &str, actor: &str) -> Result<(), ClusterChangeError> {
    let client = cp.catalog.get().await.map_err(|e| ClusterChangeError::Catalog(e.to_string()))?;
    if !catalog::set_draining(&**client, name, false).await.map_err(|e| catalog_error(&e))? {
        return Err(ClusterChangeError::Unknown(name.to_owned()));
    }
    audit(&**client, actor, "cluster.undrain", name).await?;
    tracing::info!(cluster = name, "cluster open to new tenants again");
    Ok(())
}

/// Retires cluster `name` once nothing needs it: it is being drained (so no new tenant or move
/// goes there), no tenant is placed there, no move runs from or to it, no old copy is kept there.
/// Checked and recorded in one transaction under the placement lock, which placements and moves
/// take too. Its admin secret is then deleted; the catalog keeps its row (tombstones and moves
/// name it), marked removed. The `default` cluster (the catalog's own server) is never removed.
pub async fn remove(cp: &ControlPlane, name: &str, actor: &str) -> Result<(), ClusterChangeError> {
    if name == ClusterName::DEFAULT {
        return Err(ClusterChangeError::Invalid(
            "the default cluster (the catalog's own server) cannot be removed".into(),
        ));
    }
    let mut client = cp.catalog.get().await.map_err(|e| ClusterChangeError::Catalog(e.to_string()))?;
    let tx = client.transaction().await.map_err(|e| catalog_error(&e))?;
    catalog::lock_placement(&*tx).await.map_err(|e| catalog_error(&e))?;
    match catalog::draining(&*tx, name).await.map_err(|e| catalog_error(&e))? {
        None => return Err(ClusterChangeError::Unknown(name.to_owned())),
        Some(false) => {
            return Err(ClusterChangeError::Invalid(format!(
                "cluster {name} is not being drained: `tenantctl clusters drain {name}` first"
            )))
        }
        Some(true) => {}
    }
    let tenants = catalog::tenants_on(&*tx, name).await.map_err(|e| catalog_error(&e))?;
    let moves = catalog::moves_needing(&*tx, name).await.map_err(|e| catalog_error(&e))?;
    if !tenants.is_empty() || moves > 0 {
        return Err(ClusterChangeError::NotEmpty { cluster: name.to_owned(), tenants: tenants.len(), moves });
    }
    let secret = catalog::admin_secret_ref(&*tx, name).await.map_err(|e| catalog_error(&e))?;
    catalog::mark_removed(&*tx, name).await.map_err(|e| catalog_error(&e))?;
    audit(&*tx, actor, "cluster.remove", name).await?;
    tx.commit().await.map_err(|e| catalog_error(&e))?;
    if let Some(secret) = secret {
        cp.secrets
            .delete(&tenancy::secrets::SecretName::from_catalog(secret))
            .await
            .map_err(|e| ClusterChangeError::Secrets(e.to_string()))?;
    }
    Ok(())
}
