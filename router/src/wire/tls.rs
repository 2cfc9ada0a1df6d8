//! The listener's certificate: a PEM certificate chain and private key, from files
//! (`ROUTER_TLS_CERT_FILE`, `ROUTER_TLS_KEY_FILE`) or from the settings themselves
//! (`ROUTER_TLS_CERT`, `ROUTER_TLS_KEY`: environment variables a secret store fills), made into
//! a rustls acceptor. No error quotes the private key, not even a line of it.

use crate::settings::PostgresSettings;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// Why the listener's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{from}: the certificate chain is not valid PEM: {source}")]
    Certificate { from: String, source: pem::Error },
    #[error("{from}: no certificate (PEM `CERTIFICATE`)")]
    NoCertificate { from: String },
    /// The parser's own message is left out: it may quote a line of the key.
    #[error("{from}: the private key is not valid PEM")]
    Key { from: String },
    #[error("{from}: no private key (PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)")]
    NoKey { from: String },
    #[error("{from}: {source}")]
    Rejected { from: String, source: rustls::Error },
}

/// The TLS acceptor for the certificate the settings name, if they name one.
///
/// # Errors
/// When a file cannot be read, or the PEM holds no usable certificate chain or key.
pub fn listener_tls(settings: &PostgresSettings) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    match (&settings.tls_cert, &settings.tls_key, &settings.tls_cert_file, &settings.tls_key_file) {
        (Some(certificate), Some(key), _, _) => {
            tls_acceptor(certificate.as_bytes(), key.expose().as_bytes(), "ROUTER_TLS_CERT / ROUTER_TLS_KEY")
                .map(Some)
        }
        (_, _, Some(certificate), Some(key)) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path)
                    .map_err(|source| TlsError::Read { path: path.display().to_string(), source })
            };
            let from = format!("{} / {}", certificate.display(), key.display());
            tls_acceptor(&read(certificate)?, &read(key)?, &from).map(Some)
        }
        _ => Ok(None),
    }
}

/// The TLS acceptor for this PEM certificate chain and private key; `from` says where they
/// came from, in errors.
///
/// # Errors
/// When the PEM holds no usable certificate chain or key, or the two do not match.
pub fn tls_acceptor(
    certificate_pem: &[u8],
    key_pem: &[u8],
    from: &str,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let from = || from.to_owned();
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate_pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Certificate { from: from(), source })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { from: from() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey { from: from() },
        _ => TlsError::Key { from: from() },
    })?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rejected { from: from(), source })?
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .map_err(|source| TlsError::Rejected { from: from(), source })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use rustls::pki_types::ServerName;

    /// Only the PostgreSQL listener's settings, parsed as the binary parses them.
    #[derive(Debug, clap::Parser)]
    struct Settings {
        #[command(flatten)]
        postgres: PostgresSettings,
    }

    struct Certificates {
        dir: std::path::PathBuf,
    }

    impl Certificates {
        fn new(names: &[&str]) -> Self {
            let dir = std::env::temp_dir().join(format!("router-tls-unit-{}", testkit::unique_suffix()));
            std::fs::create_dir_all(&dir).unwrap();
            testkit::make_certificates(&dir, names);
            Self { dir }
        }

        fn read(&self, file: &str) -> String {
            std::fs::read_to_string(self.dir.join(file)).unwrap()
        }

        fn path(&self, file: &str) -> String {
            self.dir.join(file).display().to_string()
        }
    }

    impl Drop for Certificates {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A TLS client that trusts the test CA completes a handshake with `acceptor` for
    /// `server_name`, and the server sees that name as the SNI.
    async fn handshake(
        acceptor: &tokio_rustls::TlsAcceptor,
        ca_pem: &str,
        server_name: &str,
    ) -> Option<String> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let (client, server) = tokio::join!(connector.connect(name, client_io), acceptor.accept(server_io));
        client.expect("the client accepts the certificate");
        server.expect("the server completes the handshake").get_ref().1.server_name().map(str::to_owned)
    }

    #[tokio::test]
    async fn the_certificate_and_key_as_text_serve_tls() {
        let certs = Certificates::new(&["postgres.app.example.com", "*.app.example.com"]);
        let settings = Settings::try_parse_from([
            "tenant-router",
            "--tls-cert",
            &certs.read("server.crt"),
            "--tls-key",
            &certs.read("server.key"),
        ])
        .unwrap();
        let acceptor = listener_tls(&settings.postgres).unwrap().expect("a TLS acceptor");
        let ca = certs.read("ca.crt");
        for name in ["postgres.app.example.com", "acme.app.example.com"] {
            assert_eq!(handshake(&acceptor, &ca, name).await.as_deref(), Some(name));
        }

        // The files give the same acceptor.
        let settings = Settings::try_parse_from([
            "tenant-router",
            "--tls-cert-file",
            &certs.path("server.crt"),
            "--tls-key-file",
            &certs.path("server.key"),
        ])
        .unwrap();
        let acceptor = listener_tls(&settings.postgres).unwrap().expect("a TLS acceptor");
        assert_eq!(
            handshake(&acceptor, &ca, "acme.app.example.com").await.as_deref(),
            Some("acme.app.example.com")
        );
    }

    #[test]
    fn the_text_and_file_forms_cannot_be_mixed_and_come_in_pairs() {
        let certs = Certificates::new(&["postgres.app.example.com"]);
        let (cert, key) = (certs.read("server.crt"), certs.read("server.key"));
        let (cert_file, key_file) = (certs.path("server.crt"), certs.path("server.key"));
        let refused = [
            vec!["--tls-cert", &cert],
            vec!["--tls-key", &key],
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-cert-file",
                &cert_file,
                "--tls-key-file",
                &key_file,
            ],
            vec!["--tls-cert", &cert, "--tls-key-file", &key_file],
            vec!["--tls-cert-file", &cert_file, "--tls-key", &key],
        ];
        for args in refused {
            let err = Settings::try_parse_from(std::iter::once("tenant-router").chain(args.iter().copied()))
                .expect_err("refused");
            assert!(!err.to_string().contains("PRIVATE KEY"), "the key is not printed: {err}");
        }
        let settings = Settings::try_parse_from(["tenant-router"]).unwrap();
        assert!(listener_tls(&settings.postgres).unwrap().is_none());
    }

    #[test]
    fn errors_say_what_is_wrong_and_never_quote_the_key() {
        let certs = Certificates::new(&["postgres.app.example.com"]);
        let (cert, key) = (certs.read("server.crt"), certs.read("server.key"));
        let from = "ROUTER_TLS_CERT / ROUTER_TLS_KEY";
        let error = |certificate: &str, key: &str| {
            tls_acceptor(certificate.as_bytes(), key.as_bytes(), from).err().expect("refused").to_string()
        };

        // A key whose base64 is damaged, with a secret-looking body line and a broken header.
        let mut lines: Vec<&str> = key.lines().collect();
        let body = lines[1].to_owned();
        let damaged = format!("{}!{}", &body[..10], &body[11..]);
        lines[1] = &damaged;
        let damaged_key = lines.join("\n");
        let broken_header = key.replacen("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY", 1);
        for (bad_key, expected) in [
            (damaged_key.as_str(), "not valid PEM"),
            (broken_header.as_str(), "not valid PEM"),
            ("", "no private key"),
            (cert.as_str(), "no private key"),
        ] {
            let message = error(&cert, bad_key);
            assert!(message.starts_with(from) && message.contains(expected), "{message}");
            for line in bad_key.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!message.contains(line), "the key is quoted: {message}");
            }
            assert!(!message.contains(&body[..16]), "the key is quoted: {message}");
        }

        assert!(error("", &key).contains("no certificate"));
        // A certificate with another certificate's key.
        let other = Certificates::new(&["other.example.com"]);
        let mismatch = error(&cert, &other.read("server.key"));
        assert!(mismatch.starts_with(from), "{mismatch}");
        assert!(!mismatch.contains(&body[..16]));

        let missing = Settings::try_parse_from([
            "tenant-router",
            "--tls-cert-file",
            "/nonexistent/server.crt",
            "--tls-key-file",
            "/nonexistent/server.key",
        ])
        .unwrap();
        let message = listener_tls(&missing.postgres).err().expect("refused").to_string();
        assert!(message.contains("/nonexistent/server.crt"), "{message}");
    }
}
