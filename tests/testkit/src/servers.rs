//! Dedicated PostgreSQL and Redis servers for fault-injection tests: each test that stops or
//! restarts a server gets its own, so other tests running in parallel are unaffected.

use crate::{services, unique_suffix, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = &services().pg_bin {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from("/usr/bin"))
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL cluster of a test's own (scram-sha-256, random superuser password, TLS with a
/// test CA's certificate for `localhost`: see [`PgServer::ca_file`]).
pub struct PgServer {
    dir: PathBuf,
    pub port: u16,
    password: String,
    os_user: Option<String>,
    /// Settings given on top of the harness's (`-c name=value` each).
    settings: Vec<String>,
}

/// A PostgreSQL program, run as the OS user PostgreSQL needs when we are root.
fn pg_command(program: &str, os_user: Option<&String>) -> Command {
    let path = pg_bin_dir().join(program);
    match os_user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.arg("-u").arg(user).arg("--").arg(path);
            c
        }
        None => Command::new(path),
    }
}

fn start_cluster(dir: &Path, port: u16, os_user: Option<&String>, settings: &[String]) {
    let mut pg_ctl = pg_command("pg_ctl", os_user);
    pg_ctl
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-t", "30", "-o"])
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {dir} -c fsync=off -c max_connections=200 \
             -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key \
             -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32{extra}",
            dir = dir.display(),
            extra = settings.iter().map(|s| format!(" -c {s}")).collect::<String>(),
        ))
        .arg("start")
        .stdout(Stdio::null());
    run(pg_ctl, "pg_ctl start");
}

/// A test CA (`ca.crt`) and a server certificate it signed for `dns_names` only (`server.crt`,
/// `server.key`), in `dir`. A server started with them for `localhost` and reached as
/// `127.0.0.1` has a certificate that does not match the host name.
pub fn make_certificates(dir: &Path, dns_names: &[&str]) {
    let openssl = |args: &[&str], what: &str| {
        let mut command = Command::new("openssl");
        command.current_dir(dir).args(args).stdout(Stdio::null()).stderr(Stdio::null());
        run(command, what);
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = ["req", "-x509", "-days", "2", "-subj", "/CN=testkit CA", "-keyout", "ca.key", "-out", "ca.crt"];
    openssl(&[&ca[..], &ec[..]].concat(), "openssl: test CA");
    let subject = format!("/CN={}", dns_names.first().copied().unwrap_or("localhost"));
    let csr = ["req", "-subj", &subject, "-keyout", "server.key", "-out", "server.csr"];
    openssl(&[&csr[..], &ec[..]].concat(), "openssl: server key");
    let names: Vec<String> = dns_names.iter().map(|name| format!("DNS:{name}")).collect();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            names.join(",")
        ),
    )
    .unwrap_or_else(|e| panic!("server.ext: {e}"));
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
        "openssl: server certificate",
    );
    // PostgreSQL refuses a key others may read.
    let mut chmod = Command::new("chmod");
    chmod.arg("600").arg(dir.join("server.key"));
    run(chmod, "chmod server.key");
}

impl PgServer {
    /// The CA that signed the server's certificate (for `localhost`; PEM), for
    /// `PG_SSL_ROOT_CERT`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn command(&self, program: &str) -> Command {
        pg_command(program, self.os_user.as_ref())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Creates and starts a new cluster (about a second).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`PgServer::start`] with `settings` (`name=value`) on top of the harness's, e.g.
    /// `wal_level=replica` for a server without logical replication.
    pub async fn start_with(settings: &[&str]) -> Self {
        let settings: Vec<String> = settings.iter().map(|s| (*s).to_owned()).collect();
        tokio::task::spawn_blocking(move || Self::start_blocking(settings))
            .await
            .unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"))
    }

    fn start_blocking(settings: Vec<String>) -> Self {
        let base = workspace_root().join("target/testkit");
        std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
        let dir = base.join(format!("pg-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let os_user = is_root().then(|| services().pg_user.clone().unwrap_or_else(|| "postgres".into()));
        let password = format!("pw{}{}", unique_suffix(), unique_suffix());
        std::fs::write(dir.join("pwfile"), &password).unwrap_or_else(|e| panic!("pwfile: {e}"));
        make_certificates(&dir, &["localhost"]);
        if let Some(user) = &os_user {
            for path in [workspace_root().join("target"), base] {
                let _ = Command::new("chmod").arg("o+x").arg(&path).status();
            }
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("-R").arg(user).arg(&dir);
                    c
                },
                "chown",
            );
        }
        let server = Self { dir, port: free_port(), password, os_user, settings };
        let mut initdb = server.command("initdb");
        initdb
            .arg("-D")
            .arg(server.data())
            .args(["-U", "postgres", "--auth=scram-sha-256", "--no-sync", "-E", "UTF8"])
            .arg(format!("--pwfile={}", server.dir.join("pwfile").display()));
        run(initdb, "initdb");
        start_cluster(&server.dir, server.port, server.os_user.as_ref(), &server.settings);
        server
    }

    /// Superuser URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/{db}", self.password, self.port)
    }

    /// Stops the server (`immediate`: like a crash) and waits for it to be gone.
    pub async fn stop(&self, immediate: bool) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", if immediate { "immediate" } else { "fast" }, "stop"])
            .stdout(Stdio::null());
        tokio::task::spawn_blocking(move || run(pg_ctl, "pg_ctl stop"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts it again on the same port with the same data.
    pub async fn start_again(&self) {
        let (dir, port, os_user, settings) =
            (self.dir.clone(), self.port, self.os_user.clone(), self.settings.clone());
        tokio::task::spawn_blocking(move || start_cluster(&dir, port, os_user.as_ref(), &settings))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A Redis server of a test's own.
pub struct RedisServer {
    pub port: u16,
    /// The password it requires (`requirepass`), if any.
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self { port: free_port(), password: None, child: None };
        server.start_again();
        server
    }

    /// A server that refuses every command until the client authenticates with `password`.
    pub fn start_with_password(password: &str) -> Self {
        let mut server = Self { port: free_port(), password: Some(password.to_owned()), child: None };
        server.start_again();
        server
    }

    /// Its URL (with the password, when it requires one).
    pub fn url(&self) -> String {
        self.url_with_password(self.password.as_deref())
    }

    /// Its URL with `password` (or none), right or wrong.
    pub fn url_with_password(&self, password: Option<&str>) -> String {
        match password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn start_again(&mut self) {
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server (like a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
