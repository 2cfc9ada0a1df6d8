//! The identity provider's signing keys (a JWKS document, RFC 7517), by `kid`: fetched at start,
//! again in the background every `ROUTER_JWKS_REFRESH`, and again when a token names a `kid` the
//! router does not have (at most every `ROUTER_JWKS_MIN_REFETCH`). A failed fetch keeps the keys
//! last fetched. Symmetric (`oct`) keys and keys not for signatures are ignored: a key set is
//! public, and a secret in it would let anyone sign.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Largest key set document read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Longest a fetch of the key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the key set is read from.
#[derive(Debug, Clone)]
enum Source {
    Url(String),
    File(std::path::PathBuf),
}

/// One key of the set, with the algorithms it may verify.
pub(super) struct Key {
    pub(super) decoding: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

/// The identity provider's keys.
pub(crate) struct Jwks {
    source: Source,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    /// When a fetch last started (rate-limits fetches caused by unknown `kid`s).
    last_fetch: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    pub(super) min_refetch: Duration,
    pub(super) refresh: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("source", &self.source).finish_non_exhaustive()
    }
}

/// Why the key set could not be read. Messages carry no secret (a key set is public).
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    #[error("{0}")]
    Fetch(String),
    #[error("the key set is not a JWKS document: {0}")]
    Document(String),
}

impl Jwks {
    /// The key set at `location` (a URL or a file), not fetched yet.
    pub(crate) fn new(location: &str, refresh: Duration, min_refetch: Duration) -> Result<Self, String> {
        let source = if location.starts_with("https://") {
            Source::Url(location.to_owned())
        } else if let Some(rest) = location.strip_prefix("http://") {
            // Keys fetched in plaintext could be replaced on the way: only from this machine.
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = authority.rsplit_once(':').map_or(authority, |(host, _port)| host);
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Err(format!(
                    "ROUTER_JWKS_URL: {location:?}: the key set must be fetched over https (http only from this machine)"
                ));
            }
            Source::Url(location.to_owned())
        } else if let Some(path) = location.strip_prefix("file://") {
            Source::File(path.into())
        } else if location.contains("://") {
            return Err(format!("ROUTER_JWKS_URL: {location:?} is neither an http(s) URL nor a file"));
        } else {
            Source::File(location.into())
        };
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("ROUTER_JWKS_URL: {e}"))?;
        Ok(Self {
            source,
            http,
            keys: RwLock::new(Arc::default()),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            min_refetch,
            refresh,
        })
    }

    /// The key named `kid`; the set is fetched again first when it has no such key and the last
    /// fetch is at least `ROUTER_JWKS_MIN_REFETCH` old. `Err` when the set could never be read.
    pub(super) async fn key(&self, kid: &str) -> Result<Option<Arc<Key>>, JwksError> {
        if let Some(key) = self.current().get(kid) {
            return Ok(Some(key.clone()));
        }
        let _one = self.fetching.lock().await;
        // Fetched by another request while this one waited.
        if let Some(key) = self.current().get(kid) {
            return Ok(Some(key.clone()));
        }
        let recent = self.last_fetch().is_some_and(|at| at.elapsed() < self.min_refetch);
        if !recent {
            if let Err(err) = self.fetch().await {
                if self.current().is_empty() {
                    return Err(err);
                }
                tracing::warn!(error = %err, "the identity provider's key set could not be fetched again; the keys fetched before stay");
            }
        }
        let keys = self.current();
        if keys.is_empty() && self.last_fetch().is_some() && recent {
            return Err(JwksError::Fetch("no key set fetched yet".into()));
        }
        Ok(keys.get(kid).cloned())
    }

    /// Fetches the set again (the background refresh); the keys fetched before stay on failure.
    pub(crate) async fn refresh_now(&self) -> Result<usize, JwksError> {
        let _one = self.fetching.lock().await;
        self.fetch().await
    }

    /// Whether a key set has been read.
    pub(crate) fn loaded(&self) -> bool {
        !self.current().is_empty()
    }

    fn current(&self) -> Arc<HashMap<String, Arc<Key>>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn last_fetch(&self) -> Option<Instant> {
        *self.last_fetch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the set and replaces the keys with it; returns how many keys it holds.
    async fn fetch(&self) -> Result<usize, JwksError> {
        *self.last_fetch.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let document = match &self.source {
            Source::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| JwksError::Fetch(format!("{}: {e}", path.display())))?,
            Source::Url(url) => self.download(url).await?,
        };
        let keys = parse(&document)?;
        let count = keys.len();
        if count == 0 {
            return Err(JwksError::Document("it holds no signing key the router can use".into()));
        }
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        tracing::debug!(keys = count, "identity provider key set loaded");
        Ok(count)
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let failed =
            |e: reqwest::Error| JwksError::Fetch(format!("fetching the key set: {}", e.without_url()));
        let mut response = self.http.get(url).send().await.map_err(failed)?;
        if !response.status().is_success() {
            return Err(JwksError::Fetch(format!("fetching the key set: HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(JwksError::Document(format!("larger than {MAX_DOCUMENT} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A JWKS document, its keys read one by one.
#[derive(serde::Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The usable signing keys of a JWKS document, by `kid`: a key the router cannot read (another
/// algorithm, curve or key type) is skipped, not a reason to refuse the others.
fn parse(document: &[u8]) -> Result<HashMap<String, Arc<Key>>, JwksError> {
    let set: Document = serde_json::from_slice(document).map_err(|e| JwksError::Document(e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in set.keys.into_iter().filter_map(|key| serde_json::from_value::<Jwk>(key).ok()) {
        let jwk = &jwk;
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        if matches!(&jwk.common.public_key_use, Some(usage) if *usage != PublicKeyUse::Signature) {
            continue;
        }
        let Some(algorithms) = algorithms_of(jwk) else { continue };
        let Ok(decoding) = DecodingKey::from_jwk(jwk) else { continue };
        keys.insert(kid, Arc::new(Key { decoding, algorithms }));
    }
    Ok(keys)
}

/// The algorithms `jwk` may verify: the one it names, if it fits its key type, else those its key
/// type (and curve) allow. `None` for a symmetric key, or one whose `alg` does not fit it.
fn algorithms_of(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    use Algorithm as A;
    let fitting = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![A::ES256],
            EllipticCurve::P384 => vec![A::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => vec![A::EdDSA],
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(fitting),
        Some(named) => {
            // Encryption algorithms (`RSA-OAEP`) are not signature algorithms: no match.
            let named: A = named.to_string().parse().ok()?;
            fitting.contains(&named).then(|| vec![named])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm as A;

    const RSA_N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn set(keys: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": &keys })).unwrap()
    }

    #[test]
    fn keys_are_taken_by_kid_with_the_algorithms_they_fit() {
        let keys = parse(&set(&serde_json::json!([
            {"kty": "RSA", "kid": "named", "alg": "RS256", "use": "sig", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "unnamed", "n": RSA_N, "e": "AQAB"},
        ])))
        .unwrap();
        assert_eq!(keys["named"].algorithms, vec![A::RS256]);
        assert!(keys["unnamed"].algorithms.contains(&A::PS512));
        assert!(!keys["unnamed"].algorithms.contains(&A::HS256));
    }

    #[test]
    fn secrets_keys_for_encryption_mismatched_algorithms_and_keys_without_kid_are_ignored() {
        let keys = parse(&set(&serde_json::json!([
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "claims-hs256", "alg": "HS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "n": RSA_N, "e": "AQAB"},
        ])))
        .unwrap();
        assert!(keys.is_empty(), "{:?}", keys.keys().collect::<Vec<_>>());
    }

    #[test]
    fn a_key_the_router_cannot_read_does_not_hide_the_others() {
        let keys = parse(&set(&serde_json::json!([
            {"kty": "EC", "kid": "k256", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP-384", "n": RSA_N, "e": "AQAB"},
            {"kty": "XYZ", "kid": "future"},
            {"kty": "RSA", "kid": "good", "n": RSA_N, "e": "AQAB"},
        ])))
        .unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
    }

    #[test]
    fn a_document_that_is_not_a_key_set_is_an_error() {
        assert!(parse(b"<html>").is_err());
        assert!(parse(b"{\"keys\": 3}").is_err());
    }

    #[test]
    fn locations_are_urls_or_files() {
        let refresh = Duration::from_secs(60);
        assert!(matches!(
            Jwks::new("https://idp.example/jwks.json", refresh, refresh).unwrap().source,
            Source::Url(_)
        ));
        assert!(matches!(Jwks::new("/etc/jwks.json", refresh, refresh).unwrap().source, Source::File(_)));
        assert!(matches!(
            Jwks::new("file:///etc/jwks.json", refresh, refresh).unwrap().source,
            Source::File(_)
        ));
        assert!(Jwks::new("ftp://idp.example/jwks.json", refresh, refresh).is_err());
        assert!(Jwks::new("http://127.0.0.1:8080/jwks.json", refresh, refresh).is_ok());
        assert!(Jwks::new("http://idp.example/jwks.json", refresh, refresh).is_err(), "plaintext from afar");
        assert!(Jwks::new("http://127.0.0.1@idp.example/jwks.json", refresh, refresh).is_err());
    }
}
