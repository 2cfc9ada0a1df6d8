//! `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`: HMAC-SHA256 of `"{t}.{raw body}"` under the
//! endpoint's signing secret. Any matching `v1` is accepted (several are sent while a secret
//! rolls); comparison is constant-time; old (or far-future) timestamps are refused, which
//! bounds replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Events signed longer ago than this (or this far in the future) are refused.
pub(crate) const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused. The messages are safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("Stripe-Signature has no v1 signature")]
    NoSignature,
    #[error("signature timestamp is outside the {TOLERANCE_SECS}s tolerance")]
    Stale,
    #[error("no v1 signature matches the payload")]
    Mismatch,
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `header` against `body` at time `now` (unix seconds); returns the signed timestamp.
pub(crate) fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                let parsed = value.parse::<i64>().map_err(|_| SignatureError::Malformed)?;
                timestamp = Some(parsed);
            }
            "v1" => signatures.push(value),
            _ => {} // v0 and future schemes are ignored, as Stripe's libraries do.
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, body);
    let matches = signatures.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|bytes| expected.clone().verify_slice(&bytes).is_ok())
    });
    if matches {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `Stripe-Signature` header value for `body` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn accepts_what_it_signs_and_any_matching_v1() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        assert_eq!(verify(Some(&header), body, SECRET, 1_700_000_100), Ok(1_700_000_000));
        let rolled = format!(
            "{},v1={}",
            sign("whsec_old", 1_700_000_000, body),
            &header[header.find("v1=").unwrap() + 3..]
        );
        assert_eq!(verify(Some(&rolled), body, SECRET, 1_700_000_000), Ok(1_700_000_000));
    }

    #[test]
    fn matches_an_independently_computed_vector() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test_secret
        assert_eq!(
            sign(SECRET, 1_700_000_000, b"{}"),
            "t=1700000000,v1=ceb8863f7208fa249a6cd8f951e993c7563412aca65866f6272283debe143ab3"
        );
    }

    #[test]
    fn refuses_bad_signatures_with_the_reason() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        assert_eq!(verify(None, body, SECRET, 1_700_000_000), Err(SignatureError::Missing));
        assert_eq!(verify(Some("garbage"), body, SECRET, 1_700_000_000), Err(SignatureError::Malformed));
        assert_eq!(verify(Some("t=abc,v1=00"), body, SECRET, 1_700_000_000), Err(SignatureError::Malformed));
        assert_eq!(
            verify(Some("t=1700000000"), body, SECRET, 1_700_000_000),
            Err(SignatureError::NoSignature)
        );
        let extreme = format!("t={},v1=00", i64::MIN);
        assert_eq!(verify(Some(&extreme), body, SECRET, 1_700_000_000), Err(SignatureError::Stale));
        assert_eq!(verify(Some(&header), body, SECRET, 1_700_000_301), Err(SignatureError::Stale));
        assert_eq!(verify(Some(&header), body, SECRET, 1_699_999_000), Err(SignatureError::Stale));
        assert_eq!(
            verify(Some(&header), b"{\"id\":\"evt_2\"}", SECRET, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(Some(&header), body, "whsec_other", 1_700_000_000), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(Some("t=1700000000,v1=zz"), body, SECRET, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
    }

    proptest! {
        #[test]
        fn any_change_to_the_body_is_detected(body in proptest::collection::vec(any::<u8>(), 0..256), flip in 0usize..256) {
            let header = sign(SECRET, 1_700_000_000, &body);
            prop_assert!(verify(Some(&header), &body, SECRET, 1_700_000_000).is_ok());
            if !body.is_empty() {
                let mut tampered = body;
                let i = flip % tampered.len();
                tampered[i] ^= 0x01;
                prop_assert_eq!(verify(Some(&header), &tampered, SECRET, 1_700_000_000), Err(SignatureError::Mismatch));
            }
        }
    }
}
