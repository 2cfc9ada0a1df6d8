//! Reading a cluster's template database's migration history (for `migrate plan`), under the
//! template lock and without waiting for it: a clone needs the template to itself, so nobody may
//! be connected to it while one is made, and a plan never queues behind one.

use super::{Cluster, ClusterError, TEMPLATE_LOCK};
use crate::tenant_migrations::{Applied, HISTORY_TABLE};

/// What a cluster's template database has applied.
#[derive(Debug)]
pub(crate) enum TemplateHistory {
    /// The cluster has no template (no database tenant was created on it yet).
    Missing,
    /// The template is being migrated or cloned right now.
    Busy,
    /// Its applied migrations (empty when it has no history table yet).
    Applied(Vec<Applied>),
}

impl Cluster {
    /// The template's applied migrations, read on sessions of their own that are closed before
    /// the template lock is released.
    pub(crate) async fn template_history(&self) -> Result<TemplateHistory, ClusterError> {
        let (admin, admin_task) = self.connect(self.control.as_str()).await?;
        let locked: bool = admin
            .query_one("SELECT pg_try_advisory_lock($1)", &[&TEMPLATE_LOCK])
            .await
            .map_err(|e| self.database_error(&e))?
            .get(0);
        let history = if !locked {
            Ok(TemplateHistory::Busy)
        } else if !self.ensure_ours(&admin, &self.template).await? {
            Ok(TemplateHistory::Missing)
        } else {
            self.read_template_history().await.map(TemplateHistory::Applied)
        };
        // Closing the session releases the lock.
        drop(admin);
        let _ = admin_task.await;
        history
    }

    async fn read_template_history(&self) -> Result<Vec<Applied>, ClusterError> {
        let (client, task) = self.connect(self.template.as_str()).await?;
        let schema = tenancy::domain::SchemaName::database_tenant();
        let history = async {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.relname = $1 AND n.nspname = $2",
                    &[&HISTORY_TABLE, &schema.as_str()],
                )
                .await?
                .is_some();
            if !exists {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {} FROM {}.{HISTORY_TABLE} ORDER BY version",
                Applied::COLUMNS,
                schema.quoted()
            );
            Ok(client.query(&sql, &[]).await?.iter().map(|row| Applied::from_row(row, 0)).collect())
        }
        .await
        .map_err(|e: tokio_postgres::Error| self.database_error(&e));
        drop(client);
        let _ = task.await;
        history
    }
}
