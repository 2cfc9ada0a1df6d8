use crate::{admin, database_exists, one_at_a_time};
use testkit::TestDb;

async fn comment_of(database: &str) -> String {
    admin()
        .await
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_database_is_named_after_the_test() {
    let _serial = one_at_a_time().await;
    let db = TestDb::create().await;
    let expected = "test_naming__the_database_is_named_after_the_test_";
    assert!(db.name.starts_with(expected), "{}", db.name);
    let key = &db.name[expected.len()..];
    assert!(key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{}", db.name);
    assert_eq!(db.role_prefix, format!("tk{key}"));
    assert!(database_exists(&db.name).await);
    let comment = comment_of(&db.name).await;
    assert!(comment.contains(r#""test":"naming::the_database_is_named_after_the_test""#), "{comment}");
    assert!(comment.contains(&format!(r#""pid":{}"#, std::process::id())), "{comment}");
}

#[tokio::test]
async fn a_test_name_too_long_for_postgresql_is_cut_to_its_limit() {
    let _serial = one_at_a_time().await;
    let db = TestDb::create().await;
    assert_eq!(db.name.len(), 63, "{}", db.name);
    assert!(db.name.starts_with("test_a_test_name_too_long_for_postgresql_is_cut_to_its_"), "{}", db.name);
    // PostgreSQL would cut a longer name silently: the name is the database's, as given.
    assert!(database_exists(&db.name).await);
    let comment = comment_of(&db.name).await;
    assert!(
        comment.contains(r#""test":"naming::a_test_name_too_long_for_postgresql_is_cut_to_its_limit""#),
        "the whole path is in the comment: {comment}"
    );
}
