use super::{classify, Classification, Classifier, NotAllowed, SessionEffect};
use proptest::prelude::*;

/// Statements that can leave state in the session, by the kind of state.
const NEEDS_RESET: &[&str] = &[
    // settings
    "SET search_path = other",
    "SET SESSION statement_timeout = 0",
    "RESET search_path",
    "RESET ALL",
    "SET ROLE other",
    "SET SESSION AUTHORIZATION other",
    "RESET ROLE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET TIME ZONE 'UTC'",
    "SELECT set_config('app.user', '1', false)",
    "SELECT pg_catalog.set_config('app.user', '1', true)",
    // prepared statements, notifications, cursors
    "PREPARE q AS SELECT 1",
    "DEALLOCATE q",
    "DEALLOCATE ALL",
    "DISCARD ALL",
    "DISCARD PLANS",
    "LISTEN channel",
    "UNLISTEN *",
    "DECLARE c CURSOR FOR SELECT 1",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    // temporary objects
    "CREATE TEMP TABLE t (id int)",
    "CREATE TEMPORARY VIEW v AS SELECT 1",
    "CREATE TEMP SEQUENCE s",
    "CREATE TEMP TABLE t AS SELECT 1",
    "SELECT 1 AS a INTO TEMP t",
    "SELECT * INTO t2 FROM t",
    "CREATE TABLE pg_temp.t (id int)",
    // advisory locks
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_advisory_lock_shared(1, 2)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT pg_try_advisory_lock_shared(1)",
    "SELECT pg_advisory_unlock(1)",
    "SELECT pg_advisory_unlock_shared(1)",
    "SELECT pg_advisory_unlock_all()",
    // transaction control
    "BEGIN",
    "START TRANSACTION READ ONLY",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT s",
    "RELEASE SAVEPOINT s",
    "ROLLBACK TO SAVEPOINT s",
    "PREPARE TRANSACTION 'x'",
    "COMMIT PREPARED 'x'",
    // sequences
    "SELECT nextval('s')",
    "SELECT setval('s', 10)",
    "INSERT INTO t (id) VALUES (nextval('s'))",
    // code and unknown functions
    "DO $$ BEGIN PERFORM 1; END $$",
    "CALL p()",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
    "SELECT my_function(1)",
    "SELECT myschema.lower(name) FROM t",
    "SELECT setseed(0.5)",
    "SELECT query_to_xml('SELECT set_config(''a.b'', ''1'', false)', true, true, '')",
    // other utility statements and DDL
    "LOAD 'auto_explain'",
    "COPY t FROM STDIN",
    "COPY t TO STDOUT",
    "CREATE TABLE t (id int)",
    "ALTER TABLE t ADD COLUMN x int",
    "DROP TABLE t",
    "TRUNCATE t",
    "VACUUM t",
    "ANALYZE t",
    "GRANT SELECT ON t TO other",
    "CHECKPOINT",
    "REFRESH MATERIALIZED VIEW mv",
    // not SQL, or nothing
    "",
    "   ",
    "-- only a comment",
    "SELEC 1",
    "SELECT 'unterminated",
    "SELECT 1; SELEC 2",
    "SELECT 1\0",
];

/// Functions hidden deep in clean-looking statements.
const HIDDEN_CALLS: &[&str] = &[
    "SELECT (SELECT set_config('a.b', '1', false))",
    "WITH x AS (SELECT pg_advisory_lock(1)) SELECT * FROM x",
    "SELECT * FROM t WHERE id IN (SELECT nextval('s'))",
    "INSERT INTO t VALUES (set_config('a.b', '1', false))",
    "INSERT INTO t VALUES (1), (2), (set_config('a.b', '1', false))",
    "SELECT * FROM generate_series(1, pg_advisory_lock(1)::int)",
    "SELECT * FROM t, LATERAL (SELECT pg_advisory_lock(t.id)) l",
    "SELECT * FROM t JOIN u ON u.id = t.id AND pg_try_advisory_lock(u.id)",
    "SELECT (pg_advisory_lock(1))::text",
    "SELECT CASE WHEN true THEN set_config('a', 'b', false) END",
    "SELECT coalesce(null, set_config('a.b', '1', false))",
    "SELECT ARRAY[nextval('s')]",
    "SELECT count(*) FILTER (WHERE pg_advisory_lock(1) IS NULL) FROM t",
    "SELECT row_number() OVER (ORDER BY nextval('s')) FROM t",
    "SELECT * FROM t ORDER BY nextval('s')",
    "SELECT id FROM t GROUP BY id HAVING bool_and(pg_try_advisory_lock(id))",
    "SELECT * FROM t LIMIT nextval('s')",
    "UPDATE t SET a = 1 WHERE id = nextval('s')",
    "UPDATE t SET a = 1 FROM (SELECT nextval('s') AS id) n WHERE t.id = n.id",
    "DELETE FROM t USING (SELECT set_config('a.b', '1', false)) x",
    "DELETE FROM t RETURNING set_config('a.b', '1', false)",
    "INSERT INTO t SELECT nextval('s') ON CONFLICT (id) DO UPDATE SET a = nextval('s')",
    "WITH d AS (DELETE FROM t RETURNING pg_advisory_lock(id)) SELECT * FROM d",
    "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = nextval('s')",
    "SELECT 1 UNION ALL SELECT pg_advisory_lock(1)",
    "SELECT EXISTS (SELECT 1 FROM t WHERE pg_advisory_lock(t.id) IS NULL)",
    "SELECT jsonb_build_object('k', set_config('a.b', '1', false))",
    "VALUES (1), (nextval('s'))",
    "EXECUTE q(nextval('s'))",
    "EXPLAIN ANALYZE SELECT pg_advisory_lock(1)",
    "SELECT * FROM ROWS FROM (generate_series(1, 2), my_srf()) r",
    "SELECT xmlelement(name x, set_config('a.b', '1', false))",
    "SELECT * FROM t WHERE a = ANY (SELECT nextval('s'))",
];

/// Statements a tenant's application sends all the time, which leave the session clean.
const CLEAN: &[&str] = &[
    "SELECT 1",
    "select 1;",
    "SELECT id, name FROM users WHERE id = $1",
    "SELECT u.id, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = $1",
    "SELECT * FROM users u LEFT JOIN LATERAL (SELECT * FROM orders o WHERE o.user_id = u.id LIMIT 3) o ON true",
    "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') SELECT count(*) FROM recent",
    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id",
    "INSERT INTO users (name) VALUES ('a'), ('b') ON CONFLICT (name) DO UPDATE SET name = excluded.name",
    "UPDATE users SET updated_at = now(), name = $2 WHERE id = $1",
    "DELETE FROM sessions WHERE expires_at < now()",
    "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a WHEN NOT MATCHED THEN INSERT VALUES (u.id, u.a)",
    "SELECT count(*) FROM users",
    "SELECT lower(name), upper(name), length(name) FROM t",
    "SELECT pg_catalog.lower(name) FROM t",
    "SELECT data->>'k', jsonb_build_object('a', 1), jsonb_agg(t) FROM t GROUP BY data",
    "SELECT jsonb_set(data, '{a}', to_jsonb(1)) FROM t WHERE data @> '{\"a\": 1}'",
    "SELECT extract(epoch from now())",
    "SELECT created_at AT TIME ZONE 'UTC' FROM t",
    "SELECT substring(name from 2 for 3), position('a' in name), trim(both ' ' from name), overlay(name placing 'x' from 1) FROM t",
    "SELECT coalesce(a, 0), nullif(a, 0), greatest(a, b), least(a, b) FROM t",
    "SELECT CURRENT_TIMESTAMP, current_date, current_user, session_user, localtimestamp",
    "SELECT $1::int, CAST($2 AS text), '2020-01-01'::date",
    "SELECT row_number() OVER (PARTITION BY a ORDER BY b), sum(c) OVER w FROM t WINDOW w AS (ORDER BY b)",
    "SELECT string_agg(name, ',' ORDER BY name), array_agg(DISTINCT id) FROM t",
    "SELECT * FROM generate_series(1, 10) g",
    "SELECT * FROM unnest($1::int[]) WITH ORDINALITY",
    "SELECT random(), gen_random_uuid(), clock_timestamp()",
    "SELECT pg_sleep(0.1)",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT pg_try_advisory_xact_lock_shared(1)",
    "SELECT current_setting('search_path')",
    "SELECT CASE WHEN a > 0 THEN 'pos' ELSE 'neg' END FROM t",
    "SELECT a IS NULL, b IS DISTINCT FROM c, d BETWEEN 1 AND 2, e LIKE 'x%', f ILIKE 'y' FROM t",
    "SELECT EXISTS (SELECT 1 FROM t WHERE id = $1)",
    "SELECT * FROM t WHERE id = ANY($1) ORDER BY id LIMIT 10 OFFSET 5",
    "SELECT * FROM t FOR UPDATE SKIP LOCKED",
    "VALUES (1, 'a'), (2, 'b')",
    "TABLE users",
    "SHOW search_path",
    "SHOW ALL",
    "EXPLAIN SELECT * FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t",
    "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
    "NOTIFY channel, 'payload'",
    "SELECT pg_notify('channel', 'payload')",
    "LOCK TABLE t IN SHARE MODE",
    "EXECUTE q(1, 'a')",
    "FETCH 10 FROM c",
    "MOVE NEXT IN c",
    "CLOSE c",
    "CLOSE ALL",
    "SET LOCAL statement_timeout = '1s'",
    "SET LOCAL search_path = other",
    "SET LOCAL ROLE other",
    "SELECT currval('s')",
    "SELECT lastval()",
    "SELECT xmlelement(name x, 'y'), json_build_array(1, 2), to_char(now(), 'YYYY')",
    "SELECT ARRAY[1, 2] || 3, ROW(1, 2), (SELECT max(id) FROM t)",
    "SELECT 1; SELECT 2; INSERT INTO t VALUES (1)",
];

fn needs_reset(sql: &str) -> bool {
    classify(sql).needs_reset()
}

#[test]
fn session_changing_statements_need_a_reset() {
    let clean: Vec<_> = NEEDS_RESET.iter().chain(HIDDEN_CALLS).filter(|sql| !needs_reset(sql)).collect();
    assert!(clean.is_empty(), "classified clean: {clean:#?}");
}

#[test]
fn everyday_statements_are_clean() {
    let dirty: Vec<_> = CLEAN.iter().filter(|sql| needs_reset(sql)).collect();
    assert!(dirty.is_empty(), "classified as needing a reset: {dirty:#?}");
}

#[test]
fn several_statements_are_clean_only_when_all_are() {
    assert!(!needs_reset("SELECT 1; UPDATE t SET a = 1; SELECT now()"));
    assert!(needs_reset("SELECT 1; SET search_path = x; SELECT 2"));
    assert!(needs_reset("SELECT 1; SELECT nextval('s')"));
    assert!(needs_reset("SET LOCAL a.b = 1; SET a.b = 1"));
}

#[test]
fn deallocate_and_discard_drop_prepared_statements() {
    for sql in [
        "DEALLOCATE q",
        "DEALLOCATE ALL",
        "DISCARD ALL",
        "DISCARD PLANS",
        "DISCARD TEMP",
        "SELECT 1; DISCARD ALL",
    ] {
        assert!(classify(sql).discards_statements, "{sql}");
    }
    for sql in ["PREPARE q AS SELECT 1", "SELECT 1", "RESET ALL"] {
        assert!(!classify(sql).discards_statements, "{sql}");
    }
}

#[test]
fn transaction_control_is_flagged() {
    for sql in [
        "BEGIN",
        "START TRANSACTION",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "SELECT 1; COMMIT",
        "PREPARE TRANSACTION 'x'",
    ] {
        assert!(classify(sql).transaction_control, "{sql}");
    }
    for sql in ["SELECT 1", "SET TRANSACTION READ ONLY", "LOCK TABLE t"] {
        assert!(!classify(sql).transaction_control, "{sql}");
    }
}

#[test]
fn currval_and_lastval_read_the_sequence_cache() {
    for sql in ["SELECT currval('s')", "SELECT lastval()", "INSERT INTO t VALUES (pg_catalog.currval('s'))"] {
        let c = classify(sql);
        assert!(c.reads_sequence_cache, "{sql}");
    }
    assert!(!classify("SELECT nextval('s')").reads_sequence_cache);
    assert!(!classify("INSERT INTO t (name) VALUES ('a') RETURNING id").reads_sequence_cache);
}

#[test]
fn read_only_statements() {
    for sql in [
        "SELECT 1",
        "SELECT id, name FROM users WHERE id = $1",
        "WITH x AS (SELECT * FROM t) SELECT lower(a) FROM x",
        "VALUES (1)",
        "TABLE t",
        "SHOW search_path",
        "EXPLAIN SELECT * FROM t",
        "SELECT count(*), now(), random() FROM t",
        "SELECT 1; SELECT 2",
    ] {
        let c = classify(sql);
        assert!(c.read_only, "{sql}");
        assert_eq!(c.session, SessionEffect::Clean, "{sql}");
    }
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR SHARE OF t",
        "SELECT * INTO t2 FROM t",
        "EXPLAIN ANALYZE SELECT 1",
        "EXPLAIN INSERT INTO t VALUES (1)",
        "SELECT my_function()",
        "SELECT pg_notify('c', 'p')",
        "SELECT set_config('a.b', '1', false)",
        "SET LOCAL a.b = 1",
        "NOTIFY c",
        "LOCK TABLE t",
        "SELECT 1; INSERT INTO t VALUES (1)",
        "BEGIN",
        "",
        "SELEC 1",
    ] {
        assert!(!classify(sql).read_only, "{sql}");
    }
}

/// Statements a tenant may not send, with why.
const NOT_ALLOWED: &[(&str, NotAllowed)] = &[
    ("ALTER ROLE tenant_acme PASSWORD 'x'", NotAllowed::RoleManagement),
    ("ALTER USER CURRENT_USER WITH PASSWORD 'x'", NotAllowed::RoleManagement),
    ("ALTER ROLE tenant_acme SET statement_timeout = 0", NotAllowed::RoleManagement),
    ("ALTER ROLE ALL SET work_mem = '1GB'", NotAllowed::RoleManagement),
    ("ALTER ROLE tenant_acme RESET ALL", NotAllowed::RoleManagement),
    ("ALTER ROLE tenant_acme RENAME TO other", NotAllowed::RoleManagement),
    ("ALTER GROUP g ADD USER u", NotAllowed::RoleManagement),
    ("CREATE ROLE r", NotAllowed::RoleManagement),
    ("CREATE USER u PASSWORD 'x'", NotAllowed::RoleManagement),
    ("DROP ROLE r", NotAllowed::RoleManagement),
    ("GRANT tenant_tenants TO tenant_acme", NotAllowed::RoleManagement),
    ("REVOKE tenant_tenants FROM tenant_acme", NotAllowed::RoleManagement),
    ("REASSIGN OWNED BY a TO b", NotAllowed::RoleManagement),
    ("DROP OWNED BY a", NotAllowed::RoleManagement),
    ("SET ROLE tenant_tenants", NotAllowed::SessionIdentity),
    ("SET LOCAL ROLE other", NotAllowed::SessionIdentity),
    ("SET SESSION ROLE other", NotAllowed::SessionIdentity),
    ("RESET ROLE", NotAllowed::SessionIdentity),
    ("SET SESSION AUTHORIZATION other", NotAllowed::SessionIdentity),
    ("SET SESSION AUTHORIZATION DEFAULT", NotAllowed::SessionIdentity),
    ("RESET SESSION AUTHORIZATION", NotAllowed::SessionIdentity),
    ("SELECT set_config('role', 'other', false)", NotAllowed::SessionIdentity),
    ("SELECT set_config('ROLE', 'other', true)", NotAllowed::SessionIdentity),
    ("SELECT pg_catalog.set_config('session_authorization', 'x', false)", NotAllowed::SessionIdentity),
    ("SELECT * FROM t WHERE set_config('role', 'x', true) IS NOT NULL", NotAllowed::SessionIdentity),
    ("VALUES (set_config('role', 'x', true))", NotAllowed::SessionIdentity),
    ("SELECT set_config('app.a', set_config('role', 'x', true), true)", NotAllowed::SessionIdentity),
    ("SET standard_conforming_strings = off", NotAllowed::SqlReading),
    ("SET backslash_quote TO on", NotAllowed::SqlReading),
    ("SET client_encoding TO 'SJIS'", NotAllowed::SqlReading),
    ("SET NAMES 'LATIN1'", NotAllowed::SqlReading),
    ("SELECT set_config('standard_conforming_strings', 'on', false)", NotAllowed::SqlReading),
    ("SELECT set_config($1, 'x', false)", NotAllowed::SettingNotConstant),
    ("SELECT set_config(name, 'x', false) FROM t", NotAllowed::SettingNotConstant),
    ("SELECT set_config('ro' || 'le', 'x', false)", NotAllowed::SettingNotConstant),
    ("SELECT set_config(set_config('app.a', 'role', true), 'x', false)", NotAllowed::SettingNotConstant),
    ("DO $$ BEGIN PERFORM 1; END $$", NotAllowed::AnonymousCode),
    ("DO LANGUAGE plpgsql 'BEGIN END'", NotAllowed::AnonymousCode),
    ("ALTER SYSTEM SET work_mem = '1GB'", NotAllowed::Administration),
    ("LOAD 'auto_explain'", NotAllowed::Administration),
    ("CREATE DATABASE d", NotAllowed::Administration),
    ("ALTER DATABASE d SET work_mem = '1GB'", NotAllowed::Administration),
    ("ALTER DATABASE d RENAME TO e", NotAllowed::Administration),
    ("DROP DATABASE d", NotAllowed::Administration),
    ("CREATE EXTENSION pgcrypto", NotAllowed::Administration),
    ("ALTER EXTENSION pgcrypto UPDATE", NotAllowed::Administration),
];

#[test]
fn statements_a_tenant_may_not_send_are_refused() {
    for (sql, why) in NOT_ALLOWED {
        assert_eq!(classify(sql).not_allowed, Some(*why), "{sql}");
        // Anywhere in a string of several statements.
        assert_eq!(classify(&format!("SELECT 1; {sql}")).not_allowed, Some(*why), "SELECT 1; {sql}");
    }
}

#[test]
fn everyday_statements_and_settings_are_allowed() {
    let refused = ["ROLE", "AUTHORIZATION", "DO ", "LOAD ", "DATABASE", "EXTENSION", "ALTER SYSTEM"];
    for sql in NEEDS_RESET.iter().chain(CLEAN).filter(|sql| !refused.iter().any(|word| sql.contains(word))) {
        assert_eq!(classify(sql).not_allowed, None, "{sql}");
    }
    for sql in [
        "SELECT set_config('app.user_id', $1, true)",
        "SELECT pg_catalog.set_config('search_path', 'x', false)",
        "SET statement_timeout = '5s'",
        "SET LOCAL app.tenant = 'x'",
        "ALTER TABLE t ADD COLUMN c int",
        "GRANT SELECT ON t TO someone",
        "SELECT rolname FROM pg_roles",
        "SELECT current_setting('role')",
        "SET client_encoding TO 'UTF8'",
        "SET standard_conforming_strings = on",
        "RESET client_encoding",
        "SET NAMES 'utf8'",
    ] {
        assert_eq!(classify(sql).not_allowed, None, "{sql}");
    }
}

#[test]
fn command_of_the_first_statement() {
    let command = |sql| classify(sql).command;
    assert_eq!(command("select 1"), Some("SELECT"));
    assert_eq!(command("  -- note\n/* x */ insert into t values (1)"), Some("INSERT"));
    assert_eq!(command("WITH x AS (select 1) select * from x"), Some("SELECT"));
    assert_eq!(command("WITH x AS (select 1) update t set a = 1"), Some("UPDATE"));
    assert_eq!(command("TABLE t"), Some("SELECT"));
    assert_eq!(command("VALUES (1)"), Some("SELECT"));
    assert_eq!(command("DELETE FROM t; SELECT 1"), Some("DELETE"));
    assert_eq!(command("EXPLAIN SELECT 1"), Some("EXPLAIN"));
    assert_eq!(command("SET a.b = 1"), None);
}

#[test]
fn the_cache_answers_like_classify() {
    let classifier = Classifier::new(16);
    for sql in CLEAN.iter().chain(NEEDS_RESET).chain(HIDDEN_CALLS) {
        assert_eq!(classifier.classify(sql), classify(sql), "{sql}");
        assert_eq!(classifier.classify(sql), classify(sql), "{sql} (cached)");
    }
    let long = format!("SELECT {}", vec!["1"; Classifier::MAX_CACHED_LEN].join(" + "));
    assert_eq!(classifier.classify(&long), classify(&long));
}

/// Built-in functions of one argument, clean whatever their argument is.
const CLEAN_WRAPPERS: &[&str] = &["lower", "abs", "coalesce", "greatest", "jsonb_build_array", "md5"];

/// An expression for the model check, and whether it calls anything that needs a reset.
fn expression() -> impl Strategy<Value = (String, bool)> {
    let leaf = prop_oneof![
        Just(("1".to_owned(), false)),
        Just(("$1".to_owned(), false)),
        Just(("t.a".to_owned(), false)),
        Just(("'x'".to_owned(), false)),
        Just(("now()".to_owned(), false)),
        Just(("CURRENT_TIMESTAMP".to_owned(), false)),
        Just(("random()".to_owned(), false)),
        Just(("pg_catalog.lower('A')".to_owned(), false)),
        Just(("set_config('a.b', '1', false)".to_owned(), true)),
        Just(("pg_advisory_lock(1)".to_owned(), true)),
        Just(("nextval('s')".to_owned(), true)),
        Just(("pg_catalog.setval('s', 1)".to_owned(), true)),
        Just(("myschema.lower('A')".to_owned(), true)),
        Just(("unknown_function()".to_owned(), true)),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (prop::sample::select(CLEAN_WRAPPERS), inner.clone())
                .prop_map(|(f, (e, d))| (format!("{f}({e})"), d)),
            inner.clone().prop_map(|(e, d)| (format!("(SELECT {e})"), d)),
            inner.clone().prop_map(|(e, d)| (format!("({e})::text"), d)),
            inner.clone().prop_map(|(e, d)| (format!("ARRAY[{e}]"), d)),
            inner.clone().prop_map(|(e, d)| (format!("EXISTS (SELECT 1 FROM t WHERE t.a = {e})"), d)),
            (inner.clone(), inner.clone()).prop_map(|((a, x), (b, y))| (format!("({a} + {b})"), x || y)),
            (inner.clone(), inner.clone())
                .prop_map(|((a, x), (b, y))| (format!("CASE WHEN {a} IS NULL THEN {b} END"), x || y)),
            (inner.clone(), inner).prop_map(|((a, x), (b, y))| (format!("coalesce({a}, {b})"), x || y)),
        ]
    })
}

/// A statement for the model check, and whether it needs a reset.
fn statement() -> impl Strategy<Value = (String, bool)> {
    let templates = &[
        "SELECT {}",
        "SELECT * FROM t WHERE t.a = {}",
        "SELECT count(*) FROM t GROUP BY t.a HAVING max(t.a) = {}",
        "SELECT * FROM t ORDER BY {} LIMIT 1",
        "WITH c AS (SELECT {} AS v) SELECT v FROM c",
        "WITH c AS (UPDATE t SET a = {} RETURNING a) SELECT * FROM c",
        "INSERT INTO t VALUES (1), ({})",
        "INSERT INTO t SELECT {} ON CONFLICT (a) DO NOTHING",
        "UPDATE t SET a = {} WHERE id = $1",
        "DELETE FROM t WHERE t.a IN (SELECT {})",
        "SELECT * FROM generate_series(1, {}) g",
        "SELECT * FROM t, LATERAL (SELECT {} AS v) l",
        "VALUES ({})",
        "EXPLAIN ANALYZE SELECT {}",
        "SELECT sum(t.a) OVER (ORDER BY {}) FROM t",
    ][..];
    let with_expression =
        (prop::sample::select(templates), expression()).prop_map(|(t, (e, d))| (t.replacen("{}", &e, 1), d));
    let fixed = prop_oneof![
        Just(("SET search_path = x".to_owned(), true)),
        Just(("SET LOCAL search_path = x".to_owned(), false)),
        Just(("PREPARE p AS SELECT 1".to_owned(), true)),
        Just(("LISTEN c".to_owned(), true)),
        Just(("CREATE TEMP TABLE x (a int)".to_owned(), true)),
        Just(("BEGIN".to_owned(), true)),
        Just(("NOTIFY c".to_owned(), false)),
        Just(("SHOW search_path".to_owned(), false)),
    ];
    prop_oneof![4 => with_expression, 1 => fixed]
}

proptest! {
    /// A model check of the walk: a string of statements built from clean and session-changing
    /// pieces needs a reset exactly when a session-changing piece is in it, wherever it is.
    #[test]
    fn needs_a_reset_exactly_when_a_session_changing_piece_is_used(
        statements in prop::collection::vec(statement(), 1..4)
    ) {
        let sql = statements.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join("; ");
        let expected = statements.iter().any(|(_, dirty)| *dirty);
        prop_assert_eq!(needs_reset(&sql), expected, "{}", sql);
    }

    /// Nothing makes the classifier panic, and read-only always implies clean.
    #[test]
    fn any_text_gets_an_answer(sql in "\\PC{0,80}") {
        let c: Classification = classify(&sql);
        prop_assert!(!c.read_only || c.session == SessionEffect::Clean);
    }
}

/// The cost of classifying a point query, with and without the cache:
/// `cargo test -p tenant-router --release --lib statement::tests::cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn cost() {
    use std::time::Instant;
    const SQL: &str = "SELECT id, name FROM users WHERE id = $1";
    const ROUNDS: u32 = 20_000;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(classify(std::hint::black_box(SQL)));
    }
    let uncached = start.elapsed() / ROUNDS;
    let classifier = Classifier::default();
    classifier.classify(SQL);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(classifier.classify(std::hint::black_box(SQL)));
    }
    let cached = start.elapsed() / ROUNDS;
    let parse_start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(pg_query::parse(std::hint::black_box(SQL), 0).is_ok());
    }
    let parse_only = parse_start.elapsed() / ROUNDS;
    println!("classify: {uncached:?} uncached ({parse_only:?} of it pg_query::parse), {cached:?} cached");
}
