//! The statement classifier: what running a piece of SQL can do to the pooled connection it
//! runs on, judged with PostgreSQL's own grammar (the `pg_query` crate).
//!
//! Resetting every connection after every request costs a second query cycle; with the
//! classifier, the pool resets only after a request one of whose statements *can* leave state
//! in the session (a setting, a prepared statement, a temporary table, a cursor, a lock, …)
//! that a later request on the same connection could see. Whatever the classifier does not
//! know is assumed to need a reset: an unknown statement kind, an unknown or schema-qualified
//! function, SQL that does not parse.
//!
//! [`classify`] parses and judges one SQL string (a simple-query string may hold several
//! statements); [`Classifier`] caches the answers by SQL text.
//!
//! What the classifier cannot see, and relies on tenant roles not being able to create (they
//! have no DDL): functions a trigger, a view, an operator, a cast or a column default calls;
//! a function of the tenant's schema that overloads a built-in's name (`lower(my_type)`), or
//! is called with attribute notation (`SELECT t.f FROM t`, which parses as a column). Those come
//! from the schema's migrations; a deployment whose migrations create such functions with
//! session effects uses `ROUTER_SESSION_RESET=always`.

mod functions;
mod policy;
mod shape;
mod walk;

pub use policy::NotAllowed;

#[cfg(test)]
mod tests;

use pg_query::protobuf::{ExplainStmt, Node};
use pg_query::NodeEnum;

/// Whether running a statement can leave state in the session that a later request on the
/// same connection could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEffect {
    /// Leaves the session as it found it: no reset needed.
    Clean,
    /// Can change the session (or is not known not to): reset before the connection is reused.
    NeedsReset,
}

/// What the router needs to know about a piece of SQL before and after running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// Clean only when every statement is.
    pub session: SessionEffect,
    /// Every statement only reads (`SELECT`, `VALUES`, `TABLE`, `SHOW`, `EXPLAIN` without
    /// `ANALYZE`): no data-modifying CTE, no `SELECT … INTO`, no `FOR UPDATE`/`FOR SHARE`, and
    /// only calls to functions known to keep the session and the data as they are. Implies
    /// [`SessionEffect::Clean`].
    pub read_only: bool,
    /// A statement drops prepared statements (`DEALLOCATE`, any `DISCARD`), the router's own
    /// protocol-level ones included: the connection must be retired, not reset.
    pub discards_statements: bool,
    /// A transaction control statement (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`,
    /// `PREPARE TRANSACTION`, …), which a batch run inside the router's own transaction must
    /// not contain.
    pub transaction_control: bool,
    /// A statement calls `currval` or `lastval`, which read the session's sequence cache: an
    /// earlier request's `nextval` (a `serial` default in an `INSERT`, say, which the
    /// classifier counts as clean) may have filled it, so discard it before this one runs.
    pub reads_sequence_cache: bool,
    /// A statement calls `set_config` (whose change to the session's settings, unless local
    /// to a transaction, stays).
    pub sets_config: bool,
    /// The first word of the first statement's command tag when pg_query tells it for sure
    /// (`SELECT` for a `WITH … SELECT`, `TABLE t` or `VALUES`; `INSERT`, `UPDATE`, `DELETE`,
    /// `MERGE`); `None` for other statements, whose tag starts with their first keyword.
    pub command: Option<&'static str>,
    /// Why a statement is one a tenant may not send at all ([`policy`]); the first one's.
    pub not_allowed: Option<NotAllowed>,
}

impl Classification {
    /// What the classifier assumes of SQL it cannot judge: needs a reset, not read-only.
    pub(crate) const UNKNOWN: Self = Self {
        session: SessionEffect::NeedsReset,
        read_only: false,
        discards_statements: false,
        transaction_control: false,
        reads_sequence_cache: false,
        sets_config: false,
        command: None,
        not_allowed: None,
    };

    /// A statement that only reads.
    const READS: Self = Self { session: SessionEffect::Clean, read_only: true, ..Self::UNKNOWN };

    /// A statement that leaves the session clean but may write (or is not one that only reads).
    const WRITES: Self = Self { session: SessionEffect::Clean, ..Self::UNKNOWN };

    /// Whether the connection must be reset after running this.
    pub fn needs_reset(&self) -> bool {
        self.session == SessionEffect::NeedsReset
    }

    /// This statement followed by `next` in the same string.
    pub(crate) fn then(self, next: Self) -> Self {
        let needs_reset = self.needs_reset() || next.needs_reset();
        Self {
            session: if needs_reset { SessionEffect::NeedsReset } else { SessionEffect::Clean },
            read_only: self.read_only && next.read_only,
            discards_statements: self.discards_statements || next.discards_statements,
            transaction_control: self.transaction_control || next.transaction_control,
            reads_sequence_cache: self.reads_sequence_cache || next.reads_sequence_cache,
            sets_config: self.sets_config || next.sets_config,
            command: self.command,
            not_allowed: self.not_allowed.or(next.not_allowed),
        }
    }

    /// Adds what the walk of the statement's whole tree found.
    fn with(mut self, findings: walk::Findings) -> Self {
        if findings.session {
            self.session = SessionEffect::NeedsReset;
        }
        self.read_only &= !findings.writes && !findings.session;
        self.reads_sequence_cache |= findings.reads_sequence_cache;
        self.sets_config |= findings.sets_config;
        self.not_allowed = self.not_allowed.or(findings.not_allowed);
        self
    }
}

/// Classifies `sql`, which may hold several statements. Empty SQL, and SQL that does not parse
/// (PostgreSQL will reject it too, but maybe after running the statements before the error),
/// needs a reset.
pub fn classify(sql: &str) -> Classification {
    judged(sql).unwrap_or(Classification::UNKNOWN)
}

/// [`classify`]'s answer when `sql` parses into at least one statement; `None` otherwise.
fn judged(sql: &str) -> Option<Classification> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let mut statements = parsed.protobuf.stmts.iter().map(|raw| statement(raw.stmt.as_deref()));
    let first = statements.next()?;
    Some(statements.fold(first, Classification::then))
}

/// The `SET`/`RESET` statements of `sql`, or `None` unless it is made only of them (not
/// `SET LOCAL`, not `SET TRANSACTION`, nothing a tenant may not send): settings a client of the
/// PostgreSQL-protocol door carries from connection to connection.
fn settings_of(sql: &str) -> Option<Vec<pg_query::protobuf::VariableSetStmt>> {
    use pg_query::protobuf::VariableSetKind as K;
    let parsed = pg_query::parse(sql, 0).ok()?;
    let mut settings = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let node = raw.stmt.as_deref().and_then(|n| n.node.as_ref())?;
        let NodeEnum::VariableSetStmt(set) = node else { return None };
        let kind = K::try_from(set.kind).ok()?;
        if set.is_local || !matches!(kind, K::VarSetValue | K::VarSetDefault | K::VarReset | K::VarResetAll) {
            return None;
        }
        if policy::judge(node).is_some() {
            return None;
        }
        settings.push(set.clone());
    }
    (!settings.is_empty()).then_some(settings)
}

/// One change a query made only of `SET`/`RESET` makes to a session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingChange {
    /// `name` (lower case) is set by `sql`, one statement.
    Set {
        name: String,
        sql: String,
    },
    /// `name` goes back to the session's default.
    Reset {
        name: String,
    },
    ResetAll,
}

/// The changes `sql` makes to the session's settings, or `None` unless it is made only of
/// `SET` and `RESET` statements a client may carry (see [`crate::wire`]).
pub(crate) fn setting_changes(sql: &str) -> Option<Vec<SettingChange>> {
    use pg_query::protobuf::VariableSetKind as K;
    settings_of(sql)?
        .into_iter()
        .map(|set| {
            let name = set.name.to_ascii_lowercase();
            Some(match K::try_from(set.kind).ok()? {
                K::VarResetAll => SettingChange::ResetAll,
                K::VarReset => SettingChange::Reset { name },
                _ => {
                    let sql = NodeEnum::VariableSetStmt(set).deparse(Default::default()).ok()?;
                    SettingChange::Set { name, sql }
                }
            })
        })
        .collect()
}

/// Whether `sql` is made only of transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`,
/// savepoints; not `PREPARE TRANSACTION`), which leaves nothing in the session once the
/// transaction is over.
pub(crate) fn only_transaction_control(sql: &str) -> bool {
    use pg_query::protobuf::TransactionStmtKind as K;
    let Ok(parsed) = pg_query::parse(sql, 0) else { return false };
    !parsed.protobuf.stmts.is_empty() && parsed.protobuf.stmts.iter().all(|raw| {
        matches!(
            raw.stmt.as_deref().and_then(|n| n.node.as_ref()),
            Some(NodeEnum::TransactionStmt(t)) if !matches!(
                K::try_from(t.kind),
                Ok(K::TransStmtPrepare | K::TransStmtCommitPrepared | K::TransStmtRollbackPrepared) | Err(_)
            )
        )
    })
}

/// Classifies one statement of a parsed string.
fn statement(node: Option<&Node>) -> Classification {
    let Some(node) = node.and_then(|n| n.node.as_ref()) else { return Classification::UNKNOWN };
    let kind = match node {
        NodeEnum::ExplainStmt(explain) => return explain_statement(explain),
        NodeEnum::SelectStmt(_) => Classification { command: Some("SELECT"), ..Classification::READS },
        NodeEnum::VariableShowStmt(_) => Classification::READS,
        NodeEnum::InsertStmt(_) => Classification { command: Some("INSERT"), ..Classification::WRITES },
        NodeEnum::UpdateStmt(_) => Classification { command: Some("UPDATE"), ..Classification::WRITES },
        NodeEnum::DeleteStmt(_) => Classification { command: Some("DELETE"), ..Classification::WRITES },
        NodeEnum::MergeStmt(_) => Classification { command: Some("MERGE"), ..Classification::WRITES },
        // Transactional: delivered at commit, nothing stays.
        NodeEnum::NotifyStmt(_)
        // Held until the transaction ends.
        | NodeEnum::LockStmt(_)
        // Run a prepared statement or use a cursor, which must already exist: whatever created
        // it (PREPARE, DECLARE) needs a reset itself, so one created by an earlier request on
        // this connection is gone. (`FetchStmt` is `FETCH` and `MOVE`.)
        | NodeEnum::ExecuteStmt(_)
        | NodeEnum::FetchStmt(_)
        | NodeEnum::ClosePortalStmt(_) => Classification::WRITES,
        // SET LOCAL lasts until the transaction ends; any other SET or RESET stays.
        NodeEnum::VariableSetStmt(set) if set.is_local => Classification::WRITES,
        NodeEnum::TransactionStmt(_) => Classification { transaction_control: true, ..Classification::UNKNOWN },
        NodeEnum::DeallocateStmt(_) | NodeEnum::DiscardStmt(_) => {
            Classification { discards_statements: true, ..Classification::UNKNOWN }
        }
        // SET, RESET, PREPARE, LISTEN, UNLISTEN, DECLARE, DO, CALL, COPY, LOAD, every CREATE
        // (temporary objects included) and any other DDL or utility statement.
        _ => Classification::UNKNOWN,
    };
    Classification { not_allowed: policy::judge(node), ..kind }.with(walk::walk(node))
}

/// `EXPLAIN` is judged by the statement it explains, which `ANALYZE` runs: without it, the
/// statement is only planned (read-only when the statement is), but planning may still
/// evaluate its functions, so they count as they would in the statement.
fn explain_statement(explain: &ExplainStmt) -> Classification {
    let analyze = explain.options.iter().any(|option| {
        matches!(&option.node, Some(NodeEnum::DefElem(def)) if def.defname.eq_ignore_ascii_case("analyze"))
    });
    let explained = statement(explain.query.as_deref());
    Classification { read_only: explained.read_only && !analyze, command: Some("EXPLAIN"), ..explained }
}

/// Classifications by SQL text, so that a repeated statement is parsed once: by the text as
/// sent, or, where numbers cannot change the answer, by its [`shape`] (numbers blanked), so
/// that the simple protocol's `… WHERE id = 41` and `… WHERE id = 42` are parsed once.
///
/// Bounded by entries; SQL longer than [`Classifier::MAX_CACHED_LEN`] is classified but not
/// kept (such text is rarely repeated, and its parse is small next to its run), which also
/// bounds the memory the cache holds to about `capacity × MAX_CACHED_LEN`.
#[derive(Clone)]
pub struct Classifier {
    cache: moka::sync::Cache<String, Classification>,
}

impl Classifier {
    /// The longest SQL text kept in the cache, in bytes.
    pub const MAX_CACHED_LEN: usize = 4096;

    /// A classifier that keeps the classifications of up to `capacity` SQL texts.
    pub fn new(capacity: u64) -> Self {
        Self { cache: moka::sync::Cache::new(capacity) }
    }

    /// [`classify`], from the cache when `sql` was seen before.
    pub fn classify(&self, sql: &str) -> Classification {
        if sql.len() > Self::MAX_CACHED_LEN {
            return classify(sql);
        }
        let shape = shape::of(sql);
        let key = shape.as_deref().unwrap_or(sql);
        if let Some(classification) = self.cache.get(key) {
            return classification;
        }
        match (judged(sql), shape) {
            (Some(classification), shape) => {
                self.cache.insert(shape.unwrap_or_else(|| sql.to_owned()), classification);
                classification
            }
            // Text that does not parse is judged as unknown, and a shape is not kept for it:
            // whether text parses may depend on its numbers (`varchar(2147483648)`,
            // `float(99)`), and its answer must not become that of the shape's texts that do.
            (None, Some(_)) => Classification::UNKNOWN,
            (None, None) => {
                self.cache.insert(sql.to_owned(), Classification::UNKNOWN);
                Classification::UNKNOWN
            }
        }
    }
}

impl Default for Classifier {
    /// Room for 4096 SQL texts: a tenant application's statements, with room for the
    /// ad-hoc ones.
    fn default() -> Self {
        Self::new(4096)
    }
}
