//! Shared pieces of the benchmarks: latency summaries printed as Markdown rows for
//! `bench/RESULTS.md`, a fleet of tenants to load ([`fleet`]), load generators for HTTP
//! ([`load`]) and the PostgreSQL protocol ([`pg_load`]), the router as a process of its own
//! ([`process`]) and PgBouncer as another ([`pgbouncer`]).

pub mod fleet;
pub mod load;
pub mod pg_load;
pub mod pgbouncer;
pub mod process;

use control_plane::control_plane::ControlPlane;
use control_plane::settings::ProvisioningSettings;
use std::sync::Arc;
use std::time::Duration;
use tenancy::settings::CommonSettings;
use testkit::{common_settings, workspace_root, SecretsFor, TestDb};

/// A fresh database (named after the benchmark's executable) and a control plane on it, as the
/// benchmarks start.
///
/// # Panics
/// When the services of `scripts/services.sh` are not running.
pub async fn control_plane() -> (TestDb, Arc<ControlPlane>) {
    let (db, _common, cp) = control_plane_with_settings().await;
    (db, cp)
}

/// [`control_plane`], with the settings it runs on (to start a router process on them).
///
/// # Panics
/// When the services of `scripts/services.sh` are not running.
pub async fn control_plane_with_settings() -> (TestDb, CommonSettings, Arc<ControlPlane>) {
    control_plane_on(|common| common).await
}

/// [`control_plane_with_settings`] with its cluster reached without TLS (`sslmode=disable`):
/// the tenants it provisions carry that `sslmode`, so the router's connections to PostgreSQL
/// are plaintext, as a benchmark's other clients of the same server are.
///
/// # Panics
/// When the services of `scripts/services.sh` are not running.
pub async fn control_plane_without_tls() -> (TestDb, CommonSettings, Arc<ControlPlane>) {
    control_plane_on(|mut common| {
        let url = common.database_url().unwrap_or_else(|e| panic!("{e}")).expose();
        let separator = if url.contains('?') { '&' } else { '?' };
        common.database_url = Some(format!("{url}{separator}sslmode=disable").into());
        common
    })
    .await
}

async fn control_plane_on(
    adjust: impl FnOnce(CommonSettings) -> CommonSettings,
) -> (TestDb, CommonSettings, Arc<ControlPlane>) {
    let db = TestDb::create().await;
    let common = adjust(common_settings(&db, SecretsFor::Local));
    let settings = ProvisioningSettings::new(
        &db.role_prefix,
        workspace_root().join("migrations"),
        workspace_root().join("tenant-templates"),
    );
    let cp = ControlPlane::start(&common, &settings).await.unwrap_or_else(|e| panic!("{e}"));
    (db, common, cp)
}

/// p50 / p95 / p99 / max of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(index).copied().unwrap_or_default()
        };
        Self { count: samples.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99), max: at(1.0) }
    }

    /// `p50 / p95 / p99 / max` in milliseconds.
    pub fn row(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} ms (n={})",
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}
