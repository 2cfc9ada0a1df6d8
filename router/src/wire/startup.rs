//! A client connection's first steps: TLS, the startup packet, and which tenant it names.
//!
//! The tenant is named by its host (`<slug>.<TENANT_BASE_DOMAIN>` or a custom domain) as the
//! transport carries it (over TCP the TLS SNI; over WebSocket the HTTP request's `Host`, or its
//! `address` parameter, see [`super::websocket`]), by `options=-c tenant=<slug>`, or by the
//! database name (`<slug>`); names given in more than one of these ways must agree. Who the
//! client is comes next ([`super::auth`]).

use super::auth::Method;
use super::frame::{self, Frame, Notice};
use super::WireError;
use crate::failed_attempts::ClientAddress;
use crate::resolve::ResolveTenantError;
use crate::state::AppState;
use bytes::BytesMut;
use std::sync::Arc;
use tenancy::catalog::TenantRecord;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3_0: i32 = 196_608;

/// A client's byte stream: TCP, TLS, or a WebSocket's messages.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// How a client reached the router, and what that says of it.
pub(crate) enum Transport {
    /// The PostgreSQL listener; `sni`: the host the client asked for in its TLS handshake,
    /// unless that is the router's own (see [`tenant_sni`]).
    Tcp { sni: Option<String> },
    /// A WebSocket upgrade of an HTTP request to `/v2`: its `Host`, and the host of its
    /// `address` query parameter.
    WebSocket { host: Option<String>, address: Option<String> },
}

impl Transport {
    /// How the client proves it knows the password: SCRAM over TCP, where the protocol's TLS
    /// is optional; the password itself over WebSocket, inside the WebSocket's TLS, as Neon's
    /// serverless driver sends it without waiting to be asked.
    pub(crate) fn auth_method(&self) -> Method {
        match self {
            Self::Tcp { .. } => Method::Scram,
            Self::WebSocket { .. } => Method::Cleartext,
        }
    }

    /// The host the transport names, and by what (for messages).
    async fn named_host(&self, state: &AppState) -> Result<Option<(&'static str, String)>, Notice> {
        match self {
            Self::Tcp { sni } => Ok(sni.clone().map(|sni| ("SNI", sni))),
            Self::WebSocket { host, address } => {
                super::websocket::named_host(state, host.as_deref(), address.as_deref()).await
            }
        }
    }
}

/// Whether a client may, or must, encrypt with the protocol's own TLS (an SSLRequest).
pub(crate) struct Encryption<'a> {
    /// `None`: an SSLRequest is declined.
    pub(crate) tls: Option<&'a tokio_rustls::TlsAcceptor>,
    /// A client that did not encrypt is served.
    pub(crate) allow_plaintext: bool,
    /// The router's own host name (`ROUTER_PG_HOST`): an SNI naming it names no tenant.
    pub(crate) router_host: Option<&'a str>,
}

/// A client connection and what has been read from it but not handled yet.
pub(crate) struct ClientConn {
    pub(crate) io: Box<dyn ClientIo>,
    pub(crate) buf: BytesMut,
    pub(crate) transport: Transport,
}

impl ClientConn {
    pub(crate) fn new(io: Box<dyn ClientIo>, transport: Transport) -> Self {
        Self { io, buf: BytesMut::new(), transport }
    }

    async fn read_more(&mut self) -> Result<(), WireError> {
        frame::make_room(&mut self.buf, frame::CLIENT_READ_ROOM);
        match self.io.read_buf(&mut self.buf).await? {
            0 => Err(WireError::Closed),
            _ => Ok(()),
        }
    }

    /// Sends `bytes` and flushes them (a WebSocket sends a message only when flushed).
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next whole message, at most `max` bytes long.
    pub(crate) async fn read_frame(&mut self, max: usize) -> Result<Frame, WireError> {
        loop {
            if let Some(frame) = frame::next_frame(&mut self.buf, max)? {
                return Ok(frame);
            }
            self.read_more().await?;
        }
    }

    /// Sends `notice` (a `FATAL` error) before the connection is closed.
    pub(crate) async fn refuse(&mut self, notice: &Notice) {
        let mut out = BytesMut::new();
        notice.put(&mut out);
        let _ = self.send(&out).await;
        let _ = self.io.shutdown().await;
    }
}

/// How a connection opened.
pub(crate) enum Opening {
    /// A session is starting, with these startup parameters.
    Startup(ClientConn, Vec<(String, String)>),
    /// A cancel request for the client with this key (the connection ends there).
    Cancel { process_id: i32, secret_key: i32 },
}

/// Reads the startup packets, negotiating TLS on the way.
pub(crate) async fn open(mut conn: ClientConn, encryption: Encryption<'_>) -> Result<Opening, WireError> {
    let Encryption { tls, allow_plaintext, router_host } = encryption;
    let mut encrypted = false;
    loop {
        let (code, body) = loop {
            if let Some(packet) = frame::next_startup_packet(&mut conn.buf)? {
                break packet;
            }
            conn.read_more().await?;
        };
        match code {
            SSL_REQUEST if !encrypted => {
                let Some(acceptor) = tls else {
                    conn.send(b"N").await?;
                    continue;
                };
                if !conn.buf.is_empty() {
                    // Bytes after the SSLRequest, before the handshake: a buffer-stuffing attempt.
                    return Err(WireError::Protocol(frame::FrameError::Malformed("SSLRequest")));
                }
                conn.send(b"S").await?;
                let stream = acceptor.accept(conn.io).await?;
                let sni = tenant_sni(stream.get_ref().1.server_name(), router_host).map(str::to_owned);
                conn = ClientConn::new(Box::new(stream), Transport::Tcp { sni });
                encrypted = true;
            }
            GSSENC_REQUEST if !encrypted => conn.send(b"N").await?,
            CANCEL_REQUEST if body.len() == 8 => {
                let process_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let secret_key = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                return Ok(Opening::Cancel { process_id, secret_key });
            }
            code if code >> 16 == 3 => {
                let parameters = frame::startup_parameters(&body)?;
                if !encrypted && !allow_plaintext {
                    conn.refuse(&Notice::fatal(
                        "28000",
                        "this router accepts only TLS connections (use sslmode=require or stronger)",
                    ))
                    .await;
                    return Err(WireError::Closed);
                }
                if code != PROTOCOL_3_0 {
                    // 3.x: answer with 3.0 and the protocol options the router does not know.
                    let unknown: Vec<String> = parameters
                        .iter()
                        .filter(|(n, _)| n.starts_with("_pq_."))
                        .map(|(n, _)| n.clone())
                        .collect();
                    let mut out = BytesMut::new();
                    frame::negotiate_protocol_version(&mut out, &unknown);
                    conn.send(&out).await?;
                }
                let parameters = parameters.into_iter().filter(|(n, _)| !n.starts_with("_pq_.")).collect();
                return Ok(Opening::Startup(conn, parameters));
            }
            _ => {
                conn.refuse(&Notice::fatal(
                    "08P01",
                    format!("unsupported frontend protocol {}.{}", code >> 16, code & 0xffff),
                ))
                .await;
                return Err(WireError::Closed);
            }
        }
    }
}

/// What a client asked for at startup.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) user: String,
    /// The tenant named by `options` (`-c tenant=<slug>`).
    pub(crate) tenant_option: Option<String>,
    pub(crate) database: Option<String>,
    /// Settings to apply to the session: startup parameters and `options`' `-c name=value`.
    pub(crate) settings: Vec<(String, String)>,
}

/// Parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

impl Request {
    pub(crate) fn parse(parameters: Vec<(String, String)>) -> Result<Self, Notice> {
        let mut request = Self::default();
        for (name, value) in parameters {
            match name.as_str() {
                "user" => request.user = value,
                "database" => request.database = Some(value).filter(|d| !d.is_empty()),
                "options" => {
                    for (name, value) in options(&value)? {
                        if name == "tenant" {
                            request.tenant_option = Some(value);
                        } else {
                            request.settings.push((name, value));
                        }
                    }
                }
                "replication" => {
                    return Err(Notice::fatal(
                        "08P01",
                        "replication connections are not supported by the router",
                    ))
                }
                _ if NOT_SETTINGS.contains(&name.as_str()) => {}
                _ => request.settings.push((name, value)),
            }
        }
        if request.user.is_empty() {
            return Err(Notice::fatal("28000", "no user name given"));
        }
        Ok(request)
    }
}

/// The `name=value` settings of a startup `options` string: `-c name=value`, `-cname=value` or
/// `--name=value`, separated by spaces (a backslash keeps the next character, a space included).
fn options(raw: &str) -> Result<Vec<(String, String)>, Notice> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let bad = || Notice::fatal("08P01", format!("invalid options {raw:?}: expected -c name=value"));
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let pair = if word == "-c" {
            words.next().ok_or_else(bad)?
        } else if let Some(rest) = word.strip_prefix("-c").or_else(|| word.strip_prefix("--")) {
            rest.to_owned()
        } else {
            return Err(bad());
        };
        let (name, value) = pair.split_once('=').ok_or_else(bad)?;
        settings.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(settings)
}

/// The SNI host that names the client's tenant: none when the client asked for the router's
/// own host (`ROUTER_PG_HOST`, one name for every tenant, e.g. behind a TCP load balancer); such
/// a client names its tenant by `options` or the database name.
pub(crate) fn tenant_sni<'a>(sni: Option<&'a str>, router_host: Option<&str>) -> Option<&'a str> {
    sni.filter(|sni| router_host.is_none_or(|own| !sni.trim_end_matches('.').eq_ignore_ascii_case(own)))
}

/// The tenant a client named, by the host its transport names, `options` or database name;
/// they must agree.
pub(crate) async fn tenant(
    state: &AppState,
    client: ClientAddress,
    transport: &Transport,
    request: &Request,
) -> Result<Arc<TenantRecord>, Notice> {
    state
        .failed_attempts
        .check(client)
        .map_err(|_| Notice::fatal("28000", "too many failed attempts from this address; retry later"))?;
    let base = state.resolver.base_domain();
    let slug_host = |slug: &str| {
        tenancy::domain::Slug::parse(slug)
            .map(|slug| base.host_for(&slug))
            .map_err(|_| Notice::fatal("3D000", format!("no tenant {slug:?}")))
    };
    let mut hosts = Vec::new();
    hosts.extend(transport.named_host(state).await?);
    if let Some(slug) = &request.tenant_option {
        hosts.push(("options", slug_host(slug)?));
    }
    if hosts.is_empty() {
        match &request.database {
            Some(database) if *database != request.user => hosts.push(("database", slug_host(database)?)),
            _ => {
                return Err(Notice::fatal(
                    "28000",
                    format!(
                        "name the tenant: connect to <tenant>.{} with TLS, or set options=-c tenant=<tenant>, or database=<tenant>",
                        base.as_str()
                    ),
                ))
            }
        }
    }
    let mut found: Option<Arc<TenantRecord>> = None;
    for (how, host) in hosts {
        let tenant = match state.resolver.resolve(Some(&host)).await {
            Ok(tenant) => tenant,
            Err(err @ ResolveTenantError::NotFound) => {
                state.failed_attempts.record(client);
                return Err(resolve_notice(&err, how));
            }
            Err(err) => return Err(resolve_notice(&err, how)),
        };
        if let Some(first) = &found {
            if first.id != tenant.id {
                return Err(Notice::fatal("28000", "the tenant named by host, options and database differ"));
            }
        }
        found = Some(tenant);
    }
    found.ok_or_else(|| Notice::fatal("3D000", "no tenant named"))
}

pub(crate) fn resolve_notice(err: &ResolveTenantError, how: &str) -> Notice {
    match err {
        ResolveTenantError::NotFound => {
            Notice::fatal("3D000", format!("no tenant at the host named by {how}"))
        }
        ResolveTenantError::Suspended => Notice::fatal("28000", "tenant is suspended"),
        ResolveTenantError::Provisioning => {
            Notice::fatal("57P03", "tenant is being provisioned; retry shortly")
        }
        ResolveTenantError::InvalidHost(_)
        | ResolveTenantError::MissingHost
        | ResolveTenantError::DuplicateHost => Notice::fatal("08P01", format!("invalid host named by {how}")),
        ResolveTenantError::Unavailable(_) | ResolveTenantError::UnknownHostsThrottled => {
            Notice::fatal("57P03", "the tenant directory is unavailable; retry shortly")
        }
        ResolveTenantError::Moving => Notice::fatal("57P03", err.to_string()),
        ResolveTenantError::WritesPaused => Notice::error("57P03", err.to_string()),
    }
}

/// What a client sees when no pool or connection could be had for its tenant.
pub(crate) fn pool_notice(err: &crate::pool::PoolCheckoutError) -> Notice {
    use crate::pool::PoolCheckoutError as E;
    match err {
        E::NoCredentials => Notice::fatal("57P03", "tenant has no credentials yet; retry shortly"),
        E::NoReader => Notice::fatal("28000", "the tenant has no read-only role yet"),
        E::Exhausted => {
            Notice::fatal("53300", "no server connection became free within the checkout timeout")
        }
        E::AuthFailed | E::Secrets(_) | E::Database(_) => {
            Notice::fatal("57P03", "the tenant's database is unavailable; retry shortly")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn options_name_the_tenant_and_carry_settings() {
        let request = Request::parse(params(&[
            ("user", "app_acme"),
            ("database", "acme"),
            ("options", "-c tenant=acme -csearch_path=a\\ b --statement-timeout=5s"),
            ("application_name", "psql"),
        ]))
        .unwrap();
        assert_eq!(request.tenant_option.as_deref(), Some("acme"));
        assert_eq!(request.database.as_deref(), Some("acme"));
        assert_eq!(
            request.settings,
            params(&[("search_path", "a b"), ("statement_timeout", "5s"), ("application_name", "psql")])
        );
        assert!(Request::parse(params(&[("user", "u"), ("options", "-x")])).is_err());
        assert!(Request::parse(params(&[("user", "u"), ("replication", "database")])).is_err());
        assert!(Request::parse(params(&[("database", "d")])).is_err());
    }

    #[test]
    fn the_routers_own_host_names_no_tenant() {
        let own = Some("postgres.app.example.com");
        assert_eq!(tenant_sni(Some("postgres.app.example.com"), own), None);
        assert_eq!(tenant_sni(Some("Postgres.App.Example.com."), own), None);
        assert_eq!(tenant_sni(Some("acme.app.example.com"), own), Some("acme.app.example.com"));
        assert_eq!(tenant_sni(Some("db.acme.com"), own), Some("db.acme.com"));
        assert_eq!(tenant_sni(None, own), None);
        // Without ROUTER_PG_HOST every SNI names a tenant.
        assert_eq!(tenant_sni(Some("postgres.app.example.com"), None), Some("postgres.app.example.com"));
    }
}
