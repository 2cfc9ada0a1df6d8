//! Attacks by a tenant holding its credentials (or by someone with write access to Redis),
//! through the router's `POST /sql`: each is refused, or cannot do what it tries, and the tenant
//! keeps working. (The router's ordinary `/sql` behaviour is in `sql_over_http`.)

use crate::sql_over_http::{fixture, token, JWT_SECRET};
use e2e_tests::{spawn_router_with, TenantSql};
use serde_json::json;
use std::time::Duration;

/// A tenant may not change its own role (its password, its defaults), switch to another role,
/// or run anonymous code: 403 `statement_not_allowed` before anything runs, and the tenant
/// keeps working. PostgreSQL refuses `DO` to the tenant's role on its own as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_a_tenant_has_no_business_sending_are_refused() {
    let f = fixture().await;
    // Some forty requests in a row: more than the plan allows per second.
    f.db.lift_rate_limits().await;
    let role = format!("{}_acme", f.db.role_prefix);
    let refused = [
        format!("ALTER ROLE {role} PASSWORD 'stolen'"),
        format!("ALTER ROLE {role} SET statement_timeout = 0"),
        "ALTER USER CURRENT_USER WITH PASSWORD 'stolen'".to_owned(),
        format!("SET ROLE {}_tenants", f.db.role_prefix),
        "SET SESSION AUTHORIZATION DEFAULT".to_owned(),
        "SELECT set_config('role', 'postgres', false)".to_owned(),
        "SELECT set_config($1, 'x', false)".to_owned(),
        "DO $$ BEGIN EXECUTE 'DEALLOCATE tenancy_reset_check'; END $$".to_owned(),
        "ALTER SYSTEM SET work_mem = '1GB'".to_owned(),
        "CREATE EXTENSION IF NOT EXISTS pgcrypto".to_owned(),
    ];
    for sql in &refused {
        let params = if sql.contains("$1") { json!(["role"]) } else { json!([]) };
        for body in [
            json!({"query": sql, "params": params}),
            json!({"queries": [{"query": "INSERT INTO tags (name) VALUES ('first')"}, {"query": sql, "params": params}]}),
        ] {
            let (status, answer) = f.acme.post(body).await;
            assert_eq!(
                (status, &answer["error"]["code"]),
                (403, &json!("statement_not_allowed")),
                "{sql}: {answer}"
            );
        }
    }
    // Nothing ran: the batches' first statements included.
    assert_eq!(f.db.tenants_count("SELECT count(*) FROM t_acme.tags").await, 0);
    let unchanged =
        f.db.count(&format!(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
              WHERE r.rolname = '{role}' AND array_to_string(s.setconfig, ',') LIKE '%statement_timeout%'"
        ))
        .await;
    assert_eq!(unchanged, 0, "the role's defaults are untouched");
    // The password still works: the router still reaches the tenant.
    for _ in 0..4 {
        assert_eq!(f.acme.rows("SELECT 1 AS one", json!([])).await, json!([{"one": 1}]));
    }
    // A setting of the tenant's own is fine (the row-level security pattern).
    assert_eq!(
        f.acme.rows("SELECT set_config('app.user_id', $1, true) AS v", json!(["42"])).await,
        json!([{"v": "42"}])
    );

    // Straight to PostgreSQL with the tenant's credentials: no procedural language.
    let config: tokio_postgres::Config = f.acme.connection_string.parse().unwrap();
    let password = String::from_utf8(config.get_password().unwrap().to_vec()).unwrap();
    let url = f.db.database_url_as(config.get_dbname().unwrap(), config.get_user().unwrap(), &password);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let err = client
        .batch_execute("DO $$ BEGIN PERFORM 1; END $$")
        .await
        .expect_err("the tenant's role ran a DO block on a direct connection");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
}

/// The plan's statement timeout holds whatever a request sets: the router cancels a request that
/// runs past it (PostgreSQL's 57014, as for the server's own timeout), and the query is gone
/// from the server. The role's settings bound what a session may hold on to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plans_statement_timeout_cannot_be_switched_off() {
    let f = fixture().await;
    let role = format!("{}_acme", f.db.role_prefix);
    let running = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND query LIKE '%pg_sleep(600)%'"
    );
    for body in [
        json!({"queries": [{"query": "SET LOCAL statement_timeout = 0"}, {"query": "SELECT pg_sleep(600)"}]}),
        json!({"queries": [{"query": "SELECT set_config('statement_timeout', '0', true)"}, {"query": "SELECT pg_sleep(600)"}]}),
    ] {
        // Without the router's deadline this would answer after ten minutes: give up long before.
        let response = f
            .acme
            .request()
            .timeout(Duration::from_secs(60))
            .json(&body)
            .send()
            .await
            .expect("an answer in time");
        assert_eq!(response.status().as_u16(), 400);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["code"], json!("57014"), "{answer}");
        let started = std::time::Instant::now();
        while f.db.count(&running).await > 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "the query kept running on the server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(f.acme.rows("SELECT 1 AS one", json!([])).await, json!([{"one": 1}]));

    // On the role: a session idle in a transaction is ended; temporary file space is bounded,
    // and the tenant cannot lift that bound.
    assert_eq!(
        f.acme.rows("SHOW idle_in_transaction_session_timeout", json!([])).await,
        json!([{"idle_in_transaction_session_timeout": "30s"}])
    );
    assert_eq!(f.acme.rows("SHOW temp_file_limit", json!([])).await, json!([{"temp_file_limit": "1GB"}]));
    let (status, answer) = f.acme.post(json!({"query": "SET temp_file_limit = -1"})).await;
    assert_eq!((status, &answer["code"]), (400, &json!("42501")), "{answer}");
}

/// Redis is not trusted with who a tenant is: a routing record written there by someone else
/// (acme's key holding globex's role, unsigned or signed with another key, or globex's own
/// signed record) is ignored and counted, and acme's requests still run as acme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_routing_records_in_redis_are_ignored() {
    let f = fixture().await;
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .unwrap();
    let acme_token = token(&json!({"tenant": "acme", "role": "tenant-admin", "exp": now + 600}), JWT_SECRET);
    let current_user = |router: &tenant_router::http::RunningRouter| {
        let request = reqwest::Client::new()
            .post(format!("http://{}/sql", router.addr))
            .header("host", "acme.app.localhost")
            .bearer_auth(&acme_token)
            .json(&json!({"query": "SELECT current_user AS u"}))
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (body["rows"][0]["u"].as_str().unwrap_or_default().to_owned(), format!("{status} {body}"))
        }
    };
    let (acme_role, globex_role) =
        (format!("{}_acme", f.db.role_prefix), format!("{}_globex", f.db.role_prefix));
    // globex's genuine record, as a router signed it.
    let globex = TenantSql::new(&f.router, "globex.app.localhost", &f.globex_connection_string);
    assert_eq!(globex.post(json!({"query": "SELECT 1"})).await.0, 200);
    let names = tenancy::invalidation::RedisNames::new(&f.db.redis_prefix);
    let (acme_key, globex_key) = (
        names.route_key(&tenancy::domain::Slug::parse("acme").unwrap()),
        names.route_key(&tenancy::domain::Slug::parse("globex").unwrap()),
    );
    let mut redis = redis::Client::open(testkit::services().redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let genuine: String = redis::cmd("GET").arg(&globex_key).query_async(&mut redis).await.unwrap();
    let json = genuine.splitn(4, '.').nth(3).unwrap().to_owned();
    let as_acme = json.replacen("\"slug\":\"globex\"", "\"slug\":\"acme\"", 1);
    assert_ne!(as_acme, json);
    let (expires, signature) = {
        let mut parts = genuine.splitn(4, '.').skip(1);
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
    };
    let forgeries = [
        // The unsigned record routers used to trust.
        as_acme.clone(),
        // globex's signature on a record changed to name acme.
        format!("v1.{expires}.{signature}.{as_acme}"),
        // globex's genuine record, replayed under acme's key.
        genuine.clone(),
    ];
    for (i, forged) in forgeries.iter().enumerate() {
        let _: () = redis::cmd("SET").arg(&acme_key).arg(forged).query_async(&mut redis).await.unwrap();
        // A router that has not cached acme yet reads Redis first.
        let router = spawn_router_with(&f.settings).await;
        let (user, answer) = current_user(&router).await;
        assert_eq!(
            user, acme_role,
            "forgery {i}: acme's request did not run as acme (as {globex_role}?): {answer}"
        );
        let metrics = reqwest::get(format!("http://{}/metrics", router.admin_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("tenant_router_shared_records_rejected_total 1"), "forgery {i}: {metrics}");
        router.stop().await.unwrap();
    }
}

/// Routers read the catalog with a role of their own that sees routing records and nothing
/// else: a router works with it, and those credentials read no billing event, no token, no
/// billing column of a tenant, and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_catalog_role_reads_routing_records_and_nothing_else() {
    let f = fixture().await;
    let credentials = control_plane::catalog::router_role::issue_credentials(
        &f.cp,
        f.settings.common.database_url().unwrap(),
    )
    .await
    .unwrap();
    let url = credentials.database_url.expose().to_owned();

    // A router with only these credentials serves tenants (the local secrets backend included).
    let mut settings = f.settings.clone();
    settings.common.database_url = Some(url.clone().into());
    let router = spawn_router_with(&settings).await;
    let acme = TenantSql::new(&router, "acme.app.localhost", &f.acme.connection_string);
    assert_eq!(acme.rows("SELECT 1 AS one", json!([])).await, json!([{"one": 1}]));

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let code = |result: Result<u64, tokio_postgres::Error>| match result {
        Ok(_) => "succeeded".to_owned(),
        Err(e) => e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| e.to_string()),
    };
    for sql in [
        "SELECT * FROM control.billing_events",
        "SELECT * FROM control.operator_tokens",
        "SELECT * FROM control.migration_runs",
        "SELECT * FROM control.jobs",
        "SELECT * FROM control.audit_log",
        "SELECT billing_customer_id FROM control.tenants",
        "SELECT * FROM control.tenants",
        "UPDATE control.tenants SET plan = 'enterprise'",
        "INSERT INTO control.domains (host, tenant_id, kind) SELECT 'x.example', id, 'custom' FROM control.tenants",
        "DELETE FROM control.secrets",
        "CREATE TABLE control.sneaky (i int)",
        "INSERT INTO control.audit_log (actor, action) VALUES ('operator', 'tenant.delete')",
    ] {
        assert_eq!(code(client.execute(sql, &[]).await), "42501", "{sql}");
    }
    assert_eq!(
        code(client.execute("SELECT slug, status, generation FROM control.tenants", &[]).await),
        "succeeded"
    );
    // It writes internal users' accesses to the audit log, and nothing else there.
    let log = "SELECT control.log_internal_access(ARRAY[now()], ARRAY['staff'], ARRAY[(SELECT id FROM control.tenants LIMIT 1)], ARRAY[$1::jsonb])";
    let internal =
        json!({"role": "internal-viewer", "door": "sql", "access": "read", "request": "POST /sql"});
    assert_eq!(code(client.execute(log, &[&internal]).await), "succeeded");
    let forged = json!({"role": "operator", "door": "sql", "access": "write", "request": "tenant.delete"});
    assert_eq!(code(client.execute(log, &[&forged]).await), "P0001", "only internal accesses");
}

/// A read-only token runs on the tenant's read-only role, which PostgreSQL allows `SELECT` and
/// nothing else: no statement, alone or in a batch, writes anything (the router refuses some
/// before they run, a read-only transaction others; what gets past both, such as a batch that
/// makes its transaction read-write first, PostgreSQL refuses for lack of privilege). Reads
/// work. The role's own credentials, from the tenant's secret, cannot write either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_cannot_write_whatever_it_sends() {
    let f = fixture().await;
    // Some forty requests in a row: more than the plan allows per second.
    f.db.lift_rate_limits().await;
    f.acme.rows("INSERT INTO tags (name) VALUES ('kept')", json!([])).await;
    let admin = f.db.tenants_client().await;
    admin
        .batch_execute(&format!(
            "SET ROLE {owner};
             CREATE FUNCTION t_acme.add_tag(tag text) RETURNS void LANGUAGE sql
               AS $$ INSERT INTO t_acme.tags (name) VALUES (tag) $$;
             RESET ROLE;",
            owner = tenancy::domain::RoleName::owner(&f.db.role_prefix).quoted(),
        ))
        .await
        .unwrap();
    // Everything a write could change: the rows, the identity sequence, the tables, large objects.
    let state = || async {
        admin
            .query_one(
                "SELECT (SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM t_acme.tags),
                        (SELECT last_value FROM pg_sequences WHERE schemaname = 't_acme'
                          AND sequencename = 'tags_id_seq')::text,
                        (SELECT count(*) FROM pg_class WHERE relnamespace = 't_acme'::regnamespace)::text,
                        (SELECT count(*) FROM pg_largeobject_metadata)::text",
                &[],
            )
            .await
            .map(|row| (0..4).map(|i| row.get::<_, Option<String>>(i)).collect::<Vec<_>>())
            .unwrap()
    };
    let before = state().await;

    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .unwrap();
    let viewer = token(&json!({"tenant": "acme", "role": "tenant-viewer", "exp": now + 600}), JWT_SECRET);
    let post = |body: serde_json::Value| {
        let viewer = viewer.clone();
        let addr = f.router.addr;
        async move {
            let response = reqwest::Client::new()
                .post(format!("http://{addr}/sql"))
                .header("host", "acme.app.localhost")
                .bearer_auth(viewer)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            let code =
                answer["error"]["code"].as_str().or(answer["code"].as_str()).unwrap_or_default().to_owned();
            (status, code, answer)
        }
    };
    let insert = "INSERT INTO tags (name) VALUES ('nope')";
    let single = |sql: &str| json!({ "query": sql });
    let batch = |sqls: &[&str]| json!({ "queries": sqls.iter().map(|sql| json!({ "query": sql })).collect::<Vec<_>>() });
    let attempts = [
        single(insert),
        single("UPDATE tags SET name = 'changed'"),
        single("DELETE FROM tags"),
        single("SELECT * FROM tags FOR UPDATE"),
        single("WITH added AS (INSERT INTO tags (name) VALUES ('nope') RETURNING id) SELECT id FROM added"),
        single("SELECT nextval('tags_id_seq')"),
        single("SELECT add_tag('nope')"),
        single("SELECT lo_create(0)"),
        single("CREATE TABLE sneaky (i int)"),
        single("SELECT * INTO sneaky FROM tags"),
        single("COPY tags (name) FROM PROGRAM 'echo nope'"),
        single("COPY tags (name) FROM '/etc/hostname'"),
        batch(&["COMMIT", insert]),
        batch(&["SET TRANSACTION READ WRITE", insert]),
        batch(&["SET TRANSACTION READ WRITE", "UPDATE tags SET name = 'changed'"]),
        batch(&["SET TRANSACTION READ WRITE", "DELETE FROM tags"]),
        batch(&["SET TRANSACTION READ WRITE", "SELECT * FROM tags FOR UPDATE"]),
        batch(&["SET TRANSACTION READ WRITE", "SELECT nextval('tags_id_seq')"]),
        batch(&["SET TRANSACTION READ WRITE", "SELECT add_tag('nope')"]),
        batch(&["SET TRANSACTION READ WRITE", "SELECT lo_create(0)"]),
        batch(&["SET TRANSACTION READ WRITE", "CREATE TABLE sneaky (i int)"]),
        batch(&[
            "SET TRANSACTION READ WRITE",
            "WITH added AS (INSERT INTO tags (name) VALUES ('nope') RETURNING id) SELECT id FROM added",
        ]),
        batch(&["SET LOCAL transaction_read_only = off", insert]),
        batch(&["SELECT set_config('transaction_read_only', 'off', true)", insert]),
        batch(&["SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", insert]),
        single("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
        single(insert),
        single("SET default_transaction_read_only = off"),
        single(insert),
    ];
    let mut refused_by_privilege = 0;
    for attempt in attempts {
        let (status, code, answer) = post(attempt.clone()).await;
        if status == 200 {
            // Only a statement that changes nothing may succeed (checked below, all together).
            assert!(
                attempt.to_string().contains("SET SESSION") || attempt.to_string().contains("SET default"),
                "{attempt} succeeded: {answer}"
            );
            continue;
        }
        assert!(
            ["statement_not_allowed", "25006", "42501", "25001"].contains(&code.as_str()),
            "{attempt}: {status} {code} {answer}"
        );
        refused_by_privilege += usize::from(code == "42501");
        assert_eq!(state().await, before, "{attempt} changed the database");
    }
    assert!(refused_by_privilege > 0, "some writes got past the router and the read-only transaction");
    assert_eq!(state().await, before);

    // Reads work, as the read-only role.
    let (status, _, answer) =
        post(single("SELECT name, current_user = session_user AS own FROM tags ORDER BY id")).await;
    assert_eq!((status, &answer["rows"]), (200, &json!([{"name": "kept", "own": true}])), "{answer}");
    let (_, _, answer) = post(single("SELECT current_user AS who")).await;
    let reader_name = format!("{}__ro_acme", f.db.role_prefix);
    assert_eq!(answer["rows"], json!([{"who": reader_name}]), "{answer}");

    // The read-only role's own credentials, straight from the secret: no write either.
    let tenant = {
        let client = f.cp.catalog.get().await.unwrap();
        tenancy::catalog::tenant_by_slug(&**client, &tenancy::domain::Slug::parse("acme").unwrap())
            .await
            .unwrap()
            .unwrap()
    };
    let secret = f.cp.secrets.get(&tenant.secret_name().unwrap()).await.unwrap().unwrap();
    let reader = secret.reader().expect("the secret holds the read-only role's login");
    assert_eq!(reader.username, reader_name);
    let url = f.db.database_url_as(&reader.dbname, &reader.username, &reader.password);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let outcome = |result: Result<u64, tokio_postgres::Error>| match result {
        Ok(_) => "succeeded".to_owned(),
        Err(e) => e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| e.to_string()),
    };
    for sql in [
        "SET default_transaction_read_only = off",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SELECT count(*) FROM tags",
    ] {
        assert_eq!(outcome(client.execute(sql, &[]).await), "succeeded", "{sql}");
    }
    for sql in [
        insert,
        "UPDATE tags SET name = 'changed'",
        "DELETE FROM tags",
        "TRUNCATE tags",
        "SELECT * FROM tags FOR UPDATE",
        "SELECT nextval('tags_id_seq')",
        "SELECT add_tag('nope')",
        "CREATE TABLE sneaky (i int)",
        "SELECT * FROM refinery_schema_history",
        "COPY tags (name) FROM PROGRAM 'echo nope'",
    ] {
        assert_eq!(outcome(client.execute(sql, &[]).await), "42501", "{sql}");
    }
    assert_eq!(state().await[..3], before[..3], "a direct session as the read-only role wrote");

    // A tenant whose secret has no reader (provisioned before there were reader roles): its
    // read-only requests are refused, never run on its read-write role; others still work.
    let globex = {
        let client = f.cp.catalog.get().await.unwrap();
        tenancy::catalog::tenant_by_slug(&**client, &tenancy::domain::Slug::parse("globex").unwrap())
            .await
            .unwrap()
            .unwrap()
    };
    let name = globex.secret_name().unwrap();
    let without_reader = tenancy::secrets::DbCredentials {
        reader_username: None,
        reader_password: None,
        ..f.cp.secrets.get(&name).await.unwrap().unwrap()
    };
    f.cp.secrets.put(&name, &without_reader, &format!("{}-no-reader-xx", globex.id)).await.unwrap();
    let globex_post = |claims: serde_json::Value| {
        reqwest::Client::new()
            .post(format!("http://{}/sql", f.router.addr))
            .header("host", "globex.app.localhost")
            .bearer_auth(token(&claims, JWT_SECRET))
            .json(&json!({ "query": "SELECT current_user AS who" }))
            .send()
    };
    let response =
        globex_post(json!({"tenant": "globex", "role": "tenant-viewer", "exp": now + 600})).await.unwrap();
    let status = response.status().as_u16();
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("read_only_unavailable")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("no read-only role"), "{answer}");
    let response =
        globex_post(json!({"tenant": "globex", "role": "tenant-admin", "exp": now + 600})).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
