//! Helpers of the end-to-end tests: start `tenantctl serve` and `tenant-router` in-process on
//! port 0 against a test database, and talk to them over HTTP ([`pg_door`]: over the PostgreSQL
//! protocol).

pub mod pg_door;

use control_plane::control_plane::ControlPlane;
use control_plane::settings::{ProvisioningSettings, ServeSettings};
use std::sync::Arc;
use std::time::Duration;
use tenancy::catalog::TenantRecord;
use tenancy::secrets::DbCredentials;
use tenancy::settings::CommonSettings;
use testkit::{workspace_root, TestDb};
use tokio_util::sync::CancellationToken;

/// `ROUTER_RECORDS_KEY` of the tests' routers.
pub const RECORDS_KEY: &str = "routing-records-key-of-the-e2e-tests";

/// The webhook signing secret the test control planes use.
pub const WEBHOOK_SECRET: &str = "whsec_e2e_test_secret";

pub fn provisioning_settings(db: &TestDb) -> ProvisioningSettings {
    ProvisioningSettings::new(
        &db.role_prefix,
        workspace_root().join("migrations"),
        workspace_root().join("tenant-templates"),
    )
}

/// A test's own catalog database, the settings that point at it, and a control plane on them
/// (in-process: no server, no workers).
pub struct Catalog {
    pub db: TestDb,
    pub common: CommonSettings,
    pub cp: Arc<ControlPlane>,
}

impl Catalog {
    pub async fn create() -> Self {
        let db = TestDb::create().await;
        let common = testkit::common_settings(&db, testkit::SecretsFor::Local);
        let cp = ControlPlane::start(&common, &provisioning_settings(&db))
            .await
            .unwrap_or_else(|e| panic!("control plane: {e}"));
        Self { db, common, cp }
    }
}

/// A tenant on `plan`, provisioned, with the credentials its secret holds.
pub async fn provisioned(cp: &ControlPlane, slug: &str, plan: &str) -> (TenantRecord, DbCredentials) {
    let request = control_plane::tenants::TenantRequest::new(slug, plan);
    let requested = control_plane::tenants::create(cp, &request, "test")
        .await
        .unwrap_or_else(|e| panic!("create {slug}: {e}"));
    let tenant = control_plane::jobs::provision::provision(cp, requested.id)
        .await
        .unwrap_or_else(|e| panic!("provision {slug}: {e}"));
    let name = tenant.secret_name().unwrap_or_else(|| panic!("{slug} has no secret"));
    let secret = cp.secrets.get(&name).await.ok().flatten().unwrap_or_else(|| panic!("{slug}'s secret"));
    (tenant, secret)
}

/// A control plane (API, webhook, workers) on a free port.
pub struct ControlPlaneUnderTest {
    pub cp: Arc<ControlPlane>,
    pub server: control_plane::http::RunningServer,
    pub url: String,
}

/// Tenant `slug`'s status, as the catalog of `db` records it.
pub async fn tenant_status(db: &TestDb, slug: &str) -> String {
    db.client()
        .await
        .query_one("SELECT status FROM control.tenants WHERE slug = $1", &[&slug])
        .await
        .unwrap_or_else(|e| panic!("status of {slug}: {e}"))
        .get(0)
}

/// A control plane on `db` whose migrations directory is a copy of the project's (V1), with
/// `tenants` tenants (`<prefix>-<n>`) provisioned at V1; a test then adds its V2 to the
/// directory (the returned one, kept as long as the control plane is used).
pub async fn fleet_at_v1(
    db: &TestDb,
    common: &CommonSettings,
    prefix: &str,
    tenants: usize,
) -> (Arc<ControlPlane>, tempfile::TempDir) {
    let migrations = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(workspace_root().join("migrations/V1__init.sql"), migrations.path().join("V1__init.sql"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut settings = provisioning_settings(db);
    settings.migrations_dir = migrations.path().to_owned();
    let cp = ControlPlane::start(common, &settings).await.unwrap_or_else(|e| panic!("control plane: {e}"));
    for i in 0..tenants {
        provisioned(&cp, &format!("{prefix}-{i:02}"), "starter").await;
    }
    (cp, migrations)
}

/// A tenant on `plan`, created here and provisioned by `control`'s workers (a server's tenant
/// must not also be provisioned in the test's process: both would run its job at once).
pub async fn provisioned_by(control: &ControlPlaneUnderTest, slug: &str, plan: &str) {
    let request = control_plane::tenants::TenantRequest::new(slug, plan);
    control_plane::tenants::create(&control.cp, &request, "test")
        .await
        .unwrap_or_else(|e| panic!("create {slug}: {e}"));
    wait_until_active(&control.cp, slug, Duration::from_secs(30)).await;
}

pub async fn spawn_control_plane(db: &TestDb, common: &CommonSettings) -> ControlPlaneUnderTest {
    spawn_control_plane_with(db, common, &control_plane_settings()).await
}

/// `tenantctl serve` settings for tests: a free port, the test webhook secret.
pub fn control_plane_settings() -> ServeSettings {
    ServeSettings {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        admin_listen: None,
        http: tenancy::listener::HttpSettings::default(),
        billing_webhook_secret: Some(WEBHOOK_SECRET.into()),
        worker_concurrency: 2,
        routers: Vec::new(),
        shutdown_grace: Duration::from_secs(10),
    }
}

/// A control plane with the given settings.
pub async fn spawn_control_plane_with(
    db: &TestDb,
    common: &CommonSettings,
    settings: &ServeSettings,
) -> ControlPlaneUnderTest {
    let cp = ControlPlane::start(common, &provisioning_settings(db))
        .await
        .unwrap_or_else(|e| panic!("control plane did not start: {e}"));
    let server = control_plane::http::spawn(cp.clone(), settings, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("control plane did not listen: {e}"));
    let url = format!("http://{}", server.addr);
    ControlPlaneUnderTest { cp, server, url }
}

/// The Node test clients' directory (`tests/clients/node`), once `npm ci` has installed the
/// package `needs` there (scripts/test.sh does).
pub fn node_clients(needs: &str) -> std::path::PathBuf {
    let dir = workspace_root().join("tests/clients/node");
    assert!(
        dir.join("node_modules").join(needs).is_dir(),
        "the Node test clients are not installed ({needs} is missing): run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Router settings for tests: free ports, short timeouts.
pub fn router_settings(common: &CommonSettings) -> tenant_router::settings::RouterSettings {
    tenant_router::settings::RouterSettings {
        common: common.clone(),
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        admin_listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        postgres: tenant_router::settings::PostgresSettings {
            pg_listen: tenant_router::settings::ListenAddress(Some(
                "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            )),
            tls_cert_file: None,
            tls_key_file: None,
            tls_cert: None,
            tls_key: None,
            pg_host: None,
            allow_plaintext: true,
            idle_transaction_timeout: Duration::from_secs(60),
            max_clients: 1000,
        },
        http: tenancy::listener::HttpSettings::default(),
        cache_ttl: Duration::from_secs(30),
        negative_cache_ttl: Duration::from_millis(200),
        cache_capacity: 10_000,
        shared_cache_ttl: Duration::from_secs(600),
        records_key: Some(RECORDS_KEY.into()),
        pool_idle_timeout: Duration::from_secs(60),
        checkout_timeout: Duration::from_secs(2),
        max_connections: 100,
        tenant_max_connections: 20,
        reclaim_idle_after: Duration::from_secs(1),
        max_connects_per_second: 500,
        session_reset: tenant_router::session::ResetPolicy::Auto,
        max_body_bytes: 1024 * 1024,
        max_response_bytes: 1024 * 1024,
        upstream: None,
        upstream_timeout: Duration::from_secs(2),
        identity: tenant_router::identity::IdentitySettings::default(),
        auth_failures_per_minute: 30,
        trusted_proxy_hops: 0,
        unknown_host_lookups_per_second: 50,
        access_log_sample: 1.0,
        shutdown_grace: Duration::from_secs(10),
    }
}

/// A router on free ports.
pub async fn spawn_router(common: &CommonSettings) -> tenant_router::http::RunningRouter {
    spawn_router_with(&router_settings(common)).await
}

/// A router with the given settings.
pub async fn spawn_router_with(
    settings: &tenant_router::settings::RouterSettings,
) -> tenant_router::http::RunningRouter {
    tenant_router::http::spawn(settings, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("router did not start: {e}"))
}

/// Talks to the router's `/sql` as one tenant: its host and its connection string.
pub struct TenantSql {
    url: String,
    pub host: String,
    pub connection_string: String,
    http: reqwest::Client,
}

impl TenantSql {
    pub fn new(router: &tenant_router::http::RunningRouter, host: &str, connection_string: &str) -> Self {
        Self::new_at(router.addr, host, connection_string)
    }

    /// [`TenantSql::new`] for a router at `addr`.
    pub fn new_at(addr: std::net::SocketAddr, host: &str, connection_string: &str) -> Self {
        Self {
            url: format!("http://{addr}/sql"),
            host: host.to_owned(),
            connection_string: connection_string.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The router's address.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://").trim_end_matches("/sql")
    }

    /// A request with this tenant's headers, to add more headers or a raw body to.
    pub fn request(&self) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .header("host", &self.host)
            .header("neon-connection-string", &self.connection_string)
    }

    /// Posts `body`; returns the status and the JSON answer.
    pub async fn post(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response =
            self.request().json(&body).send().await.unwrap_or_else(|e| panic!("router unreachable: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Runs `query` (with `params`), expecting success; returns its rows.
    pub async fn rows(&self, query: &str, params: serde_json::Value) -> serde_json::Value {
        let (status, body) = self.post(serde_json::json!({ "query": query, "params": params })).await;
        assert_eq!(status, 200, "{query}: {body}");
        body["rows"].clone()
    }
}

/// The connection string of a tenant, built from its secret (like `tenantctl tenants
/// connection-string`).
pub async fn connection_string(cp: &ControlPlane, slug: &str) -> String {
    let client = cp.catalog.get().await.unwrap_or_else(|e| panic!("{e}"));
    let tenant = tenancy::catalog::tenant_by_slug(
        &**client,
        &tenancy::domain::Slug::parse(slug).unwrap_or_else(|e| panic!("{e}")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|| panic!("no tenant {slug}"));
    let secret = tenant.secret_name().unwrap_or_else(|| panic!("{slug} has no secret"));
    let creds = cp
        .secrets
        .get(&secret)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("secret missing"));
    format!("postgresql://{}:{}@{slug}.app.localhost/{}", creds.username, creds.password, creds.dbname)
}

/// Polls until the tenant is active (or fails the test after `timeout`).
pub async fn wait_until_active(
    cp: &ControlPlane,
    slug: &str,
    timeout: Duration,
) -> tenancy::catalog::TenantRecord {
    let slug = tenancy::domain::Slug::parse(slug).unwrap_or_else(|e| panic!("{e}"));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let client = cp.catalog.get().await.unwrap_or_else(|e| panic!("{e}"));
        if let Some(t) =
            tenancy::catalog::tenant_by_slug(&**client, &slug).await.unwrap_or_else(|e| panic!("{e}"))
        {
            match t.status {
                tenancy::domain::TenantStatus::Active => return t,
                tenancy::domain::TenantStatus::Failed => {
                    panic!("tenant {slug} failed: {:?}", t.last_error)
                }
                _ => {}
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "tenant {slug} not active after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `tenantctl` arguments that point a command at `db` with `common`'s settings.
pub fn catalog_flags(db: &TestDb, common: &CommonSettings) -> Vec<String> {
    let root = workspace_root();
    [
        ("--database-url", db.url.clone()),
        ("--redis-url", common.redis_url.as_ref().map(|u| u.expose().to_owned()).unwrap_or_default()),
        ("--redis-key-prefix", common.redis_key_prefix.clone()),
        ("--role-prefix", db.role_prefix.clone()),
        ("--migrations-dir", root.join("migrations").display().to_string()),
        ("--templates-dir", root.join("tenant-templates").display().to_string()),
        ("--secrets-backend", "local".into()),
        ("--secrets-prefix", common.secrets.secrets_prefix.as_str().into()),
        (
            "--secrets-local-key",
            common.secrets.secrets_local_key.as_ref().map(|k| k.expose().to_owned()).unwrap_or_default(),
        ),
    ]
    .into_iter()
    // Without a key (a test of what happens then), no flag rather than an empty one.
    .filter(|(flag, value)| *flag != "--secrets-local-key" || !value.is_empty())
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

/// Runs the `tenantctl` binary `program` (a test's `env!("CARGO_BIN_EXE_tenantctl-under-test")`)
/// with `args`, `--json` and the flags of [`catalog_flags`]; its exit code and the (last) JSON
/// document it printed.
pub async fn tenantctl_json(
    program: &str,
    args: &[&str],
    db: &TestDb,
    common: &CommonSettings,
) -> (i32, serde_json::Value) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .arg("--json")
        .args(catalog_flags(db, common))
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap_or_else(|e| panic!("tenantctl: {e}"));
    // The last document (`--watch` prints one per view).
    let parsed = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<serde_json::Value>()
        .last()
        .and_then(Result::ok)
        .unwrap_or_else(|| {
            panic!(
                "tenantctl {args:?} printed no JSON: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (output.status.code().unwrap_or(-1), parsed)
}

/// `tenant-router` as a process of its own (`program`: a test's
/// `env!("CARGO_BIN_EXE_tenant-router-under-test")`), on `common`'s settings and `env`, on free
/// ports, serving PostgreSQL clients in plaintext too; its stderr kept for [`Self::exit`] (keep
/// it quiet: a process that fills the pipe before exiting blocks).
/// Killed if still running when dropped.
pub struct RouterProcess {
    child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub pg_addr: std::net::SocketAddr,
}

/// How long a router process may take to start or stop.
const PROCESS_HANG: Duration = Duration::from_secs(90);

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl RouterProcess {
    pub async fn start(program: &str, common: &CommonSettings, env: &[(&str, &str)]) -> Self {
        let (addr, admin, pg_addr) = (free_addr(), free_addr(), free_addr());
        let secret =
            |s: Option<&tenancy::secret::Secret>| s.map(|s| s.expose().to_owned()).unwrap_or_default();
        let mut command = tokio::process::Command::new(program);
        command
            .env_clear()
            .env("DATABASE_URL", secret(common.database_url.as_ref()))
            .env("REDIS_URL", secret(common.redis_url.as_ref()))
            .env("REDIS_KEY_PREFIX", &common.redis_key_prefix)
            .env("TENANT_BASE_DOMAIN", common.tenant_base_domain.to_string())
            .env("SECRETS_BACKEND", "local")
            .env("SECRETS_PREFIX", common.secrets.secrets_prefix.as_str())
            .env("SECRETS_LOCAL_KEY", secret(common.secrets.secrets_local_key.as_ref()))
            .env("ROUTER_RECORDS_KEY", RECORDS_KEY)
            .env("ROUTER_LISTEN", addr.to_string())
            .env("ROUTER_ADMIN_LISTEN", admin.to_string())
            .env("ROUTER_PG_LISTEN", pg_addr.to_string())
            .env("ROUTER_PG_ALLOW_PLAINTEXT", "true")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().unwrap_or_else(|e| panic!("{program}: {e}"));
        let http = reqwest::Client::new();
        let started = std::time::Instant::now();
        loop {
            if let Ok(response) = http.get(format!("http://{admin}/readyz")).send().await {
                if response.status().is_success() {
                    break;
                }
            }
            assert!(started.elapsed() < PROCESS_HANG, "the router process never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, addr, admin, pg_addr }
    }

    /// Sends the process SIGTERM, as an orchestrator stopping it does.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the router process is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the process to exit (a failed test if it does not): its exit status and what
    /// it wrote to stderr.
    pub async fn exit(self) -> (std::process::ExitStatus, String) {
        let output = tokio::time::timeout(PROCESS_HANG, self.child.wait_with_output()).await;
        let output = output.expect("the router process did not exit").unwrap_or_else(|e| panic!("{e}"));
        (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The harness's Python (`TENANCY_PYTHON`, with the packages of
/// `tests/clients/python/requirements.txt`).
pub fn python() -> std::path::PathBuf {
    std::env::var_os("TENANCY_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/venv/bin/python"))
}

/// Runs `tenantctl` in this process with `args` and the flags of [`catalog_flags`]; returns its
/// exit code.
pub async fn tenantctl(args: &[&str], db: &TestDb, common: &CommonSettings) -> std::process::ExitCode {
    use clap::Parser as _;
    let argv = std::iter::once("tenantctl".to_owned())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .chain(catalog_flags(db, common));
    let cli = control_plane::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
    // Boxed: a command's future is large (every command's steps inline).
    Box::pin(control_plane::commands::run(cli)).await
}
