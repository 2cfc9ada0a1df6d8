//! Each tenant's read-only role: created by provisioning with `SELECT` on the tenant's tables
//! and nothing else, its login in the tenant's secret; rotated, suspended, limited and dropped
//! along with the runtime role; given to tenants provisioned before there were reader roles
//! when their credentials are rotated.

use crate::{connect_as, create_active, request, sqlstate, start};
use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::jobs::runner::drain;
use control_plane::tenants;
use control_plane::tenants::{request as operate, Operation};
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::domain::{Isolation, Slug};
use tenancy::secrets::DbCredentials;
use testkit::{common_settings, SecretsFor, TestDb};

async fn run(cp: &ControlPlane, slug: &str, operation: Operation) -> TenantRecord {
    let tenant = operate(cp, &Slug::parse(slug).unwrap(), &operation, "test").await.unwrap();
    drain(cp, tenant.id, Duration::from_secs(60)).await.unwrap();
    let client = cp.catalog.get().await.unwrap();
    tenancy::catalog::tenant_by_id(&**client, tenant.id).await.unwrap().unwrap()
}

async fn secret_of(cp: &ControlPlane, tenant: &TenantRecord) -> DbCredentials {
    cp.secrets.get(&tenant.secret_name().unwrap()).await.unwrap().unwrap()
}

/// The reader's login from the secret.
async fn reader_of(cp: &ControlPlane, tenant: &TenantRecord) -> DbCredentials {
    secret_of(cp, tenant).await.reader().expect("the secret holds the reader's login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_gives_every_tenant_a_reader_that_may_only_select() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    let reader = reader_of(&cp, &acme).await;
    assert_eq!(reader.username, format!("{}__ro_acme", db.role_prefix));
    assert_eq!(reader.username, acme.role_name.reader().as_str());
    let runtime = secret_of(&cp, &acme).await;
    assert_ne!(reader.password, runtime.password);

    // Marked as the tenant's, with the runtime role's limits and settings, SCRAM password.
    let row = db
        .client()
        .await
        .query_one(
            "SELECT shobj_description(r.oid, 'pg_authid'), r.rolcanlogin, r.rolconnlimit,
                    r.rolconnlimit = (SELECT rolconnlimit FROM pg_roles WHERE rolname = $2),
                    starts_with(a.rolpassword, 'SCRAM-SHA-256$')
               FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = $1",
            &[&reader.username, &acme.role_name.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), Some(format!("tenancy tenant {} reader", acme.id)));
    assert!(row.get::<_, bool>(1) && row.get::<_, bool>(3) && row.get::<_, bool>(4));

    // Reads its tables, writes nothing; no history, no sequences.
    let client = connect_as(&db, &reader.username, &reader.password).await.unwrap();
    let writer = connect_as(&db, acme.role_name.as_str(), &runtime.password).await.unwrap();
    writer.execute("INSERT INTO tags (name) VALUES ('seen')", &[]).await.unwrap();
    let seen = client.query_one("SELECT name FROM tags", &[]).await.unwrap();
    assert_eq!(seen.get::<_, String>(0), "seen");
    client.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE").await.unwrap();
    for sql in [
        "INSERT INTO tags (name) VALUES ('nope')",
        "UPDATE tags SET name = 'changed'",
        "DELETE FROM tags",
        "SELECT nextval('tags_id_seq')",
        "SELECT * FROM refinery_schema_history",
        "CREATE TABLE sneaky (i int)",
    ] {
        assert_eq!(sqlstate(client.execute(sql, &[]).await), "42501", "{sql}");
    }
    // A table the owner creates later (a migration) is readable too, by default privileges.
    db.tenants_client()
        .await
        .batch_execute(&format!(
            "SET ROLE {}; CREATE TABLE t_acme.later (i int); INSERT INTO t_acme.later VALUES (1); RESET ROLE;",
            tenancy::domain::RoleName::owner(&db.role_prefix).quoted()
        ))
        .await
        .unwrap();
    assert_eq!(sqlstate(client.execute("SELECT * FROM later", &[]).await), "succeeded");
    assert_eq!(sqlstate(client.execute("INSERT INTO later VALUES (2)", &[]).await), "42501");

    // Provisioning again (a resumed job) changes nothing: same secret, the same roles.
    let roles = db.roles().await;
    let tenant = tenants::create(&cp, &request("globex", "starter"), "test").await.unwrap();
    provision(&cp, tenant.id).await.unwrap();
    provision(&cp, acme.id).await.unwrap();
    assert_eq!(reader_of(&cp, &acme).await, reader);
    assert_eq!(db.roles().await.len(), roles.len() + 2, "globex's two roles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_of_the_readers_name_that_is_not_ours_is_never_adopted() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    db.client().await.batch_execute(&format!("CREATE ROLE \"{}__ro_acme\"", db.role_prefix)).await.unwrap();
    let tenant = tenants::create(&cp, &request("acme", "starter"), "test").await.unwrap();
    let err = provision(&cp, tenant.id).await.unwrap_err();
    assert!(err.to_string().contains("does not belong to this tenant"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_suspension_plan_and_deprovision_cover_the_reader() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    let old = reader_of(&cp, &acme).await;

    let rotated = run(&cp, "acme", Operation::RotateCredentials).await;
    let new = reader_of(&cp, &rotated).await;
    assert_ne!(old.password, new.password);
    assert_eq!(sqlstate(connect_as(&db, &old.username, &old.password).await), "28P01");
    let open_session = connect_as(&db, &new.username, &new.password).await.unwrap();

    run(&cp, "acme", Operation::Suspend).await;
    assert_eq!(sqlstate(connect_as(&db, &new.username, &new.password).await), "28000", "cannot log in");
    assert!(open_session.simple_query("SELECT 1").await.is_err(), "open sessions were ended");
    run(&cp, "acme", Operation::Resume).await;
    connect_as(&db, &new.username, &new.password).await.unwrap();

    run(&cp, "acme", Operation::ChangePlan("pro".into())).await;
    let limit = db
        .count(&format!("SELECT rolconnlimit::bigint FROM pg_roles WHERE rolname = '{}'", new.username))
        .await;
    assert_eq!(limit, 25);

    // A tenant with a database of its own: the reader may connect to it, and read only.
    let hooli = {
        let request = control_plane::tenants::TenantRequest {
            isolation: Some(Isolation::Database),
            ..request("hooli", "starter")
        };
        let tenant = tenants::create(&cp, &request, "test").await.unwrap();
        provision(&cp, tenant.id).await.unwrap()
    };
    let reader = reader_of(&cp, &hooli).await;
    let (client, connection) = tokio_postgres::connect(
        &db.database_url_as(&reader.dbname, &reader.username, &reader.password),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    // Its sessions start read-only; made read-write, it still has no privilege to write.
    client.batch_execute("SET default_transaction_read_only = off").await.unwrap();
    assert_eq!(sqlstate(client.execute("SELECT * FROM tags", &[]).await), "succeeded");
    assert_eq!(sqlstate(client.execute("INSERT INTO tags (name) VALUES ('x')", &[]).await), "42501");
    drop(client);

    for slug in ["acme", "hooli"] {
        run(&cp, slug, Operation::Deprovision { retention: Duration::ZERO }).await;
    }
    // Nothing is left of either role: no role, no privilege or default privilege naming it.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('{}', '{}')",
            new.username, reader.username
        ))
        .await,
        0
    );
    let roles = db.roles().await;
    assert!(roles.iter().all(|role| !role.contains("acme") && !role.contains("hooli")), "{roles:?}");
    assert_eq!(db.tenants_count("SELECT count(*) FROM pg_default_acl").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_from_before_reader_roles_gets_one_at_its_next_rotation() {
    let db = TestDb::create().await;
    let cp = start(&db, &common_settings(&db, SecretsFor::Local)).await;
    let acme = create_active(&cp, "acme").await;
    // As it was before: no reader role, a secret without its login.
    let reader_name = acme.role_name.reader();
    let admin = db.tenants_client().await;
    admin
        .batch_execute(&format!("DROP OWNED BY {r}; DROP ROLE {r};", r = reader_name.quoted()))
        .await
        .unwrap();
    let name = acme.secret_name().unwrap();
    let old = DbCredentials { reader_username: None, reader_password: None, ..secret_of(&cp, &acme).await };
    cp.secrets.put(&name, &old, &format!("{}-old-secret-xx", acme.id)).await.unwrap();

    // Lifecycle jobs work without it.
    run(&cp, "acme", Operation::Suspend).await;
    run(&cp, "acme", Operation::Resume).await;

    let rotated = run(&cp, "acme", Operation::RotateCredentials).await;
    let reader = reader_of(&cp, &rotated).await;
    assert_eq!(reader.username, reader_name.as_str());
    let client = connect_as(&db, &reader.username, &reader.password).await.unwrap();
    assert_eq!(sqlstate(client.execute("INSERT INTO tags (name) VALUES ('x')", &[]).await), "25006");
    client.batch_execute("SET default_transaction_read_only = off").await.unwrap();
    assert_eq!(sqlstate(client.execute("SELECT * FROM tags", &[]).await), "succeeded");
    assert_eq!(sqlstate(client.execute("INSERT INTO tags (name) VALUES ('x')", &[]).await), "42501");
    assert_eq!(sqlstate(client.execute("SELECT * FROM refinery_schema_history", &[]).await), "42501");
}
