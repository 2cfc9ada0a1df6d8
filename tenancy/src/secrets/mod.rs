//! The secret store that holds each tenant's database credentials.
//!
//! Two backends behind one trait: [`aws::AwsSecretStore`] (AWS Secrets Manager; honours
//! `AWS_ENDPOINT_URL` so tests run against a local `moto_server`) and
//! [`local::LocalSecretStore`] (AES-256-GCM encrypted rows in the catalog, under a key the
//! operator provides). The value has the shape RDS uses for its secrets, plus `schema`.

pub mod aws;
pub mod local;

use crate::domain::TenantId;
use std::fmt;
use std::sync::Arc;

/// Database credentials as stored in the secret store, in the JSON shape RDS uses (`engine`,
/// `host`, `port`, `username`, `password`, `dbname`) plus `schema`: a tenant's runtime role (its
/// schema), or a cluster's admin connection (`public`). A tenant's secret also holds its
/// read-only role's login (`reader_username`, `reader_password`); secrets written before there
/// were reader roles lack them.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DbCredentials {
    pub engine: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub dbname: String,
    pub schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_password: Option<String>,
    /// How to reach the server over TLS: the `sslmode` of the cluster's admin URL, carried
    /// into each tenant's secret. Absent in secrets written before it existed: `prefer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<crate::pg::SslMode>,
}

impl DbCredentials {
    /// The connection settings of these credentials (TLS as their `sslmode` says, verified
    /// against `bundle`), with a connect timeout.
    pub fn config(&self, bundle: &crate::pg::CaBundle) -> crate::pg::PgConfig {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.username)
            .password(&self.password)
            .dbname(&self.dbname)
            .connect_timeout(crate::pg::CONNECT_TIMEOUT);
        crate::pg::PgConfig::new(config, self.sslmode.unwrap_or_default(), bundle)
    }

    /// The same connection, logged in as the tenant's read-only role; `None` when the secret
    /// has no reader (a tenant provisioned before reader roles, until its next rotation).
    pub fn reader(&self) -> Option<Self> {
        let (Some(username), Some(password)) = (&self.reader_username, &self.reader_password) else {
            return None;
        };
        Some(Self {
            username: username.clone(),
            password: password.clone(),
            reader_username: None,
            reader_password: None,
            ..self.clone()
        })
    }
}

impl fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCredentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("dbname", &self.dbname)
            .field("schema", &self.schema)
            .field("reader_username", &self.reader_username)
            .field("reader_password", &self.reader_password.as_ref().map(|_| "<redacted>"))
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

/// `<prefix>/tenants/<tenant-id>/postgres`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretName(String);

impl SecretName {
    pub fn for_tenant(prefix: &SecretsPrefix, tenant: TenantId) -> Self {
        Self(format!("{}/tenants/{tenant}/postgres", prefix.0))
    }

    /// `<prefix>/tenants/<tenant-id>/postgres-m<move>`: the credentials of the roles a move
    /// creates for the tenant where it goes.
    pub fn for_move(prefix: &SecretsPrefix, tenant: TenantId, move_id: i64) -> Self {
        Self(format!("{}/tenants/{tenant}/postgres-m{move_id}", prefix.0))
    }

    /// `<prefix>/clusters/<cluster>/admin`: the admin connection of a registered cluster.
    pub fn for_cluster(prefix: &SecretsPrefix, cluster: &crate::domain::ClusterName) -> Self {
        Self(format!("{}/clusters/{cluster}/admin", prefix.0))
    }

    /// Reads a name back from the catalog (`tenants.secret_ref`).
    pub fn from_catalog(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({})", self.0)
    }
}

/// The prefix of every secret name (`SECRETS_PREFIX`), e.g. `tenancy` or `prod/tenancy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsPrefix(String);

impl SecretsPrefix {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && !raw.starts_with('/')
            && !raw.ends_with('/')
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "secrets prefix must be 1 to 128 characters of A-Z a-z 0-9 / _ + = . @ - without a leading or trailing '/'; got {raw:?}"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What went wrong talking to the secret store. Messages never contain secret values or ARNs.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    #[error("secret store refused the request: {0}")]
    Rejected(String),
    #[error("secret {0} could not be decrypted or decoded")]
    Corrupt(String),
    #[error("local secret store key: {0}")]
    Key(String),
}

impl crate::error::OperationError for SecretError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Rejected(_) | Self::Corrupt(_) => ErrorKind::Failed,
            Self::Key(_) => ErrorKind::Misconfigured,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) | Self::Rejected(_) => "secrets_unavailable",
            Self::Corrupt(_) => "secret_corrupt",
            Self::Key(_) => "invalid_configuration",
        }
    }
}

/// Where tenant credentials are kept.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Creates or replaces the secret's value. `request_token` (32–64 characters) makes the
    /// call idempotent: repeating it with the same token and value changes nothing.
    async fn put(
        &self,
        name: &SecretName,
        value: &DbCredentials,
        request_token: &str,
    ) -> Result<(), SecretError>;

    /// The current value, or `None` if there is no such secret (or it is scheduled for
    /// deletion).
    async fn get(&self, name: &SecretName) -> Result<Option<DbCredentials>, SecretError>;

    /// Deletes the secret (AWS keeps it recoverable for its recovery window). Deleting a
    /// missing secret succeeds.
    async fn delete(&self, name: &SecretName) -> Result<(), SecretError>;

    /// `aws` or `local`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;
}

pub type SharedSecretStore = Arc<dyn SecretStore>;

fn decode_credentials(name: &SecretName, raw: &[u8]) -> Result<DbCredentials, SecretError> {
    serde_json::from_slice(raw).map_err(|_| SecretError::Corrupt(name.to_string()))
}

fn encode_credentials(value: &DbCredentials) -> String {
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let creds = DbCredentials {
            engine: "postgres".into(),
            host: "h".into(),
            port: 5432,
            username: "u".into(),
            password: "hunter2-very-secret".into(),
            dbname: "d".into(),
            schema: "s".into(),
            reader_username: Some("r".into()),
            reader_password: Some("reader-hunter3".into()),
            sslmode: None,
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("hunter3"), "{shown}");
    }

    #[test]
    fn secrets_without_a_reader_still_decode() {
        let old = br#"{"engine":"postgres","host":"h","port":5432,"username":"u","password":"p","dbname":"d","schema":"s"}"#;
        let creds = decode_credentials(&SecretName::from_catalog("x".into()), old).unwrap();
        assert_eq!(creds.reader(), None);
        let with_reader = DbCredentials {
            reader_username: Some("r".into()),
            reader_password: Some("rp".into()),
            ..creds.clone()
        };
        let reread = decode_credentials(
            &SecretName::from_catalog("x".into()),
            encode_credentials(&with_reader).as_bytes(),
        )
        .unwrap();
        let reader = reread.reader().unwrap();
        assert_eq!((reader.username.as_str(), reader.password.as_str()), ("r", "rp"));
        assert_eq!((reader.host.as_str(), reader.dbname.as_str()), ("h", "d"));
        // An old secret is written back without the fields it did not have.
        assert!(!encode_credentials(&creds).contains("reader"));
    }

    #[test]
    fn secret_names_follow_the_convention() {
        let prefix = SecretsPrefix::parse("prod/tenancy").unwrap();
        let id = TenantId(uuid::Uuid::nil());
        assert_eq!(
            SecretName::for_tenant(&prefix, id).as_str(),
            "prod/tenancy/tenants/00000000-0000-0000-0000-000000000000/postgres"
        );
        assert!(SecretsPrefix::parse("/x").is_err());
        assert!(SecretsPrefix::parse("a b").is_err());
    }
}
