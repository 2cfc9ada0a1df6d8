//! YAML for `-o yaml`: a JSON value written as block-style YAML. Every string (keys too) is
//! written double-quoted with JSON's escapes, which YAML's double-quoted scalars read the same
//! way, so no string is ever taken for a number, a boolean, null or a date (`"no"`, `"1e3"`,
//! `"2024-01-01"` stay strings).

use serde_json::Value;
use std::fmt::Write as _;

/// `value` as a YAML document (ends with a newline).
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// A scalar, or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn nested(value: &Value) -> bool {
    matches!(value, Value::Object(m) if !m.is_empty()) || matches!(value, Value::Array(a) if !a.is_empty())
}

fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        let _ = write!(out, "{:indent$}{}:", "", quoted(key));
        child(out, value, indent);
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        let _ = write!(out, "{:indent$}-", "");
        child(out, item, indent);
    }
}

/// What follows a key's colon or a sequence's dash.
fn child(out: &mut String, value: &Value, indent: usize) {
    if nested(value) {
        out.push('\n');
        match value {
            Value::Object(map) => mapping(out, map, indent + 2),
            Value::Array(items) => sequence(out, items, indent + 2),
            _ => {}
        }
    } else {
        let _ = writeln!(out, " {}", inline(value));
    }
}

#[cfg(test)]
mod tests {
    use super::to_yaml;
    use serde_json::json;

    #[test]
    fn json_values_become_block_yaml_with_every_string_quoted() {
        let value = json!({
            "slug": "acme",
            "answer": "no",
            "version": 3,
            "ratio": 0.5,
            "active": true,
            "missing": null,
            "tags": ["a", "line\nbreak"],
            "empty": {},
            "none": [],
            "nested": {"items": [{"id": 1, "name": "x: y"}, [1, 2]]},
        });
        assert_eq!(
            to_yaml(&value),
            concat!(
                "\"active\": true\n",
                "\"answer\": \"no\"\n",
                "\"empty\": {}\n",
                "\"missing\": null\n",
                "\"nested\":\n",
                "  \"items\":\n",
                "    -\n",
                "      \"id\": 1\n",
                "      \"name\": \"x: y\"\n",
                "    -\n",
                "      - 1\n",
                "      - 2\n",
                "\"none\": []\n",
                "\"ratio\": 0.5\n",
                "\"slug\": \"acme\"\n",
                "\"tags\":\n",
                "  - \"a\"\n",
                "  - \"line\\nbreak\"\n",
                "\"version\": 3\n",
            )
        );
        assert_eq!(to_yaml(&json!([])), "[]\n");
        assert_eq!(to_yaml(&json!("x")), "\"x\"\n");
    }
}
