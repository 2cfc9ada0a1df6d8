//! Admission: how every door (`POST /sql`, the reverse proxy, an embedding service) turns a
//! request into a tenant it may serve, in this order:
//!
//! 1. a client past its failed attempts is refused at once (429, see [`crate::failed_attempts`]);
//! 2. the `Host` resolves to a servable tenant (see [`crate::resolve`]); a host with no tenant
//!    counts as a failed attempt of the client;
//! 3. the tenant goes on the request's span, in its `tenant` field (when the span has one), and
//!    on its access log line;
//! 4. a door that checks who is asking does it now: a bearer token is verified for the tenant
//!    on every door that accepts one ([`ResolvedTenant::identify`], see [`crate::identity`]),
//!    and `/sql` without one checks the tenant's connection string; a failure counts as a
//!    failed attempt of the client;
//! 5. the request is charged to the tenant's plan rate limit (see [`crate::rate_limit`]): past
//!    it, 429 and one more `rate_limited` in the metrics.
//!
//! [`ResolvedTenant`] is a request's tenant after steps 1–3; [`AdmittedTenant`] after step 5,
//! also as an axum extractor for doors that leave identity to the application.

use crate::error::{AuthError, RouterError};
use crate::failed_attempts::ClientAddress;
use crate::identity::{Identity, TokenError};
use crate::resolve::ResolveTenantError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::sync::Arc;
use tenancy::catalog::TenantRecord;

/// The servable tenant of a request's `Host`, on the request's span, not yet charged to its
/// plan's rate limit.
pub(crate) struct ResolvedTenant {
    pub(crate) tenant: Arc<TenantRecord>,
}

impl ResolvedTenant {
    /// Steps 1 to 3 for a request of `client` with `headers`.
    pub(crate) async fn resolve(
        state: &AppState,
        client: ClientAddress,
        headers: &HeaderMap,
    ) -> Result<Self, RouterError> {
        state.failed_attempts.check(client)?;
        let host = crate::resolve::host_of(headers)?;
        let tenant = match state.resolver.resolve(host).await {
            Err(err @ ResolveTenantError::NotFound) => {
                state.failed_attempts.record(client);
                return Err(err.into());
            }
            other => other?,
        };
        tracing::Span::current().record("tenant", tracing::field::display(&tenant.slug));
        crate::access_log::note_tenant(tenant.slug.as_str());
        Ok(Self { tenant })
    }

    /// Step 4 for a bearer token: who the request's token is for (`None` when it sends none),
    /// if it may reach this tenant. A refused token counts against `client`.
    pub(crate) async fn identify(
        &self,
        state: &AppState,
        client: ClientAddress,
        headers: &HeaderMap,
    ) -> Result<Option<Identity>, AuthError> {
        let Some(token) = bearer_token(headers) else { return Ok(None) };
        let result = match &state.identity {
            Some(verifier) => verifier.verify(token, &self.tenant).await.map_err(AuthError::Token),
            None => Err(AuthError::Token(TokenError::NotConfigured)),
        };
        if result.as_ref().is_err_and(|e| !matches!(e, AuthError::Token(TokenError::KeysUnavailable))) {
            state.failed_attempts.record(client);
        }
        result.map(Some)
    }

    /// Step 5: charges the tenant's plan limit for the request. A door that checks identity
    /// calls it only once the request passed: a failed one must not spend the tenant's limit.
    pub(crate) async fn admit(self, state: &AppState) -> Result<AdmittedTenant, RouterError> {
        if state.rate_limits.allow(&self.tenant).await {
            Ok(AdmittedTenant { tenant: self.tenant })
        } else {
            state.metrics.rate_limited.inc();
            Err(RouterError::RateLimited)
        }
    }
}

/// The token of the request's `Authorization: Bearer` header, if it sends one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The tenant a request may be served for: resolved from its `Host`, servable, for a client
/// within its failed attempts, and charged to the tenant's plan rate limit. As an extractor it
/// is refused with the router's own errors (`RouterError`).
pub struct AdmittedTenant {
    pub tenant: Arc<TenantRecord>,
}

impl AdmittedTenant {
    /// Admits a request of `client` with `headers` (steps 1 to 5, with no identity check).
    pub(crate) async fn of(
        state: &AppState,
        client: ClientAddress,
        headers: &HeaderMap,
    ) -> Result<Self, RouterError> {
        ResolvedTenant::resolve(state, client, headers).await?.admit(state).await
    }
}

impl FromRequestParts<AppState> for AdmittedTenant {
    type Rejection = RouterError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = ClientAddress::of(parts, state.trusted_proxy_hops);
        Self::of(state, client, &parts.headers).await
    }
}
