use super::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const RSA_A: &str = include_str!("../../../tests/fixtures/identity/rsa-a.key");
const RSA_A_PUB: &str = include_str!("../../../tests/fixtures/identity/rsa-a.pub");
const RSA_B: &str = include_str!("../../../tests/fixtures/identity/rsa-b.key");
const EC: &str = include_str!("../../../tests/fixtures/identity/ec-p256.key");
const SECRET: &str = "hs256-test-secret";

fn tenant(slug: &str) -> TenantRecord {
    serde_json::from_value(json!({
        "id": "00000000-0000-0000-0000-0000000000a1", "slug": slug, "display_name": slug,
        "plan": "starter", "status": "active", "isolation": "schema", "cluster": "default",
        "schema_name": format!("t_{slug}"), "database_name": null, "role_name": format!("tenant_{slug}"),
        "secret_ref": null, "pool_size": 2, "rate_limit_per_second": null, "statement_timeout_ms": null,
        "config": {}, "provision_step": null, "failed_step": null, "last_error": null, "generation": 1,
        "created_at": "2026-12-03T00:00:00Z", "updated_at": "2026-12-03T00:00:00Z"
    }))
    .unwrap()
}

/// A key set file with the public halves of `kids` (fixtures), and settings that read it.
fn jwks_settings(dir: &std::path::Path, kids: &[&str]) -> IdentitySettings {
    let keys: Vec<serde_json::Value> = kids
        .iter()
        .map(|kid| {
            let path = format!("{}/../tests/fixtures/identity/{kid}.jwk.json", env!("CARGO_MANIFEST_DIR"));
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        })
        .collect();
    let file = dir.join("jwks.json");
    std::fs::write(&file, serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap();
    IdentitySettings {
        jwks_url: Some(file.display().to_string()),
        jwks_min_refetch: std::time::Duration::ZERO,
        jwt_tenant_claim: "custom:tenantId".into(),
        jwt_role_claim: "custom:role".into(),
        jwt_hs256_secret: Some(SECRET.into()),
        ..IdentitySettings::default()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(tenant: &str, role: &serde_json::Value) -> serde_json::Value {
    json!({ "sub": "user-1", "custom:tenantId": tenant, "custom:role": role, "exp": now() + 600 })
}

fn rs256(kid: &str, pem: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()).unwrap()
}

fn hs256(secret: &[u8], kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("identity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn roles_and_tenants_decide_what_a_token_reaches() {
    let dir = temp_dir("roles");
    let verifier = Verifier::new(&jwks_settings(&dir, &["rsa-a"])).unwrap().unwrap();
    let acme = tenant("acme");
    let verify = |claims: serde_json::Value| {
        let token = rs256("rsa-a", RSA_A, &claims);
        let verifier = &verifier;
        let acme = &acme;
        async move { verifier.verify(&token, acme).await }
    };
    let role = |r: Result<Identity, TokenError>| r.map(|i| i.role);
    assert_eq!(role(verify(claims("acme", &json!("tenant-admin"))).await).unwrap(), Role::TenantAdmin);
    assert_eq!(role(verify(claims("acme", &json!("tenant-viewer"))).await).unwrap(), Role::TenantViewer);
    assert_eq!(role(verify(claims("*", &json!("internal-admin"))).await).unwrap(), Role::InternalAdmin);
    assert_eq!(role(verify(claims("*", &json!("internal-viewer"))).await).unwrap(), Role::InternalViewer);
    // By id as well as by slug.
    assert!(verify(claims(&acme.id.to_string(), &json!("tenant-admin"))).await.is_ok());
    // Several roles: the most privileged of those that fit the tenant claim.
    let both = json!(["tenant-viewer", "tenant-admin", "internal-admin"]);
    assert_eq!(role(verify(claims("acme", &both)).await).unwrap(), Role::TenantAdmin);
    assert_eq!(role(verify(claims("*", &both)).await).unwrap(), Role::InternalAdmin);
    // Another tenant; a tenant role with `*`; an internal role for one tenant; no or an unknown
    // role; no user.
    assert!(matches!(verify(claims("globex", &json!("tenant-admin"))).await, Err(TokenError::WrongTenant)));
    assert!(matches!(verify(claims("*", &json!("tenant-admin"))).await, Err(TokenError::Forbidden(_))));
    assert!(matches!(verify(claims("acme", &json!("internal-admin"))).await, Err(TokenError::Forbidden(_))));
    assert!(matches!(verify(claims("acme", &json!(null))).await, Err(TokenError::Forbidden(_))));
    assert!(matches!(verify(claims("acme", &json!("superuser"))).await, Err(TokenError::Forbidden(_))));
    assert!(matches!(verify(claims("acme", &json!(7))).await, Err(TokenError::Invalid(_))));
    // No user: a tenant's user may be anonymous, an internal one may not (the audit log names
    // them).
    let anonymous = |tenant: &str, role: &str| {
        let mut claims = claims(tenant, &json!(role));
        claims.as_object_mut().unwrap().remove("sub");
        claims
    };
    assert_eq!(verify(anonymous("acme", "tenant-admin")).await.unwrap().user, None);
    assert!(matches!(verify(anonymous("*", "internal-viewer")).await, Err(TokenError::Invalid(_))));
    let mut not_a_user = claims("acme", &json!("tenant-admin"));
    not_a_user["sub"] = json!("a\nb");
    assert!(matches!(verify(not_a_user.clone()).await, Err(TokenError::Invalid(_))));
    not_a_user["sub"] = json!("zoë");
    assert!(matches!(verify(not_a_user).await, Err(TokenError::Invalid(_))), "not a header value");
}

#[tokio::test]
async fn a_default_role_applies_only_to_tokens_without_one() {
    let dir = temp_dir("default");
    let settings = IdentitySettings {
        jwt_default_role: Some("tenant-viewer".into()),
        ..jwks_settings(&dir, &["rsa-a"])
    };
    let verifier = Verifier::new(&settings).unwrap().unwrap();
    let token = rs256("rsa-a", RSA_A, &claims("acme", &json!(null)));
    assert_eq!(verifier.verify(&token, &tenant("acme")).await.unwrap().role, Role::TenantViewer);
    let token = rs256("rsa-a", RSA_A, &claims("acme", &json!("superuser")));
    assert!(verifier.verify(&token, &tenant("acme")).await.is_err());
    // A claim that names nothing is not a missing claim.
    let token = rs256("rsa-a", RSA_A, &claims("acme", &json!([1])));
    assert!(verifier.verify(&token, &tenant("acme")).await.is_err());
    let unknown = IdentitySettings { jwt_default_role: Some("root".into()), ..settings.clone() };
    assert!(Verifier::new(&unknown).is_err());
    let staff = IdentitySettings { jwt_default_role: Some("internal-viewer".into()), ..settings.clone() };
    assert!(Verifier::new(&staff).is_err(), "never staff by default");
    let removed = IdentitySettings { removed_read_only_roles: Some("viewer".into()), ..settings.clone() };
    assert!(Verifier::new(&removed).unwrap_err().contains("ROUTER_JWT_TENANT_VIEWER_ROLES"));
    let twice = IdentitySettings { tenant_viewer_roles: vec!["internal-admin".into()], ..settings };
    assert!(Verifier::new(&twice).is_err(), "one name, two roles");
}

#[tokio::test]
async fn times_issuer_and_audience_are_checked() {
    let dir = temp_dir("times");
    let settings = IdentitySettings {
        jwt_issuer: Some("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool".into()),
        jwt_audience: vec!["client-1".into()],
        ..jwks_settings(&dir, &["rsa-a"])
    };
    let verifier = Verifier::new(&settings).unwrap().unwrap();
    let acme = tenant("acme");
    let good = json!({
        "sub": "u", "custom:tenantId": "acme", "custom:role": "tenant-admin", "exp": now() + 600,
        "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool", "aud": "client-1",
    });
    assert!(verifier.verify(&rs256("rsa-a", RSA_A, &good), &acme).await.is_ok());
    for (field, value) in [
        ("exp", json!(now() - 120)),
        ("nbf", json!(now() + 120)),
        ("iss", json!("https://cognito-idp.eu-west-1.amazonaws.com/other")),
        ("aud", json!("client-2")),
    ] {
        let mut claims = good.clone();
        claims[field] = value;
        let result = verifier.verify(&rs256("rsa-a", RSA_A, &claims), &acme).await;
        assert!(matches!(result, Err(TokenError::Invalid(_))), "{field}: {result:?}");
    }
    for missing in ["exp", "iss", "aud"] {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(missing);
        let result = verifier.verify(&rs256("rsa-a", RSA_A, &claims), &acme).await;
        assert!(matches!(result, Err(TokenError::Invalid(_))), "{missing}: {result:?}");
    }
}

#[tokio::test]
async fn algorithm_confusion_and_tampering_are_refused() {
    let dir = temp_dir("confusion");
    let verifier = Verifier::new(&jwks_settings(&dir, &["rsa-a", "ec-p256"])).unwrap().unwrap();
    let acme = tenant("acme");
    let claims = claims("acme", &json!("tenant-admin"));
    let refused = |result: Result<Identity, TokenError>| matches!(result, Err(TokenError::Invalid(_)));
    // HS256 "signed" with the RSA public key, naming the RSA key: never verified with it.
    let confused = hs256(RSA_A_PUB.as_bytes(), Some("rsa-a"), &claims);
    assert!(refused(verifier.verify(&confused, &acme).await));
    // An RSA signature by another key under rsa-a's kid; an RS256 token naming the EC key.
    assert!(refused(verifier.verify(&rs256("rsa-a", RSA_B, &claims), &acme).await));
    assert!(refused(verifier.verify(&rs256("ec-p256", RSA_A, &claims), &acme).await));
    // `alg: none`, and a header changed after signing.
    let signed = rs256("rsa-a", RSA_A, &claims);
    let (_, rest) = signed.split_once('.').unwrap();
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let none = format!("{}.{}", b64(&json!({"alg": "none", "kid": "rsa-a"})), rest);
    assert!(refused(verifier.verify(&none, &acme).await));
    let swapped = format!("{}.{}", b64(&json!({"alg": "RS512", "typ": "JWT", "kid": "rsa-a"})), rest);
    assert!(refused(verifier.verify(&swapped, &acme).await));
    // A tampered payload.
    let parts: Vec<&str> = signed.split('.').collect();
    let forged =
        format!("{}.{}.{}", parts[0], b64(&super::tests::claims("*", &json!("internal-admin"))), parts[2]);
    assert!(refused(verifier.verify(&forged, &acme).await));
    // ES256 with the EC key; HS256 with the configured secret.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-p256".into());
    let es =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(EC.as_bytes()).unwrap()).unwrap();
    assert!(verifier.verify(&es, &acme).await.is_ok());
    assert!(verifier.verify(&hs256(SECRET.as_bytes(), None, &claims), &acme).await.is_ok());
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_key_set_again() {
    let dir = temp_dir("rotation");
    let settings = jwks_settings(&dir, &["rsa-a"]);
    let verifier = Verifier::new(&settings).unwrap().unwrap();
    let acme = tenant("acme");
    let claims = claims("acme", &json!("tenant-admin"));
    assert!(verifier.verify(&rs256("rsa-a", RSA_A, &claims), &acme).await.is_ok());
    let next = rs256("rsa-b", RSA_B, &claims);
    assert!(verifier.verify(&next, &acme).await.is_err(), "not published yet");
    // The provider rotates: rsa-b published, rsa-a withdrawn.
    jwks_settings(&dir, &["rsa-b"]);
    assert!(verifier.verify(&next, &acme).await.is_ok(), "fetched again for the unknown kid");
    assert!(verifier.verify(&rs256("rsa-a", RSA_A, &claims), &acme).await.is_err(), "withdrawn");
}

#[tokio::test]
async fn unknown_kids_fetch_at_most_once_per_interval() {
    let dir = temp_dir("refetch");
    let settings = IdentitySettings {
        jwks_min_refetch: std::time::Duration::from_secs(3600),
        ..jwks_settings(&dir, &["rsa-a"])
    };
    let verifier = Verifier::new(&settings).unwrap().unwrap();
    let acme = tenant("acme");
    let claims = claims("acme", &json!("tenant-admin"));
    assert!(verifier.verify(&rs256("rsa-a", RSA_A, &claims), &acme).await.is_ok(), "first fetch");
    jwks_settings(&dir, &["rsa-b"]);
    assert!(verifier.verify(&rs256("rsa-b", RSA_B, &claims), &acme).await.is_err(), "within the interval");
    assert!(verifier.verify(&rs256("rsa-a", RSA_A, &claims), &acme).await.is_ok(), "the keys held stay");
}

#[tokio::test]
async fn a_key_set_never_read_makes_tokens_unverifiable_not_invalid() {
    let settings =
        IdentitySettings { jwks_url: Some("/nonexistent/jwks.json".into()), ..IdentitySettings::default() };
    let verifier = Verifier::new(&settings).unwrap().unwrap();
    let token = rs256("rsa-a", RSA_A, &claims("acme", &json!("tenant-admin")));
    assert!(matches!(verifier.verify(&token, &tenant("acme")).await, Err(TokenError::KeysUnavailable)));
}

#[test]
fn the_proxy_checks_jwts_and_lets_other_credentials_pass() {
    let token = rs256("rsa-a", RSA_A, &claims("acme", &json!("tenant-admin")));
    assert!(looks_like_jwt(&token));
    assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJ9.")); // unsigned: checked, and refused
    assert!(!looks_like_jwt("sk_live_51H8abcdef"));
    assert!(!looks_like_jwt("opaque.session.token"));
    assert!(!looks_like_jwt("eyJa.b"));
}
