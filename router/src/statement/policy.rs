//! What a tenant may not send at all: statements refused (403 `statement_not_allowed`) before
//! anything of the request runs, whatever PostgreSQL would have said.
//!
//! PostgreSQL enforces what a tenant's role may touch; these are statements it allows every
//! role on itself, or that a tenant has no business sending through a pooled connection:
//! - **its own role**: PostgreSQL lets a role change its own password and its own defaults
//!   (`ALTER ROLE … PASSWORD`, `ALTER ROLE … SET`); the first locks the router out of the
//!   tenant, the second changes every later session. Every form of role management is refused.
//! - **the session's identity**: `SET ROLE`, `SET SESSION AUTHORIZATION` and `set_config` of
//!   `role` or `session_authorization`. A request runs as its tenant's role, and nothing else.
//! - **how SQL text is read**: `standard_conforming_strings`, `backslash_quote` and
//!   `client_encoding` other than their safe values (`on`, the default, `UTF8`). With them
//!   changed, PostgreSQL would split or quote a string differently from the router's reading of
//!   it, and a statement the router judged could hide another.
//! - **anonymous code**: `DO` blocks (tenant databases also deny their roles the procedural
//!   languages, so this holds without the router too).
//! - **administration** of the server or the database: `ALTER SYSTEM`, `LOAD`, databases,
//!   extensions.
//!
//! `set_config` must name its setting with a string constant, so that the setting it changes
//! is known; `set_config('app.user_id', $1, true)` (the usual row-level security pattern) is
//! allowed.

use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

/// Why a statement is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAllowed {
    /// `CREATE`/`ALTER`/`DROP ROLE` (or `USER`, `GROUP`), `ALTER ROLE … SET`, renaming a role,
    /// `GRANT`/`REVOKE` of role membership, `REASSIGN OWNED`, `DROP OWNED`.
    RoleManagement,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION` (and `RESET`), or `set_config` of them.
    SessionIdentity,
    /// A setting that changes how SQL text is read, to anything but its safe value.
    SqlReading,
    /// `set_config` whose setting name is not a string constant.
    SettingNotConstant,
    /// A `DO` block.
    AnonymousCode,
    /// `ALTER SYSTEM`, `LOAD`, `CREATE`/`ALTER`/`DROP DATABASE`, extensions.
    Administration,
}

impl NotAllowed {
    /// The error message the client gets.
    pub fn message(self) -> &'static str {
        match self {
            Self::RoleManagement => {
                "role management (CREATE, ALTER or DROP ROLE, ALTER ROLE … SET or PASSWORD, GRANT or \
                 REVOKE of a role, REASSIGN or DROP OWNED) is not allowed: a tenant's roles and \
                 credentials are managed by the control plane"
            }
            Self::SessionIdentity => {
                "SET ROLE and SET SESSION AUTHORIZATION (or set_config of role or session_authorization) \
                 are not allowed: a request runs as its tenant's role"
            }
            Self::SqlReading => {
                "standard_conforming_strings, backslash_quote and client_encoding may only be on, \
                 safe_encoding and UTF8: the router reads statements as PostgreSQL does only then"
            }
            Self::SettingNotConstant => {
                "set_config must name its setting with a string constant (set_config('app.user_id', $1, \
                 true)), so that the router can tell which setting it changes"
            }
            Self::AnonymousCode => "DO blocks are not allowed: tenants do not run anonymous code",
            Self::Administration => {
                "server and database administration (ALTER SYSTEM, LOAD, CREATE, ALTER or DROP DATABASE, \
                 extensions) is not allowed"
            }
        }
    }
}

/// The settings that decide who the session is.
const SESSION_IDENTITY: &[&str] = &["role", "session_authorization"];

/// The settings that change how SQL text is read, and the values they may be set to.
const SQL_READING: &[(&str, &[&str])] = &[
    ("standard_conforming_strings", &["on", "true", "yes", "1"]),
    ("backslash_quote", &["safe_encoding"]),
    ("client_encoding", &["utf8", "utf-8", "unicode"]),
];

/// Why a tenant may not set `name` (as `SET` or `set_config` names it; case does not matter)
/// to `value` (`None`: any value, as `set_config` may be given), if it may not.
pub(crate) fn protected_setting(name: &str, value: Option<&str>) -> Option<NotAllowed> {
    if SESSION_IDENTITY.iter().any(|protected| protected.eq_ignore_ascii_case(name)) {
        return Some(NotAllowed::SessionIdentity);
    }
    let (_, safe) = SQL_READING.iter().find(|(setting, _)| setting.eq_ignore_ascii_case(name))?;
    match value {
        // A startup parameter may come quoted (asyncpg sends `'utf-8'`).
        Some(value) if safe.iter().any(|v| v.eq_ignore_ascii_case(value.trim().trim_matches('\''))) => None,
        _ => Some(NotAllowed::SqlReading),
    }
}

/// The value a `SET` gives, when it is one constant (`None` for `RESET`, `DEFAULT` and lists).
fn set_value(set: &pg_query::protobuf::VariableSetStmt) -> Option<String> {
    use pg_query::protobuf::a_const::Val;
    let [arg] = set.args.as_slice() else { return None };
    let Some(NodeEnum::AConst(constant)) = &arg.node else { return None };
    match &constant.val {
        Some(Val::Sval(s)) => Some(s.sval.clone()),
        Some(Val::Ival(i)) => Some(i.ival.to_string()),
        Some(Val::Boolval(b)) => Some(b.boolval.to_string()),
        _ => None,
    }
}

/// Why a `SET`/`RESET` is refused, if it is.
fn judge_set(set: &pg_query::protobuf::VariableSetStmt) -> Option<NotAllowed> {
    use pg_query::protobuf::VariableSetKind as K;
    match K::try_from(set.kind) {
        // Back to the session's default: the server's, or the (checked) startup value.
        Ok(K::VarReset | K::VarSetDefault) => {
            protected_setting(&set.name, None).filter(|refusal| *refusal == NotAllowed::SessionIdentity)
        }
        _ => protected_setting(&set.name, set_value(set).as_deref()),
    }
}

/// Judges one statement by its kind (what hides inside it, such as a `set_config` call, is the
/// walk's business).
pub(super) fn judge(node: &NodeEnum) -> Option<NotAllowed> {
    let object_is = |kind: i32, object: ObjectType| kind == object as i32;
    match node {
        NodeEnum::CreateRoleStmt(_)
        | NodeEnum::AlterRoleStmt(_)
        | NodeEnum::AlterRoleSetStmt(_)
        | NodeEnum::DropRoleStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::ReassignOwnedStmt(_)
        | NodeEnum::DropOwnedStmt(_) => Some(NotAllowed::RoleManagement),
        NodeEnum::RenameStmt(rename) if object_is(rename.rename_type, ObjectType::ObjectRole) => {
            Some(NotAllowed::RoleManagement)
        }
        NodeEnum::VariableSetStmt(set) => judge_set(set),
        NodeEnum::DoStmt(_) => Some(NotAllowed::AnonymousCode),
        NodeEnum::AlterSystemStmt(_)
        | NodeEnum::LoadStmt(_)
        | NodeEnum::CreatedbStmt(_)
        | NodeEnum::AlterDatabaseStmt(_)
        | NodeEnum::AlterDatabaseSetStmt(_)
        | NodeEnum::AlterDatabaseRefreshCollStmt(_)
        | NodeEnum::DropdbStmt(_)
        | NodeEnum::CreateExtensionStmt(_)
        | NodeEnum::AlterExtensionStmt(_)
        | NodeEnum::AlterExtensionContentsStmt(_) => Some(NotAllowed::Administration),
        NodeEnum::RenameStmt(rename) if object_is(rename.rename_type, ObjectType::ObjectDatabase) => {
            Some(NotAllowed::Administration)
        }
        _ => None,
    }
}
