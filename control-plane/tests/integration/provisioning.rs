//! Provisioning: the catalog, isolation enforced by PostgreSQL, crash-resume, secret stores.

use crate::{connect_as, create_active, password_of, request, sqlstate, start};
use control_plane::jobs::provision::{provision, provision_through, Step};
use control_plane::tenants::{self, CreateTenantError};
use tenancy::domain::TenantStatus;
use tenancy::error::OperationError;
use testkit::{common_settings, SecretsFor, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_migrations_can_start_from_two_replicas_at_once() {
    let db = TestDb::create().await;
    let config = tenancy::pg::parse_config(&db.url, &tenancy::pg::CaBundle::none()).unwrap();
    let (a, b) = (tenancy::pg::pool(&config, 2).unwrap(), tenancy::pg::pool(&config, 2).unwrap());
    let (ra, rb) = tokio::join!(
        control_plane::catalog::migrate(&a, &db.role_prefix),
        control_plane::catalog::migrate(&b, &db.role_prefix)
    );
    ra.unwrap();
    rb.unwrap();
    let files =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog-migrations")).unwrap().count() as i64;
    assert_eq!(
        db.count("SELECT count(*) FROM control.refinery_schema_history").await,
        files,
        "each applied once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_role_is_confined_to_its_own_schema_by_postgres() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = start(&db, &common).await;
    let acme = create_active(&cp, "acme").await;
    let globex = create_active(&cp, "globex").await;
    let password = password_of(&cp, &acme).await;

    // Password-checked: a wrong password is refused.
    assert_eq!(sqlstate(connect_as(&db, acme.role_name.as_str(), "not-the-password").await), "28P01");
    let client = connect_as(&db, acme.role_name.as_str(), &password).await.unwrap();

    // Its own tables, unqualified (search_path is on the role).
    client.execute("INSERT INTO users (email, name) VALUES ('a@acme', 'A')", &[]).await.unwrap();
    let n: i64 = client.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);

    // The other tenant: not readable, not writable, not even visible.
    let other = globex.schema_name.as_str();
    assert_eq!(sqlstate(client.query(&format!("SELECT * FROM {other}.users"), &[]).await), "42501");
    assert_eq!(
        sqlstate(
            client.execute(&format!("INSERT INTO {other}.users (email, name) VALUES ('x', 'x')"), &[]).await
        ),
        "42501"
    );
    client.batch_execute(&format!("SET search_path = {other}")).await.unwrap();
    assert_eq!(sqlstate(client.query("SELECT * FROM users", &[]).await), "42P01");
    client.batch_execute("RESET search_path").await.unwrap();
    let visible: i64 = client
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", &[&other])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 0);

    // No DDL anywhere, no objects in public, no catalog, no migration history.
    assert_eq!(sqlstate(client.batch_execute("CREATE TABLE public.sneaky (i int)").await), "42501");
    assert_eq!(sqlstate(client.batch_execute("CREATE TABLE sneaky (i int)").await), "42501");
    assert_eq!(sqlstate(client.batch_execute("DROP TABLE comments").await), "42501");
    assert_eq!(sqlstate(client.batch_execute("ALTER TABLE users ADD COLUMN x int").await), "42501");
    assert_eq!(sqlstate(client.query("SELECT * FROM refinery_schema_history", &[]).await), "42501");
    // The catalog's database and the cluster's control database (where the control plane's
    // locks are) are not even reachable.
    for database in [db.name.clone(), format!("{}_control", db.role_prefix)] {
        let url = db.database_url_as(&database, acme.role_name.as_str(), &password);
        let refused = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map(|_| ());
        assert_eq!(sqlstate(refused), "42501", "{database}");
    }
    // No anonymous code.
    assert_eq!(sqlstate(client.batch_execute("DO $$ BEGIN PERFORM 1; END $$").await), "42501");
    // Roles cannot be borrowed.
    assert_eq!(sqlstate(client.batch_execute(&format!("SET ROLE {}", globex.role_name)).await), "42501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_provisioning_step_is_finished_by_the_next_attempt() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = start(&db, &common).await;
    for (i, crash_after) in Step::ALL.into_iter().enumerate() {
        let slug = format!("crash-{i}");
        let tenant = tenants::create(&cp, &request(&slug, "pro"), "test").await.unwrap();
        provision_through(&cp, tenant.id, crash_after).await.unwrap();
        // A new process (no shared state) picks the tenant up again.
        let restarted = start(&db, &common).await;
        let done = provision(&restarted, tenant.id).await.unwrap();
        assert_eq!(done.status, TenantStatus::Active, "crash after {crash_after:?}");
        // A third run changes nothing.
        let again = provision(&restarted, tenant.id).await.unwrap();
        assert_eq!(again.generation, done.generation);
    }
    // The same for tenants with their own database (cloned from the template).
    for (i, crash_after) in Step::ALL.into_iter().enumerate() {
        let slug = format!("db-crash-{i}");
        let tenant = tenants::create(&cp, &request(&slug, "enterprise"), "test").await.unwrap();
        provision_through(&cp, tenant.id, crash_after).await.unwrap();
        let restarted = start(&db, &common).await;
        let done = provision(&restarted, tenant.id).await.unwrap();
        assert_eq!(done.status, TenantStatus::Active, "database tenant, crash after {crash_after:?}");
        let database = done.database_name.unwrap();
        let public_connect = db
            .count(&format!("SELECT has_database_privilege('public', '{database}', 'CONNECT')::int::bigint"))
            .await;
        assert_eq!(public_connect, 0, "PUBLIC cannot connect to {database}");
    }
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_db\\_crash\\_%'",
            db.role_prefix
        ))
        .await,
        Step::ALL.len() as i64
    );
    let n = Step::ALL.len() as i64;
    assert_eq!(db.count("SELECT count(*) FROM control.tenants WHERE status = 'active'").await, 2 * n);
    assert_eq!(
        db.tenants_count("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_crash\\_%'").await,
        n
    );
    assert_eq!(db.count("SELECT count(*) FROM control.secrets").await, 2 * n);
    assert_eq!(db.count("SELECT count(*) FROM control.domains").await, 2 * n);
    assert_eq!(
        db.roles().await.len() as i64,
        2 * (2 * n) + 3,
        "two roles per tenant (runtime and read-only), the owner, the tenants group and the routers' role"
    );
    for i in 0..Step::ALL.len() {
        let history =
            db.tenants_count(&format!("SELECT count(*) FROM t_crash_{i}.refinery_schema_history")).await;
        assert_eq!(history, 1, "each migration applied exactly once");
        assert_eq!(
            db.tenants_count(&format!("SELECT count(*) FROM t_crash_{i}.settings")).await,
            1,
            "seed applied once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_slugs_are_a_conflict_and_leave_nothing_behind() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = start(&db, &common).await;
    create_active(&cp, "acme").await;
    let err = tenants::create(&cp, &request("acme", "pro"), "test").await.unwrap_err();
    assert!(matches!(err, CreateTenantError::DuplicateSlug(_)), "{err}");
    assert_eq!(err.code(), "duplicate_slug");
    assert_eq!(db.count("SELECT count(*) FROM control.tenants").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_with_aws_secrets_manager_writes_the_rds_shaped_secret() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Aws);
    let cp = start(&db, &common).await;
    assert_eq!(cp.secrets.backend(), "aws");
    let tenant = create_active(&cp, "acme").await;
    let name = tenant.secret_name().unwrap();
    assert!(name.as_str().ends_with(&format!("/tenants/{}/postgres", tenant.id)));
    let creds = cp.secrets.get(&name).await.unwrap().unwrap();
    assert_eq!(
        (creds.engine.as_str(), creds.username.as_str(), creds.schema.as_str()),
        ("postgres", tenant.role_name.as_str(), "t_acme")
    );
    assert!(creds.password.len() >= 43, "32 random bytes");
    connect_as(&db, &creds.username, &creds.password).await.unwrap();

    // put is idempotent and updates; delete removes.
    let token = format!("{}-v0001", tenant.id);
    cp.secrets.put(&name, &creds, &token).await.unwrap();
    let mut rotated = creds.clone();
    rotated.password = "another-password-of-sufficient-length-000".into();
    cp.secrets.put(&name, &rotated, &format!("{}-v0002", tenant.id)).await.unwrap();
    assert_eq!(cp.secrets.get(&name).await.unwrap().unwrap().password, rotated.password);
    cp.secrets.delete(&name).await.unwrap();
    assert!(cp.secrets.get(&name).await.unwrap().is_none());
    cp.secrets.delete(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_secret_store_encrypts_and_refuses_a_wrong_key() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = start(&db, &common).await;
    let tenant = create_active(&cp, "acme").await;
    let password = password_of(&cp, &tenant).await;
    let stored: Vec<u8> =
        db.client().await.query_one("SELECT ciphertext FROM control.secrets", &[]).await.unwrap().get(0);
    assert!(!String::from_utf8_lossy(&stored).contains(&password), "stored encrypted");
    // Another key cannot read it.
    let other = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let err = other.secrets.get(&tenant.secret_name().unwrap()).await.unwrap_err();
    assert!(matches!(err, tenancy::secrets::SecretError::Corrupt(_)), "{err}");
}
