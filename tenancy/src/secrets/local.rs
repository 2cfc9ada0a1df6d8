//! Local backend: secrets encrypted with AES-256-GCM and kept in the catalog table
//! `control.secrets`. The key comes from the operator (`SECRETS_LOCAL_KEY`, base64 of 32 bytes,
//! or a key file) and never touches the database.

use super::{decode_credentials, encode_credentials, DbCredentials, SecretError, SecretName, SecretStore};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use deadpool_postgres::Pool;
use std::path::Path;

/// A 256-bit key for the local secret store.
#[derive(Clone)]
pub struct LocalKey([u8; 32]);

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey(<redacted>)")
    }
}

impl LocalKey {
    /// Parses base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    pub fn from_base64(raw: &str) -> Result<Self, SecretError> {
        let raw = raw.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')))
            .map_err(|_| SecretError::Key("not valid base64".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| SecretError::Key(format!("must be 32 bytes, got {}", b.len())))?;
        Ok(Self(key))
    }

    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| SecretError::Key(format!("cannot read key file {}: {e}", path.display())))?;
        Self::from_base64(&raw)
    }

    /// A new random key, base64-encoded (for `make demo` and tests).
    pub fn generate_base64() -> String {
        let key: [u8; 32] = rand::random();
        base64::engine::general_purpose::STANDARD.encode(key)
    }
}

pub struct LocalSecretStore {
    cipher: Aes256Gcm,
    catalog: Pool,
}

impl LocalSecretStore {
    pub fn new(key: &LocalKey, catalog: Pool) -> Self {
        Self { cipher: Aes256Gcm::new((&key.0).into()), catalog }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, SecretError> {
        self.catalog.get().await.map_err(|e| SecretError::Unavailable(format!("catalog: {e}")))
    }
}

fn db_error(err: &tokio_postgres::Error) -> SecretError {
    SecretError::Unavailable(format!("catalog: {}", crate::pg::describe_error(err)))
}

#[async_trait::async_trait]
impl SecretStore for LocalSecretStore {
    async fn put(
        &self,
        name: &SecretName,
        value: &DbCredentials,
        _request_token: &str,
    ) -> Result<(), SecretError> {
        let nonce_bytes: [u8; 12] = rand::random();
        let plaintext = encode_credentials(value);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload { msg: plaintext.as_bytes(), aad: name.as_str().as_bytes() },
            )
            .map_err(|_| SecretError::Corrupt(name.to_string()))?;
        self.client()
            .await?
            .execute(
                "INSERT INTO control.secrets (name, nonce, ciphertext) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE
                   SET nonce = excluded.nonce, ciphertext = excluded.ciphertext,
                       version = control.secrets.version + 1, updated_at = now(), deleted_at = NULL",
                &[&name.as_str(), &nonce_bytes.as_slice(), &ciphertext],
            )
            .await
            .map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn get(&self, name: &SecretName) -> Result<Option<DbCredentials>, SecretError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT nonce, ciphertext FROM control.secrets WHERE name = $1 AND deleted_at IS NULL",
                &[&name.as_str()],
            )
            .await
            .map_err(|e| db_error(&e))?;
        let Some(row) = row else { return Ok(None) };
        let nonce: Vec<u8> = row.get(0);
        let ciphertext: Vec<u8> = row.get(1);
        if nonce.len() != 12 {
            return Err(SecretError::Corrupt(name.to_string()));
        }
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: name.as_str().as_bytes() })
            .map_err(|_| SecretError::Corrupt(name.to_string()))?;
        decode_credentials(name, &plaintext).map(Some)
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretError> {
        self.client()
            .await?
            .execute("DELETE FROM control.secrets WHERE name = $1", &[&name.as_str()])
            .await
            .map_err(|e| db_error(&e))?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "local"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(LocalKey::from_base64(&LocalKey::generate_base64()).is_ok());
        assert!(matches!(LocalKey::from_base64("c2hvcnQ="), Err(SecretError::Key(_))));
        assert!(matches!(LocalKey::from_base64("!!!"), Err(SecretError::Key(_))));
        assert!(!format!("{:?}", LocalKey([7; 32])).contains('7'));
    }
}
