//! A walk of a statement's *whole* parse tree, for what can hide anywhere in it: function calls
//! (in a target list, a `WHERE`, a subquery, a CTE, a function in `FROM`, a `VALUES` row, a
//! default, an `EXECUTE` parameter, …), data-modifying statements inside CTEs, locking clauses
//! and `SELECT … INTO`.
//!
//! The walk goes through the tree's serde form rather than pg_query's own node iterator, which
//! visits only some node kinds (it skips `VALUES` lists, casts' arguments and more): the
//! serialised form has every field of every node, so nothing can be missed, including node
//! kinds a later grammar adds. In it each node is tagged with its kind (`{"FuncCall": {…}}`)
//! and struct fields are snake_case, so a CamelCase key is always a node kind. It costs an
//! allocation per node, which the classifier's cache pays once per SQL text.

use super::functions::{self, FunctionEffect};
use pg_query::NodeEnum;
use serde_json::Value;

/// What the walk found anywhere in a statement's tree.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Findings {
    /// A call that can change session state, or that is not known not to; or `SELECT … INTO`
    /// (which creates a table).
    pub(super) session: bool,
    /// Something a read-only role could not run: a data-modifying statement (in a CTE), a
    /// locking clause, `SELECT … INTO`, a function that writes.
    pub(super) writes: bool,
    /// A call to `currval` or `lastval`.
    pub(super) reads_sequence_cache: bool,
}

/// Walks `node` and everything under it.
pub(super) fn walk(node: &NodeEnum) -> Findings {
    let mut findings = Findings::default();
    match serde_json::to_value(node) {
        Ok(tree) => visit(&tree, &mut findings),
        // Cannot happen (the tree has no maps with non-string keys); if it did, assume the worst.
        Err(_) => {
            findings.session = true;
            findings.writes = true;
        }
    }
    findings
}

fn visit(value: &Value, findings: &mut Findings) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                inspect(key, child, findings);
                visit(child, findings);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| visit(item, findings)),
        _ => {}
    }
}

fn inspect(key: &str, child: &Value, findings: &mut Findings) {
    match key {
        "FuncCall" => match functions::effect(&function_name(child)) {
            FunctionEffect::Pure => {}
            FunctionEffect::Writes => findings.writes = true,
            FunctionEffect::ReadsSequenceCache => findings.reads_sequence_cache = true,
            FunctionEffect::Session => {
                findings.session = true;
                findings.writes = true;
            }
        },
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => findings.writes = true,
        "locking_clause" if child.as_array().is_some_and(|clauses| !clauses.is_empty()) => {
            findings.writes = true;
        }
        "into_clause" if !child.is_null() => {
            findings.session = true;
            findings.writes = true;
        }
        _ => {}
    }
}

/// A `FuncCall`'s name as written, schema first: `funcname` is a list of `String` nodes.
fn function_name(call: &Value) -> Vec<&str> {
    let parts = call.get("funcname").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    parts.iter().map(|part| part.pointer("/node/String/sval").and_then(Value::as_str).unwrap_or("")).collect()
}
