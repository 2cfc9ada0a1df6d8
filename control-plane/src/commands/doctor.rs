//! `tenantctl doctor`: checks what `tenantctl` and `tenantctl serve` need, changing nothing
//! (unlike every other command, it does not bring the catalog's schema up to date): the
//! configuration, the catalog and its version, Redis, the secret store and its key, and the
//! fleet's migrations. Each check says what it found and, when something is wrong, what to do.

use super::CliError;
use crate::cli::CatalogArgs;
use crate::output;
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;
use tenancy::secrets::SecretError;
use tenancy::settings::SecretsBackend;

/// How long each check may wait for what it talks to.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    verdict: Verdict,
    detail: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

impl Check {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self { check, verdict: Verdict::Ok, detail: detail.into(), hint: None }
    }

    fn warn(check: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { check, verdict: Verdict::Warn, detail: detail.into(), hint: Some(hint.into()) }
    }

    fn fail(check: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { check, verdict: Verdict::Fail, detail: detail.into(), hint: Some(hint.into()) }
    }
}

async fn within<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(CHECK_TIMEOUT, work).await.ok()
}

pub(super) async fn doctor(args: CatalogArgs, json: bool) -> Result<ExitCode, CliError> {
    let mut checks = vec![Check::ok("tenantctl", format!("version {}", env!("CARGO_PKG_VERSION")))];
    let migrations = crate::tenant_migrations::TenantMigrations::load(&args.provisioning.migrations_dir);
    checks.push(match &migrations {
        Ok(m) => Check::ok(
            "tenant migrations",
            format!("{} (newest V{})", args.provisioning.migrations_dir.display(), m.target_version()),
        ),
        Err(e) => Check::fail(
            "tenant migrations",
            e.to_string(),
            "set TENANT_MIGRATIONS_DIR to the directory of V<n>__<name>.sql files",
        ),
    });
    checks.push(templates_check(&args.provisioning.templates_dir));
    let catalog = catalog_checks(&args, &mut checks).await;
    checks.push(redis_check(&args).await);
    checks.push(secrets_check(&args, catalog.as_ref()).await);
    if let (Some(pool), Ok(migrations)) = (&catalog, &migrations) {
        checks.push(fleet_check(pool, migrations.target_version()).await);
    }
    Ok(report(&checks, json))
}

/// Prints the checks; exit code 1 when one failed.
fn report(checks: &[Check], json: bool) -> ExitCode {
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    if json {
        output::json(&serde_json::json!({ "ok": !failed, "checks": checks }));
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                let verdict = match c.verdict {
                    Verdict::Ok => "ok",
                    Verdict::Warn => "WARN",
                    Verdict::Fail => "FAIL",
                };
                vec![c.check.to_owned(), verdict.to_owned(), c.detail.clone()]
            })
            .collect();
        output::table(&["check", "", "detail"], &rows);
        for check in checks.iter().filter(|c| c.hint.is_some()) {
            output::note(&format!("{}: {}", check.check, check.hint.as_deref().unwrap_or_default()));
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `tenantctl doctor` through a context: the operator API (reachable, ready), the token (its
/// scope, its expiry), the control plane's version against this `tenantctl`'s, and the fleet's
/// migrations, as the API tells them. Changes nothing.
pub(super) async fn through_api(remote: &super::remote::Remote, json: bool) -> Result<ExitCode, CliError> {
    use reqwest::Method;
    let ours = env!("CARGO_PKG_VERSION");
    let mut checks = vec![
        Check::ok("tenantctl", format!("version {ours}")),
        Check::ok("context", format!("{} ({})", remote.name, remote.api_url())),
    ];
    checks.push(match within(remote.call(Method::GET, "/readyz", None)).await {
        Some(Ok(_)) => Check::ok("operator API", "reachable, and its catalog answers"),
        Some(Err(e)) => Check::fail(
            "operator API",
            e.message,
            "check the context's URL (tenantctl config get-contexts) and the control plane's log",
        ),
        None => Check::fail(
            "operator API",
            "no answer within 5s",
            "check the context's URL and that tenantctl serve runs",
        ),
    });
    let who = within(remote.call(Method::GET, "/v1/whoami", None)).await;
    match who {
        Some(Ok(who)) => {
            let (name, scope) = (who["name"].as_str().unwrap_or("?"), who["scope"].as_str().unwrap_or("?"));
            let expiry =
                who["expires_at"].as_str().and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
            checks.push(match expiry {
                None => Check::ok("token", format!("{name} ({scope}), no expiry")),
                Some(at) if at < chrono::Utc::now() + chrono::Duration::days(14) => Check::warn(
                    "token",
                    format!("{name} ({scope}), expires {}", at.to_rfc3339()),
                    "ask an admin for a new token (tenantctl tokens create), then tenantctl login again",
                ),
                Some(at) => Check::ok("token", format!("{name} ({scope}), expires {}", at.to_rfc3339())),
            });
            checks.push(match who["server_version"].as_str() {
                Some(theirs) if theirs == ours => Check::ok("control plane", format!("version {theirs}")),
                Some(theirs) => Check::warn(
                    "control plane",
                    format!("version {theirs}, this tenantctl {ours}"),
                    "use the tenantctl of the control plane's version (its API may differ)",
                ),
                None => Check::warn(
                    "control plane",
                    "version not said (older than this tenantctl)",
                    "upgrade the control plane, or use its tenantctl",
                ),
            });
        }
        Some(Err(e)) => checks.push(Check::fail(
            "token",
            e.message,
            "tenantctl login again (with a token from tenantctl tokens create)",
        )),
        None => checks.push(Check::fail("token", "no answer within 5s", "check the operator API")),
    }
    let fleet = within(remote.call(Method::GET, "/v1/fleet?days=1", None)).await;
    if !matches!(fleet, Some(Ok(_))) {
        checks.push(Check::warn(
            "tenants",
            "not counted (the API did not answer /v1/fleet)",
            "see the operator API check",
        ));
    }
    if let Some(Ok(fleet)) = fleet {
        let count = |statuses: &[&str]| -> i64 {
            fleet["counts"].as_array().map_or(0, |counts| {
                counts
                    .iter()
                    .filter(|c| c["status"].as_str().is_some_and(|s| statuses.contains(&s)))
                    .filter_map(|c| c["tenants"].as_i64())
                    .sum()
            })
        };
        if let Some(target) = fleet["target_version"].as_i64() {
            let behind = fleet["schema_versions"].as_array().map_or(0, |versions| {
                versions
                    .iter()
                    .filter(|v| v["version"].as_i64().is_none_or(|v| v < target))
                    .filter_map(|v| v["tenants"].as_i64())
                    .sum()
            });
            checks.push(fleet_verdict(count(&["active", "suspended"]), behind, count(&["failed"]), target));
        }
    }
    Ok(report(&checks, json))
}

fn templates_check(dir: &std::path::Path) -> Check {
    let hint = "set TENANT_TEMPLATES_DIR to the directory of <plan>.toml files";
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Check::fail("plan templates", format!("cannot read {}", dir.display()), hint);
    };
    let templates = crate::plans::Templates::new(dir);
    let (mut plans, mut broken) = (Vec::new(), Vec::new());
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        let Some(stem) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "toml"))
        else {
            continue;
        };
        match tenancy::domain::PlanName::parse(stem)
            .map_err(|e| e.to_string())
            .and_then(|plan| templates.load(&plan).map_err(|e| e.to_string()))
        {
            Ok(_) => plans.push(stem.to_owned()),
            Err(e) => broken.push(format!("{stem}: {e}")),
        }
    }
    plans.sort();
    match (plans.is_empty(), broken.is_empty()) {
        (_, false) => Check::fail("plan templates", broken.join("; "), "fix the template files named"),
        (true, true) => Check::fail("plan templates", format!("no <plan>.toml in {}", dir.display()), hint),
        (false, true) => Check::ok("plan templates", format!("{} ({})", dir.display(), plans.join(", "))),
    }
}

/// Connects to the catalog and compares its schema with this binary's; the pool when it
/// answered.
async fn catalog_checks(args: &CatalogArgs, checks: &mut Vec<Check>) -> Option<deadpool_postgres::Pool> {
    let common = &args.common;
    let hint = "check DATABASE_URL (and PG_SSL_ROOT_CERT for TLS), and that PostgreSQL is up";
    let pool = common
        .ca_bundle()
        .map_err(|e| e.to_string())
        .and_then(|bundle| {
            let url = common.database_url().map_err(|e| format!("DATABASE_URL {e}"))?;
            tenancy::pg::parse_config(url.expose(), &bundle).map_err(|e| e.to_string())
        })
        .and_then(|config| tenancy::pg::pool(&config, 2).map_err(|e| e.to_string()));
    let pool = match pool {
        Ok(pool) => pool,
        Err(e) => {
            checks.push(Check::fail("catalog", e, hint));
            return None;
        }
    };
    let answer = within(async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_user, current_database(),
                        to_regclass('control.refinery_schema_history') IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| tenancy::pg::describe_error(&e))?;
        let version: Option<i32> = if row.get::<_, bool>(3) {
            client
                .query_one("SELECT max(version) FROM control.refinery_schema_history", &[])
                .await
                .map_err(|e| tenancy::pg::describe_error(&e))?
                .get(0)
        } else {
            None
        };
        Ok::<_, String>((row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2), version))
    })
    .await;
    let (server, user, database, version) = match answer {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => {
            checks.push(Check::fail("catalog", e, hint));
            return None;
        }
        None => {
            checks.push(Check::fail(
                "catalog",
                format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
                hint,
            ));
            return None;
        }
    };
    checks.push(Check::ok("catalog", format!("PostgreSQL {server}, database {database} as {user}")));
    let embedded = crate::catalog::embedded_version();
    checks.push(match version {
        None => Check::warn(
            "catalog schema",
            "not created yet",
            "any other tenantctl command (or tenantctl serve) creates it",
        ),
        Some(v) if i64::from(v) == embedded => Check::ok("catalog schema", format!("V{v}, this tenantctl's")),
        Some(v) if i64::from(v) < embedded => Check::warn(
            "catalog schema",
            format!("V{v}; this tenantctl brings V{embedded}"),
            "tenantctl serve (or any other command) upgrades it at start; upgrade the routers after it",
        ),
        Some(v) => Check::fail(
            "catalog schema",
            format!("V{v} is newer than this tenantctl's V{embedded}"),
            "use the tenantctl of the version that upgraded the catalog",
        ),
    });
    Some(pool)
}

async fn redis_check(args: &CatalogArgs) -> Check {
    let common = &args.common;
    let Some(url) = &common.redis_url else {
        return Check::warn(
            "redis",
            "REDIS_URL is not set",
            "routers then learn of tenant changes only when their cache expires (ROUTER_CACHE_TTL)",
        );
    };
    let hint = "check REDIS_URL and that Redis is up (routers keep working without it, with stale caches)";
    let ping = within(async {
        let client = redis::Client::open(url.expose()).map_err(|e| e.to_string())?;
        let mut connection = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        redis::cmd("PING").query_async::<String>(&mut connection).await.map_err(|e| e.to_string())
    })
    .await;
    match ping {
        Some(Ok(_)) => Check::ok("redis", "answers PING"),
        Some(Err(e)) => Check::fail("redis", e, hint),
        None => Check::fail("redis", format!("no answer within {}s", CHECK_TIMEOUT.as_secs()), hint),
    }
}

/// Whether tenants' credentials can be read: the store answers and (local backend) the key
/// is the one they were written with. A missing key of an install that has tenants is never
/// answered with "generate one": a new key cannot read what the old one encrypted.
async fn secrets_check(args: &CatalogArgs, catalog: Option<&deadpool_postgres::Pool>) -> Check {
    let settings = &args.common.secrets;
    // A tenant whose secret to read back, and how many have one.
    let sample = match catalog {
        Some(pool) => within(async {
            let client = pool.get().await.ok()?;
            let row = client
                .query_one(
                    "SELECT count(*), (array_agg(secret_ref ORDER BY created_at DESC))[1],
                            (array_agg(slug ORDER BY created_at DESC))[1]
                       FROM control.tenants WHERE secret_ref IS NOT NULL AND status IN ('active', 'suspended')",
                    &[],
                )
                .await
                .ok()?;
            Some((row.get::<_, i64>(0), row.get::<_, Option<String>>(1), row.get::<_, Option<String>>(2)))
        })
        .await
        .flatten(),
        None => None,
    };
    // `None`: not known (the catalog did not answer), which is not the same as none.
    let with_secrets = sample.as_ref().map(|(n, _, _)| *n);
    let keyless = settings.secrets_backend == SecretsBackend::Local
        && settings.secrets_local_key.is_none()
        && settings.secrets_local_key_file.is_none();
    if keyless {
        let restore =
            "set SECRETS_LOCAL_KEY (or SECRETS_LOCAL_KEY_FILE) to the key this install has used, from where \
                       you keep it; do not generate a new one: it cannot read the existing credentials";
        return match with_secrets {
            Some(0) => Check::fail(
                "secret store",
                "SECRETS_BACKEND=local without a key (no tenant has credentials yet)",
                "a new install generates its key once and keeps it safe: `openssl rand -base64 32` into SECRETS_LOCAL_KEY_FILE",
            ),
            Some(n) => Check::fail(
                "secret store",
                format!("SECRETS_BACKEND=local without a key, and {n} tenants' credentials are encrypted with one"),
                restore,
            ),
            None => Check::fail(
                "secret store",
                "SECRETS_BACKEND=local without a key (whether tenants' credentials need one is unknown: the catalog did not answer)",
                restore,
            ),
        };
    }
    let Some(pool) = catalog else {
        return Check::warn(
            "secret store",
            "not checked: the catalog did not answer",
            "fix the catalog first",
        );
    };
    let store = match settings.build(pool.clone()).await {
        Ok(store) => store,
        Err(e) => return Check::fail("secret store", e.to_string(), "check the SECRETS_* settings"),
    };
    let Some((_, Some(secret), Some(slug))) = sample else {
        return Check::ok(
            "secret store",
            format!("{} (no tenant credentials to read back yet)", store.backend()),
        );
    };
    let name = tenancy::secrets::SecretName::from_catalog(secret);
    match within(store.get(&name)).await {
        Some(Ok(Some(_))) => Check::ok("secret store", format!("{}: reads tenant {slug}'s credentials", store.backend())),
        Some(Ok(None)) => Check::warn(
            "secret store",
            format!("{}: tenant {slug}'s credentials are missing", store.backend()),
            format!("tenantctl tenants rotate-credentials {slug} writes new ones"),
        ),
        Some(Err(e)) => Check::fail(
            "secret store",
            format!("{}: cannot read tenant {slug}'s credentials: {e}", store.backend()),
            match (&e, settings.secrets_backend) {
                (SecretError::Corrupt(_), SecretsBackend::Local) => {
                    "the key set is not the one this install's credentials were encrypted with: set the right one \
                     (a new key cannot read them)"
                }
                (SecretError::Unavailable(_), _) => "the store did not answer; check the network path to it (or the catalog)",
                (_, SecretsBackend::Aws) => {
                    "check AWS_REGION, the credentials' permissions (secretsmanager:GetSecretValue) and SECRETS_PREFIX"
                }
                (_, SecretsBackend::Local) => "check the SECRETS_* settings",
            },
        ),
        None => Check::fail(
            "secret store",
            format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
            "check the network path to the secret store",
        ),
    }
}

async fn fleet_check(pool: &deadpool_postgres::Pool, target: i64) -> Check {
    let counts = within(async {
        let client = pool.get().await.ok()?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status IN ('active', 'suspended')),
                        count(*) FILTER (WHERE status IN ('active', 'suspended') AND coalesce(schema_version, 0) < $1),
                        count(*) FILTER (WHERE status = 'failed')
                   FROM control.tenants",
                &[&target],
            )
            .await
            .ok()?;
        Some((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)))
    })
    .await
    .flatten();
    match counts {
        None => Check::warn(
            "tenants",
            "not counted (the catalog schema may not exist yet)",
            "run tenantctl serve once",
        ),
        Some((live, behind, failed)) => fleet_verdict(live, behind, failed, target),
    }
}

/// The fleet's check: tenants behind the newest migration, tenants failed to provision.
fn fleet_verdict(live: i64, behind: i64, failed: i64, target: i64) -> Check {
    if behind > 0 || failed > 0 {
        Check::warn(
            "tenants",
            format!("{live} live; {behind} below V{target}; {failed} failed to provision"),
            "tenantctl migrate plan, then migrate apply; tenantctl tenants list --status failed, then tenants retry <slug>",
        )
    } else {
        Check::ok("tenants", format!("{live} live, all at V{target}"))
    }
}
