//! The PostgreSQL protocol over WebSocket, as Neon's proxy offers it to Neon's serverless
//! driver (`@neondatabase/serverless` `Pool` and `Client`, and what is built on them, such as
//! `@prisma/adapter-neon`).
//!
//! - **Where**: a WebSocket upgrade of `GET /v2` on the router's HTTP listener, the path the
//!   driver asks for by default (`wsProxy: host => host + "/v2"`). A `/v2` request that is not
//!   a WebSocket upgrade goes to the reverse proxy as any other path.
//! - **Framing**: binary messages carry the protocol's bytes as they would flow over TCP; the
//!   driver may cut and join its messages anywhere, so they are read as one byte stream. A
//!   text message ends the connection. No subprotocol is negotiated.
//! - **Which tenant**: the request's `Host`, resolved as for `/sql` (a subdomain of
//!   `TENANT_BASE_DOMAIN` or a custom domain). When the `Host` is not a tenant's (the router's
//!   own name, say), the host of the `address` query parameter, which the driver sets to the
//!   connection string's `host:port` when `wsProxy` is a plain string. Startup
//!   `options=-c tenant=` and the database name, when they name a tenant, must agree.
//! - **TLS** belongs to the WebSocket (`wss://`), terminated in front of the router as for
//!   `/sql`; an SSLRequest inside the WebSocket is declined.
//! - **Who**: the password itself, asked for with `AuthenticationCleartextPassword` (which the
//!   driver sends without waiting to be asked), inside the WebSocket's TLS ([`super::auth`]).
//!
//! Then the session is the PostgreSQL door's own ([`super::Door`]): same client limit, cancel
//! keys, metrics, transaction pooling and drain at shutdown.

use super::frame::Notice;
use super::startup::{resolve_notice, ClientConn, Encryption, Transport};
use super::Door;
use crate::failed_attempts::ClientAddress;
use crate::state::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts as _, Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::Extension;
use bytes::{Buf as _, Bytes};
use futures::{Sink as _, Stream as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest WebSocket message a client may send (a PostgreSQL message may span several).
const MAX_MESSAGE: usize = 64 << 20;

/// `GET /v2`: a WebSocket upgrade starts a PostgreSQL session; anything else is forwarded to
/// the application, as any other path.
pub(crate) async fn handle(
    State(state): State<AppState>,
    Extension(door): Extension<Arc<Door>>,
    client: ClientAddress,
    request: Request,
) -> Response {
    if !is_websocket_upgrade(request.headers()) {
        return crate::proxy::forward(State(state), client, request).await.into_response();
    }
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let host = crate::resolve::host_of(&parts.headers).ok().flatten().map(str::to_owned);
    let address =
        axum::extract::Query::<Params>::try_from_uri(&parts.uri).ok().and_then(|query| query.0.address);
    // Taken now, while the HTTP connection still holds the listener's drain open.
    let place = door.place();
    upgrade.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| async move {
        let conn =
            ClientConn::new(Box::new(WebSocketIo::new(socket)), Transport::WebSocket { host, address });
        let encryption = Encryption { tls: None, allow_plaintext: true, router_host: None };
        door.serve_client(place, conn, client, encryption).await;
    })
}

/// The query parameters of `/v2`.
#[derive(serde::Deserialize)]
struct Params {
    /// `host:port` of the client's connection string.
    address: Option<String>,
}

fn is_websocket_upgrade(headers: &axum::http::HeaderMap) -> bool {
    headers.get_all(axum::http::header::UPGRADE).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// The host a WebSocket client names its tenant by: its `Host` when that is a tenant's host,
/// else its `address` (`None`: neither; the startup parameters must name the tenant).
pub(super) async fn named_host(
    state: &AppState,
    host: Option<&str>,
    address: Option<&str>,
) -> Result<Option<(&'static str, String)>, Notice> {
    if let Some(host) = host.and_then(|host| tenancy::domain::normalize_host(host).ok()) {
        let is_tenant_host = state.resolver.base_domain().subdomain_of(&host).is_some()
            || state.resolver.lookup(&host).await.map_err(|e| resolve_notice(&e, "Host"))?.is_some();
        if is_tenant_host {
            return Ok(Some(("Host", host)));
        }
    }
    Ok(address.map(|address| ("address", address.to_owned())))
}

/// A WebSocket as a byte stream: what binary messages carry, read in order; what is written,
/// sent as binary messages (one per write, on flush).
pub(crate) struct WebSocketIo {
    socket: WebSocket,
    /// What is left of the last message read.
    unread: Bytes,
}

impl WebSocketIo {
    pub(crate) fn new(socket: WebSocket) -> Self {
        Self { socket, unread: Bytes::new() }
    }
}

fn io_error(err: axum::Error) -> std::io::Error {
    std::io::Error::other(err)
}

impl AsyncRead for WebSocketIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => this.unread = bytes,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // The end of the stream.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a text message on a PostgreSQL WebSocket (only binary messages are)",
                    )))
                }
                Some(Err(err)) => return Poll::Ready(Err(io_error(err))),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WebSocketIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let socket = &mut self.get_mut().socket;
        ready!(Pin::new(&mut *socket).poll_ready(cx)).map_err(io_error)?;
        Pin::new(socket).start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_close(cx).map_err(io_error)
    }
}
