//! What the CLI prints: human tables by default (more columns with `-o wide`), JSON with
//! `--json` or `-o json`, YAML with `-o yaml`; progress on stderr.

mod yaml;

use std::io::{IsTerminal as _, Write as _};
use std::sync::OnceLock;

/// How a command prints what it found (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The table with more columns.
    Wide,
    Json,
    Yaml,
}

impl Format {
    /// Whether the command prints a document (JSON or YAML) rather than a table.
    pub(crate) fn structured(self) -> bool {
        matches!(self, Self::Json | Self::Yaml)
    }
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Sets the output format for the rest of the process (the first call wins).
pub(crate) fn set_format(format: Format) {
    let _ = FORMAT.set(format);
}

fn format() -> Format {
    FORMAT.get().copied().unwrap_or(Format::Table)
}

/// Whether tables should show their extra columns (`-o wide`).
pub(crate) fn wide() -> bool {
    format() == Format::Wide
}

/// Writes one line to stdout (ignoring a closed pipe, as `head` users expect).
pub(crate) fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Writes `value` as a document to stdout: pretty JSON, or YAML with `-o yaml`.
pub(crate) fn json(value: &impl serde::Serialize) {
    if format() == Format::Yaml {
        let value = serde_json::to_value(value).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(yaml::to_yaml(&value).as_bytes());
    } else {
        line(&serde_json::to_string_pretty(value).unwrap_or_default());
    }
}

/// Writes a command's failure: `{"error": {"code", "message"}}` on stdout with `--json` (or
/// `-o yaml`), else a note for people on stderr.
pub(crate) fn error(code: &str, message: &str, json: bool) {
    if json {
        self::json(&serde_json::json!({ "error": { "code": code, "message": message } }));
    } else {
        note(&format!("error: {message}"));
    }
}

/// Writes a note for people to stderr.
pub(crate) fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// `--watch`: the same view printed again every interval; on a terminal it replaces the
/// previous one (with the time it was taken), elsewhere the views follow each other.
pub(crate) struct Watch {
    interval: std::time::Duration,
    terminal: bool,
    frames: usize,
}

impl Watch {
    pub(crate) fn new(interval: std::time::Duration) -> Self {
        let interval = interval.max(std::time::Duration::from_millis(200));
        Self { interval, terminal: std::io::stdout().is_terminal() && format() != Format::Json, frames: 0 }
    }

    /// Prints one view with `print`.
    pub(crate) fn frame(&mut self, print: impl FnOnce()) {
        if self.terminal {
            // Home, clear the screen, then the view under a line saying when it was taken.
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[H\x1b[2J");
            let _ = writeln!(
                out,
                "Every {}: {}\n",
                humantime::format_duration(self.interval),
                chrono::Local::now().format("%H:%M:%S")
            );
        } else if format() == Format::Yaml {
            // A stream of YAML documents.
            line("---");
        } else if self.frames > 0 && format() != Format::Json {
            line("");
        }
        print();
        self.frames += 1;
    }

    pub(crate) async fn wait(&self) {
        tokio::time::sleep(self.interval).await;
    }

    /// `--watch`: shows what `look` finds every `interval` until `ended` gives the command's
    /// exit code for it (never, for a view watched until interrupted).
    pub(crate) async fn until<T, E>(
        interval: std::time::Duration,
        mut look: impl AsyncFnMut() -> Result<T, E>,
        show: impl Fn(&T),
        ended: impl Fn(&T) -> Option<std::process::ExitCode>,
    ) -> Result<std::process::ExitCode, E> {
        let mut watch = Self::new(interval);
        loop {
            let seen = look().await?;
            watch.frame(|| show(&seen));
            if let Some(code) = ended(&seen) {
                return Ok(code);
            }
            watch.wait().await;
        }
    }
}

/// Asks the person at the terminal to type `expected` to go on with what `what` describes;
/// `Ok(true)` when they did, when `yes` (`--yes`) or when there is no terminal to ask on
/// (scripts and pipelines are not asked).
pub(crate) fn confirm(what: &str, expected: &str, yes: bool) -> std::io::Result<bool> {
    use std::io::BufRead as _;
    if yes || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    {
        let mut err = std::io::stderr().lock();
        writeln!(err, "{what}")?;
        write!(err, "Type {expected} to confirm (or run with --yes): ")?;
        err.flush()?;
    }
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == expected)
}

/// A listing: `rows` as a [`table`], or `No <what> found.` (as kubectl says) when there are none.
pub(crate) fn listing(what: &str, headers: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        line(&format!("No {what} found."));
    } else {
        table(headers, rows);
    }
}

/// A plain-text table with aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    line(&render(headers.iter().map(|h| h.to_uppercase()).collect()));
    for row in rows {
        line(&render(row.clone()));
    }
}

/// Progress of a fleet run: a bar on a terminal (done / failed / remaining, rate, ETA), a line
/// every 10% otherwise.
pub(crate) struct FleetProgress {
    bar: indicatif::ProgressBar,
    plain: bool,
    started: std::time::Instant,
    done: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicUsize,
}

impl FleetProgress {
    pub(crate) fn new(quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal() && !quiet;
        let bar = if terminal {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} migrating [{bar:40}] {pos}/{len} tenants  {msg}  {rate}  eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1} tenants/s", state.per_sec());
                })
                .progress_chars("=> "),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Self {
            bar,
            plain: !terminal && !quiet,
            started: std::time::Instant::now(),
            done: 0.into(),
            failed: 0.into(),
            total: 0.into(),
        }
    }
}

impl crate::fleet::Progress for FleetProgress {
    fn start(&self, more: usize) {
        let total = self.total.fetch_add(more, std::sync::atomic::Ordering::Relaxed) + more;
        self.bar.set_length(total as u64);
        if self.plain && more > 0 {
            note(&format!("migrating {more} tenants"));
        }
    }

    fn tenant_done(&self, result: &crate::fleet::TenantResult) {
        use std::sync::atomic::Ordering::Relaxed;
        let done = self.done.fetch_add(1, Relaxed) + 1;
        let not_done = result.state != crate::fleet::ItemState::Done;
        let failed = self.failed.fetch_add(usize::from(not_done), Relaxed) + usize::from(not_done);
        self.bar.inc(1);
        self.bar.set_message(format!("{failed} failed"));
        if let Some(error) = &result.error {
            self.bar.suspend(|| note(&format!("tenant {} {}: {error}", result.slug, result.state.as_str())));
        }
        let total = self.total.load(Relaxed).max(done);
        if self.plain && (done * 10 / total != (done - 1) * 10 / total || done == total) {
            let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
            let rate = done as f64 / elapsed;
            let eta = (total - done) as f64 / rate.max(0.001);
            note(&format!(
                "progress: {done}/{total} done, {failed} failed, {} remaining, {rate:.1} tenants/s, eta {eta:.0}s",
                total - done
            ));
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
