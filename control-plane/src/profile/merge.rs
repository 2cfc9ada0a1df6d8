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
    /// Where, as a JSON pointer (`/theme/primary_color`; `""`: the whole profile).
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
        // The whole profile is "" (RFC 6901); "/" would be the key "".
        path: path.to_owned(),
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

    /// Key names, awkward ones included (JSON pointer escapes, the empty key).
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("k".to_owned()),
            Just("l".to_owned()),
            Just("a/b".to_owned()),
            Just("~m".to_owned()),
            Just(String::new())
        ]
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
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(key(), value(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// An edit of a profile: at a path of one or two keys, a new value, or the key removed.
    fn edits() -> impl Strategy<Value = Vec<(Vec<String>, Option<Value>)>> {
        prop::collection::vec((prop::collection::vec(key(), 1..3), prop::option::of(value())), 0..4)
    }

    /// `base` with `edits` applied (objects made on the way where needed).
    fn edited(base: &Value, edits: &[(Vec<String>, Option<Value>)]) -> Value {
        let mut value = base.clone();
        for (path, change) in edits {
            let mut at = &mut value;
            for (i, key) in path.iter().enumerate() {
                if !at.is_object() {
                    *at = json!({});
                }
                let map = at.as_object_mut().unwrap();
                if i + 1 == path.len() {
                    match change {
                        Some(new) => {
                            map.insert(key.clone(), new.clone());
                        }
                        None => {
                            map.remove(key);
                        }
                    }
                    break;
                }
                at = map.entry(key.clone()).or_insert_with(|| json!({}));
            }
        }
        value
    }

    fn pointer(prefix: &str, key: &str) -> String {
        format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"))
    }

    /// The value at `path` (a JSON pointer, `""` the whole), or `None`.
    fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
        value.pointer(path)
    }

    /// Every path of `value` that is not a non-empty object: where two values may differ.
    fn paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, inner) in map {
                    paths(inner, &pointer(prefix, key), out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    /// Whether a conflict was reported at `path`, or at a key on the way to it, or under it.
    fn reported(conflicts: &[Conflict], path: &str) -> bool {
        conflicts.iter().any(|c| {
            c.path == path
                || path.starts_with(&format!("{}/", c.path))
                || c.path.starts_with(&format!("{path}/"))
        })
    }

    /// No edit of `tenant`'s (against `base`) is missing from `merged` without a conflict naming
    /// it; with `Prefer::Tenant`, none is missing at all.
    fn tenant_edits_kept(
        base: &Value,
        tenant: &Value,
        merged: &Merged,
        prefer: Prefer,
    ) -> Result<(), TestCaseError> {
        let mut candidates = Vec::new();
        paths(tenant, "", &mut candidates);
        paths(base, "", &mut candidates);
        for path in candidates {
            let (was, now, result) = (at(base, &path), at(tenant, &path), at(&merged.profile, &path));
            // Objects on both sides: their differing keys are candidates of their own.
            if was == now || (was.is_some_and(Value::is_object) && now.is_some_and(Value::is_object)) {
                continue;
            }
            // An object the tenant made is kept as an object: its keys are candidates too.
            let kept =
                result == now || (result.is_some_and(Value::is_object) && now.is_some_and(Value::is_object));
            prop_assert!(
                kept || reported(&merged.conflicts, &path),
                "edit at {:?} lost: base {} tenant {} merged {}",
                path,
                base,
                tenant,
                merged.profile
            );
            if prefer == Prefer::Tenant {
                prop_assert!(kept, "edit at {:?} lost although the tenant is preferred", path);
            }
        }
        Ok(())
    }

    /// Every change of `template`'s (against `base`) where the tenant has `base`'s value is in
    /// `merged`, dropped keys dropped.
    fn template_changes_taken(
        base: &Value,
        template: &Value,
        tenant: &Value,
        merged: &Merged,
    ) -> Result<(), TestCaseError> {
        let mut candidates = Vec::new();
        paths(template, "", &mut candidates);
        paths(base, "", &mut candidates);
        for path in candidates {
            let (was, new, result) = (at(base, &path), at(template, &path), at(&merged.profile, &path));
            let objects = was.is_some_and(Value::is_object) && new.is_some_and(Value::is_object);
            if was == new || objects || at(tenant, &path) != was || reported(&merged.conflicts, &path) {
                continue;
            }
            let taken =
                result == new || (result.is_some_and(Value::is_object) && new.is_some_and(Value::is_object));
            prop_assert!(
                taken,
                "template change at {:?} not taken: base {} template {} tenant {} merged {}",
                path,
                base,
                template,
                tenant,
                merged.profile
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn a_tenant_that_changed_nothing_ends_equal_to_the_new_template(base in object(), changes in edits()) {
            let template = edited(&base, &changes);
            let merged = merge(&base, &template, &base, Prefer::Tenant);
            prop_assert_eq!(&merged.profile, &template);
            prop_assert!(merged.conflicts.is_empty());
        }

        #[test]
        fn an_unchanged_template_keeps_the_tenant_as_it_is(base in object(), changes in edits()) {
            let tenant = edited(&base, &changes);
            let merged = merge(&base, &base, &tenant, Prefer::Template);
            prop_assert_eq!(&merged.profile, &tenant);
            prop_assert!(merged.conflicts.is_empty());
        }

        #[test]
        fn edits_of_both_sides_merge_and_none_of_the_tenants_is_lost_unreported(
            base in object(), theirs in edits(), ours in edits(),
            prefer in prop_oneof![Just(Prefer::Tenant), Just(Prefer::Template)],
        ) {
            let (template, tenant) = (edited(&base, &theirs), edited(&base, &ours));
            let merged = merge(&base, &template, &tenant, prefer);
            tenant_edits_kept(&base, &tenant, &merged, prefer)?;
            template_changes_taken(&base, &template, &tenant, &merged)?;
        }

        #[test]
        fn unrelated_values_lose_nothing_unreported_either(
            base in object(), template in object(), tenant in object(),
            prefer in prop_oneof![Just(Prefer::Tenant), Just(Prefer::Template)],
        ) {
            let merged = merge(&base, &template, &tenant, prefer);
            tenant_edits_kept(&base, &tenant, &merged, prefer)?;
            template_changes_taken(&base, &template, &tenant, &merged)?;
        }
    }
}
