//! How bearer tokens are checked: where the keys come from, which claims name the user, the
//! tenant and the role, and which role names mean what.

use std::time::Duration;

/// Bearer-token settings (`ROUTER_JWT_*`, `ROUTER_JWKS_*`).
#[derive(Debug, Clone, clap::Args)]
pub struct IdentitySettings {
    /// The identity provider's key set (JWKS): an `https://` URL (`http://` only from this
    /// machine; no redirects are followed) (Cognito's is
    /// `https://cognito-idp.<region>.amazonaws.com/<user pool id>/.well-known/jwks.json`), or a
    /// file (a path, or `file://`). Tokens name their key with `kid`; a `kid` not in the set has
    /// it fetched again (at most every `ROUTER_JWKS_MIN_REFETCH`), so a provider's key rotation
    /// needs no restart.
    #[arg(long, env = "ROUTER_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// How often the key set is fetched again in the background (keys the provider removed stop
    /// being accepted then).
    #[arg(long, env = "ROUTER_JWKS_REFRESH", default_value = "10m", value_parser = humantime::parse_duration)]
    pub jwks_refresh: Duration,

    /// The shortest time between two fetches of the key set caused by tokens naming an unknown
    /// `kid` (such tokens cannot make the router hammer the provider).
    #[arg(long, env = "ROUTER_JWKS_MIN_REFETCH", default_value = "10s", value_parser = humantime::parse_duration)]
    pub jwks_min_refetch: Duration,

    /// Accept tokens signed with HS256 and this secret.
    #[arg(long, env = "ROUTER_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<tenancy::secret::Secret>,

    /// Accept tokens signed with RS256 by this public key (PEM file).
    #[arg(long, env = "ROUTER_JWT_RS256_PUBLIC_KEY_FILE")]
    pub jwt_rs256_public_key_file: Option<std::path::PathBuf>,

    /// The claim that names the tenant (its slug or id; `*` for the platform's own staff), e.g.
    /// `custom:tenantId` (Cognito) or `org_id`.
    #[arg(long, env = "ROUTER_JWT_TENANT_CLAIM", default_value = "tenant")]
    pub jwt_tenant_claim: String,

    /// The claim that carries the caller's role (a string, or an array of strings), e.g.
    /// `custom:role` (Cognito).
    #[arg(long, env = "ROUTER_JWT_ROLE_CLAIM", default_value = "role")]
    pub jwt_role_claim: String,

    /// The claim that identifies the user (recorded in the audit log, sent upstream as
    /// `X-User-Id`).
    #[arg(long, env = "ROUTER_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// Role names of the platform's administrators: any tenant (tenant claim `*`, the tenant
    /// chosen by the request's host), read-write; every access audited.
    #[arg(
        long,
        env = "ROUTER_JWT_INTERNAL_ADMIN_ROLES",
        value_delimiter = ',',
        default_value = "internal-admin"
    )]
    pub internal_admin_roles: Vec<String>,

    /// Role names of the platform's read-only staff: any tenant (tenant claim `*`), on the
    /// tenant's read-only PostgreSQL role; every access audited.
    #[arg(
        long,
        env = "ROUTER_JWT_INTERNAL_VIEWER_ROLES",
        value_delimiter = ',',
        default_value = "internal-viewer"
    )]
    pub internal_viewer_roles: Vec<String>,

    /// Role names of a tenant's administrators: their own tenant, read-write.
    #[arg(
        long,
        env = "ROUTER_JWT_TENANT_ADMIN_ROLES",
        value_delimiter = ',',
        default_value = "tenant-admin"
    )]
    pub tenant_admin_roles: Vec<String>,

    /// Role names of a tenant's read-only users: their own tenant, on its read-only PostgreSQL
    /// role.
    #[arg(
        long,
        env = "ROUTER_JWT_TENANT_VIEWER_ROLES",
        value_delimiter = ',',
        default_value = "tenant-viewer"
    )]
    pub tenant_viewer_roles: Vec<String>,

    /// The role of a token that carries no role claim (one of the role names above); unset, such
    /// a token is refused.
    #[arg(long, env = "ROUTER_JWT_DEFAULT_ROLE")]
    pub jwt_default_role: Option<String>,

    /// When set, tokens must carry this `iss` claim (Cognito:
    /// `https://cognito-idp.<region>.amazonaws.com/<user pool id>`).
    #[arg(long, env = "ROUTER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, tokens' `aud` claim must name one of these audiences (Cognito ID tokens: the
    /// app client id).
    #[arg(long, env = "ROUTER_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,

    /// No longer read (replaced by `ROUTER_JWT_TENANT_VIEWER_ROLES`): the router refuses to start
    /// while it is set, rather than ignore it.
    #[arg(long, env = "ROUTER_JWT_READ_ONLY_ROLES", hide = true)]
    pub removed_read_only_roles: Option<String>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            jwks_url: None,
            jwks_refresh: Duration::from_secs(600),
            jwks_min_refetch: Duration::from_secs(10),
            jwt_hs256_secret: None,
            jwt_rs256_public_key_file: None,
            jwt_tenant_claim: "tenant".into(),
            jwt_role_claim: "role".into(),
            jwt_user_claim: "sub".into(),
            internal_admin_roles: vec!["internal-admin".into()],
            internal_viewer_roles: vec!["internal-viewer".into()],
            tenant_admin_roles: vec!["tenant-admin".into()],
            tenant_viewer_roles: vec!["tenant-viewer".into()],
            jwt_default_role: None,
            jwt_issuer: None,
            jwt_audience: Vec::new(),
            removed_read_only_roles: None,
        }
    }
}
