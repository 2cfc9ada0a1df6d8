//! The reverse proxy (`ROUTER_UPSTREAM`): every path but `/sql` goes to the application, with the
//! resolved tenant in `X-Tenant-Id`, `X-Tenant-Slug` and `X-Tenant-Plan`. When the router checks
//! tokens, a request with a bearer JWT has it verified first (see [`crate::identity`]: for this
//! tenant, or an internal user's), is refused if it fails (401, 403), and reaches the
//! application with who it is for in
//! `X-User-Id` and `X-User-Role` (and its `Authorization`, for the application to check again);
//! an internal user's request is written to the audit log; other bearer credentials (not JWTs)
//! pass through untouched. Any `X-Tenant-*` and `X-User-*` header the client sent (with `_` for
//! `-` too) is removed first, so the application can trust them. Bodies stream
//! both ways through a pooled client. Upstream unreachable: 502; too slow: 504.

use crate::admission::{AdmittedTenant, ResolvedTenant};
use crate::error::RouterError;
use crate::identity::audit::{Access, Door};
use crate::state::AppState;
use crate::upstream::ProxyError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::response::Response;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether header `name` starts with `prefix`, an `_` in `name` read as `-`: CGI-style
/// frameworks read `X-User_Id` as `X-User-Id` (`HTTP_X_USER_ID`). No allocation per header.
fn starts_dashed(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.bytes().zip(prefix.bytes()).all(|(n, p)| n == p || (n == b'_' && p == b'-'))
}

fn header(name: &'static str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((HeaderName::from_static(name), HeaderValue::from_str(value).ok()?))
}

/// The fallback handler: forwards the request for the `Host`'s tenant (its token, if it has
/// one, verified), charged to the tenant's plan limit.
pub async fn forward(
    State(state): State<AppState>,
    client: crate::failed_attempts::ClientAddress,
    mut request: Request,
) -> Result<Response, RouterError> {
    let upstream = state.upstream.as_ref().ok_or(ProxyError::NotConfigured)?;
    let resolved = ResolvedTenant::resolve(&state, client, request.headers()).await?;
    if request.headers().get_all(axum::http::header::AUTHORIZATION).iter().nth(1).is_some() {
        // The router would check one and the application might read another.
        return Err(RouterError::BadRequest("more than one Authorization header".into()));
    }
    // Only a JWT is the router's to check, and only when it checks tokens: the application's own
    // credentials (an API key, a session token) pass through to it untouched, as before.
    let ours = state.identity.is_some()
        && crate::admission::bearer_token(request.headers()).is_some_and(crate::identity::looks_like_jwt);
    let identity = if ours { resolved.identify(&state, client, request.headers()).await? } else { None };
    let AdmittedTenant { tenant } = resolved.admit(&state).await?;
    if let Some(identity) = identity.as_ref().filter(|identity| identity.role.internal()) {
        let writes = !request.method().is_safe();
        let what = format!("{} {}", request.method(), request.uri().path());
        state.audit.record(Access::new(identity, &tenant, Door::Proxy, writes, what))?;
    }
    let host = request.headers().get("host").and_then(|v| v.to_str().ok()).map(str::to_owned);

    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let base = upstream.base.to_string();
    let target: Uri = format!("{}{path}", base.trim_end_matches('/'))
        .parse()
        .map_err(|_| RouterError::BadRequest("the request path cannot be forwarded".into()))?;
    *request.uri_mut() = target;
    let headers = request.headers_mut();
    let stripped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            starts_dashed(name, "x-tenant-") || starts_dashed(name, "x-user-") || HOP_BY_HOP.contains(&name)
        })
        .cloned()
        .collect();
    for name in stripped {
        headers.remove(name);
    }
    for (name, value) in [
        header("x-tenant-id", &tenant.id.to_string()),
        header("x-tenant-slug", tenant.slug.as_str()),
        header("x-tenant-plan", tenant.plan.as_str()),
        identity.as_ref().and_then(|identity| header("x-user-id", identity.user.as_deref()?)),
        identity.as_ref().and_then(|identity| header("x-user-role", identity.role.as_str())),
    ]
    .into_iter()
    .flatten()
    {
        headers.insert(name, value);
    }
    if let Some((name, value)) = host.as_deref().and_then(|h| header("x-forwarded-host", h)) {
        headers.insert(name, value);
    }

    let response = tokio::time::timeout(upstream.timeout, upstream.client.request(request))
        .await
        .map_err(|_| ProxyError::Timeout)?
        .map_err(|_| ProxyError::Unreachable)?;
    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(*name);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}
