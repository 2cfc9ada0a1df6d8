//! `tenantctl routers pools` and `tenantctl routers stats`: every router's `GET /pools` or
//! `GET /stats` (its admin listener), asked at once, shown as one table (a row per pool per
//! router) or as JSON. A router that does not answer is reported on its own; the others are
//! still shown, and the exit code says that one failed.

use super::{exit_code, parse_slug, CliError};
use crate::cli::RouterAdminArgs;
use crate::output;
use crate::routers::Answer;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::process::ExitCode;
use tenancy::error::ErrorKind;

/// `GET /pools` as the table reads it.
#[derive(Debug, Deserialize)]
struct PoolsAnswer {
    budget: Budget,
    pools: Vec<PoolNow>,
}

#[derive(Debug, Deserialize)]
struct Budget {
    max_connections: u64,
    connections: u64,
    server_active: u64,
    server_idle: u64,
    server_opening: u64,
    server_closing: u64,
    clients_waiting: u64,
    pools: u64,
}

/// Which pool a row is about.
#[derive(Debug, Deserialize)]
struct PoolName {
    tenant: String,
    access: String,
    door: String,
    generation: i64,
    age_seconds: u64,
}

impl PoolName {
    fn cells(&self, router: &str) -> Vec<String> {
        vec![router.to_owned(), self.tenant.clone(), self.access.clone(), self.door.clone()]
    }
}

#[derive(Debug, Deserialize)]
struct PoolNow {
    #[serde(flatten)]
    name: PoolName,
    pool_size: u64,
    server_active: u64,
    server_idle: u64,
    server_opening: u64,
    clients_waiting: u64,
    max_wait_ms: u64,
}

/// `GET /stats` as the table reads it.
#[derive(Debug, Deserialize)]
struct StatsAnswer {
    pools: Vec<PoolStats>,
}

#[derive(Debug, Deserialize)]
struct PoolStats {
    #[serde(flatten)]
    name: PoolName,
    checkouts: u64,
    checkout_wait_us: u64,
    checkouts_timed_out: u64,
    transactions: Option<u64>,
    connections_opened: u64,
    connections_closed: u64,
    connections_expired: u64,
    connections_reclaimed: u64,
}

const BUDGET_HEADERS: &[&str] =
    &["router", "max", "connections", "active", "idle", "opening", "closing", "waiting", "pools"];
const POOL_HEADERS: &[&str] = &[
    "router",
    "tenant",
    "access",
    "door",
    "size",
    "active",
    "idle",
    "opening",
    "waiting",
    "maxwait_ms",
    "gen",
    "age_s",
];
const STATS_HEADERS: &[&str] = &[
    "router",
    "tenant",
    "access",
    "door",
    "checkouts",
    "wait_ms",
    "timeouts",
    "xacts",
    "opened",
    "closed",
    "expired",
    "reclaimed",
    "gen",
    "age_s",
];

/// `tenantctl routers pools`.
pub(super) async fn pools(args: RouterAdminArgs, json: bool) -> Result<ExitCode, CliError> {
    view(&args, "pools", json, show_pools).await
}

/// `tenantctl routers stats`.
pub(super) async fn stats(args: RouterAdminArgs, json: bool) -> Result<ExitCode, CliError> {
    view(&args, "stats", json, show_stats).await
}

/// Asks the routers for `path` and shows their answers with `show` once, or with `--watch`
/// again every `--interval` until interrupted (Ctrl-C), as `watch` and `kubectl get -w` do.
async fn view(
    args: &RouterAdminArgs,
    path: &str,
    json: bool,
    show: fn(Vec<Answer>, bool) -> bool,
) -> Result<ExitCode, CliError> {
    let Some(interval) = args.watch.then_some(args.interval) else {
        return Ok(exit(show(ask(args, path).await?, json)));
    };
    let mut watch = output::Watch::new(interval);
    loop {
        let answers = ask(args, path).await?;
        watch.frame(|| {
            show(answers, json);
        });
        watch.wait().await;
    }
}

/// Prints the routers' pools; whether every router answered.
fn show_pools(answers: Vec<Answer>, json: bool) -> bool {
    if json {
        return print_json(answers);
    }
    let (mut budgets, mut pools) = (Vec::new(), Vec::new());
    let all_answered = each_answer::<PoolsAnswer>(answers, |router, answer| {
        let b = answer.budget;
        budgets.push(
            std::iter::once(router.to_owned())
                .chain(
                    [
                        b.max_connections,
                        b.connections,
                        b.server_active,
                        b.server_idle,
                        b.server_opening,
                        b.server_closing,
                        b.clients_waiting,
                        b.pools,
                    ]
                    .map(|n| n.to_string()),
                )
                .collect(),
        );
        pools.extend(answer.pools.into_iter().map(|p| {
            let mut row = p.name.cells(router);
            row.extend(
                [
                    p.pool_size,
                    p.server_active,
                    p.server_idle,
                    p.server_opening,
                    p.clients_waiting,
                    p.max_wait_ms,
                ]
                .map(|n| n.to_string()),
            );
            row.extend([p.name.generation.to_string(), p.name.age_seconds.to_string()]);
            row
        }));
    });
    output::table(BUDGET_HEADERS, &budgets);
    output::line("");
    output::table(POOL_HEADERS, &pools);
    all_answered
}

/// Prints the routers' pool counters; whether every router answered.
fn show_stats(answers: Vec<Answer>, json: bool) -> bool {
    if json {
        return print_json(answers);
    }
    let mut rows = Vec::new();
    let all_answered = each_answer::<StatsAnswer>(answers, |router, answer| {
        rows.extend(answer.pools.into_iter().map(|p| {
            let mut row = p.name.cells(router);
            row.extend([
                p.checkouts.to_string(),
                format!("{:.1}", p.checkout_wait_us as f64 / 1000.0),
                p.checkouts_timed_out.to_string(),
                p.transactions.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            ]);
            row.extend(
                [p.connections_opened, p.connections_closed, p.connections_expired, p.connections_reclaimed]
                    .map(|n| n.to_string()),
            );
            row.extend([p.name.generation.to_string(), p.name.age_seconds.to_string()]);
            row
        }));
    });
    output::table(STATS_HEADERS, &rows);
    all_answered
}

/// Asks every router of `args` for `path` at once.
async fn ask(args: &RouterAdminArgs, path: &str) -> Result<Vec<Answer>, CliError> {
    let tenants = args.tenants.iter().map(|raw| parse_slug(raw)).collect::<Result<Vec<_>, _>>()?;
    let routers = args
        .routers
        .iter()
        .map(|raw| crate::routers::admin_url(raw))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::invalid("invalid_router", format!("--router: {e}")))?;
    crate::routers::ask(&routers, path, &tenants, args.timeout).await.map_err(|e| {
        CliError::new(ErrorKind::Misconfigured, "http_client", format!("cannot build an HTTP client: {e}"))
    })
}

/// Prints every router's answer as one JSON document; whether every router answered.
fn print_json(answers: Vec<Answer>) -> bool {
    let (json, all_answered) = crate::routers::answers_json(answers);
    output::json(&json);
    all_answered
}

/// Hands each router's answer, read as `T`, to `show`; reports the routers that gave none on
/// stderr. Whether every router answered.
fn each_answer<T: DeserializeOwned>(answers: Vec<Answer>, mut show: impl FnMut(&str, T)) -> bool {
    let mut all_answered = true;
    for Answer { router, body } in answers {
        let read = body.and_then(|value| {
            serde_json::from_value::<T>(value).map_err(|e| crate::routers::AdminError {
                code: "router_error",
                message: format!("unexpected answer: {e}"),
            })
        });
        match read {
            Ok(answer) => show(&router, answer),
            Err(error) => {
                all_answered = false;
                output::note(&format!("error: router {router}: {}", error.message));
            }
        }
    }
    all_answered
}

/// Success when every router answered; otherwise the exit code of an unavailable dependency.
fn exit(all_answered: bool) -> ExitCode {
    if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit_code(ErrorKind::Unavailable))
    }
}
