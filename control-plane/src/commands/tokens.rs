//! `tenantctl tokens create|list|revoke`: the operator API's bearer tokens.

use super::{start, CliError};
use crate::catalog::tokens::{self, NewToken};
use crate::cli::{TokenArgs, TokenListArgs, TokenRevokeArgs};
use crate::output;
use std::process::ExitCode;
use tenancy::catalog::CatalogError;
use tenancy::error::ErrorKind;

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%d %H:%M").to_string())
}

pub(super) async fn create(args: TokenArgs, json: bool) -> Result<ExitCode, CliError> {
    let name = tokens::check_name(&args.name).map_err(|e| CliError::invalid("invalid_token", e))?;
    let expires_at =
        args.expires_in.map(tokens::expiry).transpose().map_err(|e| CliError::invalid("invalid_token", e))?;
    let cp = start(&args.catalog).await?;
    let mut client = cp.catalog.get().await.map_err(CatalogError::from)?;
    let new = NewToken { name, scope: args.scope, expires_at, created_by: "cli" };
    let (token, info) = tokens::issue(&mut client, &new).await.map_err(CatalogError::from)?;
    if json {
        let mut value = serde_json::to_value(&info).unwrap_or_default();
        value["token"] = token.into();
        output::json(&value);
    } else {
        output::line(&token);
        let expiry = info.expires_at.map(|at| format!(", expires {}", at.to_rfc3339())).unwrap_or_default();
        output::note(&format!(
            "token {} ({name}, {}{expiry}) created; it is shown only now",
            info.id, info.scope
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list(args: TokenListArgs, json: bool) -> Result<ExitCode, CliError> {
    let cp = start(&args.catalog).await?;
    let client = cp.catalog.get().await.map_err(CatalogError::from)?;
    let all = tokens::list(&**client, args.all).await.map_err(CatalogError::from)?;
    if json {
        output::json(&all);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.scope.to_string(),
                t.state().to_owned(),
                time(Some(t.created_at)),
                time(t.expires_at),
                time(t.last_used_at),
            ]
        })
        .collect();
    output::listing("tokens", &["id", "name", "scope", "state", "created", "expires", "last used"], &rows);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn revoke(args: TokenRevokeArgs, json: bool) -> Result<ExitCode, CliError> {
    let id = args.id.to_string();
    super::confirmed(&format!("Revoke token {id}: its next request is refused."), &id, args.confirm)?;
    let cp = start(&args.catalog).await?;
    let mut client = cp.catalog.get().await.map_err(CatalogError::from)?;
    let token = tokens::withdraw(&mut client, args.id, "cli")
        .await
        .map_err(CatalogError::from)?
        .ok_or_else(|| CliError::new(ErrorKind::NotFound, "not_found", format!("no token {}", args.id)))?;
    if json {
        output::json(&token);
    } else {
        output::note(&format!("token {} ({}) revoked", token.id, token.name));
    }
    Ok(ExitCode::SUCCESS)
}
