//! A process that holds a test database, for the kit's own tests of the sweep: creates a
//! [`testkit::TestDb`] (named after this executable: it runs no test), writes its name and role
//! prefix on a line, then reads a line: `drop` drops it as a passing test does; anything else,
//! or the end of its input, ends the process at once, leaving the database behind as a killed
//! test would.

use std::io::{BufRead as _, Write as _};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let db = testkit::TestDb::create().await;
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "{} {}", db.name, db.role_prefix).and_then(|()| stdout.flush()).is_err() {
        std::process::exit(1);
    }
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.trim() == "drop" {
        drop(db);
    } else {
        // No destructors: nothing is cleaned up.
        std::process::exit(0);
    }
}
