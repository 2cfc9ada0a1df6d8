//! Structured logging: human-readable text by default, JSON lines with `LOG_FORMAT=json`.
//! Verbosity follows `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Default verbosity of long-running servers: our own events at info; PostgreSQL NOTICEs
/// ("already exists, skipping") and refinery's per-migration chatter only when they warn.
pub const SERVER_LOG_FILTER: &str = "info,tokio_postgres::connection=warn,refinery_core=warn";

/// Default verbosity of one-shot CLI commands: their output is the answer; logs only warn.
pub const CLI_LOG_FILTER: &str = "warn";

/// Added to every filter: no statement text in the logs (the modules of tokio-postgres that log
/// it at debug level).
const NO_STATEMENT_TEXT: [&str; 4] = [
    "tokio_postgres::simple_query=info",
    "tokio_postgres::prepare=info",
    "tokio_postgres::query=info",
    "tokio_postgres::copy_in=info",
];

/// Installs the global subscriber (`RUST_LOG` overrides `default_filter`); later calls are
/// ignored (tests call it many times).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Whatever RUST_LOG asks: tokio-postgres logs each statement it sends at debug level, and
    // some statements carry secrets (a move's subscription, with its source's password).
    let filter = NO_STATEMENT_TEXT
        .iter()
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, tracing_subscriber::EnvFilter::add_directive);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}
