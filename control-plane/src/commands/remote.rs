//! `tenantctl` through the operator API, with a saved context (`tenantctl login`), for
//! operators who hold a scoped token rather than the catalog's URL: the tenant lifecycle, fleet
//! migration runs, tokens and the audit log. A command is run this way when `--context` names
//! a context, or when no DATABASE_URL is given and a current context is saved; the API's own
//! checks (the token's scope) apply, and its errors keep their codes and map to the same exit
//! codes as the catalog's.

use super::{confirmed, CliError};
use crate::cli::{AuditArgs, Command, MigrateCommand, TenantsCommand, TokensCommand};
use crate::contexts::Context;
use crate::output;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::ExitCode;
use tenancy::error::ErrorKind;

/// An operator API, reached with a context's token.
pub(crate) struct Remote {
    pub(crate) name: String,
    context: Context,
    http: reqwest::Client,
}

impl Remote {
    pub(crate) fn new(name: String, context: Context) -> Result<Self, CliError> {
        let http =
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().map_err(|e| {
                CliError::new(
                    ErrorKind::Misconfigured,
                    "http_client",
                    format!("cannot build an HTTP client: {e}"),
                )
            })?;
        Ok(Self { name, context, http })
    }

    /// `method path` with `body`; the answer's JSON (`null` for none), or the API's error as
    /// the CLI's (its code, and the kind its status stands for).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.context.api_url.trim_end_matches('/'));
        let mut request = self.http.request(method, &url).bearer_auth(self.context.token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            CliError::new(
                ErrorKind::Unavailable,
                "api_unreachable",
                format!(
                    "the operator API at {} (context {}) did not answer: {e}",
                    self.context.api_url, self.name
                ),
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(answer);
        }
        let kind = match status.as_u16() {
            401 | 403 => ErrorKind::Misconfigured,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            422 => ErrorKind::WrongState,
            400..=499 => ErrorKind::Invalid,
            503 => ErrorKind::Unavailable,
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
    let slug_path = |slug: &str| format!("/v1/tenants/{}", urlencode(slug));
    Some(match command {
        Command::Tenants(TenantsCommand::List(args)) => {
            tenants_list(remote, args.status, args.plan, json).await
        }
        Command::Tenants(TenantsCommand::Show(args)) => show(remote, &slug_path(&args.slug), json).await,
        Command::Tenants(TenantsCommand::Create(args)) => {
            let body = json!({ "slug": args.slug, "plan": args.plan, "name": args.name,
                               "isolation": args.isolation.map(|i| i.to_string()), "cluster": args.cluster });
            let body = without_nulls(body);
            change(remote, Method::POST, "/v1/tenants".to_owned(), Some(body), json).await
        }
        Command::Tenants(TenantsCommand::Suspend(args)) => {
            lifecycle(remote, &slug_path(&args.slug), "suspend", json).await
        }
        Command::Tenants(TenantsCommand::Resume(args)) => {
            lifecycle(remote, &slug_path(&args.slug), "resume", json).await
        }
        Command::Tenants(TenantsCommand::RotateCredentials(args)) => {
            lifecycle(remote, &slug_path(&args.slug), "rotate-credentials", json).await
        }
        Command::Tenants(TenantsCommand::Retry(args)) => {
            lifecycle(remote, &slug_path(&args.slug), "retry", json).await
        }
        Command::Tenants(TenantsCommand::Restore(args)) => {
            lifecycle(remote, &slug_path(&args.slug), "restore", json).await
        }
        Command::Tenants(TenantsCommand::SetPlan(args)) => {
            let path = format!("{}/plan", slug_path(&args.operation.slug));
            change(remote, Method::PUT, path, Some(json!({ "plan": args.plan })), json).await
        }
        Command::Tenants(TenantsCommand::Delete(args)) => {
            let slug = args.operation.slug.clone();
            match confirmed(
                &format!("Delete tenant {slug} (through context {}).", remote.name),
                &slug,
                args.confirm,
            ) {
                Err(e) => Err(e),
                Ok(()) => {
                    let retention =
                        args.retention.map(|r| format!("?retention={}s", r.as_secs())).unwrap_or_default();
                    change(remote, Method::DELETE, format!("{}{retention}", slug_path(&slug)), None, json)
                        .await
                }
            }
        }
        Command::Migrate(MigrateCommand::Status(args)) => {
            run_status(remote, args.run.as_deref(), args.watch.then_some(args.interval), json).await
        }
        Command::Migrate(MigrateCommand::Halt(args)) => {
            change(
                remote,
                Method::POST,
                format!("/v1/migrations/runs/{}/halt", urlencode(&args.run)),
                None,
                json,
            )
            .await
        }
        Command::Migrate(MigrateCommand::Resume(args)) => {
            let path = format!("/v1/migrations/runs/{}/resume", urlencode(&args.run));
            started(remote, remote.call(Method::POST, &path, None).await, json)
        }
        Command::Migrate(MigrateCommand::Apply(args)) => {
            let s = &args.selection;
            let body = without_nulls(json!({
                "tenants": (!s.tenants.is_empty()).then(|| s.tenants.iter().map(ToString::to_string).collect::<Vec<_>>()),
                "plan": s.plan.as_ref().map(ToString::to_string),
                "cluster": s.cluster.as_ref().map(ToString::to_string),
                "include_templates": s.include_templates,
                "concurrency": args.concurrency,
                "canary": args.canary,
                "max_failures": args.max_failures,
                "retries": args.retries,
                "lock_timeout_ms": u64::try_from(args.lock_timeout.as_millis()).unwrap_or(u64::MAX),
                "statement_timeout_ms": u64::try_from(args.statement_timeout.as_millis()).unwrap_or(u64::MAX),
                "grouped": args.grouped,
                "tenants_per_connection": args.tenants_per_connection,
            }));
            started(remote, remote.call(Method::POST, "/v1/migrations/runs", Some(body)).await, json)
        }
        Command::Tokens(TokensCommand::List(args)) => {
            let path = if args.all { "/v1/tokens?all=true" } else { "/v1/tokens" };
            listing(
                remote.call(Method::GET, path, None).await,
                json,
                "tokens",
                &["id", "name", "scope", "expires_at", "last_used_at", "revoked_at"],
            )
        }
        Command::Tokens(TokensCommand::Create(args)) => {
            let lifetime = args.expires_in.map(|d| format!("{}s", d.as_secs()));
            let body =
                without_nulls(json!({ "name": args.name, "scope": args.scope, "expires_in": lifetime }));
            match remote.call(Method::POST, "/v1/tokens", Some(body)).await {
                Ok(created) if json => {
                    output::json(&created);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(created) => {
                    output::line(created["token"].as_str().unwrap_or_default());
                    output::note(&format!(
                        "token {} ({}, {}) created; it is shown only now",
                        created["id"],
                        text(&created["name"]),
                        text(&created["scope"])
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e),
            }
        }
        Command::Tokens(TokensCommand::Revoke(args)) => {
            let id = args.id.to_string();
            match confirmed(
                &format!("Revoke token {id} (through context {}).", remote.name),
                &id,
                args.confirm,
            ) {
                Err(e) => Err(e),
                Ok(()) => change(remote, Method::DELETE, format!("/v1/tokens/{id}"), None, json).await,
            }
        }
        Command::Audit(args) => audit(remote, &args, json).await,
        _ => return None,
    })
}

fn urlencode(raw: &str) -> String {
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

fn without_nulls(mut body: Value) -> Value {
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
    let columns: &[&str] = if output::wide() {
        &[
            "slug",
            "name",
            "plan",
            "status",
            "schema",
            "id",
            "isolation",
            "cluster",
            "schema_version",
            "pool_size",
            "created_at",
        ]
    } else {
        &["slug", "name", "plan", "status", "schema", "id"]
    };
    listing(Ok(Value::Array(tenants)), json, "tenants", columns)
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

async fn show(remote: &Remote, path: &str, json: bool) -> Result<ExitCode, CliError> {
    print_object(&remote.call(Method::GET, path, None).await?, json);
    Ok(ExitCode::SUCCESS)
}

async fn change(
    remote: &Remote,
    method: Method,
    path: String,
    body: Option<Value>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let answer = remote.call(method, &path, body).await?;
    print_object(&answer, json);
    Ok(ExitCode::SUCCESS)
}

/// A lifecycle change: recorded at once, the work done by the control plane's workers.
async fn lifecycle(
    remote: &Remote,
    tenant_path: &str,
    operation: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let code = change(remote, Method::POST, format!("{tenant_path}/{operation}"), None, json).await?;
    if !json {
        output::note(&format!("{operation}: recorded; the control plane's workers do the rest (tenantctl tenants show follows it)"));
    }
    Ok(code)
}

/// A run started or resumed: shown, with how to follow it.
fn started(remote: &Remote, answer: Result<Value, CliError>, json: bool) -> Result<ExitCode, CliError> {
    let run = answer?;
    print_run(&run, json);
    if !json {
        output::note(&format!(
            "the run goes on in the control plane; follow it with `tenantctl --context {} migrate status {} --watch`",
            remote.name,
            text(&run["id"]).chars().take(8).collect::<String>()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_run(run: &Value, json: bool) {
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
                .filter(|i| i["state"] != "done")
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
    watch: Option<std::time::Duration>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let id = match run {
        Some(raw) => urlencode(raw),
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
        print_run(&remote.call(Method::GET, &path, None).await?, json);
        return Ok(ExitCode::SUCCESS);
    };
    let mut view = output::Watch::new(interval);
    loop {
        let run = remote.call(Method::GET, &path, None).await?;
        view.frame(|| print_run(&run, json));
        if run["state"] != "running" {
            return Ok(if run["state"] == "completed" { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        view.wait().await;
    }
}

async fn audit(remote: &Remote, args: &AuditArgs, json: bool) -> Result<ExitCode, CliError> {
    let mut query = vec![format!("limit={}", args.limit.min(500))];
    for (key, value) in [("tenant", &args.tenant), ("actor", &args.actor), ("action", &args.action)] {
        query.extend(value.as_ref().map(|v| format!("{key}={}", urlencode(v))));
    }
    if let Some(since) = args.since {
        let at = chrono::Utc::now() - chrono::Duration::from_std(since).unwrap_or_default();
        query.push(format!("since={}", urlencode(&at.to_rfc3339())));
    }
    let answer = remote.call(Method::GET, &format!("/v1/audit?{}", query.join("&")), None).await;
    listing(answer, json, "audit entries", &["at", "actor", "action", "tenant_id", "detail"])
}
