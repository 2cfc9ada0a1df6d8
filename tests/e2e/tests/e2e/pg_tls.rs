//! TLS to PostgreSQL: `sslmode` as libpq knows it, against a server whose certificate a test
//! CA signed for `localhost` only; and a tenant on a `verify-full` cluster, provisioned and
//! served over TLS.

use control_plane::clusters::{self, AddClusterError};
use control_plane::control_plane::ControlPlane;
use e2e_tests::{connection_string, provisioning_settings, spawn_router, TenantSql};
use serde_json::json;
use tenancy::pg::{parse_config, CaBundle};
use testkit::{common_settings, PgServer, SecretsFor, TestDb};

/// Whether the session `url` (with `bundle`) opens is encrypted, or why it could not open.
async fn encrypted(url: &str, bundle: &CaBundle) -> Result<bool, String> {
    let config = parse_config(url, bundle).map_err(|e| e.to_string())?;
    let (client, connection) = config.connect().await.map_err(|e| tenancy::pg::describe_error(&e))?;
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|e| tenancy::pg::describe_error(&e))?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_is_honoured_and_verify_full_checks_the_host_name() {
    let server = PgServer::start().await;
    let (none, ca) = (CaBundle::none(), CaBundle::load(&server.ca_file()).unwrap());
    let by_ip = server.url("postgres");
    let by_name = by_ip.replace("@127.0.0.1:", "@localhost:");
    let mode = |url: &str, mode: &str| format!("{url}?sslmode={mode}");

    assert_eq!(encrypted(&mode(&by_ip, "disable"), &none).await, Ok(false));
    assert_eq!(encrypted(&by_ip, &none).await, Ok(true), "prefer (the default) takes TLS when offered");
    assert_eq!(encrypted(&mode(&by_ip, "require"), &none).await, Ok(true));
    assert_eq!(encrypted(&mode(&by_name, "verify-full"), &ca).await, Ok(true));
    assert_eq!(encrypted(&mode(&by_ip, "verify-ca"), &ca).await, Ok(true), "verify-ca ignores the name");

    // The certificate is for `localhost`, not `127.0.0.1`.
    let wrong_name = encrypted(&mode(&by_ip, "verify-full"), &ca).await.unwrap_err();
    assert!(wrong_name.contains("TLS") && wrong_name.contains("not valid for name"), "{wrong_name}");
    // Nothing to verify against: refused, not trusted blindly.
    let no_ca = encrypted(&mode(&by_name, "verify-full"), &none).await.unwrap_err();
    assert!(no_ca.contains("needs a CA bundle (PG_SSL_ROOT_CERT)"), "{no_ca}");
    // A CA that did not sign the server's certificate.
    let other = PgServer::start().await;
    let other_ca = CaBundle::load(&other.ca_file()).unwrap();
    let unknown = encrypted(&mode(&by_name, "verify-full"), &other_ca).await.unwrap_err();
    // (Both test CAs are named alike, so rustls reports a bad signature rather than an unknown issuer.)
    assert!(unknown.contains("invalid peer certificate"), "{unknown}");
    let password = by_ip.split([':', '@']).nth(2).unwrap();
    for refusal in [&wrong_name, &no_ca, &unknown] {
        assert!(!refusal.contains(password), "the password is never in the error: {refusal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_on_a_verify_full_cluster_is_provisioned_and_served_over_tls() {
    let second = PgServer::start().await;
    let db = TestDb::create().await;
    let mut common = common_settings(&db, SecretsFor::Local);
    common.pg_ssl_root_cert = Some(second.ca_file());
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();

    let by_ip = format!("{}?sslmode=verify-full", second.url("postgres"));
    assert!(matches!(
        clusters::add(&cp, "secure", &by_ip.into(), 10, "test").await,
        Err(AddClusterError::Unreachable(_))
    ));
    let by_name =
        format!("{}?sslmode=verify-full", second.url("postgres").replace("@127.0.0.1:", "@localhost:"));
    clusters::add(&cp, "secure", &by_name.into(), 10, "test").await.unwrap();

    // The default cluster takes one tenant; the next goes to the TLS cluster.
    db.client()
        .await
        .execute("UPDATE control.clusters SET capacity = 1 WHERE name = 'default'", &[])
        .await
        .unwrap();
    super::clusters::create(&cp, "plain").await;
    let tenant = super::clusters::create(&cp, "tls").await;
    assert_eq!(tenant.cluster.as_str(), "secure");

    let router = spawn_router(&common).await;
    let sql = TenantSql::new(&router, "tls.app.localhost", &connection_string(&cp, "tls").await);
    let rows = sql
        .rows(
            "SELECT ssl, inet_server_port() AS port FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!([{"ssl": true, "port": second.port}]));
}
