//! Slow clients cannot starve the servers: connections that never finish their request head
//! are closed after the header read timeout, connections past the limit are refused at once,
//! idle keep-alive connections are closed, and health checks answer on the admin listener
//! throughout.

use e2e_tests::{connection_string, provisioning_settings, spawn_control_plane_with, TenantSql};
use std::net::SocketAddr;
use std::time::Duration;
use tenancy::listener::HttpSettings;
use testkit::{common_settings, SecretsFor, TestDb};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Small limits, so that a flood of a few dozen connections passes them.
fn small_limits() -> HttpSettings {
    HttpSettings {
        http_header_read_timeout: Duration::from_millis(500),
        http_idle_timeout: Duration::from_millis(500),
        http_max_connections: 8,
        http_admin_max_connections: 4,
    }
}

/// How many connections the flood opens: many more than the limit.
const FLOOD: usize = 40;

/// Opens `FLOOD` connections that each send the start of a request head and never finish it.
async fn half_sent(addr: SocketAddr, host: &str) -> Vec<TcpStream> {
    let mut connections = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may already have refused the connection: a failed write is fine.
        let _ = stream.write_all(format!("POST /sql HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes()).await;
        connections.push(stream);
    }
    connections
}

/// Waits until the server closes `stream` (end of file or reset); fails the test if it has not
/// after a long guard (the server's timeouts are far shorter). Returns what the server sent.
async fn closed_by_server(mut stream: TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server never closed a half-sent connection");
    received
}

async fn healthz(addr: SocketAddr) -> u16 {
    let response = reqwest::Client::new().get(format!("http://{addr}/healthz")).send().await.unwrap();
    response.status().as_u16()
}

/// A complete request on a fresh keep-alive connection: answered (whatever the status), then
/// closed once idle.
async fn answered_then_closed_when_idle(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let received = closed_by_server(stream).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_closes_slow_clients_and_keeps_answering_health_checks() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = control_plane::control_plane::ControlPlane::start(&common, &provisioning_settings(&db))
        .await
        .unwrap();
    let request = control_plane::tenants::TenantRequest::new("acme", "starter");
    let tenant = control_plane::tenants::create(&cp, &request, "test").await.unwrap();
    control_plane::jobs::provision::provision(&cp, tenant.id).await.unwrap();
    let mut settings = e2e_tests::router_settings(&common);
    settings.http = small_limits();
    let router = e2e_tests::spawn_router_with(&settings).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &connection_string(&cp, "acme").await);

    let flood = half_sent(router.addr, "acme.app.localhost").await;
    // The flood holds the tenant listener's every connection: health checks still answer.
    assert_eq!(healthz(router.admin_addr).await, 200);
    answered_then_closed_when_idle(router.admin_addr).await;
    // Every half-sent connection is closed: at once past the limit, after the header read
    // timeout within it.
    for connection in flood {
        closed_by_server(connection).await;
    }
    // With the flood gone, requests are served.
    assert_eq!(acme.rows("SELECT 1 AS one", serde_json::json!([])).await, serde_json::json!([{"one": 1}]));
    answered_then_closed_when_idle(router.addr).await;
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_closes_slow_clients_and_keeps_answering_health_checks() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let mut settings = e2e_tests::control_plane_settings();
    settings.http = small_limits();
    settings.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let control = spawn_control_plane_with(&db, &common, &settings).await;
    let admin = control.server.admin_addr.expect("an admin listener");

    let flood = half_sent(control.server.addr, "localhost").await;
    assert_eq!(healthz(admin).await, 200);
    for connection in flood {
        closed_by_server(connection).await;
    }
    assert_eq!(healthz(control.server.addr).await, 200);
    answered_then_closed_when_idle(control.server.addr).await;
    control.server.stop().await.unwrap();
}
