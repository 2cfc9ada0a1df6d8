//! Executing a run's waves. Per cluster, `concurrency` workers take tenants from one queue. A
//! worker migrates schema tenants on a migrator session of its own, replaced every
//! `tenants_per_connection` tenants (one backend never accumulates the catalog caches of
//! thousands of schemas) and after any failure; a tenant with its own database gets a session
//! to that database. A tenant that hits the lock timeout goes back to the end of the queue, up
//! to `retries` times, so it never delays the others. Once more than `max_failures` tenants
//! failed, workers start no new tenant.

use super::{catalog_error, millis, FleetError, ItemState, Progress, RunOptions, TenantResult};
use crate::catalog::fleet_runs;
use crate::clusters::Cluster;
use crate::control_plane::ControlPlane;
use crate::tenant_migrations::{
    migrate_schema, MigrateTenantError, Migrated, MigrationLocks, TenantMigrations,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenancy::catalog::TenantRecord;
use tenancy::error::OperationError;

/// A tenant waiting for a worker.
struct Job {
    tenant: TenantRecord,
    /// Attempts made so far.
    attempts: u32,
    /// Not before this instant (a retry waits a little for the lock to go away).
    not_before: Instant,
}

/// A worker's migrator session to its cluster's shared database.
struct Session {
    client: tokio_postgres::Client,
    tenants: usize,
}

pub(super) struct Execution<'a> {
    cp: &'a ControlPlane,
    migrations: &'a TenantMigrations,
    run: uuid::Uuid,
    options: &'a RunOptions,
    progress: &'a dyn Progress,
    failures: AtomicUsize,
    halted: AtomicBool,
    /// Who asked the run to halt, once a worker saw the request.
    halt_requested_by: Mutex<Option<String>>,
}

impl<'a> Execution<'a> {
    pub(super) fn new(
        cp: &'a ControlPlane,
        migrations: &'a TenantMigrations,
        run: uuid::Uuid,
        options: &'a RunOptions,
        progress: &'a dyn Progress,
    ) -> Self {
        Self {
            cp,
            migrations,
            run,
            options,
            progress,
            failures: 0.into(),
            halted: false.into(),
            halt_requested_by: Mutex::new(None),
        }
    }

    /// Whether too many tenants failed or an operator asked to halt: no tenant is started any
    /// more.
    pub(super) fn halted(&self) -> bool {
        self.halted.load(Ordering::Relaxed)
    }

    /// Who asked the run to halt, if a worker saw such a request.
    pub(super) fn halt_requested_by(&self) -> Option<String> {
        lock(&self.halt_requested_by).clone()
    }

    /// Migrates one wave of tenants, clusters in parallel; returns the results of the tenants
    /// that were worked on (all of them unless the run halted).
    pub(super) async fn wave(&self, tenants: Vec<TenantRecord>) -> Result<Vec<TenantResult>, FleetError> {
        let mut queues: BTreeMap<String, VecDeque<Job>> = BTreeMap::new();
        let now = Instant::now();
        for tenant in tenants {
            queues.entry(tenant.cluster.clone()).or_default().push_back(Job {
                tenant,
                attempts: 0,
                not_before: now,
            });
        }
        let queues: Vec<(String, usize, Mutex<VecDeque<Job>>)> =
            queues.into_iter().map(|(cluster, jobs)| (cluster, jobs.len(), Mutex::new(jobs))).collect();
        let results = Mutex::new(Vec::new());
        let workers = queues.iter().flat_map(|(cluster, size, queue)| {
            (0..self.options.concurrency.min(*size)).map(|_| self.worker(cluster, queue, &results))
        });
        futures::future::try_join_all(workers).await?;
        Ok(results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    async fn worker(
        &self,
        cluster: &str,
        queue: &Mutex<VecDeque<Job>>,
        results: &Mutex<Vec<TenantResult>>,
    ) -> Result<(), FleetError> {
        let cluster = match self.cp.cluster(cluster).await {
            Ok(cluster) => cluster,
            Err(e) => {
                // Every tenant of an unreachable cluster fails with the reason (until the run
                // halts: the rest stay pending).
                while let (false, Some(job)) = (self.halted(), next_job(queue)) {
                    let error = MigrateTenantError::Session(e.to_string());
                    let result = self.finish(&job, Err(error), Instant::now()).await?;
                    self.progress.tenant_done(&result);
                    lock(results).push(result);
                }
                return Ok(());
            }
        };
        let (mut session, mut locks) = (None, None);
        while !self.halted() {
            let Some(mut job) = next_job(queue) else { break };
            tokio::time::sleep_until(job.not_before.into()).await;
            let halt_request = {
                let client = self.cp.catalog.get().await.map_err(catalog_error)?;
                fleet_runs::mark_running(&**client, self.run, job.tenant.id).await.map_err(catalog_error)?
            };
            if let Some(by) = halt_request {
                // The tenant stays pending in the ledger, for `resume`.
                lock(&self.halt_requested_by).get_or_insert(by);
                self.halted.store(true, Ordering::Relaxed);
                break;
            }
            let started = Instant::now();
            job.attempts += 1;
            let outcome = match self.where_now(&cluster, &job.tenant).await {
                Ok(tenant) => self.migrate(&cluster, &tenant, &mut session, &mut locks).await,
                Err(moved) => Err(moved),
            };
            match outcome {
                Err(error) if error.kind().is_retryable() && job.attempts <= self.options.retries => {
                    tracing::info!(tenant = %job.tenant.slug, attempt = job.attempts, %error, "tenant will be retried");
                    let client = self.cp.catalog.get().await.map_err(catalog_error)?;
                    let note = format!("attempt {} of {}: {error}", job.attempts, self.options.retries + 1);
                    fleet_runs::mark_retrying(&**client, self.run, job.tenant.id, &note)
                        .await
                        .map_err(catalog_error)?;
                    job.not_before = Instant::now() + retry_delay(job.attempts);
                    lock(queue).push_back(job);
                }
                outcome => {
                    let result = self.finish(&job, outcome, started).await?;
                    self.progress.tenant_done(&result);
                    lock(results).push(result);
                }
            }
        }
        Ok(())
    }

    /// The tenant as the catalog has it now, where this worker's cluster is: not one that a
    /// move is copying (the copy would miss the migration), nor one moved to another cluster
    /// since the run was planned (its old copy would be migrated instead).
    async fn where_now(
        &self,
        cluster: &Cluster,
        planned: &TenantRecord,
    ) -> Result<TenantRecord, MigrateTenantError> {
        let unavailable = |e: String| MigrateTenantError::Session(format!("catalog: {e}"));
        let client = self.cp.catalog.get().await.map_err(|e| unavailable(e.to_string()))?;
        if crate::catalog::moves::running_for(&**client, planned.id)
            .await
            .map_err(|e| unavailable(tenancy::pg::describe_error(&e)))?
        {
            return Err(MigrateTenantError::Moved(
                "the tenant is being moved: migrate it once its move is done".into(),
            ));
        }
        let now = tenancy::catalog::tenant_by_id(&**client, planned.id)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| MigrateTenantError::Moved("the tenant is gone from the catalog".into()))?;
        if now.cluster != cluster.name {
            return Err(MigrateTenantError::Moved(format!(
                "the tenant moved to cluster {} since the run was planned: run the migration again",
                now.cluster
            )));
        }
        Ok(now)
    }

    /// Migrates one tenant on the worker's session (or on a session to its own database),
    /// holding its migration lock on the worker's lock session.
    async fn migrate(
        &self,
        cluster: &Cluster,
        tenant: &TenantRecord,
        session: &mut Option<Session>,
        locks: &mut Option<MigrationLocks>,
    ) -> Result<Migrated, MigrateTenantError> {
        let connect_error = |e: crate::clusters::ClusterError| MigrateTenantError::Session(e.to_string());
        // A tenant with its own database gets a session to it, used once; the others share the
        // worker's session to the cluster's shared database.
        let mut current = match &tenant.database_name {
            Some(database) => Session {
                client: cluster.migrator_session(Some(database)).await.map_err(connect_error)?,
                tenants: 0,
            },
            None => match session.take() {
                Some(current) if current.tenants < self.options.tenants_per_connection => current,
                _ => Session {
                    client: cluster.migrator_session(None).await.map_err(connect_error)?,
                    tenants: 0,
                },
            },
        };
        current.tenants += 1;
        let locks = match locks {
            Some(locks) => locks,
            None => locks.insert(MigrationLocks::new(cluster.lock_session().await.map_err(connect_error)?)),
        };
        let database = tenant.database_name.as_ref().unwrap_or(&cluster.tenants);
        let result = migrate_schema(
            &mut current.client,
            Some((locks, database.as_str())),
            self.migrations,
            &tenant.schema_name,
            &cluster.owner,
            Some(&tenant.role_name),
            self.options.migrate_settings(),
        )
        .await;
        // After a failure the session's state is not known: the next tenant gets a fresh one.
        if result.as_ref().is_ok_and(|migrated| migrated.session_clean) && tenant.database_name.is_none() {
            *session = Some(current);
        }
        result
    }

    /// Records a tenant's outcome in the ledger (and its new version in the catalog).
    async fn finish(
        &self,
        job: &Job,
        outcome: Result<Migrated, MigrateTenantError>,
        started: Instant,
    ) -> Result<TenantResult, FleetError> {
        let target = self.migrations.target_version();
        let (state, from, applied, error) = match outcome {
            Ok(migrated) => (ItemState::Done, migrated.from, migrated.applied, None),
            Err(error) => {
                let state = match error {
                    MigrateTenantError::Drift(_) => ItemState::Drift,
                    MigrateTenantError::Locked(_) => ItemState::LockTimeout,
                    MigrateTenantError::Session(_)
                    | MigrateTenantError::Migration(_)
                    | MigrateTenantError::Moved(_) => ItemState::Failed,
                };
                tracing::warn!(tenant = %job.tenant.slug, state = state.as_str(), %error, "tenant not migrated");
                (state, None, Vec::new(), Some(error.to_string()))
            }
        };
        if state != ItemState::Done {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if self.options.max_failures.is_some_and(|max| failures > max) {
                self.halted.store(true, Ordering::Relaxed);
            }
        }
        let result = TenantResult {
            slug: job.tenant.slug.to_string(),
            tenant_id: job.tenant.id.to_string(),
            state,
            from_version: from,
            applied,
            attempts: job.attempts,
            error,
            duration_ms: millis(started.elapsed()),
        };
        let outcome = fleet_runs::Outcome {
            state: state.as_str(),
            from_version: result.from_version,
            to_version: (state == ItemState::Done).then_some(target),
            duration_ms: i64::try_from(result.duration_ms).unwrap_or(i64::MAX),
            error: result.error.as_deref(),
        };
        let client = self.cp.catalog.get().await.map_err(catalog_error)?;
        fleet_runs::mark_finished(&**client, self.run, job.tenant.id, &outcome)
            .await
            .map_err(catalog_error)?;
        Ok(result)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The job to do next: the first one whose time has come, or else the one due soonest.
fn next_job(queue: &Mutex<VecDeque<Job>>) -> Option<Job> {
    let mut queue = lock(queue);
    let now = Instant::now();
    let index = queue
        .iter()
        .position(|job| job.not_before <= now)
        .or_else(|| queue.iter().enumerate().min_by_key(|(_, job)| job.not_before).map(|(i, _)| i))?;
    queue.remove(index)
}

/// How long a tenant waits before its next attempt: 1 s, 2 s, 4 s, … at most 30 s.
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}
