//! A walk of a statement's *whole* parse tree, for what can hide anywhere in it: function calls
//! (in a target list, a `WHERE`, a subquery, a CTE, a function in `FROM`, a `VALUES` row, a
//! default, an `EXECUTE` parameter, …), data-modifying statements inside CTEs, locking clauses
//! and `SELECT … INTO`.
//!
//! pg_query's own node iterator visits only some node kinds (it skips `VALUES` lists, casts'
//! arguments and more), and a hand-written walk over its ~270 node kinds would miss whatever
//! a later grammar adds. Instead the walk is a [`serde::Serializer`] that writes nothing: every
//! node derives `Serialize`, which hands the serializer every field of every node, each struct
//! by its type name (`FuncCall`, `InsertStmt`, …), so nothing can be missed. It allocates only
//! for the names of the functions called.

use super::functions::{self, FunctionEffect};
use super::policy::{self, NotAllowed};
use pg_query::NodeEnum;
use serde::ser::{self, Serialize};

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
    /// A call to `set_config`.
    pub(super) sets_config: bool,
    /// A call the policy refuses: `set_config` of a protected setting, or of one not named by
    /// a string constant.
    pub(super) not_allowed: Option<NotAllowed>,
}

impl Findings {
    fn needs_reset(&mut self) {
        self.session = true;
        self.writes = true;
    }

    /// Notes a node of type `name`.
    fn node(&mut self, name: &str) {
        match name {
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" | "LockingClause" => self.writes = true,
            "IntoClause" => self.needs_reset(),
            _ => {}
        }
    }

    /// Notes a call of the function named `name` (schema first).
    fn call(&mut self, name: &[String]) {
        self.sets_config |= is_set_config(name);
        match functions::effect(name) {
            FunctionEffect::Pure => {}
            FunctionEffect::Writes => self.writes = true,
            FunctionEffect::ReadsSequenceCache => self.reads_sequence_cache = true,
            FunctionEffect::Session => self.needs_reset(),
        }
    }
}

/// Walks `node` and everything under it.
pub(super) fn walk(node: &NodeEnum) -> Findings {
    let mut walker = Walker::default();
    if node.serialize(&mut walker).is_err() {
        // The walker itself never fails; if serialising did, assume the worst.
        walker.findings.needs_reset();
    }
    walker.findings
}

#[derive(Default)]
struct Walker {
    findings: Findings,
    /// While serialising a `FuncCall`'s `funcname` (a list of `String` nodes): its parts.
    function_name: Option<Vec<String>>,
    /// While serialising the arguments of a `set_config` call: what its first one is.
    setting: SettingArgument,
}

/// The first argument of a `set_config` call, as the walk learns it: the first node under the
/// argument list tells whether it is a constant, the first string in that constant its value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum SettingArgument {
    /// Not inside a `set_config` call's arguments.
    #[default]
    None,
    /// Inside them, before the first argument's node.
    Expected,
    /// The first argument is a constant, whose value has not been seen yet.
    Constant,
    /// The first argument is this string constant.
    Named(String),
    /// The first argument is not a constant (a parameter, a column, an expression, a cast).
    NotConstant,
}

/// Whether `name` (schema first) is PostgreSQL's `set_config`.
fn is_set_config(name: &[String]) -> bool {
    match name {
        [function] => function == "set_config",
        [schema, function] => schema == "pg_catalog" && function == "set_config",
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WalkError(String);

impl ser::Error for WalkError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Scalars: nothing to see, except the parts of a function name.
macro_rules! ignore_scalars {
    ($($method:ident: $type:ty),*) => {
        $(fn $method(self, _: $type) -> Result<(), WalkError> { Ok(()) })*
    };
}

impl<'a> ser::Serializer for &'a mut Walker {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Node<'a>;
    type SerializeStructVariant = Self;

    ignore_scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_bytes: &[u8], serialize_unit_struct: &'static str
    );

    fn serialize_str(self, value: &str) -> Result<(), WalkError> {
        if let Some(parts) = &mut self.function_name {
            parts.push(value.to_owned());
        } else if self.setting == SettingArgument::Constant {
            self.setting = SettingArgument::Named(value.to_owned());
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<(), WalkError> {
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), WalkError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), WalkError> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), WalkError> {
        Ok(())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }

    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Node<'a>, WalkError> {
        self.findings.node(name);
        if self.setting == SettingArgument::Expected && name != "Node" {
            self.setting =
                if name == "AConst" { SettingArgument::Constant } else { SettingArgument::NotConstant };
        }
        Ok(Node { walker: self, function_call: name == "FuncCall", set_config: false })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        Ok(self)
    }
}

/// The fields of one node (one struct).
struct Node<'a> {
    walker: &'a mut Walker,
    function_call: bool,
    /// A `FuncCall` of `set_config` (known once its `funcname`, which comes before `args`, is).
    set_config: bool,
}

impl ser::SerializeStruct for Node<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        if self.function_call && key == "funcname" {
            self.walker.function_name = Some(Vec::with_capacity(2));
            value.serialize(&mut *self.walker)?;
            let name = self.walker.function_name.take().unwrap_or_default();
            self.walker.findings.call(&name);
            self.set_config = is_set_config(&name);
            Ok(())
        } else if self.set_config && key == "args" {
            // Arguments may hold set_config calls of their own: this call's state is set aside
            // while they are walked.
            let outer = std::mem::replace(&mut self.walker.setting, SettingArgument::Expected);
            value.serialize(&mut *self.walker)?;
            let first = std::mem::replace(&mut self.walker.setting, outer);
            let refusal = match first {
                SettingArgument::Named(name) => policy::protected_setting(&name, None),
                _ => Some(NotAllowed::SettingNotConstant),
            };
            let findings = &mut self.walker.findings;
            findings.not_allowed = findings.not_allowed.or(refusal);
            Ok(())
        } else {
            value.serialize(&mut *self.walker)
        }
    }

    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

/// Sequences, tuples, maps and struct variants: every element is walked alike.
macro_rules! walk_elements {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for &mut Walker {
            type Ok = ();
            type Error = WalkError;

            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WalkError> {
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), WalkError> {
                Ok(())
            }
        })*
    };
}

walk_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = WalkError;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), WalkError> {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Walker {
    type Ok = ();
    type Error = WalkError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}
