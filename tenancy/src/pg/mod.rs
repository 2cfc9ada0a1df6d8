//! PostgreSQL connection helpers shared by both binaries: every connection (the catalog, a
//! cluster's admin connections, a tenant's) is opened through a [`PgConfig`], with TLS as its
//! `sslmode` says (see [`tls`]).

mod tls;

pub use tls::{CaBundle, CaBundleError, PgTlsStream, SslMode, Tls};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// Why a connection pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("not set: the catalog database's URL (--database-url), e.g. postgres://user:password@host:5432/tenancy")]
    NoUrl,
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("could not build the connection pool: {0}")]
    Build(String),
    #[error(transparent)]
    CaBundle(#[from] CaBundleError),
}

impl crate::error::OperationError for PoolError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            Self::NoUrl | Self::InvalidUrl(_) | Self::CaBundle(_) => crate::error::ErrorKind::Misconfigured,
            Self::Build(_) => crate::error::ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NoUrl | Self::InvalidUrl(_) | Self::CaBundle(_) => "invalid_configuration",
            Self::Build(_) => "unavailable",
        }
    }
}

/// Connection settings: tokio-postgres' own, the `sslmode` (which tokio-postgres only partly
/// knows) and the CA bundle the verifying modes check against. Dereferences to
/// `tokio_postgres::Config` for everything else.
#[derive(Clone)]
pub struct PgConfig {
    config: tokio_postgres::Config,
    sslmode: SslMode,
    bundle: CaBundle,
    tls: Tls,
}

impl PgConfig {
    pub fn new(mut config: tokio_postgres::Config, sslmode: SslMode, bundle: &CaBundle) -> Self {
        config.ssl_mode(sslmode.negotiation());
        Self { config, sslmode, bundle: bundle.clone(), tls: Tls::new(sslmode, bundle) }
    }

    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    pub fn ca_bundle(&self) -> &CaBundle {
        &self.bundle
    }

    /// The TLS connector for these settings (also what a cancel request needs).
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }

    /// Opens a connection; the caller drives the returned connection future.
    pub async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, PgTlsStream<tokio_postgres::Socket>>,
        ),
        tokio_postgres::Error,
    > {
        // Boxed: the handshake's state (TLS included) would otherwise sit in every caller's future.
        Box::pin(self.config.connect(self.tls())).await
    }
}

impl std::ops::Deref for PgConfig {
    type Target = tokio_postgres::Config;
    fn deref(&self) -> &Self::Target {
        &self.config
    }
}

impl std::ops::DerefMut for PgConfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.config
    }
}

/// Parses a `postgres://` URL (or key=value string) without ever echoing it back: the error
/// names what is wrong but not the URL, which may hold a password. Its `sslmode` may be any of
/// libpq's (see [`SslMode`]); `bundle` is what `verify-ca` and `verify-full` trust.
pub fn parse_config(url: &str, bundle: &CaBundle) -> Result<PgConfig, PoolError> {
    let (url, sslmode) = take_sslmode(url)?;
    let mut config =
        url.parse::<tokio_postgres::Config>().map_err(|e| PoolError::InvalidUrl(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(PgConfig::new(config, sslmode, bundle))
}

/// The `sslmode` of a URL or key=value string (libpq's default, `prefer`, when it names none),
/// and the string without it for tokio-postgres, which does not know the verifying modes.
fn take_sslmode(url: &str) -> Result<(String, SslMode), PoolError> {
    let invalid = |raw: &str| PoolError::InvalidUrl(format!("invalid sslmode {raw:?}"));
    let mut sslmode = SslMode::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The query string starts at the first `?` after the credentials, if any.
        let after_credentials = url.rfind('@').map_or(0, |at| at + 1);
        let Some(question) = url[after_credentials..].find('?').map(|q| after_credentials + q) else {
            return Ok((url.to_owned(), sslmode));
        };
        let mut kept = Vec::new();
        for param in url[question + 1..].split('&') {
            match param.strip_prefix("sslmode=") {
                Some(raw) => sslmode = SslMode::parse(raw).ok_or_else(|| invalid(raw))?,
                None => kept.push(param),
            }
        }
        let base = &url[..question];
        let rest = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
        Ok((format!("{base}{rest}"), sslmode))
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.strip_prefix("sslmode=") {
                Some(raw) => {
                    let raw = raw.trim_matches('\'');
                    sslmode = SslMode::parse(raw).ok_or_else(|| invalid(raw))?;
                }
                None => kept.push(token),
            }
        }
        Ok((kept.join(" "), sslmode))
    }
}

/// How long to wait for a new connection, or for a free one from a full pool: a dependency that
/// does not answer becomes an error (503, a retried job), never a hang.
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const CHECKOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A pool of connections to the catalog (or a cluster's admin connection).
pub fn pool(config: &PgConfig, max_size: usize) -> Result<Pool, PoolError> {
    pool_with(config, max_size, RecyclingMethod::Fast).build().map_err(|e| PoolError::Build(e.to_string()))
}

/// The builder of a pool of connections with `config` (and TLS as its `sslmode` says).
pub fn pool_with(
    config: &PgConfig,
    max_size: usize,
    recycling: RecyclingMethod,
) -> deadpool_postgres::PoolBuilder {
    let manager = Manager::from_config(
        config.config.clone(),
        config.tls(),
        ManagerConfig { recycling_method: recycling },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .timeouts(deadpool_postgres::Timeouts {
            wait: Some(CHECKOUT_TIMEOUT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        })
        .runtime(deadpool_postgres::Runtime::Tokio1)
}

/// A one-line, password-free description of a PostgreSQL error: the server's message and
/// SQLSTATE when there is one, else the client-side error and its causes (such as why a TLS
/// handshake failed).
pub fn describe_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut described = err.to_string();
            let mut cause = std::error::Error::source(err);
            while let Some(inner) = cause {
                described.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            described
        }
    }
}

/// `host:port/dbname` of a config, for logs (never the user's password).
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("{host}:{port}/{db}")
}

/// Whether the database behind `pool` answers a trivial query.
pub async fn is_reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// The `/readyz` answer of both binaries: ready when the catalog answers; `details` are added
/// to the JSON body.
pub async fn readiness(catalog: &Pool, details: serde_json::Value) -> (bool, serde_json::Value) {
    let ready = is_reachable(catalog).await;
    let mut body = serde_json::json!({ "catalog": if ready { "ok" } else { "unreachable" } });
    if let (Some(body), serde_json::Value::Object(details)) = (body.as_object_mut(), details) {
        body.extend(details);
    }
    (ready, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sslmode_of(url: &str) -> (String, SslMode) {
        take_sslmode(url).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sslmode_is_taken_from_urls_and_key_value_strings() {
        assert_eq!(sslmode_of("postgres://u:p@h/db"), ("postgres://u:p@h/db".into(), SslMode::Prefer));
        assert_eq!(
            sslmode_of("postgres://u:p@h/db?sslmode=verify-full&application_name=x"),
            ("postgres://u:p@h/db?application_name=x".into(), SslMode::VerifyFull)
        );
        assert_eq!(
            sslmode_of("postgresql://u:p@h/db?sslmode=verify-ca"),
            ("postgresql://u:p@h/db".into(), SslMode::VerifyCa)
        );
        // A `?` or `sslmode=` in the password is not the query string.
        assert_eq!(sslmode_of("postgres://u:a?sslmode=disable@h/db").1, SslMode::Prefer);
        assert_eq!(
            sslmode_of("host=h user=u sslmode='require' dbname=d"),
            ("host=h user=u dbname=d".into(), SslMode::Require)
        );
        assert!(take_sslmode("postgres://u:p@h/db?sslmode=bogus").is_err());
    }

    #[test]
    fn parsed_configs_negotiate_tls_as_their_sslmode_says() {
        let bundle = CaBundle::none();
        let config = parse_config("postgres://u:secret@h/db?sslmode=verify-full", &bundle).unwrap();
        assert_eq!(config.sslmode(), SslMode::VerifyFull);
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let config = parse_config("postgres://u:secret@h/db?sslmode=disable", &bundle).unwrap();
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let err = parse_config("postgres://u:secret@h/db?sslmode=nope", &bundle).err().unwrap().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
