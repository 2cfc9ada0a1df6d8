//! The shape of a statement: its text with numeric constants blanked, so that statements that
//! differ only in their numbers (`… WHERE id = 41`, `… WHERE id = 42`, as clients of the simple
//! protocol send them) share one classification in the [`super::Classifier`]'s cache.
//!
//! Only where no number can change the classification: one `SELECT`, `INSERT`, `DELETE`,
//! `WITH`, `VALUES` or `TABLE` statement, with no `SET`, `RESET`, `set_config` or `EXPLAIN`
//! in it (where a value is judged: `SET standard_conforming_strings = 0`), no quotes of either
//! kind, no dollar quoting, no comments and nothing but ASCII. There the classification depends
//! on the statement's kind, its nodes and the functions it names, and a number (a constant
//! token, never part of a name) is none of those. Anything else is its own shape: its text.

/// First keywords of the statements whose shape may blank numbers.
const SHAPED: [&str; 6] = ["select", "insert", "delete", "with", "values", "table"];

/// Words that, anywhere, keep a text as it is.
const JUDGED: [&str; 4] = ["set", "reset", "set_config", "explain"];

/// `sql` with each numeric constant replaced by `0`, when that cannot change its
/// classification and there is a number to replace; `None`: the text is its own shape.
pub(crate) fn of(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    if !bytes.is_ascii() || bytes.iter().any(|b| matches!(b, b'\'' | b'"' | b'\\')) {
        return None;
    }
    if sql.contains("--") || sql.contains("/*") {
        return None;
    }
    // One statement: a `;` only at the end.
    if sql.trim_end().trim_end_matches(';').contains(';') {
        return None;
    }
    let mut words = words(bytes);
    let first = words.next()?;
    if !SHAPED.iter().any(|k| first.eq_ignore_ascii_case(k.as_bytes())) {
        return None;
    }
    if words.any(|w| JUDGED.iter().any(|k| w.eq_ignore_ascii_case(k.as_bytes()))) {
        return None;
    }
    let mut shape = Vec::with_capacity(bytes.len());
    let mut replaced = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'$' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // Dollar quoting (`$$…$$`, `$tag$…$tag$`): its body could be anything.
            return None;
        }
        let starts_token = i == 0 || !is_word_byte(bytes[i - 1]);
        if b.is_ascii_digit() && starts_token {
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            // A number run into letters or `_` (`0x1F`, `1_000`, `1e5`, `123abc`) is kept as
            // it is: the grammar may read those differently by their digits.
            if bytes.get(i).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
                shape.extend_from_slice(&bytes[start..i]);
            } else {
                shape.push(b'0');
                replaced = true;
            }
            continue;
        }
        shape.push(b);
        i += 1;
    }
    // Only ASCII went in.
    replaced.then(|| String::from_utf8(shape).unwrap_or_default())
}

/// Bytes that continue a name or a token started by one (`t1`, `$1`, `x_2`).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// The words of `bytes` (runs of letters, digits, `_` and `$` that start with a letter or `_`).
fn words(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| !is_word_byte(*b))
        .filter(|w| w.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::of;

    #[test]
    fn statements_that_differ_only_in_numbers_share_a_shape() {
        let a = of("SELECT abalance FROM accounts WHERE aid = 41").unwrap();
        let b = of("SELECT abalance FROM accounts WHERE aid = 4242").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "SELECT abalance FROM accounts WHERE aid = 0");
        assert_eq!(of("select 1.5, .5, 1e-5").unwrap(), "select 0.0, .0, 1e-0");
        assert_eq!(of("select 0x10, 1x10, 1_000, 12"), Some("select 0x10, 1x10, 1_000, 0".to_owned()));
        assert_eq!(of("INSERT INTO t2 VALUES (1, $1);").unwrap(), "INSERT INTO t2 VALUES (0, $1);");
    }

    #[test]
    fn a_shape_classifies_as_the_text_it_came_from() {
        for sql in [
            "SELECT abalance FROM accounts WHERE aid = 41",
            "SELECT pg_advisory_lock(7)",
            "SELECT currval(12)",
            "SELECT nextval(3), lastval()",
            "SELECT * FROM t FOR UPDATE LIMIT 5",
            "SELECT 1 INTO t2",
            "WITH d AS (DELETE FROM t WHERE id = 9 RETURNING *) SELECT 1 FROM d",
            "INSERT INTO t VALUES (1, 2.5) RETURNING id",
            "DELETE FROM t WHERE id = 1",
            "SELECT pg_sleep(1)",
            "select 1 from pg_catalog.pg_stat_activity limit 2",
        ] {
            let shape = of(sql).unwrap_or_else(|| panic!("no shape for {sql}"));
            assert_eq!(super::super::classify(sql), super::super::classify(&shape), "{sql}");
        }
    }

    /// Whether text parses can depend on its numbers; text that does not parse first must not
    /// give its answer to the shape's text that does.
    #[test]
    fn text_that_does_not_parse_leaves_its_shape_alone() {
        let classifier = super::super::Classifier::default();
        for (invalid, valid) in [
            ("SELECT lastval(), NULL::float(99)", "SELECT lastval(), NULL::float(53)"),
            ("SELECT NULL::float(0)", "SELECT NULL::float(5)"),
            ("SELECT NULL::int[2147483648]", "SELECT NULL::int[3]"),
        ] {
            assert_eq!(of(invalid), of(valid));
            assert_eq!(classifier.classify(invalid), super::super::Classification::UNKNOWN, "{invalid}");
            assert_eq!(classifier.classify(valid), super::super::classify(valid), "{valid}");
            assert!(classifier.classify(valid).read_only, "{valid}");
        }
    }

    #[test]
    fn names_and_parameters_keep_their_digits() {
        assert_eq!(of("SELECT f1(c2) FROM t3 WHERE x = $12"), None);
        assert_eq!(of("SELECT 0x10"), None);
        assert_eq!(of("SELECT f1(7)").unwrap(), "SELECT f1(0)");
    }

    #[test]
    fn texts_where_a_value_may_be_judged_are_their_own_shape() {
        for sql in [
            "SET standard_conforming_strings = 0",
            "UPDATE t SET x = 1",
            "SELECT set_config(a, b, false) FROM t WHERE x = 1",
            "EXPLAIN (ANALYZE 0) SELECT 1",
            "SELECT 1; SET standard_conforming_strings = 0",
            "SELECT 1; SELECT 2",
            "SELECT 'a1', 1",
            "SELECT \"c1\" FROM t WHERE x = 1",
            "SELECT $$1$$, 1",
            "SELECT 1 -- 2",
            "SELECT 1 /* 2 */",
            "SELECT 1 AS «x»",
            "DELETE FROM t WHERE x = 1 RETURNING set",
            "with x as (select 1) select reset from x",
        ] {
            assert_eq!(of(sql), None, "{sql}");
        }
    }
}
