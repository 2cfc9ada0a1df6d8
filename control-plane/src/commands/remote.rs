//! `tenantctl` through the operator API, with a saved context (`tenantctl login`), for
//! operators who hold a scoped token rather than the catalog's URL: the tenant lifecycle, fleet
//! migration runs, tokens and the audit log (a tenant's domains, moves and profile, clusters
//! and billing events in `remote_tenants`). A command is run this way when `--context` names
//! a context, or when no DATABASE_URL is given and a current context is saved. The API's own
//! checks (the token's scope) apply; its errors keep their codes and map to the same exit codes
//! as the catalog's; commands wait for their work as the catalog's do.

use super::deadline::Deadline;
use super::{confirmed, parse_slug, CliError};
use crate::cli::{
    AuditArgs, Command, DeleteArgs, MigrateCommand, OperationArgs, TenantsCommand, TokensCommand, WaitArgs,
};
use crate::contexts::Context;
use crate::output;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;
use tenancy::domain::Slug;
use tenancy::error::ErrorKind;

/// The largest answer read from the API (a page of 500 tenants is well under it).
const MAX_ANSWER_BYTES: u64 = 32 << 20;

/// An operator API, reached with a context's token.
pub(crate) struct Remote {
    pub(crate) name: String,
    context: Context,
    http: reqwest::Client,
}

impl Remote {
    pub(crate) fn new(name: String, context: Context) -> Result<Self, CliError> {
        let http = crate::http_client::client(Duration::from_secs(30)).map_err(|e| {
            CliError::new(
                ErrorKind::Misconfigured,
                "http_client",
                format!("cannot build an HTTP client: {e}"),
            )
        })?;
        Ok(Self { name, context, http })
    }

    /// The API's base URL.
    pub(crate) fn api_url(&self) -> &str {
        &self.context.api_url
    }

    /// `method path` with `body`; the answer's JSON (`null` for none), or the API's error as
    /// the CLI's (its code, and the kind its status stands for).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        self.call_within(method, path, body, None).await
    }

    /// [`Self::call`], waiting up to `timeout` for the answer rather than the client's 30 s (for
    /// what the control plane takes long to compute).
    pub(crate) async fn call_within(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.context.api_url);
        let mut request = self.http.request(method, &url).bearer_auth(self.context.token.expose());
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let api = &self.context.api_url;
        let response = request.send().await.map_err(|e| {
            CliError::new(
                ErrorKind::Unavailable,
                "api_unreachable",
                format!("the operator API at {api} (context {}) did not answer: {e}", self.name),
            )
        })?;
        let status = response.status();
        let unreadable = |why: String| {
            CliError::new(ErrorKind::Unavailable, "api_error", format!("the operator API at {api} {why}"))
        };
        let body = crate::http_client::read_at_most(response, MAX_ANSWER_BYTES).await.map_err(unreadable)?;
        let answer: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
            Some(Value::Null)
        } else {
            serde_json::from_slice(&body).ok()
        };
        if status.is_success() {
            return answer
                .ok_or_else(|| unreadable(format!("answered {status} with something other than JSON")));
        }
        if status.is_redirection() {
            return Err(unreadable(format!(
                "answered {status}, a redirect (not followed): check the context's URL (tenantctl config get-contexts)"
            )));
        }
        let answer = answer.unwrap_or(Value::Null);
        let kind = match status.as_u16() {
            401 | 403 => ErrorKind::Misconfigured,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            422 => ErrorKind::WrongState,
            408 | 429 | 502..=504 => ErrorKind::Unavailable,
            400..=499 => ErrorKind::Invalid,
            _ => ErrorKind::Failed,
        };
        let code = answer["error"]["code"]
            .as_str()
            .map_or_else(|| format!("http_{}", status.as_u16()), str::to_owned);
        let mut message = answer["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the API answered {status}"), str::to_owned);
        if status.as_u16() == 401 {
            message.push_str(&format!(" (context {}: tenantctl login again)", self.name));
        }
        Err(CliError::new(kind, code, message))
    }
}

/// Runs `command` through `remote`; `None` for a command the API does not offer.
pub(crate) async fn run(remote: &Remote, command: Command, json: bool) -> Option<Result<ExitCode, CliError>> {
    Some(match command {
        Command::Tenants(TenantsCommand::List(args)) => {
            tenants_list(remote, args.status, args.plan, json).await
        }
        Command::Tenants(TenantsCommand::Show(args)) => show_tenant(remote, &args, json).await,
        Command::Tenants(TenantsCommand::Create(args)) => match parse_slug(&args.slug) {
            Ok(slug) => {
                let body =
                    without_nulls(json!({ "slug": slug.as_str(), "plan": args.plan, "name": args.name,
                    "isolation": args.isolation.map(|i| i.to_string()), "cluster": args.cluster }));
                let change =
                    Change { method: Method::POST, path: "/v1/tenants".to_owned(), body: Some(body) };
                operate(remote, change, &slug, args.wait, json).await
            }
            Err(e) => Err(e),
        },
        Command::Tenants(TenantsCommand::Suspend(args)) => lifecycle(remote, args, "suspend", json).await,
        Command::Tenants(TenantsCommand::Resume(args)) => lifecycle(remote, args, "resume", json).await,
        Command::Tenants(TenantsCommand::RotateCredentials(args)) => {
            lifecycle(remote, args, "rotate-credentials", json).await
        }
        Command::Tenants(TenantsCommand::Retry(args)) => lifecycle(remote, args, "retry", json).await,
        Command::Tenants(TenantsCommand::Restore(args)) => lifecycle(remote, args, "restore", json).await,
        Command::Tenants(TenantsCommand::SetPlan(args)) => match parse_slug(&args.operation.slug) {
            Ok(slug) => {
                let path = format!("/v1/tenants/{slug}/plan");
                let change = Change { method: Method::PUT, path, body: Some(json!({ "plan": args.plan })) };
                operate(remote, change, &slug, args.operation.wait, json).await
            }
            Err(e) => Err(e),
        },
        Command::Tenants(TenantsCommand::Delete(args)) => delete(remote, args, json).await,
        Command::Migrate(MigrateCommand::Status(args)) => {
            run_status(remote, args.run.as_deref(), args.all, args.watch.then_some(args.interval), json).await
        }
        Command::Migrate(MigrateCommand::Halt(args)) => match run_id(&args.run) {
            Ok(id) => {
                match remote.call(Method::POST, &format!("/v1/migrations/runs/{id}/halt"), None).await {
                    Ok(run) => {
                        print_run(&run, false, json);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
        Command::Migrate(MigrateCommand::Resume(args)) if args.concurrency.is_some() => {
            Err(CliError::invalid(
                "not_offered",
                "--concurrency: a run resumed through the API keeps its own (give DATABASE_URL to change it)",
            ))
        }
        Command::Migrate(MigrateCommand::Resume(args)) => match run_id(&args.run) {
            Ok(id) => {
                let resumed =
                    remote.call(Method::POST, &format!("/v1/migrations/runs/{id}/resume"), None).await;
                to_the_end(remote, resumed, json).await
            }
            Err(e) => Err(e),
        },
        Command::Migrate(MigrateCommand::Apply(args)) => {
            let selection = &args.selection;
            let tenants: Vec<String> = selection.tenants.iter().map(ToString::to_string).collect();
            let body = without_nulls(json!({
                "tenants": (!tenants.is_empty()).then_some(tenants),
                "plan": selection.plan.as_ref().map(ToString::to_string),
                "cluster": selection.cluster.as_ref().map(ToString::to_string),
                "include_templates": selection.include_templates,
                "concurrency": args.concurrency,
                "canary": args.canary,
                "max_failures": args.max_failures,
                "retries": args.retries,
                "lock_timeout_ms": u64::try_from(args.lock_timeout.as_millis()).unwrap_or(u64::MAX),
                "statement_timeout_ms": u64::try_from(args.statement_timeout.as_millis()).unwrap_or(u64::MAX),
                "grouped": args.grouped,
                "tenants_per_connection": args.tenants_per_connection,
            }));
            to_the_end(remote, remote.call(Method::POST, "/v1/migrations/runs", Some(body)).await, json).await
        }
        Command::Tokens(TokensCommand::List(args)) => {
            let path = if args.all { "/v1/tokens?all=true" } else { "/v1/tokens" };
            let columns = ["id", "name", "scope", "created_at", "expires_at", "last_used_at", "revoked_at"];
            listing(remote.call(Method::GET, path, None).await, json, "tokens", &columns)
        }
        Command::Tokens(TokensCommand::Create(args)) => create_token(remote, args, json).await,
        Command::Tokens(TokensCommand::Revoke(args)) => {
            let id = args.id.to_string();
            match confirmed(
                &format!("Revoke token {id} (through context {}).", remote.name),
                &id,
                args.confirm,
            ) {
                Err(e) => Err(e),
                Ok(()) => match remote.call(Method::DELETE, &format!("/v1/tokens/{id}"), None).await {
                    Ok(token) => {
                        print_object(&token, json);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Err(e),
                },
            }
        }
        Command::Audit(args) => audit(remote, &args, json).await,
        other => return super::remote_tenants::run(remote, other, json).await,
    })
}

/// A run id or a prefix of one as given: hex digits and `-` only (the API says whether it
/// names a run).
fn run_id(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(CliError::invalid(
            "invalid_run_id",
            format!("{raw:?} is not a run id: give the id `migrate status` prints, or a prefix of it"),
        ));
    }
    Ok(raw.to_owned())
}

pub(super) fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(super) fn without_nulls(mut body: Value) -> Value {
    if let Value::Object(map) = &mut body {
        map.retain(|_, v| !v.is_null());
    }
    body
}

/// A JSON value as a table cell.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints an answer as it is (`--json`), or `columns` of each item of it.
fn listing(
    answer: Result<Value, CliError>,
    json: bool,
    what: &str,
    columns: &[&str],
) -> Result<ExitCode, CliError> {
    let answer = answer?;
    if json {
        output::json(&answer);
    } else {
        let rows: Vec<Vec<String>> = answer
            .as_array()
            .map(|items| items.iter().map(|item| columns.iter().map(|c| text(&item[*c])).collect()).collect())
            .unwrap_or_default();
        output::listing(what, columns, &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one object: as it is (`--json`), or a line per field.
fn print_object(value: &Value, json: bool) {
    if json {
        output::json(value);
        return;
    }
    let rows: Vec<Vec<String>> = value
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, v)| vec![k.replace('_', " "), text(v)])
                .collect()
        })
        .unwrap_or_default();
    output::table(&["field", "value"], &rows);
}

async fn tenants_list(
    remote: &Remote,
    status: Option<tenancy::domain::TenantStatus>,
    plan: Option<tenancy::domain::PlanName>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let mut query = vec!["limit=500".to_owned()];
    query.extend(status.map(|s| format!("status={s}")));
    query.extend(plan.map(|p| format!("plan={p}")));
    let mut tenants = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_query = match &cursor {
            Some(c) => format!("{}&cursor={}", query.join("&"), urlencode(c)),
            None => query.join("&"),
        };
        let page = remote.call(Method::GET, &format!("/v1/tenants?{page_query}"), None).await?;
        tenants.extend(page["tenants"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let tenants: Vec<crate::tenants::view::Tenant> =
        super::remote_tenants::typed(Value::Array(tenants), "tenants")?;
    crate::tenants::view::print_list(&tenants, json);
    Ok(ExitCode::SUCCESS)
}

async fn show_tenant(
    remote: &Remote,
    args: &crate::cli::WatchedArgs,
    json: bool,
) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let path = format!("/v1/tenants/{slug}");
    let first: crate::tenants::view::Tenant =
        super::remote_tenants::typed(remote.call(Method::GET, &path, None).await?, "tenant")?;
    let print =
        |tenant: &crate::tenants::view::Tenant| crate::tenants::view::print_details(tenant, &[], json);
    let Some(interval) = args.watching() else {
        print(&first);
        return Ok(ExitCode::SUCCESS);
    };
    let look = async || {
        let tenant = match remote.call(Method::GET, &path, None).await {
            // Its data dropped while it was watched: the API shows it among deleted tenants.
            Err(err) if err.kind == ErrorKind::NotFound => {
                deleted(remote, &slug, &first.id).await?.ok_or(err)?
            }
            answer => answer?,
        };
        super::remote_tenants::typed::<crate::tenants::view::Tenant>(tenant, "tenant")
    };
    output::Watch::until(interval, look, print, crate::tenants::view::settled).await
}

/// A request that changes a tenant.
struct Change {
    method: Method,
    path: String,
    body: Option<Value>,
}

/// A tenant's lifecycle operation (`POST /v1/tenants/{slug}/{operation}`).
async fn lifecycle(
    remote: &Remote,
    args: OperationArgs,
    operation: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.slug)?;
    let change = Change { method: Method::POST, path: format!("/v1/tenants/{slug}/{operation}"), body: None };
    operate(remote, change, &slug, args.wait, json).await
}

async fn delete(remote: &Remote, args: DeleteArgs, json: bool) -> Result<ExitCode, CliError> {
    let slug = parse_slug(&args.operation.slug)?;
    let when = match args.retention {
        Some(r) if r.is_zero() => "its data is dropped at once".to_owned(),
        Some(r) => format!("its data is dropped after {}", humantime::format_duration(r)),
        None => "its data is dropped after the control plane's retention (DEPROVISION_RETENTION)".to_owned(),
    };
    confirmed(
        &format!(
            "Delete tenant {slug} (through context {}): it stops answering at once; {when}.",
            remote.name
        ),
        slug.as_str(),
        args.confirm,
    )?;
    let retention = args.retention.map(|r| format!("?retention={}s", r.as_secs())).unwrap_or_default();
    let change =
        Change { method: Method::DELETE, path: format!("/v1/tenants/{slug}{retention}"), body: None };
    operate(remote, change, &slug, args.operation.wait, json).await
}

/// A change to tenant `slug`: recorded by the API, then (unless `--no-wait`) waited for until
/// the tenant has no work queued, within `--timeout` (exit code 7), as the catalog's commands
/// wait. Prints the tenant as it ends up; exit code 1 when it failed.
async fn operate(
    remote: &Remote,
    change: Change,
    slug: &Slug,
    wait: WaitArgs,
    json: bool,
) -> Result<ExitCode, CliError> {
    let deadline = Deadline::after(wait.timeout);
    let deleting = change.method == Method::DELETE;
    let recorded = deadline
        .run(remote.call(change.method, &change.path, change.body), || {
            format!("the API did not answer about tenant {slug}")
        })
        .await?;
    let tenant = if wait.no_wait {
        recorded
    } else {
        let drained = async {
            loop {
                let jobs =
                    remote.call(Method::GET, &format!("/v1/jobs?tenant={slug}&limit=50"), None).await?;
                if !jobs.as_array().is_some_and(|jobs| jobs.iter().any(due)) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        deadline
            .run(drained, || {
                format!(
                    "tenant {slug} still has work queued; it stays queued (the control plane does it): \
                     see `tenantctl tenants show {slug}`"
                )
            })
            .await?;
        match remote.call(Method::GET, &format!("/v1/tenants/{slug}"), None).await {
            // Deleted meanwhile (a delete without retention): the API shows it only among
            // deleted tenants.
            Err(err) if err.kind == ErrorKind::NotFound && deleting => {
                deleted(remote, slug, &text(&recorded["id"])).await?.ok_or(err)?
            }
            answer => answer?,
        }
    };
    let tenant: crate::tenants::view::Tenant = super::remote_tenants::typed(tenant, "tenant")?;
    crate::tenants::view::print_one(&tenant, json);
    Ok(if tenant.status == "failed" { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Tenant `slug` with id `id`, deleted: the API shows deleted tenants only in its list.
async fn deleted(remote: &Remote, slug: &Slug, id: &str) -> Result<Option<Value>, CliError> {
    let page =
        remote.call(Method::GET, &format!("/v1/tenants?status=deleted&q={slug}&limit=500"), None).await?;
    Ok(page["tenants"].as_array().into_iter().flatten().find(|t| t["id"] == id).cloned())
}

/// A job the command waits for, as the control plane says (`due`: queued and able to run
/// within a minute, as the catalog's commands wait); from a control plane that does not say,
/// a queued job already due by this machine's clock.
fn due(job: &Value) -> bool {
    job["due"].as_bool().unwrap_or_else(|| {
        let run_after =
            job["run_after"].as_str().and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
        job["state"] == "queued" && run_after.is_none_or(|at| at <= chrono::Utc::now())
    })
}

async fn create_token(
    remote: &Remote,
    args: crate::cli::TokenArgs,
    json: bool,
) -> Result<ExitCode, CliError> {
    let lifetime = args.expires_in.map(|d| format!("{}s", d.as_secs()));
    let body = without_nulls(json!({ "name": args.name, "scope": args.scope, "expires_in": lifetime }));
    let created = remote.call(Method::POST, "/v1/tokens", Some(body)).await?;
    if json {
        output::json(&created);
    } else {
        output::line(created["token"].as_str().unwrap_or_default());
        output::note(&format!(
            "token {} ({}, {}) created; it is shown only now",
            created["id"],
            text(&created["name"]),
            text(&created["scope"])
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// A run started or resumed through the API, followed to its end as the catalog's `migrate
/// apply` is: its last state shown, exit code 0 when it completed, 1 otherwise.
async fn to_the_end(
    remote: &Remote,
    answer: Result<Value, CliError>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let mut run = answer?;
    let id = text(&run["id"]);
    if !json {
        output::note(&format!(
            "run {id} goes on in the control plane (context {}); following it to its end",
            remote.name
        ));
    }
    let path = format!("/v1/migrations/runs/{id}");
    while run["state"] == "running" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        run = remote.call(Method::GET, &path, None).await?;
    }
    print_run(&run, false, json);
    Ok(if run["state"] == "completed" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A run as `migrate status` shows it: its tenants not done, or all of them with `all`.
fn print_run(run: &Value, all: bool, json: bool) {
    if json {
        output::json(run);
        return;
    }
    let counts = run["counts"]
        .as_object()
        .map(|c| c.iter().map(|(state, n)| format!("{n} {state}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    output::line(&format!(
        "run {} by {} at {}: {}, target V{}, {} tenants ({counts})",
        text(&run["id"]),
        text(&run["created_by"]),
        text(&run["created_at"]),
        text(&run["state"]),
        text(&run["target_version"]),
        text(&run["tenants"]),
    ));
    if let Some(reason) = run["halt_reason"].as_str() {
        output::line(&format!("{}: {reason}", text(&run["state"])));
    }
    let rows: Vec<Vec<String>> = run["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| all || i["state"] != "done")
                .map(|i| {
                    ["slug", "state", "attempts", "to_version", "error"]
                        .iter()
                        .map(|c| text(&i[*c]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    if !rows.is_empty() {
        output::table(&["tenant", "state", "attempts", "at", "error"], &rows);
    }
}

async fn run_status(
    remote: &Remote,
    run: Option<&str>,
    all: bool,
    watch: Option<Duration>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let id = match run {
        Some(raw) => run_id(raw)?,
        None => {
            let runs = remote.call(Method::GET, "/v1/migrations/runs", None).await?;
            let latest = runs.as_array().and_then(|r| r.first()).cloned();
            text(
                &latest.ok_or_else(|| {
                    CliError::new(ErrorKind::NotFound, "not_found", "no fleet migration run yet")
                })?["id"],
            )
        }
    };
    let path = format!("/v1/migrations/runs/{id}");
    let Some(interval) = watch else {
        print_run(&remote.call(Method::GET, &path, None).await?, all, json);
        return Ok(ExitCode::SUCCESS);
    };
    output::Watch::until(
        interval,
        async || remote.call(Method::GET, &path, None).await,
        |run| print_run(run, all, json),
        |run| super::migrate::run_ended(run["state"].as_str().unwrap_or("running")),
    )
    .await
}

/// The query of a history listing (the audit log, billing events): `--limit` (at most the API's
/// 500) and the tenants named, checked before anything is sent.
pub(super) fn history_query(limit: i64, tenants: &[String]) -> Result<Vec<String>, CliError> {
    if limit > 500 {
        return Err(CliError::invalid(
            "invalid_limit",
            "--limit: at most 500 through the API (give DATABASE_URL for more)",
        ));
    }
    for tenant in tenants {
        parse_slug(tenant)?;
    }
    let mut query = vec![format!("limit={limit}")];
    if !tenants.is_empty() {
        query.push(format!("tenant={}", urlencode(&tenants.join(","))));
    }
    Ok(query)
}

async fn audit(remote: &Remote, args: &AuditArgs, json: bool) -> Result<ExitCode, CliError> {
    let mut query = history_query(args.limit, &args.tenants)?;
    for (key, value) in [("actor", &args.actor), ("action", &args.action)] {
        query.extend(value.as_ref().map(|v| format!("{key}={}", urlencode(v))));
    }
    if let Some(since) = args.since {
        let at = chrono::Duration::from_std(since)
            .ok()
            .and_then(|since| chrono::Utc::now().checked_sub_signed(since))
            .ok_or_else(|| CliError::invalid("invalid_since", "--since: too long ago"))?;
        query.push(format!("since={}", urlencode(&at.to_rfc3339())));
    }
    let answer = remote.call(Method::GET, &format!("/v1/audit?{}", query.join("&")), None).await;
    listing(answer, json, "audit entries", &["at", "actor", "action", "tenant_id", "detail"])
}
