//! The PostgreSQL-protocol door: stock clients (psql, tokio-postgres) reach their tenant
//! through the router, authenticated with SCRAM against the tenant's own credentials, in
//! transaction pooling, and reach nothing else.

use control_plane::tenants;
use e2e_tests::pg_door::{connect, first};
use e2e_tests::{provisioned, router_settings, spawn_router_with, Catalog};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reaches_its_tenant_over_tls_named_by_sni() {
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (acme, acme_secret) = provisioned(&cp, "acme", "starter").await;
    let (_, globex_secret) = provisioned(&cp, "globex", "starter").await;
    let certs = tempfile_dir();
    testkit::make_certificates(&certs, &["*.app.localhost"]);
    let mut settings = router_settings(&common);
    settings.postgres.tls_cert_file = Some(certs.join("server.crt"));
    settings.postgres.tls_key_file = Some(certs.join("server.key"));
    settings.postgres.allow_plaintext = false;
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();
    let psql = |host: &str, sslmode: &str, user: &str, password: &str, sql: &str| {
        let conninfo = format!(
            "host={host} hostaddr=127.0.0.1 port={} user={user} dbname={} sslmode={sslmode} sslrootcert={}",
            addr.port(),
            acme_secret.dbname,
            certs.join("ca.crt").display()
        );
        let output = Command::new("psql")
            .args([conninfo.as_str(), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql runs");
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        (output.status.success(), stdout, stderr)
    };

    let (ok, out, err) = psql(
        "acme.app.localhost",
        "verify-full",
        &acme_secret.username,
        &acme_secret.password,
        "SELECT current_user || ' ' || current_schema()",
    );
    assert!(ok, "{err}");
    assert_eq!(out, format!("{} t_acme", acme.role_name));

    // psql's `\copy`: COPY through the simple protocol, in and out.
    let rows = tempfile_dir().join("rows.tsv");
    std::fs::write(&rows, "psql-1@example.test\tone\npsql-2@example.test\ttwo\n").unwrap();
    let (user, password) = (&acme_secret.username, &acme_secret.password);
    let copy_in = format!("\\copy users (email, name) FROM '{}'", rows.display());
    let (ok, _, err) = psql("acme.app.localhost", "verify-full", user, password, &copy_in);
    assert!(ok, "{err}");
    let copy_out = "\\copy (SELECT name FROM users WHERE email LIKE 'psql-%' ORDER BY email) TO STDOUT";
    let (ok, out, err) = psql("acme.app.localhost", "verify-full", user, password, copy_out);
    assert!(ok, "{err}");
    assert_eq!(out, "one\ntwo");

    // Another tenant's schema is PostgreSQL's to refuse.
    let (ok, _, err) = psql(
        "acme.app.localhost",
        "verify-full",
        &acme_secret.username,
        &acme_secret.password,
        "SELECT count(*) FROM t_globex.pg_class",
    );
    assert!(!ok && (err.contains("permission denied") || err.contains("does not exist")), "{err}");

    // A wrong password, and a user that is not the SNI tenant's role, get the same answer.
    for (user, password) in
        [(&acme_secret.username, "wrong"), (&globex_secret.username, &globex_secret.password)]
    {
        let (ok, _, err) = psql("acme.app.localhost", "verify-full", user, password, "SELECT 1");
        assert!(!ok && err.contains("password authentication failed"), "{err}");
    }
    // No TLS: refused.
    let (ok, _, err) =
        psql("acme.app.localhost", "disable", &acme_secret.username, &acme_secret.password, "SELECT 1");
    assert!(!ok && err.contains("only TLS"), "{err}");
    // A host the certificate does not name fails verification at the client.
    let (ok, _, err) =
        psql("acme.example.org", "verify-full", &acme_secret.username, &acme_secret.password, "SELECT 1");
    assert!(!ok && err.contains("certificate"), "{err}");
    // An unknown tenant.
    let (ok, _, err) =
        psql("nobody.app.localhost", "verify-full", &acme_secret.username, &acme_secret.password, "SELECT 1");
    assert!(!ok && err.contains("no tenant"), "{err}");
    router.stop().await.unwrap();
}

/// Behind a TCP load balancer (the AWS deployment's NLB) every client connects to one host name,
/// the router's own (`ROUTER_PG_HOST`), and names its tenant by the database name or `options`;
/// the certificate and key come from the settings as PEM text (as Secrets Manager injects them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_the_routers_own_host_name_their_tenant_by_database() {
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (acme, acme_secret) = provisioned(&cp, "acme", "starter").await;
    let (globex, globex_secret) = provisioned(&cp, "globex", "starter").await;
    let certs = tempfile_dir();
    testkit::make_certificates(&certs, &["postgres.app.localhost"]);
    let pem = |file: &str| std::fs::read_to_string(certs.join(file)).unwrap();
    let mut settings = router_settings(&common);
    settings.postgres.tls_cert = Some(pem("server.crt"));
    settings.postgres.tls_key = Some(tenancy::secret::Secret::new(pem("server.key")));
    settings.postgres.pg_host = Some("postgres.app.localhost".to_owned());
    settings.postgres.allow_plaintext = false;
    let router = spawn_router_with(&settings).await;
    settings.postgres.pg_host = None;
    let without_pg_host = spawn_router_with(&settings).await;
    let psql = |port: u16, naming: &str, credentials: &tenancy::secrets::DbCredentials, sql: &str| {
        let conninfo = format!(
            "host=postgres.app.localhost hostaddr=127.0.0.1 port={port} user={} sslmode=verify-full sslrootcert={} {naming}",
            credentials.username,
            certs.join("ca.crt").display()
        );
        let output = Command::new("psql")
            .args([conninfo.as_str(), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", &credentials.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql runs");
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        (output.status.success(), stdout, stderr)
    };
    let port = router.pg_addr.unwrap().port();
    let whoami = "SELECT current_user || ' ' || current_schema()";

    let (ok, out, err) = psql(port, "dbname=acme", &acme_secret, whoami);
    assert!(ok, "{err}");
    assert_eq!(out, format!("{} t_acme", acme.role_name));
    let (ok, out, err) = psql(port, "options='-c tenant=globex'", &globex_secret, whoami);
    assert!(ok, "{err}");
    assert_eq!(out, format!("{} t_globex", globex.role_name));
    // The database names the tenant whose password is checked.
    let (ok, _, err) = psql(port, "dbname=globex", &acme_secret, "SELECT 1");
    assert!(!ok && err.contains("password authentication failed"), "{err}");
    // Naming no tenant (libpq's database name defaults to the user's) gets told how to.
    let (ok, _, err) = psql(port, "", &acme_secret, "SELECT 1");
    assert!(!ok && err.contains("name the tenant"), "{err}");

    // Without ROUTER_PG_HOST the SNI names a tenant, and there is none called `postgres`.
    let (ok, _, err) = psql(without_pg_host.pg_addr.unwrap().port(), "dbname=acme", &acme_secret, "SELECT 1");
    assert!(!ok && err.contains("no tenant"), "{err}");
    router.stop().await.unwrap();
    without_pg_host.stop().await.unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("router-tls-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_few_server_connections_and_never_see_each_others_sessions() {
    let Catalog { db, common, cp } = Catalog::create().await;
    // `pro`: 100 transactions a second, five connections.
    let (acme, acme_secret) = provisioned(&cp, "acme", "pro").await;
    // More than a hundred transactions in a second or two: more than the plan allows.
    db.lift_rate_limits().await;
    let mut settings = router_settings(&common);
    settings.max_connections = 3;
    settings.checkout_timeout = Duration::from_secs(10);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();

    // Twelve clients, at most three server connections.
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(connect(addr, "acme", &acme_secret).await.unwrap());
    }
    let mut runs = Vec::new();
    for client in &clients {
        runs.push(async move {
            for _ in 0..2 {
                assert_eq!(first(client, "SELECT current_schema()").await, "t_acme");
                let tx = first(client, "BEGIN; SELECT txid_current()::text; COMMIT").await;
                assert!(!tx.is_empty());
            }
        });
    }
    futures::future::join_all(runs).await;
    let server_connections = db
        .count(&format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{}'", acme.role_name))
        .await;
    assert!(server_connections <= 3, "{server_connections} server connections for a budget of 3");

    // Settings are the client's own: kept across transactions, never seen by another client.
    let (a, b) = (&clients[0], &clients[1]);
    assert_eq!(first(a, "SHOW application_name").await, "e2e", "startup settings are applied");
    a.simple_query("SET application_name = 'client-a'").await.unwrap();
    a.simple_query("SET statement_timeout = '4242ms'").await.unwrap();
    for _ in 0..5 {
        assert_eq!(first(a, "SHOW application_name").await, "client-a");
        assert_eq!(first(a, "SHOW statement_timeout").await, "4242ms");
        assert_eq!(first(b, "SHOW application_name").await, "e2e");
        assert_ne!(first(b, "SHOW statement_timeout").await, "4242ms");
    }
    // A setting set again and again is carried by its last value (however many times).
    for n in 0..30 {
        a.simple_query(&format!("SET application_name = 'client-a-{n}'")).await.unwrap();
    }
    assert_eq!(first(a, "SHOW application_name").await, "client-a-29");
    assert_eq!(first(a, "SHOW statement_timeout").await, "4242ms");
    a.simple_query("RESET application_name").await.unwrap();
    assert_eq!(first(a, "SHOW application_name").await, "e2e", "RESET goes back to the startup value");
    a.simple_query("RESET ALL").await.unwrap();
    assert_eq!(first(a, "SHOW application_name").await, "e2e", "RESET ALL goes back to the startup settings");
    // A SET inside a transaction, or mixed with other statements, lasts for the transaction.
    a.simple_query("BEGIN; SET search_path = public; COMMIT").await.unwrap();
    assert_eq!(first(a, "SELECT current_schema()").await, "t_acme");
    // So does a SET sent with other statements: it is nobody's once the transaction is over.
    a.simple_query("SET search_path = public; SELECT 1").await.unwrap();
    assert_eq!(first(b, "SELECT current_schema()").await, "t_acme");
    assert_eq!(first(a, "SELECT current_schema()").await, "t_acme");

    // What a tenant may not send is refused by the router, with the connection kept usable.
    let err = a.simple_query("SET ROLE postgres").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert_eq!(first(a, "SELECT 1").await, "1");
    // Inside a transaction, a refusal fails the transaction as PostgreSQL's own error would.
    a.simple_query("BEGIN").await.unwrap();
    a.simple_query("INSERT INTO users (email, name) VALUES ('refused@acme.example', 'r')").await.unwrap();
    let err = a.simple_query("DO $$ BEGIN END $$").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert!(err.as_db_error().is_some_and(|e| e.message().contains("DO blocks")), "{err:?}");
    let err = a.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION), "{err}");
    a.simple_query("COMMIT").await.unwrap();
    assert_eq!(first(a, "SELECT count(*) FROM users WHERE email = 'refused@acme.example'").await, "0");

    // Cancel reaches the server connection the client holds.
    let sleeper = connect(addr, "acme", &acme_secret).await.unwrap();
    let token = sleeper.cancel_token();
    let sleeping = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) });
    let started = std::time::Instant::now();
    while db
        .count(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(30)'",
        )
        .await
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(10), "the query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = sleeping.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{err}");
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_their_client_from_connection_to_connection() {
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (_, secret) = provisioned(&cp, "acme", "pro").await;
    // One server connection for everyone: a client that kept it would starve the other.
    let mut settings = router_settings(&common);
    settings.max_connections = 1;
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();
    let a = connect(addr, "acme", &secret).await.unwrap();
    let b = connect(addr, "acme", &secret).await.unwrap();

    let plus_one = a.prepare("SELECT $1::int + 1").await.unwrap();
    let times_two = a.prepare("SELECT $1::int * 2").await.unwrap();
    for n in 0..5 {
        assert_eq!(a.query_one(&plus_one, &[&n]).await.unwrap().get::<_, i32>(0), n + 1);
        // b leaves state in the session: the connection is reset (DISCARD ALL) before a gets it
        // again, and a's statements are prepared on it again, unseen by a.
        b.simple_query("SET search_path = public; SELECT 1").await.unwrap();
        assert_eq!(a.query_one(&times_two, &[&n]).await.unwrap().get::<_, i32>(0), n * 2);
        // b may prepare the same text under its own name; a's statements are unaffected.
        let b_plus_one = b.prepare("SELECT $1::int + 1").await.unwrap();
        assert_eq!(b.query_one(&b_plus_one, &[&n]).await.unwrap().get::<_, i32>(0), n + 1);
    }
    // In a transaction, and after the client closes one of its statements.
    let mut a = a;
    let tx = a.transaction().await.unwrap();
    assert_eq!(tx.query_one(&plus_one, &[&41]).await.unwrap().get::<_, i32>(0), 42);
    tx.commit().await.unwrap();
    drop(times_two);
    assert_eq!(a.query_one(&plus_one, &[&1]).await.unwrap().get::<_, i32>(0), 2);
    // A statement that fails to prepare leaves nothing behind.
    assert!(a.prepare("SELECT * FROM no_such_table").await.is_err());
    assert_eq!(a.query_one(&plus_one, &[&2]).await.unwrap().get::<_, i32>(0), 3);
    // A named statement that changes the session, run in a later transaction than the one that
    // prepared it (on a connection it is prepared on again, unseen): the connection is reset
    // before the next client gets it.
    let set_path = a.prepare("SET search_path = public").await.unwrap();
    assert_eq!(first(&b, "SELECT current_schema()").await, "t_acme");
    a.execute(&set_path, &[]).await.unwrap();
    assert_eq!(first(&b, "SELECT current_schema()").await, "t_acme", "a's SET reached b");
    let held_here = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()";
    let lock = a.prepare("SELECT pg_advisory_lock(42)").await.unwrap();
    assert_eq!(first(&b, held_here).await, "0");
    a.execute(&lock, &[]).await.unwrap();
    assert_eq!(first(&b, held_here).await, "0", "a's advisory lock stayed on b's session");
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_too_long_gets_an_error_and_shutdown_lets_transactions_finish() {
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (_, secret) = provisioned(&cp, "acme", "pro").await;
    let mut settings = router_settings(&common);
    settings.max_connections = 1;
    settings.checkout_timeout = Duration::from_millis(300);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();
    let a = connect(addr, "acme", &secret).await.unwrap();
    let b = connect(addr, "acme", &secret).await.unwrap();

    // a holds the only connection in its transaction: b is told so, not left hanging, and may
    // try again.
    a.simple_query("BEGIN").await.unwrap();
    let err = b.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS), "{err}");
    assert!(!b.is_closed());

    // Shutdown: no new clients, idle ones are told and closed, a's transaction finishes.
    let stopping = tokio::spawn(router.stop());
    let started = std::time::Instant::now();
    while !b.is_closed() {
        let _ = b.simple_query("SELECT 1").await;
        assert!(started.elapsed() < Duration::from_secs(10), "the idle client was not closed");
    }
    assert!(connect(addr, "acme", &secret).await.is_err(), "a new client was accepted while stopping");
    assert_eq!(first(&a, "SELECT 41 + 1").await, "42");
    a.simple_query("COMMIT").await.unwrap();
    let err = a.simple_query("SELECT 1").await.unwrap_err();
    assert!(a.is_closed() || err.code() == Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN), "{err}");
    stopping.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_result_leaves_nothing_for_the_next_and_tenants_are_checked_again() {
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (_, secret) = provisioned(&cp, "acme", "pro").await;
    let mut settings = router_settings(&common);
    settings.max_connections = 1;
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();

    // A client killed while rows stream: its connection must not serve anyone afterwards.
    for _ in 0..3 {
        let mut config = tokio_postgres::Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .user(&secret.username)
            .password(&secret.password)
            .options("-c tenant=acme");
        let (greedy, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        let socket = tokio::spawn(connection);
        let streaming = tokio::spawn(async move {
            let _ = greedy.simple_query("SELECT repeat('x', 200) FROM generate_series(1, 200000)").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket.abort();
        streaming.abort();
        let next = connect(addr, "acme", &secret).await.unwrap();
        assert_eq!(first(&next, "SELECT 'mine'").await, "mine");
        assert_eq!(first(&next, "SELECT current_schema()").await, "t_acme");
    }

    // Another client's sequence values do not show through lastval().
    let writer = connect(addr, "acme", &secret).await.unwrap();
    writer.simple_query("INSERT INTO users (email, name) VALUES ('seq@acme.example', 's')").await.unwrap();
    let reader = connect(addr, "acme", &secret).await.unwrap();
    let err = reader.simple_query("SELECT lastval()").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");

    // What would make the router read SQL differently from PostgreSQL is refused.
    let client = connect(addr, "acme", &secret).await.unwrap();
    let err = client.simple_query("SET standard_conforming_strings = off").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(&secret.username)
        .password(&secret.password)
        .options("-c tenant=acme -c client_encoding=LATIN1");
    let err = config.connect(tokio_postgres::NoTls).await.err().expect("LATIN1 is refused");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    // A suspension reaches clients already connected, at their next transaction.
    tenants::request(
        &cp,
        &tenancy::domain::Slug::parse("acme").unwrap(),
        &tenants::Operation::Suspend,
        "test",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        match client.simple_query("SELECT 1").await {
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the suspension never reached the client"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => {
                let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
                assert!(message.contains("suspended"), "{err:?}");
                break;
            }
        }
    }
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_bounds_statements_and_idle_transactions_whatever_the_client_sets() {
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    // `starter`: statements end after 5 s.
    let (_, secret) = provisioned(&cp, "acme", "starter").await;
    let mut settings = router_settings(&common);
    settings.postgres.idle_transaction_timeout = Duration::from_millis(500);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();

    let client = connect(addr, "acme", &secret).await.unwrap();
    client.simple_query("SET statement_timeout = 0").await.unwrap();
    let started = std::time::Instant::now();
    let err = client.simple_query("SELECT pg_sleep(60)").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "not cancelled at the plan's timeout");
    assert_eq!(first(&client, "SELECT 'still here'").await, "still here");

    // A transaction left idle is ended, and its connection freed.
    let idle = connect(addr, "acme", &secret).await.unwrap();
    idle.simple_query("SET idle_in_transaction_session_timeout = 0; BEGIN").await.unwrap();
    let started = std::time::Instant::now();
    while !idle.is_closed() {
        assert!(started.elapsed() < Duration::from_secs(10), "the idle transaction was never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first(&client, "SELECT 1").await, "1");
    router.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_keeps_a_clients_connection_until_it_leaves() {
    let Catalog { db, common, cp } = Catalog::create().await;
    // A starter tenant has a pool of 2; its plan (here set in the catalog, as a template's
    // `limits.pool_mode = "session"` would) asks for session pooling.
    let (_, secret) = provisioned(&cp, "acme", "starter").await;
    db.client()
        .await
        .execute("UPDATE control.tenants SET pool_mode = 'session' WHERE slug = 'acme'", &[])
        .await
        .unwrap();
    let (_, globex_secret) = provisioned(&cp, "globex", "starter").await;
    let mut settings = router_settings(&common);
    settings.checkout_timeout = Duration::from_millis(300);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();

    // What needs a session of its own works across transactions: a cursor held open, a session
    // advisory lock, the same backend throughout.
    let a = connect(addr, "acme", &secret).await.unwrap();
    let b = connect(addr, "acme", &secret).await.unwrap();
    let pid = first(&a, "SELECT pg_backend_pid()").await;
    a.batch_execute("DECLARE held CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g")
        .await
        .unwrap();
    assert_eq!(first(&a, "SELECT pg_advisory_lock(42)::text").await, "");
    for row in 1..=5 {
        assert_eq!(first(&b, "SELECT pg_try_advisory_lock(42)").await, "f");
        assert_eq!(first(&a, "FETCH 1 FROM held").await, row.to_string());
        assert_eq!(first(&a, "SELECT pg_backend_pid()").await, pid);
    }
    // Each client holds one of the pool's two connections from its start: a third waits, and
    // is told.
    let err = connect(addr, "acme", &secret).await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS), "{err}");

    // The client leaves: its connection is reset (its lock, its cursor gone) before the next.
    drop(a);
    let started = std::time::Instant::now();
    let c = loop {
        match connect(addr, "acme", &secret).await {
            Ok(c) => break c,
            Err(err) => {
                assert!(started.elapsed() < Duration::from_secs(10), "no connection came free: {err}");
            }
        }
    };
    assert_eq!(first(&c, "SELECT pg_try_advisory_lock(42)").await, "t");
    assert_eq!(first(&b, "SELECT pg_try_advisory_lock(42)").await, "f", "c holds the lock now");
    let err = c.simple_query("FETCH 1 FROM held").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INVALID_CURSOR_NAME), "{err}");

    // A tenant in transaction pooling beside it is unaffected: clients share its connections.
    let many: Vec<_> =
        futures::future::join_all((0..4).map(|_| connect(addr, "globex", &globex_secret))).await;
    for client in &many {
        let client = client.as_ref().unwrap();
        assert_eq!(first(client, "SELECT 1").await, "1");
    }

    // A suspended tenant's session client is refused at its next transaction.
    let acme = tenancy::domain::Slug::parse("acme").unwrap();
    tenants::request(&cp, &acme, &tenants::Operation::Suspend, "test").await.unwrap();
    let started = std::time::Instant::now();
    let err = loop {
        match b.simple_query("SELECT 1").await {
            Err(err) => break err,
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(10), "still served after suspension"),
        }
    };
    // Told why, or (once the control plane ends the role's sessions) disconnected.
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("suspended") || b.is_closed(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_client_is_still_served_while_the_tenant_directory_is_away() {
    let Catalog { db, mut common, cp } = Catalog::create().await;
    let (_, secret) = provisioned(&cp, "acme", "starter").await;
    // No shared cache, and a short-lived own one: the catalog is the only directory.
    common.redis_url = None;
    let mut settings = router_settings(&common);
    settings.cache_ttl = Duration::from_millis(200);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();
    let client = connect(addr, "acme", &secret).await.unwrap();
    assert_eq!(first(&client, "SELECT current_schema()").await, "t_acme");

    // The catalog's database takes no connections, and loses those it had.
    let admin = db.tenants_client().await;
    let catalog = tenancy::domain::quote_ident(&db.name);
    admin.batch_execute(&format!("ALTER DATABASE {catalog} ALLOW_CONNECTIONS false")).await.unwrap();
    admin
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", &[&db.name])
        .await
        .unwrap();

    // Once the router's own cache has let the record go, a new client cannot be checked and is
    // told to retry; the connected one goes on.
    let started = std::time::Instant::now();
    let err = loop {
        match connect(addr, "acme", &secret).await {
            Err(err) => break err,
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(20), "the record never expired"),
        }
    };
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW), "{err}");
    for _ in 0..3 {
        assert_eq!(first(&client, "SELECT current_schema()").await, "t_acme");
    }

    admin.batch_execute(&format!("ALTER DATABASE {catalog} ALLOW_CONNECTIONS true")).await.unwrap();
    router.stop().await.unwrap();
}

/// The plan's rate limit counts transactions on the PostgreSQL door: one over it is refused with
/// `53400` before it takes a server connection, the client stays connected and is served again
/// once the limit allows, a transaction already begun is never cut short, and another tenant is
/// not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_plans_rate_is_refused_per_transaction_and_stays_connected() {
    let Catalog { db, common, cp } = Catalog::create().await;
    let (_, acme_secret) = provisioned(&cp, "acme", "starter").await;
    let (_, globex_secret) = provisioned(&cp, "globex", "starter").await;
    // acme may run 2 transactions a second; globex 50 (limited too, so that a limit shared by
    // mistake between tenants would show).
    let limits =
        "UPDATE control.tenants SET rate_limit_per_second = CASE slug WHEN 'acme' THEN 2 ELSE 50 END";
    db.client().await.execute(limits, &[]).await.unwrap();
    let router = spawn_router_with(&router_settings(&common)).await;
    let addr = router.pg_addr.unwrap();
    let acme = connect(addr, "acme", &acme_secret).await.unwrap();
    let globex = connect(addr, "globex", &globex_secret).await.unwrap();

    let (mut refused, burst_started) = (0_u32, std::time::Instant::now());
    for _ in 0..10 {
        match acme.simple_query("SELECT 1").await {
            Ok(_) => {}
            Err(err) => {
                assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::from_code("53400")), "{err}");
                refused += 1;
            }
        }
        assert_eq!(first(&globex, "SELECT 'other tenant'").await, "other tenant");
    }
    // A burst of one second's worth, then two a second (and one for rounding).
    let allowed_at_most = 3.0 + 2.0 * burst_started.elapsed().as_secs_f64();
    assert!(refused >= 1 && f64::from(10 - refused) <= allowed_at_most, "{refused} of 10 refused");
    assert!(!acme.is_closed(), "a refused client keeps its connection");

    // Once the limit allows, the client is served again; its transaction, once begun, runs to
    // its end however many statements it sends.
    let started = std::time::Instant::now();
    while acme.simple_query("BEGIN").await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 0..20 {
        assert_eq!(first(&acme, &format!("SELECT {n}")).await, n.to_string());
    }
    acme.simple_query("COMMIT").await.unwrap();
    router.stop().await.unwrap();
}

/// COPY through the extended protocol (tokio-postgres's `copy_in` and `copy_out`: `Bind` and
/// `Execute`, the data, then `Sync`), on a budget of one server connection: the rows go in and
/// come out, and once each COPY is over the connection is free for another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_the_extended_protocol() {
    use futures::{SinkExt as _, TryStreamExt as _};
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (_, secret) = provisioned(&cp, "acme", "pro").await;
    let mut settings = router_settings(&common);
    settings.max_connections = 1;
    settings.checkout_timeout = Duration::from_secs(3);
    let router = spawn_router_with(&settings).await;
    let addr = router.pg_addr.unwrap();
    let a = connect(addr, "acme", &secret).await.unwrap();
    let b = connect(addr, "acme", &secret).await.unwrap();

    let sink = a.copy_in("COPY users (email, name) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    for n in 1..=3 {
        sink.send(bytes::Bytes::from(format!("copy-{n}@example.test\tcopied {n}\n"))).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 3);
    let names = "SELECT string_agg(name, ',' ORDER BY email) FROM users WHERE email LIKE 'copy-%'";
    assert_eq!(first(&b, names).await, "copied 1,copied 2,copied 3");

    let sql = "COPY (SELECT email FROM users WHERE email LIKE 'copy-%' ORDER BY email) TO STDOUT";
    let chunks: Vec<bytes::Bytes> = a.copy_out(sql).await.unwrap().try_collect().await.unwrap();
    let text: String = chunks.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    assert_eq!(text, "copy-1@example.test\ncopy-2@example.test\ncopy-3@example.test\n");
    let count = "SELECT count(*) FROM users WHERE email LIKE 'copy-%'";
    assert_eq!(first(&b, count).await, "3");

    // A COPY that fails mid-stream (a row PostgreSQL refuses) leaves nothing, and the
    // connection usable.
    let sink = a.copy_in::<_, bytes::Bytes>("COPY users (email, name) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"copy-4@example.test\tcopied 4\ntoo\tmany\tcolumns\n"))
        .await
        .unwrap();
    assert!(sink.finish().await.is_err());
    assert_eq!(first(&b, count).await, "3");
    assert_eq!(first(&a, count).await, "3");

    // A client gone in the middle of a COPY that already failed (the server waits for a
    // `Sync` that never comes): its connection is not handed to anyone else as it is.
    let gone = e2e_tests::pg_door::connect_client(addr, "acme", &secret).await.unwrap();
    let sink = gone.client.copy_in::<_, bytes::Bytes>("COPY users (email, name) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"too\tmany\tcolumns\n")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gone.connection.abort();
    assert_eq!(first(&b, count).await, "3");
    assert_eq!(first(&a, "SELECT 'served after'").await, "served after");
    router.stop().await.unwrap();
}

/// A client holding as many named prepared statements as the router keeps for one client is
/// told why when it prepares one more (`FATAL 54000`), and its session ends; the router and
/// the tenant's other clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_prepared_statements_is_told_why_its_session_ends() {
    const MAX_PER_CLIENT: usize = 4096;
    let Catalog { db: _db, common, cp } = Catalog::create().await;
    let (_, secret) = provisioned(&cp, "acme", "pro").await;
    let router = spawn_router_with(&router_settings(&common)).await;
    let addr = router.pg_addr.unwrap();
    let greedy = connect(addr, "acme", &secret).await.unwrap();
    let other = connect(addr, "acme", &secret).await.unwrap();
    let mut kept = Vec::with_capacity(MAX_PER_CLIENT);
    // In turns of 256 pipelined prepares (the same text: one statement on the server, 4096
    // names the client holds).
    for _ in 0..MAX_PER_CLIENT / 256 {
        let prepares = (0..256).map(|_| greedy.prepare("SELECT $1::int + 0"));
        kept.extend(futures::future::try_join_all(prepares).await.unwrap());
    }
    let err = greedy.prepare("SELECT 'one too many'").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::PROGRAM_LIMIT_EXCEEDED), "{err:?}");
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("prepared statements"), "{message}");
    assert!(greedy.is_closed() || greedy.simple_query("SELECT 1").await.is_err());
    assert_eq!(first(&other, "SELECT 'still served'").await, "still served");
    router.stop().await.unwrap();
}
