//! Serving an axum application on a TCP listener with the limits a listener facing untrusted
//! clients needs (axum's own `serve` has none): slow clients cannot hold connections, and the
//! number of connections is bounded.
//!
//! - **Header read timeout**: a connection must deliver a request's whole head within this
//!   time, counted from its accept for its first request and from the first byte of each later
//!   one; else it is closed (slowloris).
//! - **Idle timeout**: a keep-alive connection with no request in flight and no byte of a next
//!   one is closed after this time.
//! - **Connection limit**: past it, a new connection is answered `503` with `Retry-After` at
//!   once and closed, without a task or a buffer of its own (as PgBouncer's `max_client_conn`
//!   or Envoy's connection overflow), so a flood costs file descriptors only for as long as
//!   the accept takes. Each listener has its own limit: a flood on one (tenant traffic) leaves
//!   another (health checks) answering.
//!
//! Each request carries its peer address as [`axum::extract::ConnectInfo`]. HTTP/1.1 only, as
//! with axum's `serve` without its `http2` feature. Shutdown stops accepting, lets in-flight
//! requests finish and closes idle connections.

use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tower::Service as _;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// The HTTP settings both servers share (flags and environment variables).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpSettings {
    /// How long a client may take to send a request's headers (from its connection for the
    /// first request, from the request's first byte after that); then it is disconnected.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_read_timeout: Duration,

    /// How long a keep-alive connection may wait, idle, for its next request. Keep it above the
    /// idle timeout of a load balancer in front (60 s for AWS ALB), so that the balancer, not
    /// the server, closes idle connections.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    pub http_idle_timeout: Duration,

    /// Most client connections open at once on the main listener; past it, new ones get 503 at
    /// once. Keep it below the process's open-file limit (`ulimit -n`).
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub http_max_connections: usize,

    /// Most connections open at once on the admin listener (health checks, metrics): a budget
    /// of its own, so that health checks answer while the main listener is flooded.
    #[arg(long, env = "HTTP_ADMIN_MAX_CONNECTIONS", default_value_t = 64)]
    pub http_admin_max_connections: usize,
}

impl HttpSettings {
    /// The limits of the main listener.
    pub fn main(&self) -> ListenerLimits {
        self.with_max(self.http_max_connections)
    }

    /// The limits of the admin listener.
    pub fn admin(&self) -> ListenerLimits {
        self.with_max(self.http_admin_max_connections)
    }

    fn with_max(&self, max_connections: usize) -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: self.http_header_read_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            http_header_read_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(75),
            http_max_connections: 4096,
            http_admin_max_connections: 64,
        }
    }
}

/// What a connection over the limit is told before it is closed.
const OVERLOADED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Serves `app` on `listener` until `shutdown` completes, then drains: stops accepting, closes
/// idle connections and waits for in-flight requests.
///
/// # Errors
/// Never in practice: accept errors (such as running out of file descriptors) are logged and
/// retried after a short pause.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let draining = Arc::new(tokio_util::sync::CancellationToken::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and the like: the flood is the kernel's to hold for a moment.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Best effort, without waiting: the client may not be reading.
            let _ = stream.try_write(OVERLOADED);
            tracing::debug!(%peer, "connection refused: the listener is at its connection limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, limits, &draining).await;
            drop(slot);
        });
    }
    draining.cancel();
    // Every connection holds a slot until it ends: all of them back means all are closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    limits: ListenerLimits,
    draining: &tokio_util::sync::CancellationToken,
) {
    let activity = Arc::new(Activity::new(Instant::now() + limits.header_read_timeout, limits));
    let io = hyper_util::rt::TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let guard = InFlight::start(requests.clone());
        let response = app.clone().call(request);
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|body| axum::body::Body::new(TrackedBody { inner: body, _guard: guard })),
            )
        }
    });
    // With upgrades (WebSocket): an upgraded connection leaves this function, and its slot, once
    // it is handed over to whoever asked for it.
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = activity.deadline();
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if activity.deadline().is_some_and(|d| d <= Instant::now()) {
                    // No request in flight: nothing is lost by closing.
                    tracing::debug!(%peer, "closing a connection: header read or idle timeout");
                    return;
                }
            }
            () = draining.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where a connection stands, for its timeouts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's head, to arrive by `deadline`; `started` once a byte of it came.
    AwaitingHead { deadline: Instant, started: bool },
    /// Requests being served (their responses not yet written out).
    Busy { in_flight: usize },
}

struct Activity {
    phase: Mutex<Phase>,
    /// Told when the deadline may have moved earlier or gone away.
    changed: Notify,
    limits: ListenerLimits,
}

impl Activity {
    fn new(deadline: Instant, limits: ListenerLimits) -> Self {
        Self {
            phase: Mutex::new(Phase::AwaitingHead { deadline, started: true }),
            changed: Notify::new(),
            limits,
        }
    }

    fn update(&self, change: impl FnOnce(&mut Phase) -> bool) {
        let changed = change(&mut self.phase.lock().unwrap_or_else(PoisonError::into_inner));
        if changed {
            self.changed.notify_one();
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::AwaitingHead { deadline, .. } => Some(deadline),
            Phase::Busy { .. } => None,
        }
    }

    /// Bytes came from the client: the first byte of a head starts its header timeout.
    fn read(&self) {
        let header = self.limits.header_read_timeout;
        self.update(|phase| match phase {
            Phase::AwaitingHead { started: false, .. } => {
                *phase = Phase::AwaitingHead { deadline: Instant::now() + header, started: true };
                true
            }
            _ => false,
        });
    }

    fn request_started(&self) {
        self.update(|phase| {
            *phase = match *phase {
                Phase::AwaitingHead { .. } => Phase::Busy { in_flight: 1 },
                Phase::Busy { in_flight } => Phase::Busy { in_flight: in_flight + 1 },
            };
            true
        });
    }

    fn request_finished(&self) {
        let idle = self.limits.idle_timeout;
        self.update(|phase| {
            *phase = match *phase {
                Phase::Busy { in_flight } if in_flight > 1 => Phase::Busy { in_flight: in_flight - 1 },
                _ => Phase::AwaitingHead { deadline: Instant::now() + idle, started: false },
            };
            true
        });
    }
}

/// A request from its head until its response is written out (or dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it.
struct TrackedBody {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's socket, telling [`Activity`] when bytes arrive.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
