//! Operator API tokens. A token is shown once, when created; the catalog keeps only its SHA-256
//! hash, so a leaked catalog does not leak usable tokens. Tokens carry 256 random bits, so a
//! plain hash (no salt, no slow KDF) is the right tool: there is nothing to brute-force.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

/// Every token starts with this, so scanners and people recognise one.
const PREFIX: &str = "tct_";

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a token named `name`; returns the token itself (shown once) and its id.
pub async fn create(client: &impl GenericClient, name: &str) -> Result<(String, i64), tokio_postgres::Error> {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let row = client
        .query_one(
            "INSERT INTO control.operator_tokens (name, token_hash) VALUES ($1, $2) RETURNING id",
            &[&name, &hash(&token)],
        )
        .await?;
    Ok((token, row.get(0)))
}

/// The name of the live token `token`, if there is one (and notes its use).
pub(crate) async fn verify(
    client: &impl GenericClient,
    token: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    if !token.starts_with(PREFIX) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "UPDATE control.operator_tokens SET last_used_at = now()
              WHERE token_hash = $1 AND revoked_at IS NULL
          RETURNING name",
            &[&hash(token)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
