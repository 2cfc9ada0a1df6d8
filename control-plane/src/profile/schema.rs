//! The JSON Schema a template declares for its tenants' profiles (`schema = "<file>"` in the
//! template, a file beside the templates): what an operator's edit, a template upgrade's merge
//! and a plan change's merge must produce.

use serde_json::Value;
use std::sync::Arc;

/// Most violations reported at once.
const MAX_REPORTED: usize = 10;

/// A compiled profile schema.
#[derive(Clone)]
pub struct ProfileSchema {
    /// Where it was read from (for messages).
    pub(crate) name: String,
    raw: Value,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for ProfileSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileSchema").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PartialEq for ProfileSchema {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl ProfileSchema {
    /// Compiles `raw`; `Err` when it is not a valid JSON Schema (or refers to other documents:
    /// nothing is fetched).
    pub fn new(name: &str, raw: Value) -> Result<Self, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&raw)
            .map_err(|e| format!("{name} is not a valid JSON Schema: {e}"))?;
        Ok(Self { name: name.to_owned(), raw, validator: Arc::new(validator) })
    }

    /// Whether `profile` matches; else what does not, as `<where>: <why>` lines (at most ten).
    pub fn check(&self, profile: &Value) -> Result<(), Vec<String>> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(profile)
            .take(MAX_REPORTED)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{}: {e}", if at.is_empty() { "/".to_owned() } else { at })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profiles_are_checked_and_violations_named_by_where_they_are() {
        let schema = ProfileSchema::new(
            "test",
            json!({"type": "object", "properties": {"theme": {"type": "object", "properties": {
                "primary_color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}}, "additionalProperties": false}}}),
        )
        .unwrap();
        assert!(schema.check(&json!({"theme": {"primary_color": "#00ff00"}, "mine": 1})).is_ok());
        let errors = schema.check(&json!({"theme": {"primary_color": "red", "font": "x"}})).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("/theme/primary_color: ")), "{errors:?}");
        assert!(schema.check(&json!([1])).is_err());
    }

    #[test]
    fn an_invalid_schema_is_refused() {
        assert!(ProfileSchema::new("bad", json!({"type": "no-such-type"})).is_err());
        assert!(ProfileSchema::new("bad", json!({"properties": 3})).is_err());
    }

    #[test]
    fn the_sample_templates_schema_is_valid() {
        let path = format!("{}/../tenant-templates/profile.schema.json", env!("CARGO_MANIFEST_DIR"));
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let schema = ProfileSchema::new("profile.schema.json", raw).unwrap();
        assert!(schema
            .check(&json!({"modules": ["projects"], "contacts": [{"email": "a@b.c", "role": "billing"}]}))
            .is_ok());
        assert!(schema.check(&json!({"modules": ["projects", "projects"]})).is_err());
        assert!(schema.check(&json!({"contacts": [{"name": "no email"}]})).is_err());
    }
}
