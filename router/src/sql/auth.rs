//! Who may run SQL for a tenant: a bearer token for it, or the `Neon-Connection-String` header
//! carrying the tenant's own role and password and naming a host that resolves to the same
//! tenant as `Host`.
//!
//! The header last accepted for a pool is remembered with it, so a client that sends the same
//! one again costs a comparison (see `TenantPool::was_accepted`).
//!
//! During a credential rotation a client may already hold the new password while this router
//! still has the old one: on a mismatch the secret is read again (at most every 100 ms per
//! tenant, see `pool::REFRESH_INTERVAL`) and the new password is accepted too.

use crate::admission::ResolvedTenant;
use crate::failed_attempts::ClientAddress;
use crate::identity::Identity;
use crate::resolve::{ResolveTenantError, Resolver};
use crate::state::AppState;
use tenancy::catalog::TenantRecord;

pub use crate::error::AuthError;

/// Authenticates a request for `resolved`'s tenant with its bearer token (when it sends one: who
/// it is for, see [`ResolvedTenant::identify`]) or its `Neon-Connection-String` (`None`: the
/// tenant's own credentials). A failure counts against `client` (see
/// [`crate::failed_attempts`]).
pub(crate) async fn authenticate(
    state: &AppState,
    client: ClientAddress,
    headers: &axum::http::HeaderMap,
    resolved: &ResolvedTenant,
    pool: &crate::pool::TenantPool,
) -> Result<Option<Identity>, AuthError> {
    if let Some(identity) = resolved.identify(state, client, headers).await? {
        return Ok(Some(identity));
    }
    let header = headers.get("neon-connection-string").and_then(|v| v.to_str().ok());
    let result = check(header, &resolved.tenant, pool, &state.pools, &state.resolver).await;
    if result.as_ref().is_err_and(|e| !matches!(e, AuthError::Unavailable(_))) {
        state.failed_attempts.record(client);
    }
    result.map(|()| None)
}

/// Checks the header against the tenant's credentials.
pub async fn check(
    header: Option<&str>,
    tenant: &TenantRecord,
    pool: &crate::pool::TenantPool,
    pools: &crate::pool::TenantPools,
    resolver: &Resolver,
) -> Result<(), AuthError> {
    let raw = header.ok_or(AuthError::Missing)?;
    if pool.was_accepted(raw) {
        return Ok(());
    }
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err(AuthError::Malformed);
    }
    let config = raw.parse::<tokio_postgres::Config>().map_err(|_| AuthError::Malformed)?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => return Err(AuthError::Malformed),
    };
    match resolver.lookup(&tenancy::domain::normalize_host(&host).map_err(|_| AuthError::WrongTenant)?).await
    {
        Ok(Some(named)) if named.id == tenant.id => {}
        Ok(_) | Err(ResolveTenantError::NotFound) => return Err(AuthError::WrongTenant),
        Err(other) => return Err(AuthError::Unavailable(other.to_string())),
    }
    let user = config.get_user().unwrap_or_default();
    let password = config.get_password().unwrap_or_default();
    if crate::pool::credentials_match(&pool.credentials, user, password) {
        pool.remember_accepted(raw);
        Ok(())
    } else if pools.accepts_rotated(tenant, pool, user, password).await {
        Ok(())
    } else {
        Err(AuthError::BadCredentials(user.to_owned()))
    }
}
