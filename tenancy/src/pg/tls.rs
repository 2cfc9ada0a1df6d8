//! TLS to PostgreSQL with rustls: `sslmode` as libpq knows it, and the CA bundle that
//! `verify-ca` and `verify-full` check the server's certificate against.
//!
//! tokio-postgres only knows `disable`, `prefer` and `require`; the two verifying modes are
//! `require` to it, and this connector does the verifying:
//! - `disable`: no TLS; `prefer`: TLS when the server offers it, else plain;
//! - `require`: TLS or no connection, the certificate not checked (as libpq without a root
//!   certificate: encryption, no authentication of the server);
//! - `verify-ca`: TLS, the certificate chain checked against the CA bundle;
//! - `verify-full`: that, and the certificate must name the host connected to (a DNS name, or
//!   an IP address as a subject alternative name).
//!
//! A verifying mode without a CA bundle fails every connection (nothing to verify against)
//! rather than falling back to trusting anything.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode`. The default, as libpq's, is `prefer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The mode named `raw` (libpq's spelling); `allow` is taken as `prefer`.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether TLS is off, optional or required.
    pub(crate) fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CA bundle (`PG_SSL_ROOT_CERT`, PEM) that `verify-ca` and `verify-full` trust; empty when
/// none is configured. Cheap to clone.
#[derive(Clone, Default)]
pub struct CaBundle {
    roots: Option<Arc<RootCertStore>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle").field("path", &self.path).finish()
    }
}

/// Why a CA bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("cannot read the PostgreSQL CA bundle {path}: {message}")]
    Read { path: String, message: String },
    #[error("the PostgreSQL CA bundle {0} holds no usable certificate")]
    Empty(String),
}

impl CaBundle {
    /// No CA bundle: verifying modes refuse every server.
    pub fn none() -> Self {
        Self::default()
    }

    /// The certificates of the PEM file at `path` (every one must parse).
    pub fn load(path: &Path) -> Result<Self, CaBundleError> {
        let shown = path.display().to_string();
        let read = |message: String| CaBundleError::Read { path: shown.clone(), message };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| read(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        let (_, rejected) = roots.add_parsable_certificates(certificates);
        if rejected > 0 {
            return Err(read(format!("{rejected} certificate(s) could not be used")));
        }
        if roots.is_empty() {
            return Err(CaBundleError::Empty(shown));
        }
        Ok(Self { roots: Some(Arc::new(roots)), path: Some(path.to_owned()) })
    }

    /// [`CaBundle::load`] of `path` when given, else [`CaBundle::none`].
    pub fn from_setting(path: Option<&Path>) -> Result<Self, CaBundleError> {
        path.map_or_else(|| Ok(Self::none()), Self::load)
    }

    /// The file the bundle was read from (for tools such as `pg_dump`: `PGSSLROOTCERT`).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The `MakeTlsConnect` every PostgreSQL connection uses: rustls, verifying as its
/// [`SslMode`] says.
#[derive(Clone)]
pub struct Tls {
    /// The client configuration, or why there is none (a verifying mode without a CA bundle):
    /// reported when a TLS connection is attempted, never for a `disable` connection.
    config: Result<Arc<rustls::ClientConfig>, String>,
}

impl Tls {
    pub fn new(mode: SslMode, bundle: &CaBundle) -> Self {
        Self { config: client_config(mode, bundle).map(Arc::new) }
    }
}

fn client_config(mode: SslMode, bundle: &CaBundle) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Unverified { provider }),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = bundle.roots.clone().ok_or_else(|| {
                format!("sslmode={mode} needs a CA bundle (PG_SSL_ROOT_CERT), and none is configured")
            })?;
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| e.to_string())?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// `require`: any certificate (handshake signatures are still checked, so the session is
/// encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct Unverified {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA bundle; the name it is for does not matter.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = TlsConnector;
    type Error = io::Error;

    /// Never fails here: tokio-postgres asks for a connector even with `sslmode=disable`;
    /// what is wrong is reported by [`TlsConnector::connect`].
    fn make_tls_connect(&mut self, domain: &str) -> Result<TlsConnector, io::Error> {
        let connector = self.config.clone().and_then(|config| {
            let name = ServerName::try_from(domain.to_owned())
                .map_err(|_| format!("{domain:?} is not a host name TLS can verify"))?;
            Ok((tokio_rustls::TlsConnector::from(config), name))
        });
        Ok(TlsConnector(connector))
    }
}

/// One connection's TLS handshake (see [`Tls`]).
pub struct TlsConnector(Result<(tokio_rustls::TlsConnector, ServerName<'static>), String>);

impl<S> TlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let (connector, name) = self.0.map_err(io::Error::other)?;
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("TLS to PostgreSQL: {e}")))?;
            Ok(PgTlsStream(stream))
        })
    }
}

/// A TLS session to PostgreSQL.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    /// No channel binding: `tls-server-end-point` hashes the certificate with its signature's
    /// hash algorithm, which would need an X.509 parser; SCRAM without `-PLUS` is used instead.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
