//! An HTTP/1.1 load generator: `connections` keep-alive connections, for a fixed time after a
//! warm-up. Closed loop (each connection sends its next request as soon as the previous answer
//! is read: maximum throughput), or paced (a fixed total rate: latency under a given load,
//! measured from when each request was due, so a stall is not hidden by sending less).
//! Every answer's status and latency is recorded (the warm-up's are not).

use axum::body::Body;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One `POST /sql` to send.
#[derive(Debug, Clone)]
pub struct SqlRequest {
    pub host: String,
    pub connection_string: Option<String>,
    pub body: String,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection refused or reset).
    pub transport_errors: u64,
}

impl Report {
    /// Answers per second (any status).
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Answers with this status.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// `200: n, 429: m` …
    pub fn status_line(&self) -> String {
        let mut parts: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        if self.transport_errors > 0 {
            parts.push(format!("no answer: {}", self.transport_errors));
        }
        parts.join(", ")
    }

    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
    }
}

/// How hard to push.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Each connection sends as soon as it has its answer.
    Closed,
    /// This many requests per second in total, spread over the connections.
    Paced(f64),
}

/// Sends `next(i)` (i = 0, 1, 2, … across all connections) to `addr` for `warmup + duration`.
///
/// # Panics
/// When a request cannot be built.
pub async fn run<F>(
    addr: SocketAddr,
    connections: usize,
    load: Load,
    warmup: Duration,
    duration: Duration,
    next: F,
) -> Report
where
    F: Fn(u64) -> SqlRequest + Send + Sync + 'static,
{
    let next = Arc::new(next);
    let sequence = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let next = next.clone();
            let sequence = sequence.clone();
            let schedule = match load {
                Load::Closed => None,
                Load::Paced(rate) => {
                    let interval = Duration::from_secs_f64(connections as f64 / rate);
                    // Spread the connections' first requests over one interval.
                    Some((start + interval.mul_f64(i as f64 / connections as f64), interval))
                }
            };
            tokio::spawn(
                async move { worker(addr, &*next, &sequence, schedule, measure_from, stop_at).await },
            )
        })
        .collect();
    let mut report = Report::default();
    for worker in workers {
        report.merge(worker.await.unwrap_or_else(|e| panic!("load worker: {e}")));
    }
    report.elapsed = duration;
    report
}

async fn worker(
    addr: SocketAddr,
    next: &(dyn Fn(u64) -> SqlRequest + Send + Sync),
    sequence: &AtomicU64,
    mut schedule: Option<(Instant, Duration)>,
    measure_from: Instant,
    stop_at: Instant,
) -> Report {
    let mut report = Report::default();
    let mut sender = None;
    while Instant::now() < stop_at {
        // Paced: wait until the next request is due. When the previous answer came too late
        // to send this one on time, its latency counts from when it was due (the wait for the
        // server is part of it); otherwise from when it is sent (the timer's own lateness, up
        // to a millisecond, is not).
        let due = match &mut schedule {
            Some((due, interval)) => {
                let this = *due;
                *due += *interval;
                if Instant::now() > this {
                    Some(this)
                } else {
                    tokio::time::sleep_until(this.into()).await;
                    None
                }
            }
            None => None,
        };
        let mut current = match sender.take() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => s,
                Err(_) => {
                    report.transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = next(sequence.fetch_add(1, Ordering::Relaxed));
        let mut builder = hyper::Request::post("/sql")
            .header("host", &request.host)
            .header("content-type", "application/json");
        if let Some(cs) = &request.connection_string {
            builder = builder.header("neon-connection-string", cs);
        }
        let http_request = builder.body(Body::from(request.body)).unwrap_or_else(|e| panic!("{e}"));
        let sent = due.unwrap_or_else(Instant::now);
        let answered = async {
            let response = current.send_request(http_request).await?;
            let status = response.status().as_u16();
            axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
        }
        .await;
        let latency = sent.elapsed();
        match answered {
            Ok(status) => {
                if sent >= measure_from {
                    report.latencies.push(latency);
                    *report.statuses.entry(status).or_default() += 1;
                }
                sender = Some(current);
            }
            Err(_) => report.transport_errors += 1,
        }
    }
    report
}

type Sender = hyper::client::conn::http1::SendRequest<Body>;

async fn connect(addr: SocketAddr) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
