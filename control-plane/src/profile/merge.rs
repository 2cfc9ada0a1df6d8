//! The three-way merge of a tenant's profile when its template changes: **base** is the template
//! config the tenant's profile was built from, **template** the template's new config, **tenant**
//! the tenant's profile now. Objects merge key by key, at any depth; anything else (a string, a
//! number, an array, `null`) is one value. At each key:
//!
//! - the tenant did not change it (tenant = base): the template's value is taken (a key the new
//!   template dropped is dropped);
//! - the template did not change it (template = base): the tenant's value is kept (a key the
//!   tenant removed stays removed);
//! - both made the same change: that value;
//! - both changed it differently: a **conflict**, resolved by [`Prefer`] — the tenant's value is
//!   kept unless the template is preferred — and always reported.
//!
//! So no edit of the tenant's is lost without a conflict naming it, and a tenant that changed
//! nothing ends with exactly the new template.

use serde_json::{Map, Value};

/// Which side a conflict takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    /// The tenant's value stays (nothing of the tenant's is lost).
    #[default]
    Tenant,
    /// The new template's value replaces the tenant's.
    Template,
}

/// A key both the template and the tenant changed, differently. `None`: the key is absent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conflict {
    /// Where, as a JSON pointer (`/theme/primary_color`).
    pub path: String,
    pub base: Option<Value>,
    pub template: Option<Value>,
    pub tenant: Option<Value>,
}

/// The merged profile, and the conflicts resolved on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub profile: Value,
    pub conflicts: Vec<Conflict>,
}

/// Merges the template's change from `base` to `template` into `tenant` (see the module).
pub fn merge(base: &Value, template: &Value, tenant: &Value, prefer: Prefer) -> Merged {
    let mut conflicts = Vec::new();
    let profile = merge_at("", Some(base), Some(template), Some(tenant), prefer, &mut conflicts)
        .unwrap_or_else(|| Value::Object(Map::new()));
    Merged { profile, conflicts }
}

fn merge_at(
    path: &str,
    base: Option<&Value>,
    template: Option<&Value>,
    tenant: Option<&Value>,
    prefer: Prefer,
    conflicts: &mut Vec<Conflict>,
) -> Option<Value> {
    if tenant == base {
        return template.cloned();
    }
    if template == base || template == tenant {
        return tenant.cloned();
    }
    // Both changed it, differently: objects on both sides (and in the base, or no base) merge
    // key by key; anything else is a conflict.
    let empty = Map::new();
    let base_object = match base {
        None => Some(&empty),
        Some(Value::Object(map)) => Some(map),
        Some(_) => None,
    };
    if let (Some(base), Some(Value::Object(template)), Some(Value::Object(tenant))) =
        (base_object, template, tenant)
    {
        let mut keys: Vec<&String> = base.keys().chain(template.keys()).chain(tenant.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut merged = Map::new();
        for key in keys {
            let at = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
            if let Some(value) =
                merge_at(&at, base.get(key), template.get(key), tenant.get(key), prefer, conflicts)
            {
                merged.insert(key.clone(), value);
            }
        }
        return Some(Value::Object(merged));
    }
    conflicts.push(Conflict {
        path: if path.is_empty() { "/".to_owned() } else { path.to_owned() },
        base: base.cloned(),
        template: template.cloned(),
        tenant: tenant.cloned(),
    });
    match prefer {
        Prefer::Tenant => tenant.cloned(),
        Prefer::Template => template.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn untouched_keys_follow_the_template_and_edits_stay() {
        let base = json!({"modules": ["projects", "tasks"], "theme": {"primary_color": "#2563eb", "logo": "default"}});
        let template = json!({"modules": ["projects", "tasks", "comments"], "theme": {"primary_color": "#1d4ed8", "logo": "default"}, "beta": false});
        let tenant = json!({"modules": ["projects", "tasks"], "theme": {"primary_color": "#2563eb", "logo": "acme.svg"}, "contact": "ops@acme.test"});
        let merged = merge(&base, &template, &tenant, Prefer::Tenant);
        assert_eq!(
            merged.profile,
            json!({"modules": ["projects", "tasks", "comments"], "theme": {"primary_color": "#1d4ed8", "logo": "acme.svg"}, "beta": false, "contact": "ops@acme.test"})
        );
        assert!(merged.conflicts.is_empty());
    }

    #[test]
    fn a_key_both_changed_is_a_conflict_resolved_by_preference() {
        let base = json!({"theme": {"primary_color": "#2563eb"}, "modules": ["a"]});
        let template = json!({"theme": {"primary_color": "#1d4ed8"}});
        let tenant = json!({"theme": {"primary_color": "#ff0000"}, "modules": ["a", "b"]});
        let kept = merge(&base, &template, &tenant, Prefer::Tenant);
        assert_eq!(kept.profile, json!({"theme": {"primary_color": "#ff0000"}, "modules": ["a", "b"]}));
        let paths: Vec<&str> = kept.conflicts.iter().map(|c| c.path.as_str()).collect();
        // The template dropped `modules` the tenant had changed: a conflict too.
        assert_eq!(paths, ["/modules", "/theme/primary_color"]);
        let taken = merge(&base, &template, &tenant, Prefer::Template);
        assert_eq!(taken.profile, json!({"theme": {"primary_color": "#1d4ed8"}}));
    }

    #[test]
    fn an_unknown_base_makes_every_difference_a_conflict() {
        let merged =
            merge(&json!({}), &json!({"a": 1, "b": 2}), &json!({"a": 1, "b": 3, "c": 4}), Prefer::Tenant);
        assert_eq!(merged.profile, json!({"a": 1, "b": 3, "c": 4}));
        assert_eq!(merged.conflicts.len(), 1);
        assert_eq!(merged.conflicts[0].path, "/b");
    }

    /// Small JSON values: objects over few keys, so that the three sides share keys.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0..4i64).prop_map(|n| json!(n)),
            "[ab]{0,2}".prop_map(Value::String),
            prop::collection::vec(0..3i64, 0..3).prop_map(|v| json!(v)),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map("[k-n]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[k-n]", value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// The value at `path` (a JSON pointer), or `None`.
    fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
        if path == "/" {
            return Some(value);
        }
        value.pointer(path)
    }

    /// Every leaf path (and every path whose value is not an object) of `value`, with absent
    /// keys of `other` included: where two values may differ.
    fn paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, inner) in map {
                    paths(inner, &format!("{prefix}/{key}"), out);
                }
            }
            _ => out.push(if prefix.is_empty() { "/".to_owned() } else { prefix.to_owned() }),
        }
    }

    /// Whether a conflict was reported at `path`, or at a key on the way to it, or under it.
    fn reported(conflicts: &[Conflict], path: &str) -> bool {
        conflicts.iter().any(|c| {
            c.path == "/"
                || c.path == path
                || path.starts_with(&format!("{}/", c.path))
                || c.path.starts_with(&format!("{path}/"))
        })
    }

    proptest! {
        #[test]
        fn a_tenant_that_changed_nothing_ends_equal_to_the_new_template(base in object(), template in object()) {
            let merged = merge(&base, &template, &base, Prefer::Tenant);
            prop_assert_eq!(&merged.profile, &template);
            prop_assert!(merged.conflicts.is_empty());
        }

        #[test]
        fn an_unchanged_template_keeps_the_tenant_as_it_is(base in object(), tenant in object()) {
            let merged = merge(&base, &base, &tenant, Prefer::Template);
            prop_assert_eq!(&merged.profile, &tenant);
            prop_assert!(merged.conflicts.is_empty());
        }

        #[test]
        fn no_edit_of_the_tenant_is_lost_without_a_reported_conflict(
            base in object(), template in object(), tenant in object(),
            prefer in prop_oneof![Just(Prefer::Tenant), Just(Prefer::Template)],
        ) {
            let merged = merge(&base, &template, &tenant, prefer);
            // Where the tenant differs from the base (a value changed, added or removed), the
            // result has the tenant's value, or a conflict says why not.
            let mut candidates = Vec::new();
            paths(&tenant, "", &mut candidates);
            paths(&base, "", &mut candidates);
            for path in candidates {
                let (was, now) = (at(&base, &path), at(&tenant, &path));
                // Objects on both sides: their differing keys are candidates of their own.
                if was == now || (was.is_some_and(Value::is_object) && now.is_some_and(Value::is_object)) {
                    continue;
                }
                let result = at(&merged.profile, &path);
                // An object the tenant made is kept as an object: its keys are candidates of
                // their own.
                let kept = result == now || (result.is_some_and(Value::is_object) && now.is_some_and(Value::is_object));
                prop_assert!(kept || reported(&merged.conflicts, &path),
                    "edit at {} lost: base {:?} template {:?} tenant {:?} merged {:?}",
                    path, base, template, tenant, merged.profile);
            }
            // Preferring the tenant loses nothing at all.
            if prefer == Prefer::Tenant {
                let mut edited = Vec::new();
                paths(&tenant, "", &mut edited);
                for path in edited {
                    let (was, now) = (at(&base, &path), at(&tenant, &path));
                    let result = at(&merged.profile, &path);
                    let objects = now.is_some_and(Value::is_object) && (was.is_some_and(Value::is_object) || result.is_some_and(Value::is_object));
                    if was != now && !objects {
                        prop_assert_eq!(result, now, "at {}", path);
                    }
                }
            }
        }

        #[test]
        fn without_conflicts_the_templates_changes_are_all_taken(base in object(), template in object(), tenant in object()) {
            let merged = merge(&base, &template, &tenant, Prefer::Tenant);
            if merged.conflicts.is_empty() {
                let mut changed = Vec::new();
                paths(&template, "", &mut changed);
                for path in changed {
                    let (was, new) = (at(&base, &path), at(&template, &path));
                    let objects = was.is_some_and(Value::is_object) && new.is_some_and(Value::is_object);
                    if was != new && !objects && was == at(&tenant, &path) {
                        prop_assert_eq!(at(&merged.profile, &path), at(&template, &path), "at {}", path);
                    }
                }
            }
        }
    }
}
