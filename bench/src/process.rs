//! Servers under load as processes of their own (release builds in `target/release`), so their
//! CPU and memory are theirs alone: `tenant-router` on the benchmark's settings, and the
//! no-routing baseline (`sql-baseline`); PgBouncer's is in [`crate::pgbouncer`].

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tenancy::settings::CommonSettings;
use testkit::workspace_root;

/// A server process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// Where it serves `POST /sql`.
    pub addr: SocketAddr,
    /// The router's admin listener (`/metrics`); `None` for the baseline.
    pub admin: Option<SocketAddr>,
    /// Where it serves the PostgreSQL protocol, when it does.
    pub postgres: Option<SocketAddr>,
    /// Files the process reads while it runs (its configuration), removed after it.
    pub(crate) _files: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Resident memory now and at its peak, in MiB (from `/proc/<pid>/status`).
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl ServerProcess {
    /// A counter or gauge of the router's `/metrics` (0 when absent).
    ///
    /// # Panics
    /// When the process has no admin listener or does not answer.
    pub async fn metric(&self, name: &str) -> f64 {
        let admin = self.admin.unwrap_or_else(|| panic!("no admin listener"));
        let text = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// CPU time (user + system) the process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let (user, system) = self.cpu_split();
        user + system
    }

    /// CPU time the process has used so far in its own code (user) and in the kernel's on its
    /// behalf (system: mostly its sockets), in seconds.
    pub fn cpu_split(&self) -> (f64, f64) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at the state, field 3;
        // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) / 100.0, ticks(12) / 100.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1.
///
/// # Panics
/// When no port can be had.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

fn binary(name: &str) -> std::path::PathBuf {
    let path = workspace_root().join("target/release").join(name);
    assert!(
        path.exists(),
        "{} missing: `cargo build --release --bin {name}` first (make bench does)",
        path.display()
    );
    path
}

/// `tenant-router` on `common` (the control plane's settings), with `extra` variables.
///
/// # Panics
/// When it does not become ready within 30 s.
pub async fn start_router(common: &CommonSettings, extra: &[(&str, String)]) -> ServerProcess {
    start_router_process(common, extra, None).await
}

/// [`start_router`] with its PostgreSQL door open, in plaintext, on a free port
/// ([`ServerProcess::postgres`]).
///
/// # Panics
/// When it does not become ready within 30 s.
pub async fn start_router_with_postgres(common: &CommonSettings, extra: &[(&str, String)]) -> ServerProcess {
    start_router_process(common, extra, Some(free_addr())).await
}

async fn start_router_process(
    common: &CommonSettings,
    extra: &[(&str, String)],
    postgres: Option<SocketAddr>,
) -> ServerProcess {
    let addr = free_addr();
    let admin = free_addr();
    let mut command = Command::new(binary("tenant-router"));
    command
        .env_clear()
        .env("DATABASE_URL", common.database_url().unwrap_or_else(|e| panic!("{e}")).expose())
        .env("REDIS_KEY_PREFIX", &common.redis_key_prefix)
        .env("TENANT_BASE_DOMAIN", common.tenant_base_domain.to_string())
        .env("SECRETS_BACKEND", "local")
        .env("SECRETS_PREFIX", common.secrets.secrets_prefix.as_str())
        .env("ROUTER_LISTEN", addr.to_string())
        .env("ROUTER_ADMIN_LISTEN", admin.to_string())
        .env("ROUTER_PG_LISTEN", postgres.map_or_else(|| "off".to_owned(), |a| a.to_string()))
        .env("ROUTER_PG_ALLOW_PLAINTEXT", postgres.is_some().to_string())
        // What a deployment sets (routers share signed routing records); any 32 bytes will do.
        .env("ROUTER_RECORDS_KEY", "benchmark-routing-records-key-0123456789")
        .env("RUST_LOG", "warn");
    if let Some(redis) = &common.redis_url {
        command.env("REDIS_URL", redis.expose());
    }
    if let Some(key) = &common.secrets.secrets_local_key {
        command.env("SECRETS_LOCAL_KEY", key.expose());
    }
    // An experiment's runtime size (tokio reads it), passed through when set.
    if let Ok(threads) = std::env::var("TOKIO_WORKER_THREADS") {
        command.env("TOKIO_WORKER_THREADS", threads);
    }
    for (name, value) in extra {
        command.env(name, value);
    }
    let mut process = spawn(command, addr);
    process.admin = Some(admin);
    process.postgres = postgres;
    wait_ready(&format!("http://{admin}/readyz")).await;
    process
}

/// How the baseline resets sessions: `"0"` never, `"1"` after every request, `"auto"` after
/// statements that can change the session (the router's classifier).
pub type BaselineReset = &'static str;

/// The no-routing baseline: one fixed pool to `database_url`, `pool_size` connections.
///
/// # Panics
/// When it does not answer within 30 s.
pub async fn start_baseline(database_url: &str, pool_size: usize, reset: BaselineReset) -> ServerProcess {
    let mut command = Command::new(binary("sql-baseline"));
    command
        .env_clear()
        .env("BASELINE_DATABASE_URL", database_url)
        .env("BASELINE_POOL_SIZE", pool_size.to_string());
    start_baseline_process(command, reset).await
}

/// The no-routing baseline with a pool of its own per tenant (`host url size` per tenant).
///
/// # Panics
/// When it does not answer within 30 s.
pub async fn start_tenant_baseline(
    tenants: &[(String, String, usize)],
    reset: BaselineReset,
) -> ServerProcess {
    let file = std::env::temp_dir().join(format!("baseline-tenants-{}", std::process::id()));
    let lines: String = tenants.iter().map(|(host, url, size)| format!("{host} {url} {size}\n")).collect();
    std::fs::write(&file, lines).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut command = Command::new(binary("sql-baseline"));
    command.env_clear().env("BASELINE_TENANTS", &file);
    start_baseline_process(command, reset).await
}

async fn start_baseline_process(mut command: Command, reset: BaselineReset) -> ServerProcess {
    let addr = free_addr();
    command.env("BASELINE_LISTEN", addr.to_string()).env("BASELINE_RESET", reset);
    let process = spawn(command, addr);
    wait_ready(&format!("http://{addr}/healthz")).await;
    process
}

pub(crate) fn spawn(mut command: Command, addr: SocketAddr) -> ServerProcess {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    ServerProcess { child, addr, admin: None, postgres: None, _files: None }
}

async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} not ready after 30 s");
}
