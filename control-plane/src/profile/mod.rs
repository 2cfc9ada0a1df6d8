//! A tenant's profile (its `config`: enabled modules, module settings, theme, contacts) and the
//! template it was built from: the three-way merge that carries a template's changes into
//! tenants without losing their own edits ([`merge`]), the fleet's upgrade ([`upgrade`]), and
//! JSON merge patches of a profile ([`merge_patch`]).

pub mod merge;
pub mod schema;
pub mod upgrade;

use serde_json::Value;

/// The base of a tenant's next merge: the template config its profile was last built from, as
/// recorded; for a tenant from before that was recorded, its template's config as the template
/// file has it now if the file is still at the version the tenant was built from (its most
/// likely base), else nothing (`{}`: every key both the tenant and the template have, with
/// different values, is then a conflict).
pub(crate) fn base_of(
    profile: &crate::catalog::tenants::Profile,
    templates: &crate::plans::Templates,
) -> Value {
    if let Some(recorded) = &profile.template_config {
        return recorded.clone();
    }
    tenancy::domain::PlanName::parse(&profile.template)
        .ok()
        .and_then(|plan| templates.load(&plan).ok())
        .filter(|template| template.version == profile.template_version)
        .map_or_else(|| Value::Object(serde_json::Map::new()), |template| template.config)
}

/// Applies `patch` to `target` as a JSON merge patch (RFC 7386): an object's keys merge
/// recursively, `null` removes a key, anything else replaces the value.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, change) in changes {
            if change.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patches_follow_rfc_7386() {
        // The examples of RFC 7386, appendix A.
        for (original, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ] {
            let mut target = original.clone();
            merge_patch(&mut target, &patch);
            assert_eq!(target, result, "{original} + {patch}");
        }
    }
}
