//! `Authorization: Bearer <JWT>` as an alternative to the tenant's connection string: HS256 with
//! a shared secret or RS256 with a public key (`ROUTER_JWT_*`). The tenant claim must name the
//! tenant of `Host` (its slug or id), else 403; a role claim in the read-only list makes the
//! request run in a read-only transaction. Expiry is required; `nbf` is checked when present
//! (both with 30 s of leeway for clock skew); `iss` and `aud` are required and checked when
//! `ROUTER_JWT_ISSUER` / `ROUTER_JWT_AUDIENCE` are set.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use tenancy::catalog::TenantRecord;

/// What a valid token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub read_only: bool,
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
}

/// The `iss` and `aud` tokens must carry, when configured.
#[derive(Debug, Clone, Default)]
pub struct ExpectedClaims {
    pub issuer: Option<String>,
    pub audience: Vec<String>,
}

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    tenant_claim: String,
    role_claim: String,
    read_only_roles: Vec<String>,
    issuer: Option<String>,
    audience: Vec<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.keys.iter().map(|(a, _)| a).collect::<Vec<_>>())
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier from the configured keys; `None` when none is configured.
    pub fn new(
        hs256_secret: Option<&str>,
        rs256_public_pem: Option<&[u8]>,
        tenant_claim: &str,
        role_claim: &str,
        read_only_roles: &[String],
        expected: &ExpectedClaims,
    ) -> Result<Option<Self>, String> {
        let mut keys = Vec::new();
        if let Some(secret) = hs256_secret.filter(|s| !s.is_empty()) {
            keys.push((Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes())));
        }
        if let Some(pem) = rs256_public_pem {
            let key = DecodingKey::from_rsa_pem(pem).map_err(|e| format!("RS256 public key: {e}"))?;
            keys.push((Algorithm::RS256, key));
        }
        Ok((!keys.is_empty()).then(|| Self {
            keys,
            tenant_claim: tenant_claim.to_owned(),
            role_claim: role_claim.to_owned(),
            read_only_roles: read_only_roles.to_vec(),
            issuer: expected.issuer.clone().filter(|i| !i.is_empty()),
            audience: expected.audience.iter().filter(|a| !a.is_empty()).cloned().collect(),
        }))
    }

    /// Checks `token` for `tenant`.
    pub fn verify(&self, token: &str, tenant: &TenantRecord) -> Result<Grant, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let (algorithm, key) = self
            .keys
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
            .ok_or_else(|| TokenError::Invalid(format!("algorithm {:?} is not accepted", header.alg)))?;
        let mut validation = Validation::new(*algorithm);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(token, key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
        let named = claims
            .get(&self.tenant_claim)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| TokenError::Invalid(format!("no `{}` claim", self.tenant_claim)))?;
        if named != tenant.slug.as_str() && named != tenant.id.to_string() {
            return Err(TokenError::WrongTenant);
        }
        let role = claims.get(&self.role_claim).and_then(serde_json::Value::as_str).unwrap_or_default();
        Ok(Grant { read_only: self.read_only_roles.iter().any(|r| r == role) })
    }
}
