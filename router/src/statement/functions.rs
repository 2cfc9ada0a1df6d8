//! Which function calls a statement may make and still leave the session as it found it.
//!
//! Only PostgreSQL's own built-ins are known: a call is judged by name when it is unqualified
//! or qualified with `pg_catalog` (the schema PostgreSQL searches first), and is unknown, so not
//! clean, in any other schema. The names come from PostgreSQL's volatility marking
//! (`catalog_functions.txt`, generated from `pg_proc`, built into the binary): an IMMUTABLE or
//! STABLE function may neither modify the database nor change the session. A name counts only
//! when *every* overload is so marked, which keeps out `set_config`, the advisory locks and the
//! sequence functions; those that matter here are recognised by name first.

use std::sync::LazyLock;

/// The pg_catalog functions whose every overload is IMMUTABLE or STABLE, sorted in byte order
/// (`catalog_functions.txt`, written by `scripts/gen-clean-functions.sh`; `#` starts a comment).
static IMMUTABLE_OR_STABLE: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    include_str!("catalog_functions.txt")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// What calling one function does, as far as the router cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FunctionEffect {
    /// Reads only: no session state, no writes.
    Pure,
    /// No session state, but not for a read-only role (`pg_notify` queues a notification).
    Writes,
    /// Reads the session's sequence cache (`currval`, `lastval`), which an earlier request's
    /// `nextval` (or `serial` default) may have filled: see `Classification::reads_sequence_cache`.
    ReadsSequenceCache,
    /// Can change session state, or is not known not to.
    Session,
}

/// VOLATILE built-ins that keep no session state and write nothing:
/// - `clock_timestamp`, `timeofday`: the wall clock;
/// - `gen_random_uuid`, `random`, and from PostgreSQL 16/18 `random_normal`, `uuidv4`, `uuidv7`:
///   a random number generator whose state is not observable (unlike `setseed`, left out);
/// - `pg_sleep`, `pg_sleep_for`, `pg_sleep_until`: wait (the router's deadline still applies);
/// - `pg_advisory_xact_lock*`, `pg_try_advisory_xact_lock*`: transaction-level advisory locks,
///   released when the transaction ends (unlike their session-level namesakes, left out).
///
/// Sorted for `binary_search`.
const VOLATILE_PURE: &[&str] = &[
    "clock_timestamp",
    "gen_random_uuid",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "random",
    "random_normal",
    "timeofday",
    "uuidv4",
    "uuidv7",
];

/// The effect of calling the function named `name` (its parts as written, schema first).
pub(super) fn effect<S: AsRef<str>>(name: &[S]) -> FunctionEffect {
    let function = match name {
        [function] => function.as_ref(),
        [schema, function] if schema.as_ref() == "pg_catalog" => function.as_ref(),
        _ => return FunctionEffect::Session,
    };
    match function {
        "currval" | "lastval" => FunctionEffect::ReadsSequenceCache,
        // Transactional, so nothing stays in the session; but it is a write.
        "pg_notify" => FunctionEffect::Writes,
        _ if IMMUTABLE_OR_STABLE.binary_search(&function).is_ok() => FunctionEffect::Pure,
        _ if VOLATILE_PURE.binary_search(&function).is_ok() => FunctionEffect::Pure,
        // set_config, nextval, setval, pg_advisory_lock*, pg_advisory_unlock*, … and unknowns.
        _ => FunctionEffect::Session,
    }
}

#[cfg(test)]
mod tests {
    use super::{effect, FunctionEffect, IMMUTABLE_OR_STABLE, VOLATILE_PURE};

    #[test]
    fn the_lists_are_sorted_for_binary_search() {
        assert!(IMMUTABLE_OR_STABLE.len() > 2000, "the generated list is read");
        for list in [IMMUTABLE_OR_STABLE.as_slice(), VOLATILE_PURE] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "not sorted: {:?}", list.first());
        }
    }

    #[test]
    fn session_changing_built_ins_are_not_in_the_generated_list() {
        for name in [
            "set_config",
            "nextval",
            "setval",
            "currval",
            "lastval",
            "setseed",
            "pg_advisory_lock",
            "pg_advisory_lock_shared",
            "pg_try_advisory_lock",
            "pg_try_advisory_lock_shared",
            "pg_advisory_unlock",
            "pg_advisory_unlock_shared",
            "pg_advisory_unlock_all",
            "query_to_xml",
            "pg_notify",
        ] {
            assert!(IMMUTABLE_OR_STABLE.binary_search(&name).is_err(), "{name}");
            assert!(VOLATILE_PURE.binary_search(&name).is_err(), "{name}");
        }
    }

    #[test]
    fn effects_by_name_and_schema() {
        assert_eq!(effect(&["lower"]), FunctionEffect::Pure);
        assert_eq!(effect(&["pg_catalog", "lower"]), FunctionEffect::Pure);
        assert_eq!(effect(&["myschema", "lower"]), FunctionEffect::Session);
        assert_eq!(effect(&["db", "pg_catalog", "lower"]), FunctionEffect::Session);
        assert_eq!(effect(&["count"]), FunctionEffect::Pure);
        assert_eq!(effect(&["row_number"]), FunctionEffect::Pure);
        assert_eq!(effect(&["random"]), FunctionEffect::Pure);
        assert_eq!(effect(&["pg_advisory_xact_lock"]), FunctionEffect::Pure);
        assert_eq!(effect(&["pg_advisory_lock"]), FunctionEffect::Session);
        assert_eq!(effect(&["pg_catalog", "currval"]), FunctionEffect::ReadsSequenceCache);
        assert_eq!(effect(&["pg_notify"]), FunctionEffect::Writes);
        assert_eq!(effect(&["my_function"]), FunctionEffect::Session);
    }
}
