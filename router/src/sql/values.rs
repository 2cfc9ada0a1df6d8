//! PostgreSQL values as JSON, the way Neon's SQL-over-HTTP endpoint returns them.
//!
//! `/sql` asks PostgreSQL for every result column in text format, so each value arrives as
//! PostgreSQL's own text output (its output functions, under the session's `DateStyle`,
//! `IntervalStyle`, `TimeZone`, `lc_monetary`, `extra_float_digits`): nothing is formatted
//! here, and every type, built-in or not, is right. Then, per value:
//!
//! - with `Neon-Raw-Text-Output: true` (what `@neondatabase/serverless` always sends; it parses
//!   the text itself by type, as node-postgres does): the text as a JSON string, arrays
//!   included (`"{1,NULL,3}"`);
//! - otherwise (Neon's typed JSON): `bool` as `true`/`false`, `int2`/`int4` and finite
//!   `float4`/`float8` as JSON numbers (NaN and ±Infinity stay strings), `json`/`jsonb` as the
//!   JSON they hold, arrays as JSON arrays of their elements converted the same way (NULL
//!   elements as `null`, nested for more dimensions, bounds decoration dropped), and every
//!   other type (`int8`, `numeric`, dates, …) as its text, a JSON string.
//!
//! A NULL is JSON `null` in both modes (written by the caller).

use tokio_postgres::types::{FromSql, Kind, Type};

/// A column value's raw bytes (the text output, here), whatever its type.
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A value PostgreSQL sent that is not the text its type prints (never expected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected {ty} value from PostgreSQL: {reason}")]
pub struct ValueError {
    ty: String,
    reason: &'static str,
}

fn invalid(ty: &Type, reason: &'static str) -> ValueError {
    ValueError { ty: ty.name().to_owned(), reason }
}

/// Writes one non-NULL value, given as its text output (`raw`, UTF-8), as JSON into `out`.
///
/// # Errors
/// When `raw` is not UTF-8, or not the text output of `ty` where it is parsed (numbers,
/// booleans, arrays).
pub fn write_json(out: &mut Vec<u8>, ty: &Type, raw: &[u8], raw_text: bool) -> Result<(), ValueError> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid(ty, "not UTF-8"))?;
    if raw_text {
        write_string(out, text);
        Ok(())
    } else {
        write_typed(out, ty, text)
    }
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Neon's typed JSON for one value's text.
fn write_typed(out: &mut Vec<u8>, ty: &Type, text: &str) -> Result<(), ValueError> {
    if let Kind::Array(element) = ty.kind() {
        return write_array(out, element, text);
    }
    match *ty {
        Type::BOOL => out.extend_from_slice(if text == "t" { b"true" } else { b"false" }),
        Type::INT2 | Type::INT4 => {
            let value: i32 = text.parse().map_err(|_| invalid(ty, "not an integer"))?;
            let _ = serde_json::to_writer(&mut *out, &value);
        }
        Type::FLOAT4 | Type::FLOAT8 => {
            let value: f64 = text.parse().map_err(|_| invalid(ty, "not a number"))?;
            if value.is_finite() {
                let _ = serde_json::to_writer(&mut *out, &value);
            } else {
                // NaN, Infinity, -Infinity: JSON has no such numbers.
                write_string(out, text);
            }
        }
        // PostgreSQL only stores valid JSON in these.
        Type::JSON | Type::JSONB => out.extend_from_slice(text.as_bytes()),
        _ => write_string(out, text),
    }
    Ok(())
}

/// An array's text output (`{1,NULL,"a b"}`, `{{1,2},{3,4}}`, `[0:1]={7,8}`) as a JSON array.
fn write_array(out: &mut Vec<u8>, element: &Type, text: &str) -> Result<(), ValueError> {
    // Bounds decoration, printed when a lower bound is not 1: JSON arrays have none.
    let text = match text.strip_prefix('[') {
        Some(_) => {
            text.split_once('=').map(|(_, rest)| rest).ok_or_else(|| invalid(element, "bad bounds"))?
        }
        None => text,
    };
    // `box` is the one built-in type whose elements are separated by `;`.
    let delimiter = if *element == Type::BOX { b';' } else { b',' };
    let mut parser = ArrayText { rest: text.trim().as_bytes(), text, element, delimiter };
    parser.array(out)?;
    if parser.rest.is_empty() {
        Ok(())
    } else {
        Err(invalid(element, "text after the array's end"))
    }
}

/// A cursor over an array's text output.
struct ArrayText<'a> {
    /// What is left to read (a suffix of `text`).
    rest: &'a [u8],
    text: &'a str,
    element: &'a Type,
    delimiter: u8,
}

impl<'a> ArrayText<'a> {
    fn error(&self, reason: &'static str) -> ValueError {
        invalid(self.element, reason)
    }

    fn skip_spaces(&mut self) {
        while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = self.rest {
            self.rest = rest;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The text from here for `len` bytes (always on character boundaries: they end at ASCII).
    fn take(&mut self, len: usize) -> &'a str {
        let start = self.text.len() - self.rest.len();
        self.rest = &self.rest[len..];
        &self.text[start..start + len]
    }

    /// `{item,item,…}`, where an item is a nested array, `NULL`, a quoted or a bare element.
    fn array(&mut self, out: &mut Vec<u8>) -> Result<(), ValueError> {
        self.skip_spaces();
        if self.peek() != Some(b'{') {
            return Err(self.error("array without '{'"));
        }
        self.rest = &self.rest[1..];
        out.push(b'[');
        self.skip_spaces();
        if self.peek() == Some(b'}') {
            self.rest = &self.rest[1..];
            out.push(b']');
            return Ok(());
        }
        loop {
            self.item(out)?;
            self.skip_spaces();
            match self.peek() {
                Some(b'}') => {
                    self.rest = &self.rest[1..];
                    out.push(b']');
                    return Ok(());
                }
                Some(c) if c == self.delimiter => {
                    self.rest = &self.rest[1..];
                    out.push(b',');
                }
                _ => return Err(self.error("unbalanced array")),
            }
        }
    }

    fn item(&mut self, out: &mut Vec<u8>) -> Result<(), ValueError> {
        self.skip_spaces();
        match self.peek() {
            Some(b'{') => self.array(out),
            Some(b'"') => {
                self.rest = &self.rest[1..];
                let value = self.quoted()?;
                write_typed(out, self.element, &value)
            }
            _ => {
                let delimiter = self.delimiter;
                let len = self
                    .rest
                    .iter()
                    .position(|&c| c == delimiter || c == b'}')
                    .ok_or_else(|| self.error("unbalanced array"))?;
                let value = self.take(len).trim_end();
                if value == "NULL" {
                    out.extend_from_slice(b"null");
                    Ok(())
                } else {
                    write_typed(out, self.element, value)
                }
            }
        }
    }

    /// A quoted element after its opening quote, unescaped (`\x` is `x`), up to and past its
    /// closing quote.
    fn quoted(&mut self) -> Result<String, ValueError> {
        let mut value = String::new();
        loop {
            let len = self
                .rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\')
                .ok_or_else(|| self.error("unbalanced quotes"))?;
            let chunk = self.take(len);
            value.push_str(chunk);
            let quote = self.rest[0] == b'"';
            self.rest = &self.rest[1..];
            if quote {
                return Ok(value);
            }
            // The escaped character, whole (it may be more than one byte).
            let escaped = self.text[self.text.len() - self.rest.len()..]
                .chars()
                .next()
                .ok_or_else(|| self.error("unbalanced quotes"))?;
            self.take(escaped.len_utf8());
            value.push(escaped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn typed(ty: &Type, text: &str) -> Value {
        let mut out = Vec::new();
        write_json(&mut out, ty, text.as_bytes(), false).unwrap();
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    fn raw(ty: &Type, text: &str) -> Value {
        let mut out = Vec::new();
        write_json(&mut out, ty, text.as_bytes(), true).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn raw_text_is_the_text_output_as_a_string() {
        assert_eq!(raw(&Type::INT4_ARRAY, "{1,2}"), json!("{1,2}"));
        assert_eq!(raw(&Type::INT4, "42"), json!("42"));
        assert_eq!(raw(&Type::BOOL, "t"), json!("t"));
        assert_eq!(raw(&Type::JSONB, r#"{"a": 1}"#), json!(r#"{"a": 1}"#));
        assert_eq!(raw(&Type::TEXT_ARRAY, r#"{"a \"b\"",NULL,"c\\d"}"#), json!(r#"{"a \"b\"",NULL,"c\\d"}"#));
        assert_eq!(raw(&Type::BYTEA, "\\x01ff"), json!("\\x01ff"));
    }

    #[test]
    fn scalars_as_neon_types_them() {
        assert_eq!(typed(&Type::BOOL, "t"), json!(true));
        assert_eq!(typed(&Type::BOOL, "f"), json!(false));
        assert_eq!(typed(&Type::INT2, "-7"), json!(-7));
        assert_eq!(typed(&Type::INT4, "2147483647"), json!(2_147_483_647));
        assert_eq!(typed(&Type::INT8, "9007199254740993"), json!("9007199254740993"));
        assert_eq!(typed(&Type::FLOAT8, "0.1"), json!(0.1));
        assert_eq!(typed(&Type::FLOAT8, "1e+300"), json!(1e300));
        assert_eq!(typed(&Type::FLOAT4, "NaN"), json!("NaN"));
        assert_eq!(typed(&Type::FLOAT8, "-Infinity"), json!("-Infinity"));
        assert_eq!(typed(&Type::NUMERIC, "12.340"), json!("12.340"));
        assert_eq!(typed(&Type::JSONB, r#"{"a": [1, null]}"#), json!({"a": [1, null]}));
        assert_eq!(typed(&Type::JSON, r#" "s" "#), json!("s"));
        assert_eq!(typed(&Type::TIMESTAMPTZ, "2024-01-02 03:04:05.5+00"), json!("2024-01-02 03:04:05.5+00"));
        assert_eq!(typed(&Type::TEXT, "line\n\"q\""), json!("line\n\"q\""));
    }

    #[test]
    fn arrays_become_json_arrays() {
        assert_eq!(typed(&Type::INT4_ARRAY, "{1,2}"), json!([1, 2]));
        assert_eq!(typed(&Type::INT4_ARRAY, "{}"), json!([]));
        assert_eq!(typed(&Type::INT4_ARRAY, "{1,NULL,3}"), json!([1, null, 3]));
        assert_eq!(typed(&Type::INT4_ARRAY, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
        assert_eq!(typed(&Type::INT4_ARRAY, "{{{1},{2}},{{3},{NULL}}}"), json!([[[1], [2]], [[3], [null]]]));
        assert_eq!(typed(&Type::INT4_ARRAY, "[0:1]={7,8}"), json!([7, 8]));
        assert_eq!(typed(&Type::INT8_ARRAY, "{9007199254740993}"), json!(["9007199254740993"]));
        assert_eq!(typed(&Type::BOOL_ARRAY, "{t,f,NULL}"), json!([true, false, null]));
        assert_eq!(typed(&Type::FLOAT8_ARRAY, "{0.1,NaN,-0}"), json!([0.1, "NaN", -0.0]));
        assert_eq!(
            typed(&Type::TEXT_ARRAY, r#"{"a,b","c\"d","e\\f","{g}","","NULL",NULL," h ",ü,"i j"}"#),
            json!(["a,b", "c\"d", "e\\f", "{g}", "", "NULL", null, " h ", "ü", "i j"])
        );
        assert_eq!(typed(&Type::TEXT_ARRAY, r#"{"\ü"}"#), json!(["ü"]));
        assert_eq!(
            typed(&Type::JSONB_ARRAY, r#"{"{\"a\": 1}",NULL,"[1, \"x,y\"]"}"#),
            json!([{"a": 1}, null, [1, "x,y"]])
        );
        assert_eq!(typed(&Type::BYTEA_ARRAY, r#"{"\\x01ff",NULL}"#), json!(["\\x01ff", null]));
        assert_eq!(
            typed(&Type::INT4_RANGE_ARRAY, r#"{"[1,10)",empty,NULL}"#),
            json!(["[1,10)", "empty", null])
        );
        assert_eq!(
            typed(&Type::BOX_ARRAY, "{(1,1),(0,0);(2,2),(1,1)}"),
            json!(["(1,1),(0,0)", "(2,2),(1,1)"])
        );
    }

    #[test]
    fn malformed_text_is_an_error() {
        let mut out = Vec::new();
        for (ty, text) in [
            (&Type::INT4_ARRAY, "{1,2"),
            (&Type::INT4_ARRAY, "1,2}"),
            (&Type::TEXT_ARRAY, r#"{"a}"#),
            (&Type::INT4_ARRAY, "{1}x"),
            (&Type::INT4, "x"),
            (&Type::FLOAT8, "x"),
        ] {
            assert!(write_json(&mut out, ty, text.as_bytes(), false).is_err(), "{text}");
        }
        assert!(write_json(&mut out, &Type::TEXT, &[0xff], true).is_err());
    }
}
