//! PgBouncer as a process of our own, the reference the router's PostgreSQL door is measured
//! against: the Debian package's `pgbouncer` (`scripts/bench.sh` installs it), on a free port,
//! with a configuration generated in a temporary directory: transaction pooling, SCRAM-SHA-256
//! for clients, one pool per tenant (an alias named after the tenant's slug, logged in to
//! PostgreSQL as the tenant's role).

use crate::process::{free_addr, spawn, ServerProcess};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One `[databases]` entry: clients connect to database `alias` and are served on a pool of
/// `pool_size` server connections to `dbname` at `host:port`, as `user` with `password`.
#[derive(Debug, Clone)]
pub struct PgBouncerPool {
    pub alias: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: String,
    pub pool_size: usize,
}

/// The installed `pgbouncer`.
///
/// # Panics
/// When it is not installed (`make bench` installs it).
pub fn executable() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("pgbouncer is not installed: `make bench` installs it (apt-get install pgbouncer)")
        })
}

/// `pgbouncer --version`'s first line and its (major, minor) version, e.g. `("PgBouncer 1.18.0", (1, 18))`.
///
/// # Panics
/// When it cannot be run or says something else.
pub fn version() -> (String, (u32, u32)) {
    let out =
        Command::new(executable()).arg("--version").output().unwrap_or_else(|e| panic!("pgbouncer: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_default().trim().to_owned();
    let number = line.rsplit(' ').next().unwrap_or_default();
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(version.0 >= 1, "unexpected `pgbouncer --version`: {line}");
    (line, version)
}

/// Whether this PgBouncer keeps clients' named prepared statements in transaction pooling
/// (`max_prepared_statements`, from 1.21 on).
pub fn carries_prepared_statements() -> bool {
    version().1 >= (1, 21)
}

/// PgBouncer serving `pools`, up to `max_client_conn` clients. Its [`ServerProcess::addr`] is
/// where clients connect.
///
/// # Panics
/// When it cannot be configured or does not listen within 30 s.
pub async fn start(pools: &[PgBouncerPool], max_client_conn: usize) -> ServerProcess {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let addr = free_addr();
    let auth_file = dir.path().join("users.txt");
    let config = dir.path().join("pgbouncer.ini");
    let log = dir.path().join("pgbouncer.log");
    std::fs::write(&auth_file, auth_file_text(pools)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&config, config_text(pools, addr, max_client_conn, &auth_file, &log))
        .unwrap_or_else(|e| panic!("{e}"));
    // PgBouncer refuses to run as root; started as root it switches to the `user` of its
    // configuration, which must then be able to read the files.
    if running_as_root() {
        let (uid, gid) = unix_user("postgres");
        for path in [dir.path(), auth_file.as_path(), config.as_path()] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let mut command = Command::new(executable());
    // Quiet: its log goes to the file only.
    command.env_clear().arg("--quiet").arg(&config);
    let mut process = spawn(command, addr);
    process._files = Some(dir);
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pgbouncer not listening after 30 s: {}", std::fs::read_to_string(&log).unwrap_or_default());
}

/// `"user" "password"` lines (PgBouncer accepts plaintext passwords and uses them for SCRAM with
/// both the client and the server).
fn auth_file_text(pools: &[PgBouncerPool]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut users: Vec<(&str, &str)> = pools.iter().map(|p| (p.user.as_str(), p.password.as_str())).collect();
    users.sort_unstable();
    users.dedup();
    users.iter().map(|(user, password)| format!("{} {}\n", quote(user), quote(password))).collect()
}

fn config_text(
    pools: &[PgBouncerPool],
    addr: SocketAddr,
    max_client_conn: usize,
    auth_file: &Path,
    log: &Path,
) -> String {
    let mut text = String::from("[databases]\n");
    for p in pools {
        let _ = writeln!(
            text,
            "{} = host={} port={} dbname={} user={} pool_size={}",
            p.alias, p.host, p.port, p.dbname, p.user, p.pool_size
        );
    }
    let _ = write!(
        text,
        "\n[pgbouncer]\n\
         listen_addr = {ip}\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {auth}\n\
         pool_mode = transaction\n\
         max_client_conn = {max_client_conn}\n\
         default_pool_size = 1\n\
         server_tls_sslmode = disable\n\
         ignore_startup_parameters = extra_float_digits\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         logfile = {log}\n",
        ip = addr.ip(),
        port = addr.port(),
        auth = auth_file.display(),
        log = log.display(),
    );
    if carries_prepared_statements() {
        text.push_str("max_prepared_statements = 200\n");
    }
    if running_as_root() {
        text.push_str("user = postgres\n");
    }
    text
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

/// The uid and gid of `name` (from /etc/passwd).
fn unix_user(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .unwrap_or_else(|| panic!("no user {name} to run pgbouncer as"))
}
