//! Configuration shared by `tenantctl` and `tenant-router`. Every flag also reads the
//! environment variable named in its help; terraform and operators rely on these names.

use crate::domain::BaseDomain;
use crate::secret::Secret;
use crate::secrets::aws::AwsSecretStore;
use crate::secrets::local::{LocalKey, LocalSecretStore};
use crate::secrets::{SecretError, SecretsPrefix, SharedSecretStore};
use std::path::PathBuf;
use std::sync::Arc;

/// The help heading of the settings every command reads (`-h` hides them, `--help` shows them).
pub const SETTINGS_HEADING: &str = "Settings (each also from its environment variable; -h hides them)";

/// The configuration names both binaries accept (terraform and operators rely on them; each
/// binary's `--help` must list them, which its tests check).
pub const SHARED_ENV_NAMES: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "TENANT_BASE_DOMAIN",
    "SECRETS_BACKEND",
    "SECRETS_PREFIX",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
];

/// Where tenant credentials are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecretsBackend {
    /// AWS Secrets Manager (standard AWS configuration; `AWS_ENDPOINT_URL` for a local endpoint).
    Aws,
    /// Encrypted (AES-256-GCM) in the catalog under `SECRETS_LOCAL_KEY`.
    Local,
}

/// Settings both binaries share.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonSettings {
    /// Catalog database URL, e.g. postgres://user:password@host:5432/tenancy (tenantctl's
    /// commands can go through the API instead: `tenantctl login`).
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<Secret>,

    /// PEM file of the CA certificates that PostgreSQL servers' certificates are checked
    /// against under sslmode=verify-ca or verify-full (e.g. Amazon RDS's global-bundle.pem).
    /// Without it those modes refuse every server; other modes do not need it.
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "PG_SSL_ROOT_CERT"
    )]
    pub pg_ssl_root_cert: Option<std::path::PathBuf>,

    /// Redis URL for the routing cache and invalidation messages; without it routers rely on
    /// their in-process cache and the catalog.
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key and channel this deployment uses.
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "REDIS_KEY_PREFIX",
        default_value = "tenancy:"
    )]
    pub redis_key_prefix: String,

    /// Domain under which each tenant has its subdomain: <slug>.<TENANT_BASE_DOMAIN>.
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "TENANT_BASE_DOMAIN",
        default_value = "app.localhost"
    )]
    pub tenant_base_domain: BaseDomain,

    #[command(flatten)]
    pub secrets: SecretsSettings,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::telemetry::LogFormat,
}

impl CommonSettings {
    /// The catalog database's URL, which every server and catalog command needs.
    ///
    /// # Errors
    /// [`crate::pg::PoolError::NoUrl`] when it is not set (or empty).
    pub fn database_url(&self) -> Result<&Secret, crate::pg::PoolError> {
        self.database_url.as_ref().filter(|url| !url.expose().is_empty()).ok_or(crate::pg::PoolError::NoUrl)
    }

    /// The CA bundle of [`CommonSettings::pg_ssl_root_cert`] (empty without one).
    pub fn ca_bundle(&self) -> Result<crate::pg::CaBundle, crate::pg::CaBundleError> {
        crate::pg::CaBundle::from_setting(self.pg_ssl_root_cert.as_deref())
    }
}

/// Secret store settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsSettings {
    /// Secret store backend.
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "SECRETS_BACKEND",
        value_enum,
        default_value = "local"
    )]
    pub secrets_backend: SecretsBackend,

    /// Prefix of secret names: <SECRETS_PREFIX>/tenants/<tenant-id>/postgres.
    #[arg(hide_short_help = true, help_heading = SETTINGS_HEADING, long, env = "SECRETS_PREFIX", default_value = "tenancy", value_parser = SecretsPrefix::parse)]
    pub secrets_prefix: SecretsPrefix,

    /// Key of the local secret store: base64 of 32 random bytes (`openssl rand -base64 32`).
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "SECRETS_LOCAL_KEY",
        hide_env_values = true
    )]
    pub secrets_local_key: Option<Secret>,

    /// File holding the local secret store key (instead of SECRETS_LOCAL_KEY).
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "SECRETS_LOCAL_KEY_FILE"
    )]
    pub secrets_local_key_file: Option<PathBuf>,

    /// AWS region of Secrets Manager (else the standard AWS configuration decides). Credentials
    /// come from the standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or the
    /// task's IAM role.
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "AWS_REGION"
    )]
    pub aws_region: Option<String>,

    /// Secrets Manager endpoint instead of AWS's (e.g. a local moto_server for tests).
    #[arg(
        hide_short_help = true,
        help_heading = SETTINGS_HEADING,
        long,
        env = "AWS_ENDPOINT_URL"
    )]
    pub aws_endpoint_url: Option<String>,
}

impl SecretsSettings {
    /// Builds the configured secret store. `catalog` is used by the local backend.
    pub async fn build(&self, catalog: deadpool_postgres::Pool) -> Result<SharedSecretStore, SecretError> {
        match self.secrets_backend {
            SecretsBackend::Aws => Ok(Arc::new(
                AwsSecretStore::new(self.aws_region.clone(), self.aws_endpoint_url.clone()).await,
            )),
            SecretsBackend::Local => {
                let key =
                    match (&self.secrets_local_key, &self.secrets_local_key_file) {
                        (Some(raw), _) => LocalKey::from_base64(raw.expose())?,
                        (None, Some(path)) => LocalKey::from_file(path)?,
                        (None, None) => return Err(SecretError::Key(
                            "SECRETS_BACKEND=local needs SECRETS_LOCAL_KEY or SECRETS_LOCAL_KEY_FILE: the \
                             key this install's credentials are encrypted with (a new key cannot read \
                             them; `tenantctl doctor` says whether there are any); only a new install \
                             generates one (`openssl rand -base64 32`)"
                                .into(),
                        )),
                    };
                Ok(Arc::new(LocalSecretStore::new(&key, catalog)))
            }
        }
    }
}
