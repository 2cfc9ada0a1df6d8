//! A database per test.

use crate::{services, unique_suffix};
use tokio_postgres::NoTls;

/// A fresh database on the shared PostgreSQL, plus unique prefixes for the roles and Redis keys
/// the test creates. Dropped (with every role under its prefix) when the test passes; kept when
/// it panics, so the state can be inspected.
pub struct TestDb {
    pub name: String,
    /// Superuser URL of this database.
    pub url: String,
    /// Prefix for PostgreSQL roles (`TENANT_ROLE_PREFIX`).
    pub role_prefix: String,
    /// Prefix for Redis keys and channels (`REDIS_KEY_PREFIX`).
    pub redis_prefix: String,
    admin_url: String,
}

/// Replaces the database name in a `postgres://…/<db>` URL.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

fn sanitize(label: &str) -> String {
    let cleaned: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    cleaned.chars().take(30).collect()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

async fn one_value(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", tenancy::pg::describe_error(&e)))
        .get(0)
}

impl TestDb {
    /// Creates `test_<label>_<random>`.
    pub async fn create(label: &str) -> Self {
        crate::init_logging();
        let suffix = unique_suffix();
        let name = format!("test_{}_{suffix}", sanitize(label));
        let admin_url = services().database_url.clone();
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Self {
            url: with_database(&admin_url, &name),
            role_prefix: format!("tk{suffix}"),
            redis_prefix: format!("test:{suffix}:"),
            name,
            admin_url,
        }
    }

    /// A superuser connection to this database (the catalog's).
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// The database of the default cluster's schema tenants (created by the control plane).
    pub fn tenants_database(&self) -> String {
        format!("{}_tenants", self.role_prefix)
    }

    /// A superuser connection to the default cluster's tenants database.
    pub async fn tenants_client(&self) -> tokio_postgres::Client {
        connect(&with_database(&self.url, &self.tenants_database())).await
    }

    /// This database's URL with other credentials (e.g. a tenant role's).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        self.database_url_as(&self.name, user, password)
    }

    /// The URL of `database` on the test server with credentials `user` and `password`.
    pub fn database_url_as(&self, database: &str, user: &str, password: &str) -> String {
        let config: tokio_postgres::Config = self.url.parse().unwrap_or_else(|e| panic!("bad test URL: {e}"));
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{user}:{password}@{host}:{port}/{database}")
    }

    /// The single integer a `SELECT count(*) …` (or any one-value query) returns, in the
    /// catalog's database.
    pub async fn count(&self, sql: &str) -> i64 {
        one_value(&self.client().await, sql).await
    }

    /// [`TestDb::count`] in the default cluster's tenants database.
    pub async fn tenants_count(&self, sql: &str) -> i64 {
        one_value(&self.tenants_client().await, sql).await
    }

    /// Roles created under this test's prefix.
    pub async fn roles(&self) -> Vec<String> {
        self.client()
            .await
            .query(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1",
                &[&format!("{}_", self.role_prefix)],
            )
            .await
            .unwrap_or_else(|e| panic!("listing roles: {e}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    async fn drop_everything(admin_url: String, name: String, role_prefix: String) {
        let admin = connect(&admin_url).await;
        if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await
        {
            eprintln!("testkit: could not drop {name}: {e}");
            return;
        }
        // Databases the test created under its prefix (tenants with their own database, the
        // template they are cloned from).
        let databases = admin
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                &[&format!("{role_prefix}_")],
            )
            .await
            .unwrap_or_default();
        for row in databases {
            let database: String = row.get(0);
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")).await;
        }
        let roles = admin
            .query(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
                &[&format!("{role_prefix}_")],
            )
            .await
            .unwrap_or_default();
        for row in roles {
            let role: String = row.get(0);
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\"")).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "testkit: test failed; kept database {} (roles {}_*) for inspection",
                self.name, self.role_prefix
            );
            return;
        }
        let (url, name, prefix) = (self.admin_url.clone(), self.name.clone(), self.role_prefix.clone());
        // Drop runs inside the test's runtime: clean up on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(Self::drop_everything(url, name, prefix)),
                Err(e) => eprintln!("testkit: no runtime for cleanup: {e}"),
            }
        });
        let _ = cleanup.join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u:p@h:1/postgres", "x"), "postgres://u:p@h:1/x");
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
    }
}
