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
        Value::Number(n) => number(n),
        Value::String(s) => quoted(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

/// A double-quoted YAML scalar: `"` and `\\` escaped, and every character outside YAML's
/// printable set, or that a YAML 1.1 parser reads as a line break (NEL, U+2028, U+2029), as
/// `\\uXXXX`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{fffe}' | '\u{ffff}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number as YAML 1.1 parsers read it as one: a float in exponent form gets a `.` and a
/// signed exponent (`1e16` is a string to them, `1.0e+16` a float).
fn number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    match (n.is_f64(), text.split_once('e')) {
        (true, Some((mantissa, exponent))) => {
            let mantissa = if mantissa.contains('.') { mantissa.to_owned() } else { format!("{mantissa}.0") };
            let exponent =
                if exponent.starts_with(['-', '+']) { exponent.to_owned() } else { format!("+{exponent}") };
            format!("{mantissa}e{exponent}")
        }
        _ => text,
    }
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
        assert_eq!(
            to_yaml(&json!(["\u{7f}\u{85}\u{2028}é", 1e16, 1.5e-7, 12])),
            "- \"\\u007f\\u0085\\u2028é\"\n- 1.0e+16\n- 1.5e-7\n- 12\n"
        );
        assert_eq!(to_yaml(&json!("x")), "\"x\"\n");
    }
}
