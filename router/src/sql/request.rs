//! The `/sql` request body and its parameters, as Neon's serverless driver sends them.

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{Format, IsNull, ToSql, Type};

/// One query.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryData {
    pub query: String,
    #[serde(default)]
    pub params: Vec<Value>,
    #[serde(rename = "arrayMode", default)]
    pub array_mode: Option<bool>,
}

/// A single query, or a batch run in one transaction.
#[derive(Debug, Clone)]
pub enum Payload {
    Batch { queries: Vec<QueryData> },
    Single(QueryData),
}

/// The body as sent: the fields of both forms, told apart by [`Payload::parse`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayload {
    query: Option<String>,
    params: Option<Vec<Value>>,
    #[serde(rename = "arrayMode")]
    array_mode: Option<bool>,
    queries: Option<Vec<QueryData>>,
}

pub use crate::error::PayloadError;

impl Payload {
    /// Its queries, one or many.
    #[must_use]
    pub fn queries(&self) -> &[QueryData] {
        match self {
            Self::Single(query) => std::slice::from_ref(query),
            Self::Batch { queries } => queries.as_slice(),
        }
    }

    /// Reads a request body.
    ///
    /// # Errors
    /// What is wrong with it (see [`PayloadError`]).
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let payload = Self::parse_shape(body).map_err(PayloadError::Malformed)?;
        let queries = match &payload {
            Self::Single(query) => std::slice::from_ref(query),
            Self::Batch { queries } => queries.as_slice(),
        };
        if queries.iter().any(|q| q.query.contains('\0')) {
            return Err(PayloadError::NulInQuery);
        }
        Ok(payload)
    }

    fn parse_shape(body: &[u8]) -> Result<Self, String> {
        let raw: RawPayload =
            serde_json::from_slice(body).map_err(|e| format!("malformed request body: {e}"))?;
        match raw {
            RawPayload { query: Some(query), params, array_mode, queries: None } => {
                Ok(Self::Single(QueryData { query, params: params.unwrap_or_default(), array_mode }))
            }
            RawPayload { query: None, params: None, array_mode: None, queries: Some(queries) } => {
                Ok(Self::Batch { queries })
            }
            RawPayload { queries: Some(_), .. } => Err(
                "a batch (\"queries\") takes \"query\", \"params\" and \"arrayMode\" inside each of its queries"
                    .into(),
            ),
            RawPayload { queries: None, .. } => {
                Err("the body needs \"query\" (one statement) or \"queries\" (a batch)".into())
            }
        }
    }
}

/// A parameter sent in text format, so PostgreSQL parses it for whatever type the statement
/// expects (as Neon does), instead of the client guessing a binary encoding.
#[derive(Debug, Clone)]
pub struct TextParam(pub Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

/// JSON parameter → PostgreSQL text input: strings as they are, numbers and booleans as JSON
/// prints them, arrays as array literals, objects as JSON text.
pub fn to_text_param(value: &Value) -> TextParam {
    TextParam(match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => Some(value.to_string()),
        Value::Array(items) => Some(array_literal(items)),
    })
}

fn array_literal(items: &[Value]) -> String {
    let elements: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => "NULL".to_owned(),
            Value::Array(inner) => array_literal(inner),
            Value::String(s) => quote_element(s),
            other => quote_element(&other.to_string()),
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

fn quote_element(raw: &str) -> String {
    format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_become_postgres_text() {
        assert_eq!(to_text_param(&json!(null)).0, None);
        assert_eq!(to_text_param(&json!("a'b")).0.unwrap(), "a'b");
        assert_eq!(to_text_param(&json!(42)).0.unwrap(), "42");
        assert_eq!(to_text_param(&json!(true)).0.unwrap(), "true");
        assert_eq!(to_text_param(&json!({"k": 1})).0.unwrap(), r#"{"k":1}"#);
        assert_eq!(to_text_param(&json!([1, null, "x\"y", [2]])).0.unwrap(), r#"{"1",NULL,"x\"y",{"2"}}"#);
    }

    #[test]
    fn bodies_parse_as_single_or_batch() {
        let parse =
            |body: serde_json::Value| Payload::parse(body.to_string().as_bytes()).map_err(|e| e.to_string());
        assert!(matches!(parse(json!({"query": "select 1", "params": []})), Ok(Payload::Single(_))));
        assert!(matches!(parse(json!({"queries": [{"query": "select 1"}]})), Ok(Payload::Batch { .. })));
        assert!(parse(json!({"sql": "select 1"})).unwrap_err().contains("unknown field `sql`"));
        assert!(parse(json!({"params": [1]})).unwrap_err().contains("needs \"query\""));
        assert!(parse(json!({"query": "select 1", "queries": []})).unwrap_err().contains("inside each"));
        assert!(parse(json!({"query": 1})).unwrap_err().starts_with("malformed request body"));
        assert!(Payload::parse(b"{not json").unwrap_err().to_string().starts_with("malformed request body"));
    }

    #[test]
    fn a_nul_in_a_query_is_refused() {
        let parse = |body: serde_json::Value| Payload::parse(body.to_string().as_bytes());
        assert!(matches!(parse(json!({"query": "select '\u{0}'"})), Err(PayloadError::NulInQuery)));
        assert!(matches!(
            parse(json!({"queries": [{"query": "select 1"}, {"query": "select 2\u{0}"}]})),
            Err(PayloadError::NulInQuery)
        ));
        assert!(matches!(parse(json!({"query": "select $1", "params": ["\u{0}"]})), Ok(Payload::Single(_))));
    }
}
