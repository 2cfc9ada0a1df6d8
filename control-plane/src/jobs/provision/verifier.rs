//! The SCRAM-SHA-256 verifier a tenant role's password is stored as (RFC 5802 / 7677, in
//! PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` form), computed
//! here so the plain password never reaches the server or its logs.
//!
//! **One PBKDF2 iteration.** The iteration count exists to slow down guessing a human's
//! password from a stolen verifier. A tenant password is 32 random bytes (256 bits): nobody
//! guesses it, however cheap a guess. But every client logging in runs the count's worth of
//! HMAC-SHA-256 (PostgreSQL's default 4,096 cost the router about a millisecond of CPU per new
//! connection, and far more in a debug build), and the router opens connections for a long
//! tail of tenants all day. So tenant roles get a verifier with one iteration; the server's
//! side of the exchange costs the same either way. A role keeps its verifier until its
//! credentials are rotated.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// PBKDF2 iterations of tenant role verifiers (see the module's documentation).
pub(crate) const ITERATIONS: u32 = 1;

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block (SCRAM's `Hi`).
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut result = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        result.iter_mut().zip(u).for_each(|(r, x)| *r ^= x);
    }
    result
}

/// The verifier of `password` with a fresh random salt and [`ITERATIONS`]. The password is
/// used as its bytes (a generated password is ASCII, which SASLprep leaves as it is).
pub(crate) fn scram_sha_256(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    verifier(password.as_bytes(), &salt, ITERATIONS)
}

fn verifier(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let salted = salted_password(password, salt, iterations);
    let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::verifier;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    /// Computed by PostgreSQL 15 itself (`SET password_encryption = 'scram-sha-256'; CREATE ROLE
    /// … PASSWORD 'pencil'`, then `rolpassword`): the same salt and count give the same keys.
    #[test]
    fn matches_the_verifier_postgresql_computes() {
        let from_postgres = "SCRAM-SHA-256$4096:oCBwVL6KbQZjE1TwVf9vcg==$hYn3C6SMCv7xWobBhEcrulGfLx/XjvDO6VaZO3NAaeU=:n3qO4hsk36Bx3AsJUI+raWORXgQZKO3dszq7S86HlFQ=";
        let salt = STANDARD.decode("oCBwVL6KbQZjE1TwVf9vcg==").unwrap();
        assert_eq!(verifier(b"pencil", &salt, 4096), from_postgres);
        assert!(verifier(b"pencil", &salt, 1).starts_with("SCRAM-SHA-256$1:oCBwVL6KbQZjE1TwVf9vcg==$"));
    }
}
