//! The `/sql` response body, written straight into one buffer as rows arrive (no JSON tree per
//! row), in the shape Neon's driver reads: `{"command","rowCount","rows","fields","rowAsArray"}`
//! per statement, `{"results":[…]}` around a batch's. The buffer's length is the response's
//! size, checked against the limit after every row, so an oversized result is refused as a
//! whole instead of being truncated.

use super::values::ValueError;
use crate::error::RouterError;
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Column;

/// Output options from the `Neon-*` headers and the router's response limit.
#[derive(Clone, Copy)]
pub struct Output {
    pub array_mode: bool,
    pub raw_text: bool,
    pub max_bytes: usize,
}

/// A response body being written.
pub struct Body {
    out: Vec<u8>,
    max_bytes: usize,
}

/// One column's metadata, as node-postgres describes fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Field<'a> {
    name: &'a str,
    #[serde(rename = "dataTypeID")]
    data_type_id: u32,
    #[serde(rename = "tableID")]
    table_id: u32,
    #[serde(rename = "columnID")]
    column_id: i16,
    data_type_size: i16,
    data_type_modifier: i32,
    format: &'static str,
}

impl Body {
    pub fn new(max_bytes: usize) -> Self {
        Self { out: Vec::with_capacity(512), max_bytes }
    }

    /// The finished body.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Any serialisable value (a string is escaped as JSON requires).
    pub fn value<T: Serialize + ?Sized>(&mut self, value: &T) {
        // Writing to a Vec cannot fail, and every value written here serialises.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    /// One non-NULL value, from its text output (see [`super::values`]).
    ///
    /// # Errors
    /// When PostgreSQL sent something that is not the text output of `ty`.
    pub fn text_value(&mut self, ty: &Type, raw: &[u8], raw_text: bool) -> Result<(), ValueError> {
        super::values::write_json(&mut self.out, ty, raw, raw_text)
    }

    /// Starts one statement's result, up to the opening of its rows.
    pub fn begin_result(&mut self, command: &str) {
        self.raw(b"{\"command\":");
        self.value(command);
        self.raw(b",\"rows\":[");
    }

    /// Starts row number `index` (from 0).
    pub fn begin_row(&mut self, index: usize, array_mode: bool) {
        if index > 0 {
            self.raw(b",");
        }
        self.raw(if array_mode { b"[" } else { b"{" });
    }

    /// Starts the value of column `index` of the current row (keyed by name in object mode).
    pub fn begin_cell(&mut self, index: usize, column: &Column, array_mode: bool) {
        if index > 0 {
            self.raw(b",");
        }
        if !array_mode {
            self.value(column.name());
            self.raw(b":");
        }
    }

    /// Ends the current row.
    ///
    /// # Errors
    /// When the body has grown beyond the limit.
    pub fn end_row(&mut self, array_mode: bool) -> Result<(), RouterError> {
        self.raw(if array_mode { b"]" } else { b"}" });
        if self.out.len() > self.max_bytes {
            return Err(RouterError::ResponseTooLarge(self.max_bytes));
        }
        Ok(())
    }

    /// Ends one statement's result: its field list and counts.
    pub fn end_result(&mut self, columns: &[Column], row_count: u64, array_mode: bool) {
        self.raw(b"],\"fields\":");
        let fields: Vec<Field<'_>> = columns
            .iter()
            .map(|c| Field {
                name: c.name(),
                data_type_id: c.type_().oid(),
                table_id: c.table_oid().unwrap_or(0),
                column_id: c.column_id().unwrap_or(0),
                data_type_size: -1,
                data_type_modifier: -1,
                format: "text",
            })
            .collect();
        self.value(&fields);
        self.raw(b",\"rowCount\":");
        self.value(&row_count);
        self.raw(if array_mode { b",\"rowAsArray\":true}" } else { b",\"rowAsArray\":false}" });
    }
}
