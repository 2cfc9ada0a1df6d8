//! Who may run SQL for a tenant: the `Neon-Connection-String` header must carry the tenant's
//! own role and password, and name a host that resolves to the same tenant as `Host`.

use crate::resolve::{ResolveTenantError, Resolver};
use subtle::ConstantTimeEq as _;
use tenancy::catalog::TenantRecord;
use tenancy::secrets::DbCredentials;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send the tenant's connection string in Neon-Connection-String")]
    Missing,
    #[error("Neon-Connection-String is not a valid postgres:// URL")]
    Malformed,
    #[error("the connection string's host is not the tenant of the request's Host")]
    WrongTenant,
    #[error("password authentication failed for user {0:?}")]
    BadCredentials(String),
    #[error("tenant directory unavailable")]
    Unavailable(String),
}

/// Checks the header against the tenant's credentials.
pub async fn check(
    header: Option<&str>,
    tenant: &TenantRecord,
    credentials: &DbCredentials,
    resolver: &Resolver,
) -> Result<(), AuthError> {
    let raw = header.ok_or(AuthError::Missing)?;
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err(AuthError::Malformed);
    }
    let config = raw.parse::<tokio_postgres::Config>().map_err(|_| AuthError::Malformed)?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => return Err(AuthError::Malformed),
    };
    match resolver.lookup(tenancy::domain::normalize_host(&host).map_err(|_| AuthError::WrongTenant)?).await {
        Ok(Some(named)) if named.id == tenant.id => {}
        Ok(_) | Err(ResolveTenantError::NotFound) => return Err(AuthError::WrongTenant),
        Err(other) => return Err(AuthError::Unavailable(other.to_string())),
    }
    let user = config.get_user().unwrap_or_default();
    let password = config.get_password().unwrap_or_default();
    let user_ok = user.as_bytes().ct_eq(credentials.username.as_bytes());
    let password_ok = password.ct_eq(credentials.password.as_bytes());
    if bool::from(user_ok & password_ok) {
        Ok(())
    } else {
        Err(AuthError::BadCredentials(user.to_owned()))
    }
}
