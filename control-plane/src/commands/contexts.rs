//! `tenantctl login`, `logout` and `config get-contexts|use-context|current-context`: the saved
//! contexts ([`crate::contexts`]), and which one a command goes through.

use super::remote::Remote;
use super::CliError;
use crate::cli::{Cli, Command, ContextsCommand, LoginArgs, RoutersCommand};
use crate::contexts::{Context, Contexts};
use crate::output;
use std::process::ExitCode;
use tenancy::error::ErrorKind;
use tenancy::secret::Secret;

/// Whether the catalog's URL was given (flag or environment, not empty): then commands use the
/// catalog, unless a context is named.
fn database_url_given() -> bool {
    std::env::var_os("DATABASE_URL").is_some_and(|v| !v.is_empty())
        || std::env::args().any(|a| a == "--database-url" || a.starts_with("--database-url="))
}

/// Commands that never go through the API: those about contexts themselves, the server, and
/// what talks to neither catalog nor API on its own (the routers' admin listeners).
fn never_remote(command: &Command) -> bool {
    matches!(
        command,
        Command::Login(_)
            | Command::Logout
            | Command::Config(_)
            | Command::Completion { .. }
            | Command::Serve(_)
            | Command::Routers(RoutersCommand::Pools(_) | RoutersCommand::Stats(_))
    )
}

/// The API `cli`'s command goes through: the context `--context` (or `TENANTCTL_CONTEXT`)
/// names, or with no DATABASE_URL the current one; `None` for the catalog.
pub(crate) fn remote_for(cli: &Cli) -> Result<Option<Remote>, CliError> {
    if never_remote(&cli.command) {
        return Ok(None);
    }
    let named = cli.context.as_deref().filter(|c| !c.is_empty());
    if named.is_none() && database_url_given() {
        return Ok(None);
    }
    let contexts = Contexts::load().map_err(CliError::from)?;
    match contexts.selected(named).map_err(CliError::from)? {
        Some((name, context)) => Remote::new(name, context).map(Some),
        None => Ok(None),
    }
}

/// A context's name from its API's URL: its host (and port).
fn default_name(api_url: &str) -> String {
    reqwest::Url::parse(api_url)
        .ok()
        .and_then(|url| {
            url.host_str()
                .map(|host| url.port().map_or_else(|| host.to_owned(), |port| format!("{host}:{port}")))
        })
        .unwrap_or_else(|| "default".to_owned())
}

/// The token: `--token` (or TENANTCTL_TOKEN), else a line of standard input (asked for on a
/// terminal, not echoed), so that it need not be in the shell's history.
fn token(args: &LoginArgs) -> Result<Secret, CliError> {
    use std::io::{BufRead as _, IsTerminal as _};
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    let unreadable =
        |e: std::io::Error| CliError::invalid("invalid_token", format!("could not read the token: {e}"));
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Token (tenantctl tokens create): ").map_err(unreadable)?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(unreadable)?;
        line
    };
    let line = line.trim();
    if line.is_empty() {
        return Err(CliError::invalid(
            "invalid_token",
            "no token: give --token, TENANTCTL_TOKEN, or one on standard input",
        ));
    }
    Ok(Secret::new(line))
}

pub(super) async fn login(
    args: LoginArgs,
    context: Option<String>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let api_url = crate::http_client::parse_base_url(
        &args.api_url,
        "the operator API's URL",
        "https://ops.example.com",
        crate::http_client::Plaintext::LoopbackOnly,
    )
    .map_err(|e| CliError::invalid("invalid_api_url", format!("--api-url: {e}")))?;
    let name = context.filter(|c| !c.is_empty()).unwrap_or_else(|| default_name(&api_url));
    let candidate = Context { api_url: api_url.clone(), token: token(&args)? };
    let whoami =
        Remote::new(name.clone(), candidate.clone())?.call(reqwest::Method::GET, "/v1/whoami", None).await?;
    let (Some(who), Some(scope)) = (whoami["name"].as_str(), whoami["scope"].as_str()) else {
        return Err(CliError::new(
            ErrorKind::Unavailable,
            "api_error",
            format!("{api_url} is not a tenantctl operator API (GET /v1/whoami named no token and scope)"),
        ));
    };
    let mut contexts = Contexts::load().map_err(CliError::from)?;
    if contexts.contexts.insert(name.clone(), candidate).is_some() && !json {
        output::note(&format!("Context {name} replaced."));
    }
    contexts.current = Some(name.clone());
    contexts.save().map_err(CliError::from)?;
    if json {
        output::json(
            &serde_json::json!({ "context": name, "api_url": api_url, "name": who, "scope": scope }),
        );
    } else {
        output::note(&format!(
            "Logged in to {api_url} as {who} ({scope}); context {name} is the current one."
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn logout(context: Option<String>, json: bool) -> Result<ExitCode, CliError> {
    let mut contexts = Contexts::load().map_err(CliError::from)?;
    let name = context.or_else(|| contexts.current.clone()).ok_or_else(|| {
        CliError::new(
            ErrorKind::NotFound,
            "not_found",
            "no current context (tenantctl config get-contexts lists them)",
        )
    })?;
    if contexts.contexts.remove(&name).is_none() {
        return Err(CliError::from(crate::contexts::ContextError::NoSuchContext(name)));
    }
    if contexts.current.as_deref() == Some(name.as_str()) {
        contexts.current = None;
    }
    contexts.save().map_err(CliError::from)?;
    if json {
        output::json(&serde_json::json!({ "context": name, "removed": true }));
    } else {
        output::note(&format!(
            "Context {name} and its token forgotten (the token itself still works until revoked)."
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn config(command: ContextsCommand, json: bool) -> Result<ExitCode, CliError> {
    let mut contexts = Contexts::load().map_err(CliError::from)?;
    match command {
        ContextsCommand::GetContexts => {
            let rows: Vec<Vec<String>> = contexts
                .contexts
                .iter()
                .map(|(name, c)| {
                    let current = if contexts.current.as_deref() == Some(name.as_str()) { "*" } else { "" };
                    vec![current.to_owned(), name.clone(), c.api_url.clone()]
                })
                .collect();
            if json {
                let list: Vec<_> = contexts
                    .contexts
                    .iter()
                    .map(|(name, c)| serde_json::json!({ "name": name, "api_url": c.api_url, "current": contexts.current.as_deref() == Some(name.as_str()) }))
                    .collect();
                output::json(&list);
            } else {
                output::listing("contexts", &["current", "name", "api url"], &rows);
            }
        }
        ContextsCommand::CurrentContext => {
            let current = contexts.current.ok_or_else(|| {
                CliError::new(
                    ErrorKind::NotFound,
                    "not_found",
                    "no current context (tenantctl login sets one)",
                )
            })?;
            if json {
                output::json(&serde_json::json!({ "context": current }));
            } else {
                output::line(&current);
            }
        }
        ContextsCommand::UseContext { name } => {
            contexts.selected(Some(&name)).map_err(CliError::from)?;
            contexts.current = Some(name.clone());
            contexts.save().map_err(CliError::from)?;
            if json {
                output::json(&serde_json::json!({ "context": name }));
            } else {
                output::note(&format!("Switched to context {name}."));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
