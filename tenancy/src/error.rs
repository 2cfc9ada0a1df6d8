//! The kinds of failure an operation can meet. Every operation error names its kind (and a
//! stable code); each edge derives what it needs from the kind in one place: the control
//! plane's HTTP status and its exit code, the error metrics' label, and whether a job is
//! retried.

/// What kind of failure an operation met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input is malformed or names something invalid: correct it and ask again.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// It clashes with what exists: a duplicate, or another run already in progress.
    Conflict,
    /// Not possible in the current state of what it names (resuming a deleted tenant).
    WrongState,
    /// A dependency (the catalog, a cluster, the secret store) is unreachable or overloaded:
    /// the same request may succeed later.
    Unavailable,
    /// The system's own configuration is wrong (a bad migrations directory, an invalid URL or
    /// key): an operator must fix it; asking again will not help.
    Misconfigured,
    /// The operation ran and failed (a migration's SQL error, a failed job).
    Failed,
    /// Waiting ran out of time; the work itself stays queued.
    TimedOut,
}

impl ErrorKind {
    /// Whether trying the same thing again later may succeed (jobs are retried only then).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::TimedOut)
    }

    /// The kind's name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::WrongState => "wrong_state",
            Self::Unavailable => "unavailable",
            Self::Misconfigured => "misconfigured",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error an operation returns to whoever asked for it (a command, an API request, a job).
pub trait OperationError: std::error::Error {
    fn kind(&self) -> ErrorKind;

    /// Stable, machine-readable code: the API's `error.code`, the CLI's `--json` error.
    fn code(&self) -> &'static str;

    /// For a failure on the server's side, a message the API may send as it is (one that names
    /// no host, query or secret); `None` (the default) sends a generic one.
    fn public_message(&self) -> Option<String> {
        None
    }
}

/// The kind of a PostgreSQL error. Connection failures, shutdowns, too many connections,
/// serialization failures, deadlocks, lock timeouts and concurrent catalog updates are worth
/// retrying ([`ErrorKind::Unavailable`]); any other SQL error means the statement itself
/// failed ([`ErrorKind::Failed`]).
pub fn pg_error_kind(err: &tokio_postgres::Error) -> ErrorKind {
    let Some(db) = err.as_db_error() else { return ErrorKind::Unavailable };
    let code = db.code().code();
    let transient = code.starts_with("08") // connection exception
        || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
        || code.starts_with("53") // insufficient resources (too many connections, …)
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock
        || code == "55P03" // lock not available
        || (code == "XX000" && db.message().contains("concurrently"));
    if transient {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Failed
    }
}
