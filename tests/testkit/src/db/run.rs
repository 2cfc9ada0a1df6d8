//! The test run a process belongs to: the process that started it (cargo test, nextest),
//! known by its pid, its start time and the machine's boot, so that a later process can tell
//! whether that run is still going (a reused pid has another start time).

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    boot: String,
    pid: u32,
    /// When the runner started, in clock ticks after boot (`/proc/<pid>/stat`, field 22).
    start: u64,
}

impl Run {
    /// The run of this process: its parent, the test runner. `None` where that cannot be known
    /// (no `/proc`) or means nothing (an orphan adopted by init).
    pub(crate) fn current() -> Option<Self> {
        let parent = std::os::unix::process::parent_id();
        if parent <= 1 {
            return None;
        }
        Self::of_process(parent)
    }

    /// Whether the runner is still running. Only this machine's processes can be seen: a run
    /// on another machine (or before a reboot) counts as over.
    pub(crate) fn is_going(&self) -> bool {
        Self::of_process(self.pid).is_some_and(|now| now == *self)
    }

    fn of_process(pid: u32) -> Option<Self> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(Self { boot: boot.trim().to_owned(), pid, start: start_time(&stat)? })
    }

    /// The comment on a test database (`COMMENT ON DATABASE`, shown by `\l+`): the test, its
    /// process and its run, as JSON.
    pub(crate) fn comment(test: &str, run: Option<&Self>) -> String {
        json!({
            "testkit": {
                "test": test,
                "pid": std::process::id(),
                "run": run.map(Self::to_json),
            }
        })
        .to_string()
    }

    /// The run named in a test database's [comment](Self::comment).
    pub(crate) fn of_comment(comment: &str) -> Option<Self> {
        let comment: Value = serde_json::from_str(comment).ok()?;
        Self::from_json(comment.get("testkit")?.get("run")?)
    }

    fn to_json(&self) -> Value {
        json!({ "boot": self.boot, "pid": self.pid, "start": self.start })
    }

    fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            boot: value.get("boot")?.as_str()?.to_owned(),
            pid: u32::try_from(value.get("pid")?.as_u64()?).ok()?,
            start: value.get("start")?.as_u64()?,
        })
    }
}

/// Field 22 of `/proc/<pid>/stat`, counted after the command name (field 2, in parentheses,
/// which may itself hold spaces and parentheses).
fn start_time(stat: &str) -> Option<u64> {
    let (_, after_command) = stat.rsplit_once(')')?;
    // Fields 3, 4, …: the start time is the 20th of them.
    after_command.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_read_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1009 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 2000000 300";
        assert_eq!(start_time(stat), Some(987_654));
        assert_eq!(start_time("4242 (short) S 1"), None);
    }

    #[test]
    fn this_process_has_a_run_that_is_going() {
        let run = Run::current().unwrap_or_else(|| panic!("no runner for the unit tests"));
        assert!(run.is_going());
        let comment = Run::comment("lifecycle::suspend_then_resume", Some(&run));
        assert_eq!(Run::of_comment(&comment), Some(run.clone()));
        assert_eq!(Run::of_comment(&Run::comment("no::run", None)), None);
        assert_eq!(Run::of_comment("a comment of someone else's"), None);
        let earlier = Run { start: run.start.saturating_sub(1), ..run };
        assert!(!earlier.is_going(), "a reused pid is another run");
    }
}
