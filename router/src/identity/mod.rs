//! Who is asking: `Authorization: Bearer <JWT>` from the platform's identity provider, checked
//! on every door that accepts one (`POST /sql`, the reverse proxy).
//!
//! Keys: the provider's key set (`ROUTER_JWKS_URL`, keys chosen by `kid`, see [`jwks`]), an
//! HS256 secret, an RS256 public key. A token's `alg` must fit the key it names (an RSA key
//! never verifies an HMAC signature: no algorithm confusion); `none` is never accepted. Expiry
//! is required, `nbf` checked when present (30 s of leeway for clock skew), `iss` and `aud`
//! required and checked when configured.
//!
//! Then who the token is for ([`Identity`]): a user (`sub`), a tenant claim and a role claim,
//! their names configurable (Cognito: `custom:tenantId`, `custom:role`). Four roles:
//!
//! | role | tenant claim | may reach | PostgreSQL role |
//! |---|---|---|---|
//! | internal admin | `*` | any tenant, chosen by the request's host (the tenant picker) | the tenant's own |
//! | internal viewer | `*` | any tenant | the tenant's read-only role |
//! | tenant admin | its tenant's slug or id | its tenant only | the tenant's own |
//! | tenant viewer | its tenant's slug or id | its tenant only | the tenant's read-only role |
//!
//! A role claim holding several names counts those that fit the tenant claim (internal roles
//! with `*`, tenant roles with a tenant), the most privileged first; none that fits, and the
//! token is refused. Every access by an internal user is written to the audit log
//! ([`audit`]).

pub(crate) mod audit;
pub(crate) mod jwks;
pub mod settings;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tenancy::catalog::TenantRecord;

pub use settings::IdentitySettings;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    InternalAdmin,
    InternalViewer,
    TenantAdmin,
    TenantViewer,
}

impl Role {
    /// Its name in the `X-User-Role` header and the audit log (whatever the provider calls it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InternalAdmin => "internal-admin",
            Self::InternalViewer => "internal-viewer",
            Self::TenantAdmin => "tenant-admin",
            Self::TenantViewer => "tenant-viewer",
        }
    }

    /// The platform's own staff, who may reach any tenant (and are audited).
    pub fn internal(self) -> bool {
        matches!(self, Self::InternalAdmin | Self::InternalViewer)
    }

    /// Served on the tenant's read-only PostgreSQL role.
    pub fn read_only(self) -> bool {
        matches!(self, Self::InternalViewer | Self::TenantViewer)
    }
}

/// Who a valid token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user claim (`sub` by default); always there for an internal user (the audit log
    /// names them).
    pub user: Option<String>,
    pub role: Role,
}

/// Why a token was refused. Messages are safe for the client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("bearer tokens are not accepted by this router")]
    NotConfigured,
    #[error("invalid bearer token: {0}")]
    Invalid(String),
    #[error("the token is for another tenant")]
    WrongTenant,
    #[error("the token's role does not allow this: {0}")]
    Forbidden(String),
    #[error("the identity provider's keys cannot be read; retry shortly")]
    KeysUnavailable,
}

/// The `iss` and `aud` tokens must carry, when configured.
#[derive(Debug, Clone, Default)]
struct ExpectedClaims {
    issuer: Option<String>,
    audience: Vec<String>,
}

/// Which provider role names mean which [`Role`].
#[derive(Debug, Clone)]
struct RoleNames {
    names: Vec<(String, Role)>,
    default: Option<Role>,
}

impl RoleNames {
    fn new(settings: &IdentitySettings) -> Result<Self, String> {
        let mut names: Vec<(String, Role)> = Vec::new();
        for (list, role) in [
            (&settings.internal_admin_roles, Role::InternalAdmin),
            (&settings.internal_viewer_roles, Role::InternalViewer),
            (&settings.tenant_admin_roles, Role::TenantAdmin),
            (&settings.tenant_viewer_roles, Role::TenantViewer),
        ] {
            for name in list.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
                if let Some((_, other)) = names.iter().find(|(n, _)| n == name) {
                    return Err(format!(
                        "role name {name:?} is given to both {} and {}",
                        other.as_str(),
                        role.as_str()
                    ));
                }
                names.push((name.to_owned(), role));
            }
        }
        let default = match settings.jwt_default_role.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            None => None,
            Some(name) => {
                Some(names.iter().find(|(n, _)| n == name).map(|(_, role)| *role).ok_or_else(|| {
                    format!("ROUTER_JWT_DEFAULT_ROLE {name:?} is none of the configured role names")
                })?)
            }
        };
        if default.is_some_and(Role::internal) {
            return Err("ROUTER_JWT_DEFAULT_ROLE may not be an internal role: staff must be named as such by their tokens".into());
        }
        Ok(Self { names, default })
    }

    fn role(&self, name: &str) -> Option<Role> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, role)| *role)
    }
}

/// How tokens are checked.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    jwks: Option<Arc<jwks::Jwks>>,
    tenant_claim: String,
    role_claim: String,
    user_claim: String,
    roles: RoleNames,
    expected: ExpectedClaims,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier from `settings`; `None` when no key is configured.
    pub fn new(settings: &IdentitySettings) -> Result<Option<Self>, String> {
        let hs256 = settings
            .jwt_hs256_secret
            .as_ref()
            .map(tenancy::secret::Secret::expose)
            .filter(|s| !s.is_empty())
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()));
        let rs256 = match &settings.jwt_rs256_public_key_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(DecodingKey::from_rsa_pem(&pem).map_err(|e| format!("RS256 public key: {e}"))?)
            }
        };
        let jwks = match settings.jwks_url.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                Some(Arc::new(jwks::Jwks::new(url, settings.jwks_refresh, settings.jwks_min_refetch)?))
            }
        };
        if settings.removed_read_only_roles.is_some() {
            return Err("ROUTER_JWT_READ_ONLY_ROLES is no longer read: name read-only roles in ROUTER_JWT_TENANT_VIEWER_ROLES \
                 (or ROUTER_JWT_INTERNAL_VIEWER_ROLES), and unset it"
                .into());
        }
        if settings.jwks_refresh < std::time::Duration::from_secs(1) {
            return Err("ROUTER_JWKS_REFRESH must be at least 1s".into());
        }
        if hs256.is_none() && rs256.is_none() && jwks.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            hs256,
            rs256,
            jwks,
            tenant_claim: settings.jwt_tenant_claim.clone(),
            role_claim: settings.jwt_role_claim.clone(),
            user_claim: settings.jwt_user_claim.clone(),
            roles: RoleNames::new(settings)?,
            expected: ExpectedClaims {
                issuer: settings.jwt_issuer.clone().filter(|i| !i.is_empty()),
                audience: settings.jwt_audience.iter().filter(|a| !a.is_empty()).cloned().collect(),
            },
        }))
    }

    /// The provider's key set, when one is configured (fetched by [`spawn_refresh`]).
    pub(crate) fn jwks(&self) -> Option<&Arc<jwks::Jwks>> {
        self.jwks.as_ref()
    }

    /// Checks `token`, and that it may reach `tenant`.
    pub async fn verify(&self, token: &str, tenant: &TenantRecord) -> Result<Identity, TokenError> {
        let claims = self.claims(token).await?;
        self.identity(&claims, tenant)
    }

    /// The claims of `token` once its signature, algorithm and times are checked.
    async fn claims(&self, token: &str) -> Result<HashMap<String, Value>, TokenError> {
        let invalid = |e: jsonwebtoken::errors::Error| TokenError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let algorithm = header.alg;
        let from_jwks;
        let key = match (algorithm, header.kid.as_deref(), &self.jwks) {
            (Algorithm::HS256, _, _) => self.hs256.as_ref(),
            (Algorithm::HS384 | Algorithm::HS512, _, _) => None,
            (_, Some(kid), Some(jwks)) => {
                from_jwks = jwks.key(kid).await.map_err(|err| {
                    tracing::warn!(error = %err, "a token could not be checked: no key set");
                    TokenError::KeysUnavailable
                })?;
                match &from_jwks {
                    Some(key) if key.algorithms.contains(&algorithm) => Some(&key.decoding),
                    Some(_) => {
                        return Err(TokenError::Invalid(format!(
                            "algorithm {algorithm:?} does not fit key {kid:?}"
                        )))
                    }
                    // A token of the static RS256 key that names a `kid` of its own.
                    None if algorithm == Algorithm::RS256 && self.rs256.is_some() => self.rs256.as_ref(),
                    None => {
                        return Err(TokenError::Invalid(format!(
                            "no key {kid:?} in the identity provider's key set"
                        )))
                    }
                }
            }
            (Algorithm::RS256, _, _) => self.rs256.as_ref(),
            _ => None,
        };
        let key =
            key.ok_or_else(|| TokenError::Invalid(format!("algorithm {algorithm:?} is not accepted")))?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.expected.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        if self.expected.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.expected.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(jsonwebtoken::decode::<HashMap<String, Value>>(token, key, &validation).map_err(invalid)?.claims)
    }

    /// Who `claims` are for, if they may reach `tenant`.
    fn identity(
        &self,
        claims: &HashMap<String, Value>,
        tenant: &TenantRecord,
    ) -> Result<Identity, TokenError> {
        let user = match claims.get(&self.user_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(user))
                // Sent upstream in `X-User-Id`: printable ASCII only.
                if !user.is_empty() && user.len() <= 256 && user.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
            {
                Some(user.clone())
            }
            Some(_) => {
                return Err(TokenError::Invalid(format!("the `{}` claim is not a user id", self.user_claim)))
            }
        };
        let named = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::Invalid(format!("no `{}` claim", self.tenant_claim)))?;
        let internal = named == "*";
        if !internal && named != tenant.slug.as_str() && named != tenant.id.to_string() {
            return Err(TokenError::WrongTenant);
        }
        let role = self.role(claims.get(&self.role_claim), internal)?;
        if internal && user.is_none() {
            return Err(TokenError::Invalid(format!(
                "an internal user's token needs a `{}` claim",
                self.user_claim
            )));
        }
        Ok(Identity { user, role })
    }

    /// The most privileged role the claim names that fits the tenant claim (`internal`: `*`).
    fn role(&self, claim: Option<&Value>, internal: bool) -> Result<Role, TokenError> {
        let names: Vec<&str> = match claim {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(TokenError::Invalid(format!(
                    "the `{}` claim is not a role name",
                    self.role_claim
                )))
            }
        };
        let named: Vec<Role> = names.iter().filter_map(|name| self.roles.role(name)).collect();
        // The default role is for tokens without a role claim, not for claims naming nothing.
        let roles = if matches!(claim, None | Some(Value::Null)) {
            self.roles.default.into_iter().collect()
        } else {
            named
        };
        let fitting = roles.iter().copied().filter(|role| role.internal() == internal);
        let best = fitting.min_by_key(|role| match role {
            Role::InternalAdmin | Role::TenantAdmin => 0,
            Role::InternalViewer | Role::TenantViewer => 1,
        });
        best.ok_or_else(|| {
            TokenError::Forbidden(match (roles.is_empty(), internal) {
                (true, _) => format!("no role this router knows in the `{}` claim", self.role_claim),
                (false, true) => "the tenant claim `*` is for internal roles only".to_owned(),
                (false, false) => "an internal role needs the tenant claim `*`".to_owned(),
            })
        })
    }
}

/// Whether `token` has a JWT's shape (three base64url parts, the first a JSON object's
/// encoding): what the reverse proxy verifies, letting the application's own credentials pass.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let base64url = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    header.starts_with("eyJ")
        && [header, payload, signature].iter().all(|p| base64url(p))
        && !payload.is_empty()
}

/// Keeps the provider's key set fresh: fetched at once, then every `ROUTER_JWKS_REFRESH` (every
/// `ROUTER_JWKS_MIN_REFETCH`, at least a second, while it has never been read); until
/// `shutdown`.
pub fn spawn_refresh(
    verifier: &Verifier,
    shutdown: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let jwks = verifier.jwks()?.clone();
    Some(tokio::spawn(async move {
        loop {
            match jwks.refresh_now().await {
                Ok(keys) => tracing::debug!(keys, "identity provider key set fetched"),
                Err(err) => {
                    tracing::warn!(error = %err, "the identity provider's key set could not be fetched");
                }
            }
            let wait = if jwks.loaded() {
                jwks.refresh
            } else {
                jwks.min_refetch.max(std::time::Duration::from_secs(1))
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }))
}

#[cfg(test)]
mod tests;
