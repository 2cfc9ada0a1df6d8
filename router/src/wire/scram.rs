//! SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server's side, as PostgreSQL runs it: the router
//! proves to a client that it knows the tenant's password, and checks the client's proof,
//! without the password crossing the wire. Channel binding (`SCRAM-SHA-256-PLUS`) is not
//! offered; a client that insists on it is refused.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// PBKDF2 rounds, PostgreSQL's default (`scram_iterations`).
pub(crate) const ITERATIONS: u32 = 4096;

pub(crate) const MECHANISM: &str = "SCRAM-SHA-256";

/// What the server keeps of a password: derived once per salt (PBKDF2 is deliberately slow).
#[derive(Clone)]
pub(crate) struct ServerKeys {
    pub(crate) salt: [u8; 16],
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one block: RFC 5802's `Hi`.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes a key of any length");
    mac.update(salt);
    mac.update(&[0, 0, 0, 1]);
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, b) in out.iter_mut().zip(u) {
            *o ^= b;
        }
    }
    out
}

impl ServerKeys {
    /// The keys for `password` with `salt`. Passwords are used as they are: the tenants'
    /// generated passwords are ASCII, for which SASLprep changes nothing.
    pub(crate) fn derive(password: &[u8], salt: [u8; 16]) -> Self {
        let salted = hi(password, &salt, ITERATIONS);
        let client_key = hmac(&salted, b"Client Key");
        Self { salt, stored_key: Sha256::digest(client_key).into(), server_key: hmac(&salted, b"Server Key") }
    }

    /// Keys nobody knows the password of, for a user that does not exist: the salt is the same
    /// for the same tenant and user every time (as a real user's is), so that two attempts do
    /// not tell them apart.
    pub(crate) fn mock(tenant: &str, user: &str) -> Self {
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(rand::random);
        let digest = hmac(key, format!("{tenant}\0{user}").as_bytes());
        let mut salt = [0; 16];
        salt.copy_from_slice(&digest[..16]);
        Self { salt, stored_key: rand::random(), server_key: rand::random() }
    }

    /// Keys for a fresh random salt.
    pub(crate) fn new(password: &[u8]) -> Self {
        Self::derive(password, rand::random())
    }
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported by this server")]
    ChannelBinding,
    #[error("the proof does not match")]
    WrongProof,
}

/// The exchange after the client's first message, waiting for its final one.
pub(crate) struct Exchange {
    client_first_bare: String,
    server_first: String,
    /// The `c=` value the client must send back: its GS2 header, base64.
    channel_binding: String,
    nonce: String,
}

impl Exchange {
    /// Reads the client's first message (`n,,n=user,r=nonce`) and composes the server's first
    /// (`r=nonce,s=salt,i=iterations`) for `keys`.
    pub(crate) fn start(client_first: &[u8], keys: &ServerKeys) -> Result<(Self, String), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (flag, rest) = text.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            // `y`: the client could bind but thinks the server cannot; fine, as offered.
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("authorization identities are not supported"));
        }
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let server_nonce: [u8; 18] = rand::random();
        let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={ITERATIONS}", BASE64.encode(keys.salt));
        let gs2_header = &text[..flag.len() + 1 + authzid.len() + 1];
        let exchange = Self {
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            channel_binding: BASE64.encode(gs2_header),
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// The proof of the client's final message (`c=…,r=…,p=…`), checked as far as the message
    /// goes; [`Exchange::verify`] checks it against keys.
    pub(crate) fn read_final(&self, client_final: &[u8]) -> Result<ClientFinal, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        if attrs.next() != Some(&format!("c={}", self.channel_binding)) {
            return Err(ScramError::Malformed("channel binding data differs from the first message"));
        }
        if attrs.next() != Some(&format!("r={}", self.nonce)) {
            return Err(ScramError::Malformed("nonce differs"));
        }
        let proof: [u8; 32] = BASE64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        Ok(ClientFinal { auth_message, proof })
    }
}

/// The client's final message, read.
pub(crate) struct ClientFinal {
    auth_message: String,
    proof: [u8; 32],
}

impl ClientFinal {
    /// Checks the proof against `keys` (which must have the salt the exchange was started
    /// with); on success, the server's final message (`v=signature`).
    pub(crate) fn verify(&self, keys: &ServerKeys) -> Result<String, ScramError> {
        let signature = hmac(&keys.stored_key, self.auth_message.as_bytes());
        let mut client_key = self.proof;
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(stored.ct_eq(&keys.stored_key)) {
            return Err(ScramError::WrongProof);
        }
        Ok(format!("v={}", BASE64.encode(hmac(&keys.server_key, self.auth_message.as_bytes()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client computing its proof as RFC 5802 says.
    fn client_proof(password: &str, salt: &[u8], auth_message: &str) -> String {
        let salted = hi(password.as_bytes(), salt, ITERATIONS);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let signature = hmac(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        BASE64.encode(proof)
    }

    fn run(password: &str, server_password: &str) -> Result<String, ScramError> {
        let keys = ServerKeys::new(server_password.as_bytes());
        let first = "n,,n=,r=abcdefghijkl";
        let (exchange, server_first) = Exchange::start(first.as_bytes(), &keys)?;
        let nonce = server_first.split(',').next().unwrap().strip_prefix("r=").unwrap();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=,r=abcdefghijkl,{server_first},{without_proof}");
        let proof = client_proof(password, &keys.salt, &auth_message);
        exchange.read_final(format!("{without_proof},p={proof}").as_bytes())?.verify(&keys)
    }

    #[test]
    fn the_right_password_passes_and_a_wrong_one_fails() {
        assert!(run("s3cret", "s3cret").unwrap().starts_with("v="));
        assert_eq!(run("wrong", "s3cret"), Err(ScramError::WrongProof));
    }

    #[test]
    fn pbkdf2_matches_rfc_7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil".
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = hi(b"pencil", &salt, 4096);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        assert_eq!(BASE64.encode(proof), "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth.as_bytes());
        assert_eq!(BASE64.encode(server_signature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn channel_binding_and_tampering_are_refused() {
        let keys = ServerKeys::new(b"pw");
        assert_eq!(
            Exchange::start(b"p=tls-server-end-point,,n=,r=abc", &keys).err(),
            Some(ScramError::ChannelBinding)
        );
        let (exchange, server_first) = Exchange::start(b"n,,n=,r=abc", &keys).unwrap();
        let nonce = server_first.split(',').next().unwrap().strip_prefix("r=").unwrap();
        let proof = BASE64.encode([0u8; 32]);
        assert!(matches!(
            exchange.read_final(format!("c=biws,r={nonce}x,p={proof}").as_bytes()),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            exchange.read_final(format!("c=eSws,r={nonce},p={proof}").as_bytes()),
            Err(ScramError::Malformed(_))
        ));
    }
}
