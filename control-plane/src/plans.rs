//! Plan templates (`tenant-templates/<plan>.toml`): limits, config and seed SQL for each plan,
//! with `extends` inheritance (`enterprise` extends `pro` extends `base`). Tables merge key by
//! key; any other value in a child replaces the parent's.

use std::path::PathBuf;
use std::time::Duration;
use tenancy::domain::PlanName;

/// Inheritance deeper than this is certainly a mistake.
const MAX_DEPTH: usize = 16;

/// A plan's fully merged template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    pub(crate) plan: PlanName,
    pub(crate) version: i32,
    pub(crate) description: String,
    pub(crate) limits: Limits,
    /// Enabled modules, module settings and theme: copied into the tenant's config.
    pub(crate) config: serde_json::Value,
    /// Idempotent SQL run in the tenant's schema after migrations.
    pub(crate) seed_sql: Option<String>,
    /// Own schema in a shared database, or own database.
    pub(crate) isolation: tenancy::domain::Isolation,
    /// The JSON Schema its tenants' config must match (`schema = "<file>"`), if it names one.
    pub(crate) schema: Option<crate::profile::schema::ProfileSchema>,
}

impl Template {
    /// Whether `config` may be a profile of this template's tenants; else what is wrong with it.
    pub(crate) fn check_profile(&self, config: &serde_json::Value) -> Result<(), String> {
        match &self.schema {
            None => Ok(()),
            Some(schema) => schema.check(config).map_err(|errors| {
                format!("it does not match {} (template {}): {}", schema.name, self.plan, errors.join("; "))
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    pub(crate) pool_size: u32,
    /// How the router's PostgreSQL-protocol door lends the tenant's connections: `transaction`
    /// (the default) or `session`.
    #[serde(default)]
    pub(crate) pool_mode: tenancy::domain::PoolMode,
    pub(crate) connection_limit: u32,
    pub(crate) rate_limit_per_second: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    pub(crate) statement_timeout: Option<Duration>,
    /// `idle_in_transaction_session_timeout` of the tenant's role: a session left idle inside a
    /// transaction (holding back vacuum for everyone on the database) is ended after it.
    #[serde(default, with = "humantime_serde_opt")]
    pub(crate) idle_in_transaction_timeout: Option<Duration>,
    /// `temp_file_limit` of the tenant's role (`"1GB"`, PostgreSQL's units): a setting only a
    /// superuser may change, so the tenant cannot lift it.
    #[serde(default)]
    pub(crate) temp_file_limit: Option<String>,
}

/// Whether `raw` is a size PostgreSQL reads for `temp_file_limit`: digits and a unit.
fn valid_size(raw: &str) -> bool {
    let digits = raw.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &raw[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["kB", "MB", "GB", "TB"].contains(&unit)
}

mod humantime_serde_opt {
    use serde::Deserialize as _;
    use std::time::Duration;

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|raw| humantime::parse_duration(&raw).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[serde(default)]
    extends: Option<String>,
    version: i32,
    #[serde(default)]
    description: String,
    limits: Limits,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    seed: Option<Seed>,
    #[serde(default)]
    isolation: Option<tenancy::domain::Isolation>,
    /// A JSON Schema file beside the templates for the tenants' config.
    #[serde(default)]
    schema: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    sql: String,
}

/// Why a plan's template could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("unknown plan {plan:?}: no template {path}")]
    UnknownPlan { plan: String, path: String },
    #[error("cannot read template {path}: {message}")]
    Read { path: String, message: String },
    #[error("template {path} is invalid: {message}")]
    Invalid { path: String, message: String },
    #[error("template inheritance loops: {0}")]
    Cycle(String),
}

/// The templates directory.
#[derive(Debug, Clone)]
pub(crate) struct Templates {
    dir: PathBuf,
}

impl Templates {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path_of(&self, plan: &PlanName) -> PathBuf {
        self.dir.join(format!("{plan}.toml"))
    }

    fn read_table(&self, plan: &PlanName) -> Result<toml::Table, TemplateError> {
        let path = self.path_of(plan);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TemplateError::UnknownPlan { plan: plan.to_string(), path: path.display().to_string() }
            } else {
                TemplateError::Read { path: path.display().to_string(), message: e.to_string() }
            }
        })?;
        text.parse::<toml::Table>()
            .map_err(|e| TemplateError::Invalid { path: path.display().to_string(), message: e.to_string() })
    }

    /// Loads `plan`, following `extends` to the root and merging from the root down.
    pub(crate) fn load(&self, plan: &PlanName) -> Result<Template, TemplateError> {
        let mut chain: Vec<(PlanName, toml::Table)> = Vec::new();
        let mut next = Some(plan.clone());
        while let Some(name) = next.take() {
            if chain.iter().any(|(seen, _)| *seen == name) || chain.len() >= MAX_DEPTH {
                let names: Vec<_> =
                    chain.iter().map(|(n, _)| n.to_string()).chain([name.to_string()]).collect();
                return Err(TemplateError::Cycle(names.join(" -> ")));
            }
            let table = self.read_table(&name)?;
            if let Some(parent) = table.get("extends") {
                let invalid = |message: String| TemplateError::Invalid {
                    path: self.path_of(&name).display().to_string(),
                    message,
                };
                let parent = parent.as_str().ok_or_else(|| invalid("`extends` must be a string".into()))?;
                next = Some(PlanName::parse(parent).map_err(|e| invalid(e.to_string()))?);
            }
            chain.push((name, table));
        }
        let merged = chain.into_iter().rev().map(|(_, table)| table).reduce(merge).unwrap_or_default();
        let path = self.path_of(plan).display().to_string();
        let file: TemplateFile = toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| {
            TemplateError::Invalid { path: path.clone(), message: e.to_string() }
        })?;
        let _ = file.extends;
        if file.limits.pool_size == 0 || file.limits.connection_limit < file.limits.pool_size {
            return Err(TemplateError::Invalid {
                path,
                message: "limits need pool_size >= 1 and connection_limit >= pool_size".into(),
            });
        }
        if file.limits.temp_file_limit.as_deref().is_some_and(|size| !valid_size(size)) {
            return Err(TemplateError::Invalid {
                path,
                message: "limits.temp_file_limit must be a size such as \"512MB\" or \"2GB\"".into(),
            });
        }
        let config = serde_json::to_value(file.config.unwrap_or_default())
            .map_err(|e| TemplateError::Invalid { path: path.clone(), message: e.to_string() })?;
        let schema = match &file.schema {
            None => None,
            Some(name) => Some(
                self.schema(name)
                    .map_err(|message| TemplateError::Invalid { path: path.clone(), message })?,
            ),
        };
        if let Some(schema) = &schema {
            schema.check(&config).map_err(|errors| TemplateError::Invalid {
                path: path.clone(),
                message: format!("its [config] does not match {}: {}", schema.name, errors.join("; ")),
            })?;
        }
        Ok(Template {
            plan: plan.clone(),
            version: file.version,
            description: file.description,
            limits: file.limits,
            config,
            seed_sql: file.seed.map(|s| s.sql).filter(|sql| !sql.trim().is_empty()),
            isolation: file.isolation.unwrap_or(tenancy::domain::Isolation::Schema),
            schema,
        })
    }

    /// The profile schema `name`, a JSON file in the templates directory (no path outside it).
    fn schema(&self, name: &str) -> Result<crate::profile::schema::ProfileSchema, String> {
        let plain =
            std::path::Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || name.is_empty() {
            return Err(format!("`schema` must name a file in the templates directory, not {name:?}"));
        }
        let path = self.dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("schema {}: {e}", path.display()))?;
        let raw =
            serde_json::from_str(&text).map_err(|e| format!("schema {}: not JSON: {e}", path.display()))?;
        crate::profile::schema::ProfileSchema::new(name, raw)
    }
}

/// Deep merge: tables merge recursively, everything else in `child` wins.
fn merge(mut parent: toml::Table, child: toml::Table) -> toml::Table {
    for (key, value) in child {
        match (parent.remove(&key), value) {
            (Some(toml::Value::Table(p)), toml::Value::Table(c)) => {
                parent.insert(key, toml::Value::Table(merge(p, c)));
            }
            (_, value) => {
                parent.insert(key, value);
            }
        }
    }
    parent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_templates() -> Templates {
        Templates::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tenant-templates"))
    }

    fn plan(name: &str) -> PlanName {
        PlanName::parse(name).unwrap()
    }

    #[test]
    fn the_repository_plans_load_and_inherit() {
        let templates = repo_templates();
        let starter = templates.load(&plan("starter")).unwrap();
        assert_eq!(starter.limits.pool_size, 2);
        assert_eq!(starter.version, 1);
        let enterprise = templates.load(&plan("enterprise")).unwrap();
        assert_eq!(enterprise.limits.pool_size, 10);
        assert_eq!(enterprise.version, 2, "inherited from pro");
        assert_eq!(enterprise.config["theme"]["logo"], "custom");
        assert_eq!(enterprise.config["theme"]["primary_color"], "#2563eb", "merged from base");
        assert_eq!(enterprise.limits.statement_timeout, Some(Duration::from_secs(60)));
        assert_eq!(starter.limits.idle_in_transaction_timeout, Some(Duration::from_secs(30)));
        assert_eq!(starter.limits.temp_file_limit.as_deref(), Some("1GB"));
        assert!(
            valid_size("512MB")
                && valid_size("2GB")
                && !valid_size("2 GB")
                && !valid_size("GB")
                && !valid_size("1PB")
        );
        assert!(enterprise.seed_sql.unwrap().contains("enterprise"));
        assert_eq!(enterprise.isolation, tenancy::domain::Isolation::Database);
        assert_eq!(starter.isolation, tenancy::domain::Isolation::Schema);
        assert_eq!(enterprise.limits.pool_mode, tenancy::domain::PoolMode::Transaction);
    }

    #[test]
    fn a_plan_may_ask_for_session_pooling_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let limits = "[limits]\npool_size=1\nconnection_limit=1\n";
        std::fs::write(dir.path().join("plain.toml"), format!("version = 1\n{limits}")).unwrap();
        std::fs::write(
            dir.path().join("pinned.toml"),
            format!("version = 1\n{limits}pool_mode = \"session\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("odd.toml"),
            format!("version = 1\n{limits}pool_mode = \"statement\"\n"),
        )
        .unwrap();
        let templates = Templates::new(dir.path());
        assert_eq!(
            templates.load(&plan("plain")).unwrap().limits.pool_mode,
            tenancy::domain::PoolMode::Transaction
        );
        assert_eq!(
            templates.load(&plan("pinned")).unwrap().limits.pool_mode,
            tenancy::domain::PoolMode::Session
        );
        let err = templates.load(&plan("odd")).unwrap_err().to_string();
        assert!(err.contains("statement"), "{err}");
    }

    #[test]
    fn unknown_plans_and_cycles_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "extends = \"b\"\nversion = 1\n[limits]\npool_size=1\nconnection_limit=1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "extends = \"a\"\nversion = 1\n[limits]\npool_size=1\nconnection_limit=1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "version = 1\n[limits]\npool_size=0\nconnection_limit=1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("typo.toml"),
            "version = 1\npool_sise = 3\n[limits]\npool_size=1\nconnection_limit=1\n",
        )
        .unwrap();
        let templates = Templates::new(dir.path());
        assert!(matches!(templates.load(&plan("nope")), Err(TemplateError::UnknownPlan { .. })));
        let err = templates.load(&plan("a")).unwrap_err();
        assert!(matches!(err, TemplateError::Cycle(ref chain) if chain == "a -> b -> a"), "{err}");
        assert!(matches!(templates.load(&plan("bad")), Err(TemplateError::Invalid { .. })));
        let err = templates.load(&plan("typo")).unwrap_err().to_string();
        assert!(err.contains("pool_sise"), "{err}");
    }

    #[test]
    fn a_template_declares_its_profiles_schema_and_keeps_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let limits = "[limits]\npool_size=1\nconnection_limit=1\n";
        std::fs::write(
            dir.path().join("colors.json"),
            r##"{"type": "object", "properties": {"color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}}}"##,
        )
        .unwrap();
        let template = |name: &str, schema: &str, color: &str| {
            let body = format!("version = 1\nschema = \"{schema}\"\n{limits}[config]\ncolor = \"{color}\"\n");
            std::fs::write(dir.path().join(format!("{name}.toml")), body).unwrap();
        };
        template("good", "colors.json", "#00ff00");
        template("breaks", "colors.json", "green");
        template("escapes", "../colors.json", "#00ff00");
        template("missing", "nope.json", "#00ff00");
        let templates = Templates::new(dir.path());
        let good = templates.load(&plan("good")).unwrap();
        assert!(good.check_profile(&serde_json::json!({"color": "#0000ff"})).is_ok());
        let why = good.check_profile(&serde_json::json!({"color": "blue"})).unwrap_err();
        assert!(why.contains("/color") && why.contains("colors.json"), "{why}");
        for name in ["breaks", "escapes", "missing"] {
            assert!(matches!(templates.load(&plan(name)), Err(TemplateError::Invalid { .. })), "{name}");
        }
        // The repository's templates keep to theirs.
        for name in ["starter", "pro", "enterprise"] {
            let template = repo_templates().load(&plan(name)).unwrap();
            assert!(template.schema.is_some() && template.check_profile(&template.config).is_ok(), "{name}");
        }
    }

    #[test]
    fn merge_is_deep_for_tables_only() {
        let parent: toml::Table = "a = [1, 2]\n[t]\nx = 1\ny = 2\n".parse().unwrap();
        let child: toml::Table = "a = [3]\n[t]\ny = 5\n".parse().unwrap();
        let merged = merge(parent, child);
        assert_eq!(merged["a"].as_array().unwrap().len(), 1);
        assert_eq!(merged["t"]["x"].as_integer(), Some(1));
        assert_eq!(merged["t"]["y"].as_integer(), Some(5));
    }
}
