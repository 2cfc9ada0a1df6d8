//! The role routers read the catalog with (`<prefix>_router`): exactly what resolving a tenant
//! needs — the routing columns of `control.tenants`, `control.domains`, and (for the `local`
//! secrets backend) the encrypted rows of `control.secrets`, and writing internal users' accesses
//! to the audit log through `control.log_internal_access` — and nothing else: no billing events,
//! no tokens, no jobs, no reading the audit log, no other writes. PostgreSQL enforces it with column
//! privileges, so a router's credentials, if stolen, read no more than a router does.
//!
//! The role is kept up to date with every catalog migration (`NOLOGIN` until
//! `tenantctl routers credentials` gives it a password, which also turns it into a login role).

use crate::control_plane::ControlPlane;
use tenancy::catalog::CatalogError;
use tenancy::domain::{quote_ident, RoleName};
use tenancy::secret::Secret;

/// The comment that marks the router role as ours (someone else's role is never adopted).
const ROUTER_MARKER: &str = "tenancy router role";

/// The router role, its privileges on catalog `database` (and no more: earlier grants are
/// replaced). Run under the catalog migration lock.
pub(crate) fn grants_sql(role: &RoleName, database: &str) -> String {
    let ensure = crate::clusters::ensure_marked_role(role, ROUTER_MARKER);
    let tenant_columns: Vec<&str> =
        tenancy::catalog::TENANT_COLUMNS.split(',').map(|c| c.trim().trim_start_matches("t.")).collect();
    let role = role.quoted();
    format!(
        "{ensure}
         GRANT CONNECT ON DATABASE {database} TO {role};
         GRANT USAGE ON SCHEMA control TO {role};
         REVOKE ALL ON ALL TABLES IN SCHEMA control FROM {role};
         GRANT SELECT ({tenant_columns}) ON control.tenants TO {role};
         GRANT SELECT (host, tenant_id) ON control.domains TO {role};
         GRANT SELECT (name, nonce, ciphertext, deleted_at) ON control.secrets TO {role};
         GRANT EXECUTE ON FUNCTION control.log_internal_access(timestamptz[], text[], uuid[], jsonb[]) TO {role};",
        database = quote_ident(database),
        tenant_columns = tenant_columns.join(", "),
    )
}

/// A router's catalog connection URL, with the password just set.
#[derive(Debug, serde::Serialize)]
pub struct RouterCredentials {
    pub(crate) role: String,
    #[serde(serialize_with = "expose")]
    pub database_url: Secret,
}

fn expose<S: serde::Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

/// Gives the router role a new random password (set as a SCRAM verifier, so the password never
/// reaches the server) and the right to log in; returns the URL routers use as `DATABASE_URL`.
/// Routers holding the old password lose access to the catalog at once: run it, update their
/// `DATABASE_URL`, restart them.
/// Why the routers' credentials could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum RouterCredentialsError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("the catalog's DATABASE_URL: {0}")]
    Url(String),
}

impl tenancy::error::OperationError for RouterCredentialsError {
    fn kind(&self) -> tenancy::error::ErrorKind {
        match self {
            Self::Catalog(e) => e.kind(),
            Self::Url(_) => tenancy::error::ErrorKind::Misconfigured,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Catalog(e) => e.code(),
            Self::Url(_) => "invalid_configuration",
        }
    }
}

pub async fn issue_credentials(
    cp: &ControlPlane,
    catalog_url: &Secret,
) -> Result<RouterCredentials, RouterCredentialsError> {
    let role = RoleName::router(&cp.role_prefix);
    let config = tenancy::pg::parse_config(catalog_url.expose(), &tenancy::pg::CaBundle::none())
        .map_err(|e| RouterCredentialsError::Url(e.to_string()))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => return Err(RouterCredentialsError::Url("it has no TCP host".into())),
    };
    let password = crate::jobs::provision::generate_password();
    let verifier = crate::jobs::provision::verifier::scram_sha_256(&password);
    // A SCRAM verifier is base64 and `$:`; this keeps the literal below a literal regardless.
    if verifier.contains('\'') {
        return Err(RouterCredentialsError::Url("unexpected character in the password verifier".into()));
    }
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    client
        .batch_execute(&format!("ALTER ROLE {} LOGIN PASSWORD '{verifier}'", role.quoted()))
        .await
        .map_err(CatalogError::from)?;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or("postgres");
    // Role and database names are [a-z0-9_]; the password is URL-safe base64.
    // The catalog's sslmode, so routers reach it as the control plane does.
    let url = format!(
        "postgres://{role}:{password}@{host}:{port}/{database}?sslmode={sslmode}",
        role = role.as_str(),
        sslmode = config.sslmode()
    );
    Ok(RouterCredentials { role: role.as_str().to_owned(), database_url: Secret::new(url) })
}
