//! Operator API tokens. A token is shown once, when created; the catalog keeps only its SHA-256
//! hash, so a leaked catalog does not leak usable tokens. Tokens carry 256 random bits, so a
//! plain hash (no salt, no slow KDF) is the right tool: there is nothing to brute-force.
//!
//! Each token has a [`Scope`] and may expire; a revoked or expired token is refused.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

/// Every token starts with this, so scanners and people recognise one.
const PREFIX: &str = "tct_";

/// What a token may do. Ordered: each scope may do everything the ones before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Sees everything (tenants, runs, audit), changes nothing.
    #[value(name = "read_only", alias = "read-only")]
    ReadOnly,
    /// Runs the fleet: tenants' lifecycle, profiles, domains, moves, migration runs.
    Operator,
    /// Everything, and manages tokens.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "operator" => Self::Operator,
            "admin" => Self::Admin,
            // `read_only`: the catalog's CHECK allows nothing else; were it ever to, the least.
            _ => Self::ReadOnly,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token to create.
pub struct NewToken<'a> {
    /// Who or what it is for; the actor in the audit log.
    pub name: &'a str,
    pub scope: Scope,
    pub expires_at: Option<DateTime<Utc>>,
    /// Who created it (an operator's token name, or `cli`).
    pub created_by: &'a str,
}

impl<'a> NewToken<'a> {
    /// An `admin` token that does not expire, made by `name` itself (for tools and tests).
    pub fn admin(name: &'a str) -> Self {
        Self { name, scope: Scope::Admin, expires_at: None, created_by: name }
    }
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) scope: Scope,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) created_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) expires_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) last_used_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    /// `active`, `expired` or `revoked`, as of now.
    pub(crate) fn state(&self) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|at| at <= Utc::now()) {
            "expired"
        } else {
            "active"
        }
    }
}

const COLUMNS: &str = "id, name, scope, created_at, created_by, expires_at, last_used_at, revoked_at";

fn info(row: &tokio_postgres::Row) -> TokenInfo {
    TokenInfo {
        id: row.get("id"),
        name: row.get("name"),
        scope: Scope::parse(row.get("scope")),
        created_at: row.get("created_at"),
        created_by: row.get("created_by"),
        expires_at: row.get("expires_at"),
        last_used_at: row.get("last_used_at"),
        revoked_at: row.get("revoked_at"),
    }
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a token; returns the token itself (shown once) and what is kept of it.
pub async fn create(
    client: &impl GenericClient,
    new: &NewToken<'_>,
) -> Result<(String, TokenInfo), tokio_postgres::Error> {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let row = client
        .query_one(
            &format!(
                "INSERT INTO control.operator_tokens (name, token_hash, scope, expires_at, created_by)
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[&new.name, &hash(&token), &new.scope.as_str(), &new.expires_at, &new.created_by],
        )
        .await?;
    Ok((token, info(&row)))
}

/// Who presented a token, once it is verified.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) scope: Scope,
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

/// What [`verify`] found.
pub(crate) enum Verdict {
    Valid(Caller),
    /// A real token, past its expiry.
    Expired(DateTime<Utc>),
    /// Not a token, an unknown one, or a revoked one (not told apart: nothing to learn from it).
    Refused,
}

/// Checks `token` (and notes its use when it is valid).
pub(crate) async fn verify(
    client: &impl GenericClient,
    token: &str,
) -> Result<Verdict, tokio_postgres::Error> {
    if !token.starts_with(PREFIX) {
        return Ok(Verdict::Refused);
    }
    // `last_used_at` is written at most once a minute per token, not on every request.
    let row = client
        .query_opt(
            "WITH token AS (
                 SELECT id, name, scope, expires_at, last_used_at,
                        expires_at IS NOT NULL AND expires_at <= now() AS expired
                   FROM control.operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL),
             used AS (
                 UPDATE control.operator_tokens o SET last_used_at = now() FROM token t
                  WHERE o.id = t.id AND NOT t.expired
                    AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute'))
             SELECT name, scope, expires_at, expired FROM token",
            &[&hash(token)],
        )
        .await?;
    Ok(match row {
        None => Verdict::Refused,
        Some(row) if row.get::<_, bool>("expired") => Verdict::Expired(row.get("expires_at")),
        Some(row) => Verdict::Valid(Caller {
            name: row.get("name"),
            scope: Scope::parse(row.get("scope")),
            expires_at: row.get("expires_at"),
        }),
    })
}

/// Every token, newest first (revoked ones too when `all`).
pub(crate) async fn list(
    client: &impl GenericClient,
    all: bool,
) -> Result<Vec<TokenInfo>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM control.operator_tokens
                  WHERE $1 OR revoked_at IS NULL ORDER BY id DESC"
            ),
            &[&all],
        )
        .await?;
    Ok(rows.iter().map(info).collect())
}

/// Revokes token `id` (a revoked token stays revoked as of its first revocation); `None` when
/// there is no such token, else the token and whether this call revoked it.
async fn revoke(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<(TokenInfo, bool)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE control.operator_tokens SET revoked_at = coalesce(revoked_at, now())
                  WHERE id = $1 RETURNING {COLUMNS}, revoked_at = now() AS revoked_now"
            ),
            &[&id],
        )
        .await?;
    Ok(row.map(|row| (info(&row), row.get("revoked_now"))))
}

/// Creates a token named and scoped as `new` and records it in the audit log, as one change.
pub(crate) async fn issue(
    client: &mut tokio_postgres::Client,
    new: &NewToken<'_>,
) -> Result<(String, TokenInfo), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let (token, info) = create(&tx, new).await?;
    super::audit::record(
        &tx,
        new.created_by,
        "token.create",
        None,
        serde_json::json!({ "id": info.id, "name": new.name, "scope": new.scope, "expires_at": new.expires_at }),
    )
    .await?;
    tx.commit().await?;
    Ok((token, info))
}

/// Revokes token `id` and records it in the audit log (only the first revocation is recorded).
pub(crate) async fn withdraw(
    client: &mut tokio_postgres::Client,
    id: i64,
    actor: &str,
) -> Result<Option<TokenInfo>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let Some((token, revoked_now)) = revoke(&tx, id).await? else { return Ok(None) };
    if revoked_now {
        super::audit::record(
            &tx,
            actor,
            "token.revoke",
            None,
            serde_json::json!({ "id": id, "name": token.name }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(token))
}

/// When a token made now with lifetime `lifetime` expires: 1 minute to 10 years.
pub(crate) fn expiry(lifetime: std::time::Duration) -> Result<DateTime<Utc>, &'static str> {
    const TEN_YEARS: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 24 * 3600);
    if lifetime < std::time::Duration::from_secs(60) || lifetime > TEN_YEARS {
        return Err("a token's lifetime must be 1 minute to 10 years (e.g. 90d)");
    }
    Ok(Utc::now() + chrono::Duration::from_std(lifetime).map_err(|_| "lifetime out of range")?)
}

/// Actors the system itself writes to the audit log: no token may be named like them.
const RESERVED_NAMES: [&str; 8] =
    ["cli", "billing", "provisioner", "worker", "mover", "plan", "system", "router"];

/// Checks a token's name (the actor in the audit log): 1 to 100 printable characters, not an
/// actor of the system's own (`billing`, `cli`, … or `user:…`, an internal user through a
/// router), and without invisible formatting characters (bidirectional overrides, zero-width
/// joiners) that would make one actor look like another.
pub(crate) fn check_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    if name.is_empty() || name.len() > 100 || name.chars().any(invisible) {
        return Err("token name must be 1 to 100 printable characters");
    }
    let lower = name.to_lowercase();
    if RESERVED_NAMES.contains(&lower.as_str()) || lower.starts_with("user:") {
        return Err("that name is an actor of the system's own in the audit log; pick another");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::Scope;

    #[test]
    fn token_names_cannot_pass_for_the_systems_own_actors_or_hide_characters() {
        use super::check_name;
        assert_eq!(check_name("  grafana "), Ok("grafana"));
        for bad in
            ["", "billing", "CLI", "user:42", "ops\u{202e}nimda", "a\u{200b}b", "x\ny", &"a".repeat(101)]
        {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_are_ordered_by_what_they_may_do() {
        assert!(Scope::ReadOnly < Scope::Operator && Scope::Operator < Scope::Admin);
        for scope in [Scope::ReadOnly, Scope::Operator, Scope::Admin] {
            assert_eq!(Scope::parse(scope.as_str()), scope);
            assert_eq!(serde_json::to_value(scope).unwrap(), scope.as_str());
        }
    }
}
