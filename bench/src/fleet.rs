//! A fleet of real tenants for the router benchmarks: provisioned by the control plane (role,
//! schema, sample migrations, credentials in the secret store), with users to look up.

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::tenants::{self, TenantRequest};
use futures::StreamExt as _;
use testkit::TestDb;

/// The point query the router benchmarks send: a primary-key lookup.
pub const POINT_QUERY: &str = "SELECT id, email, name, created_at FROM users WHERE id = $1";

/// What a client needs to reach one tenant through the router.
#[derive(Debug, Clone)]
pub struct BenchTenant {
    pub slug: String,
    /// `Host` header: `<slug>.app.localhost`.
    pub host: String,
    /// `Neon-Connection-String` header.
    pub connection_string: String,
    /// The same credentials as a URL to PostgreSQL itself (for the baseline).
    pub database_url: String,
}

/// Provisions `count` tenants named `<prefix>-<n>` on `plan`, `in_flight` at a time, and gives
/// each `users` users (ids `1..=users`), their tables analysed, so that every process plans the
/// point query alike whenever it first prepares it.
///
/// # Panics
/// When provisioning fails.
pub async fn provision_fleet(
    db: &TestDb,
    cp: &ControlPlane,
    prefix: &str,
    plan: &str,
    count: usize,
    in_flight: usize,
    users: i64,
) -> Vec<BenchTenant> {
    let tenants: Vec<BenchTenant> = futures::stream::iter(0..count)
        .map(|i| async move {
            let slug = format!("{prefix}-{i}");
            let tenant = tenants::create(cp, &TenantRequest::new(slug.clone(), plan), "bench")
                .await
                .unwrap_or_else(|e| panic!("{slug}: {e}"));
            provision(cp, tenant.id).await.unwrap_or_else(|e| panic!("{slug}: {e}"));
            bench_tenant(cp, &slug).await
        })
        .buffered(in_flight)
        .collect()
        .await;
    seed_users(db, &tenants, users).await;
    tenants
}

async fn bench_tenant(cp: &ControlPlane, slug: &str) -> BenchTenant {
    let client = cp.catalog.get().await.unwrap_or_else(|e| panic!("{e}"));
    let parsed = tenancy::domain::Slug::parse(slug).unwrap_or_else(|e| panic!("{e}"));
    let tenant = tenancy::catalog::tenant_by_slug(&**client, &parsed)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no tenant {slug}"));
    let secret = tenant.secret_name().unwrap_or_else(|| panic!("{slug} has no secret"));
    let creds = cp
        .secrets
        .get(&secret)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{slug}: secret missing"));
    let host = format!("{slug}.app.localhost");
    BenchTenant {
        slug: slug.to_owned(),
        connection_string: format!(
            "postgresql://{}:{}@{host}/{}",
            creds.username, creds.password, creds.dbname
        ),
        database_url: format!(
            "postgresql://{}:{}@{}:{}/{}",
            creds.username, creds.password, creds.host, creds.port, creds.dbname
        ),
        host,
    }
}

/// Inserts the users of every tenant, as the database owner, a few hundred tenants per batch
/// (in the tenants database, where schema tenants live).
async fn seed_users(db: &TestDb, tenants: &[BenchTenant], users: i64) {
    let client = db.client().await;
    let tenants_db = db.tenants_client().await;
    let slugs: Vec<&str> = tenants.iter().map(|t| t.slug.as_str()).collect();
    let schemas = client
        .query("SELECT schema_name FROM control.tenants WHERE slug = ANY($1) ORDER BY slug", &[&slugs])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let schemas: Vec<String> = schemas.iter().map(|r| r.get(0)).collect();
    assert_eq!(schemas.len(), tenants.len(), "one schema per benchmark tenant");
    for chunk in schemas.chunks(200) {
        let sql: String = chunk
            .iter()
            .map(|schema| {
                format!(
                    "INSERT INTO \"{schema}\".users (email, name) \
                     SELECT 'user' || i || '@example.com', 'User ' || i FROM generate_series(1, {users}) AS i; \
                     ANALYZE \"{schema}\".users;"
                )
            })
            .collect();
        tenants_db.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The body of one point query for user `id`.
pub fn point_query_body(id: i64) -> String {
    serde_json::json!({ "query": POINT_QUERY, "params": [id] }).to_string()
}
