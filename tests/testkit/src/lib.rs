//! The test harness shared by every crate's integration tests.
//!
//! - [`services`]: the PostgreSQL, Redis and moto started by `scripts/services.sh` (its `env`
//!   output, exported by `make test`).
//! - [`TestDb`]: a fresh database per test on that PostgreSQL, named after the test, with a
//!   unique role prefix (roles are cluster-wide) and a unique Redis key prefix; dropped with its
//!   roles when the test passes, kept (and named on stderr) when it fails, until a later run
//!   sweeps it. Each test process first sweeps what earlier runs left, never what a running
//!   test process uses.
//! - [`PgServer`] and [`RedisServer`]: dedicated servers a test may stop and restart to inject
//!   faults without disturbing other tests.
//! - [`init_logging`]: test logs only when `TEST_LOG` is set.

// A test harness reports kept databases and failed clean-ups on stderr, beside the test output.
#![allow(clippy::print_stderr)]

mod db;
mod servers;

pub use db::TestDb;
pub use servers::{make_certificates, PgServer, RedisServer};

use std::sync::OnceLock;

/// Connection settings of the shared test services.
#[derive(Debug, Clone)]
pub struct Services {
    /// Superuser URL of the harness's PostgreSQL (password-checked, scram-sha-256).
    pub database_url: String,
    pub redis_url: String,
    /// moto_server, the local AWS Secrets Manager endpoint.
    pub aws_endpoint_url: String,
    /// Directory of the PostgreSQL server binaries (initdb, pg_ctl).
    pub pg_bin: Option<String>,
    /// OS user that runs PostgreSQL (it refuses to run as root).
    pub pg_user: Option<String>,
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set. Integration tests need the services of scripts/services.sh: run \
             `make test`, or `scripts/services.sh up` and `eval \"$(scripts/services.sh env)\"` first"
        )
    })
}

/// The shared services, from the environment.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| Services {
        database_url: required("DATABASE_URL"),
        redis_url: required("REDIS_URL"),
        aws_endpoint_url: required("AWS_ENDPOINT_URL"),
        pg_bin: std::env::var("TENANCY_PG_BIN").ok(),
        pg_user: std::env::var("TENANCY_PG_USER").ok(),
    })
}

/// Installs a tracing subscriber writing to the test output when `TEST_LOG` is set (its value
/// is the filter, e.g. `TEST_LOG=debug`, or `1` for `info`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let filter = if filter == "1" || filter.is_empty() { "info".to_owned() } else { filter };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A short random lower-case hex string for unique names.
pub fn unique_suffix() -> String {
    let bytes: [u8; 4] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The workspace root (for `migrations/`, `tenant-templates/`).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| std::path::PathBuf::from("."))
}

/// Which secret store a test's settings use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsFor {
    /// The local store, with a fresh random key.
    Local,
    /// AWS Secrets Manager at the harness's moto_server.
    Aws,
}

/// The settings both binaries share, pointed at `db` (its own Redis prefix; base domain
/// `app.localhost`).
pub fn common_settings(db: &TestDb, secrets: SecretsFor) -> tenancy::settings::CommonSettings {
    use tenancy::settings::{SecretsBackend, SecretsSettings};
    let (backend, key) = match secrets {
        SecretsFor::Local => {
            (SecretsBackend::Local, Some(tenancy::secrets::local::LocalKey::generate_base64()))
        }
        SecretsFor::Aws => (SecretsBackend::Aws, None),
    };
    tenancy::settings::CommonSettings {
        database_url: Some(db.url.clone().into()),
        pg_ssl_root_cert: None,
        redis_url: Some(services().redis_url.clone().into()),
        redis_key_prefix: db.redis_prefix.clone(),
        tenant_base_domain: tenancy::domain::BaseDomain::parse("app.localhost")
            .unwrap_or_else(|e| panic!("{e}")),
        secrets: SecretsSettings {
            secrets_backend: backend,
            secrets_prefix: tenancy::secrets::SecretsPrefix::parse(&format!("test/{}", db.role_prefix))
                .unwrap_or_else(|e| panic!("{e}")),
            secrets_local_key: key.map(Into::into),
            secrets_local_key_file: None,
            aws_region: Some("us-east-1".into()),
            aws_endpoint_url: Some(services().aws_endpoint_url.clone()),
        },
        log_format: tenancy::telemetry::LogFormat::Text,
    }
}
