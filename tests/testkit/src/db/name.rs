//! What a test database is called: `test_<test>_<key>`, after the test that creates it.

/// PostgreSQL's limit on identifiers, in bytes (longer names are cut, silently).
const MAX_IDENTIFIER: usize = 63;
const PREFIX: &str = "test_";

/// The test this thread runs, as libtest names its threads (nextest runs libtest, so the
/// same): the test's path in its crate, e.g. `lifecycle::suspend_then_resume`. Outside a
/// test (a benchmark's `main`, a runtime's worker thread), the executable's name.
pub(crate) fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if is_test_path(name) => name.to_owned(),
        _ => executable_name(),
    }
}

/// Whether a thread name is a test's path: identifiers joined by `::`, not `main` (a
/// program's, or a libtest's running on the main thread) nor a name such as
/// `tokio-runtime-worker`.
fn is_test_path(name: &str) -> bool {
    name != "main"
        && name
            .split("::")
            .all(|segment| !segment.is_empty() && segment.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

fn executable_name() -> String {
    let stem = std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    without_cargo_hash(&stem).to_owned()
}

/// `resolve` for `resolve-0123456789abcdef`: cargo's hash after the name of a test or bench
/// executable.
fn without_cargo_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => name,
        _ => stem,
    }
}

/// `test_<test>_<key>`: the test's path in lower case with every character other than ASCII
/// letters and digits as `_` (so `::` becomes `__`), shortened to fit PostgreSQL's 63 bytes
/// beside the key: leading modules go first, then the end of the test's own name.
pub(crate) fn database_name(test: &str, key: &str) -> String {
    let room = MAX_IDENTIFIER.saturating_sub(PREFIX.len() + 1 + key.len());
    let segments: Vec<String> = test.split("::").map(sanitize).collect();
    let mut path = segments.join("__");
    let mut first = 0;
    while path.len() > room && first + 1 < segments.len() {
        first += 1;
        path = segments[first..].join("__");
    }
    // ASCII only after `sanitize`: any length is a character boundary.
    path.truncate(room);
    format!("{PREFIX}{path}_{key}")
}

fn sanitize(segment: &str) -> String {
    segment.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0a1b2c3d";

    #[test]
    fn a_short_path_is_kept_whole() {
        assert_eq!(
            database_name("lifecycle::suspend_then_resume", KEY),
            "test_lifecycle__suspend_then_resume_0a1b2c3d"
        );
    }

    #[test]
    fn other_characters_become_underscores_and_letters_lower_case() {
        assert_eq!(database_name("Naming::café-Test", KEY), "test_naming__caf__test_0a1b2c3d");
    }

    #[test]
    fn long_paths_lose_leading_modules_first() {
        let name = database_name("outer_module_with_a_long_name::inner::a_test_with_a_fairly_long_name", KEY);
        assert_eq!(name, "test_inner__a_test_with_a_fairly_long_name_0a1b2c3d");
        assert!(name.len() <= MAX_IDENTIFIER);
    }

    #[test]
    fn a_test_name_too_long_alone_is_cut_at_its_end() {
        let test = format!("module::{}", "x".repeat(100));
        let name = database_name(&test, KEY);
        assert_eq!(name.len(), MAX_IDENTIFIER);
        assert_eq!(name, format!("test_{}_{KEY}", "x".repeat(49)));
    }

    #[test]
    fn multibyte_characters_count_as_one_underscore() {
        let test = "é".repeat(60);
        let name = database_name(&test, KEY);
        assert_eq!(name, format!("test_{}_{KEY}", "_".repeat(49)));
    }

    #[test]
    fn test_paths_are_told_from_other_thread_names() {
        assert!(is_test_path("lifecycle::suspend_then_resume"));
        assert!(is_test_path("top_level_test"));
        assert!(!is_test_path("main"));
        assert!(!is_test_path("tokio-runtime-worker"));
        assert!(!is_test_path("a::"));
        assert!(!is_test_path(""));
    }

    #[test]
    fn cargo_hashes_are_removed_from_executable_names() {
        assert_eq!(without_cargo_hash("resolve-0123456789abcdef"), "resolve");
        assert_eq!(without_cargo_hash("router_throughput"), "router_throughput");
        assert_eq!(without_cargo_hash("testkit-holder"), "testkit-holder");
    }

    #[test]
    fn this_unit_test_names_its_own_database() {
        assert_eq!(current_test(), "db::name::tests::this_unit_test_names_its_own_database");
    }
}
