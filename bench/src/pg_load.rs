//! A PostgreSQL-protocol load generator (tokio-postgres): one task per client connection, each
//! sending `pgbench -S`'s point select (`SELECT abalance FROM accounts WHERE aid = $1`, `aid`
//! uniformly random) as soon as it has the previous answer, for a fixed time after a warm-up;
//! in one of three protocols. Every answer's latency is recorded (the warm-up's are not); while
//! it runs, the tenant roles' server connections are counted in `pg_stat_activity`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls};

/// `pgbench -S`'s statement.
pub const POINT_SELECT: &str = "SELECT abalance FROM accounts WHERE aid = $1";

/// How each client sends the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A `Query` message with the value in the text (`pgbench -M simple`).
    Simple,
    /// `Parse`/`Bind`/`Execute`/`Sync` of the unnamed statement each time, one round trip
    /// (`pgbench -M extended`).
    Extended,
    /// A named statement prepared once per client connection, then only `Bind`/`Execute`/`Sync`
    /// (`pgbench -M prepared`).
    Prepared,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Extended => "extended",
            Self::Prepared => "prepared",
        }
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct PgReport {
    pub elapsed: Duration,
    /// The measured answers' latencies.
    pub latencies: Vec<Duration>,
    /// Answers in the warm-up and the measured time together.
    pub total: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Most server connections of the tenant roles seen at once in `pg_stat_activity`.
    pub peak_server_connections: i64,
}

impl PgReport {
    /// Measured answers per second.
    pub fn tps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Where the tenant roles' server connections are counted, and which roles.
#[derive(Clone)]
pub struct ServerWatch {
    pub admin_url: String,
    pub roles: Arc<Vec<String>>,
}

impl ServerWatch {
    async fn client(&self) -> Client {
        connect(&self.admin_url.parse::<Config>().unwrap_or_else(|e| panic!("{e}"))).await
    }

    async fn count(&self, client: &Client) -> i64 {
        client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1)", &[&*self.roles])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get(0)
    }

    /// The tenant roles' server connections now.
    ///
    /// # Panics
    /// When PostgreSQL cannot be asked.
    pub async fn count_now(&self) -> i64 {
        self.count(&self.client().await).await
    }

    /// Waits until the tenant roles hold no server connection (those of a process just stopped
    /// take a moment to end).
    ///
    /// # Panics
    /// When some are still there after 30 s.
    pub async fn wait_for_none(&self) {
        let client = self.client().await;
        for _ in 0..600 {
            if self.count(&client).await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tenant roles still hold server connections after 30 s");
    }
}

/// Loads `clients` (opened with [`open_all`]) with `protocol` for `warmup + duration`, drawing
/// `aid` from `1..=rows`.
///
/// # Panics
/// When a client cannot prepare.
pub async fn run(
    clients: Vec<Client>,
    protocol: Protocol,
    rows: i32,
    warmup: Duration,
    duration: Duration,
    watch: &ServerWatch,
) -> PgReport {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let total = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let total = total.clone();
            tokio::spawn(async move {
                worker(client, protocol, rows, i as u64, measure_from, stop_at, &total).await
            })
        })
        .collect();
    let sampler = {
        let watch = watch.clone();
        tokio::spawn(async move {
            let client = watch.client().await;
            let mut peak = 0;
            while Instant::now() < stop_at {
                peak = peak.max(watch.count(&client).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let mut report = PgReport::default();
    for worker in workers {
        let (latencies, errors, first_error) = worker.await.unwrap_or_else(|e| panic!("load worker: {e}"));
        report.latencies.extend(latencies);
        report.errors += errors;
        report.first_error = report.first_error.or(first_error);
    }
    report.peak_server_connections = sampler.await.unwrap_or_else(|e| panic!("{e}"));
    report.total = total.load(Ordering::Relaxed);
    report.elapsed = duration;
    report
}

/// Opens a client connection to each of `configs`, `in_flight` at a time, in order.
///
/// # Panics
/// When one cannot connect.
pub async fn open_all(configs: &[Config], in_flight: usize) -> Vec<Client> {
    use futures::StreamExt as _;
    futures::stream::iter(configs.iter().cloned())
        .map(|config| async move { connect(&config).await })
        .buffered(in_flight)
        .collect()
        .await
}

/// A client connection to `config`, in plaintext (TLS is not what is measured).
///
/// # Panics
/// When it cannot connect.
pub async fn connect(config: &Config) -> Client {
    let mut config = config.clone();
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|e| panic!("connect: {e}"));
    tokio::spawn(connection);
    client
}

async fn worker(
    client: Client,
    protocol: Protocol,
    rows: i32,
    seed: u64,
    measure_from: Instant,
    stop_at: Instant,
    total: &AtomicU64,
) -> (Vec<Duration>, u64, Option<String>) {
    let prepared = match protocol {
        Protocol::Prepared => {
            Some(client.prepare(POINT_SELECT).await.unwrap_or_else(|e| panic!("prepare: {e}")))
        }
        Protocol::Simple | Protocol::Extended => None,
    };
    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    // A small xorshift per client: cheap, and the same sequence for every target.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while Instant::now() < stop_at {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let aid = (state % rows as u64) as i32 + 1;
        let sent = Instant::now();
        let answered = match (&prepared, protocol) {
            (Some(statement), _) => client.query(statement, &[&aid]).await.map(|_| ()),
            (None, Protocol::Extended) => {
                client.query_typed(POINT_SELECT, &[(&aid, Type::INT4)]).await.map(|_| ())
            }
            (None, _) => client
                .simple_query(&format!("SELECT abalance FROM accounts WHERE aid = {aid}"))
                .await
                .map(|_| ()),
        };
        match answered {
            Ok(()) => {
                total.fetch_add(1, Ordering::Relaxed);
                if sent >= measure_from {
                    latencies.push(sent.elapsed());
                }
            }
            Err(err) => {
                errors += 1;
                first_error.get_or_insert_with(|| err.to_string());
                if client.is_closed() {
                    break;
                }
            }
        }
    }
    (latencies, errors, first_error)
}
