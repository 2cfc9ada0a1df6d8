//! The sweep against processes of their own: `testkit-holder` creates a test database and
//! either drops it (`drop`) or ends without cleaning up, as a killed test would.

use crate::{admin, database_exists, one_at_a_time, role_exists};
use std::process::Stdio;
use testkit::TestDb;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const HOLDER: &str = env!("CARGO_BIN_EXE_testkit-holder");
/// The first key of the kit's claims ("tkit"), as `pg_locks` shows it.
const CLAIM_CLASS: u32 = 0x746b_6974;

/// A test's database and what its control plane would create under its prefix (a database
/// and a role).
struct TestObjects {
    database: String,
    prefix: String,
}

impl TestObjects {
    /// What a test's control plane created, left by no process (its test database is gone).
    async fn left_without_their_test_database() -> Self {
        let key: u32 = rand::random();
        let left = Self { database: format!("test_never_created_{key:08x}"), prefix: format!("tk{key:08x}") };
        left.create_control_plane_objects().await;
        assert_eq!(left.existing().await, 2);
        left
    }

    async fn create_control_plane_objects(&self) {
        let admin = admin().await;
        admin.batch_execute(&format!("CREATE DATABASE \"{}_tenants\"", self.prefix)).await.unwrap();
        admin.batch_execute(&format!("CREATE ROLE \"{}_acme\" LOGIN", self.prefix)).await.unwrap();
    }

    /// How many of the test database, the prefix's database and its role exist.
    async fn existing(&self) -> usize {
        let present = [
            database_exists(&self.database).await,
            database_exists(&format!("{}_tenants", self.prefix)).await,
            role_exists(&format!("{}_acme", self.prefix)).await,
        ];
        present.into_iter().filter(|&p| p).count()
    }

    /// Whether a process claims the test's key (the advisory lock on it is held).
    async fn claimed(&self) -> bool {
        let key = u32::from_str_radix(self.prefix.trim_start_matches("tk"), 16).unwrap();
        let row = admin()
            .await
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                    AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2",
                &[&i64::from(CLAIM_CLASS), &i64::from(key)],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) > 0
    }

    /// Drops them, as a later run's sweep would.
    async fn drop_them(&self) {
        let admin = admin().await;
        for database in [self.database.clone(), format!("{}_tenants", self.prefix)] {
            admin.batch_execute(&format!("DROP DATABASE \"{database}\" WITH (FORCE)")).await.unwrap();
        }
        admin.batch_execute(&format!("DROP ROLE \"{}_acme\"", self.prefix)).await.unwrap();
    }
}

/// A `testkit-holder` process and the test database it created.
struct Holder {
    /// The holder, or the shell that started it.
    process: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    objects: TestObjects,
}

impl Holder {
    /// A holder started by this process: its test run is this one, which goes on.
    async fn in_this_run() -> Self {
        Self::start(Command::new(HOLDER)).await
    }

    /// A holder started by a shell that is then killed: its run is over, though the holder
    /// goes on until told.
    async fn in_a_run_that_is_over() -> Self {
        let mut shell = Command::new("sh");
        // A background job's input is /dev/null unless redirected (from a copy of the shell's:
        // `<&0` would copy /dev/null).
        shell.arg("-c").arg(r#"exec 3<&0; "$0" <&3 & wait"#).arg(HOLDER);
        let mut holder = Self::start(shell).await;
        holder.process.kill().await.unwrap();
        holder
    }

    async fn start(mut command: Command) -> Self {
        let mut process = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = process.stdin.take().unwrap();
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).await.unwrap();
        let (database, prefix) =
            line.trim().split_once(' ').unwrap_or_else(|| panic!("holder said {line:?}"));
        assert!(database.starts_with("test_testkit_holder_"), "named after the program: {database}");
        let objects = TestObjects { database: database.to_owned(), prefix: prefix.to_owned() };
        objects.create_control_plane_objects().await;
        assert_eq!(objects.existing().await, 3);
        assert!(objects.claimed().await);
        Self { process, stdin, stdout, objects }
    }

    /// Sends the holder its line, and waits for it to end and its claim with it.
    async fn finish(mut self, line: &str) -> TestObjects {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        drop(self.stdin);
        // The end of its output: the holder has ended.
        self.stdout.read_to_end(&mut Vec::new()).await.unwrap();
        let _ = self.process.wait().await;
        // PostgreSQL ends the holder's sessions, and releases its claim, a moment later.
        for _ in 0..100 {
            if !self.objects.claimed().await {
                return self.objects;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the claim on {} outlived its process", self.objects.prefix);
    }
}

#[tokio::test]
async fn what_a_dead_test_run_left_is_swept() {
    let _serial = one_at_a_time().await;
    let holder = Holder::in_a_run_that_is_over().await;
    let left = holder.finish("exit").await;
    assert_eq!(left.existing().await, 3, "the holder ended without cleaning up");
    let swept = TestDb::sweep_stale().await;
    assert!(swept.contains(&left.database), "{swept:?}");
    assert_eq!(left.existing().await, 0);
}

#[tokio::test]
async fn what_a_live_process_holds_is_not_swept() {
    let _serial = one_at_a_time().await;
    let holder = Holder::in_a_run_that_is_over().await;
    let swept = TestDb::sweep_stale().await;
    assert!(!swept.contains(&holder.objects.database), "{swept:?}");
    assert_eq!(holder.objects.existing().await, 3);
    // As a passing test, it drops everything itself.
    let left = holder.finish("drop").await;
    assert_eq!(left.existing().await, 0);
}

#[tokio::test]
async fn a_dead_process_of_a_run_that_goes_on_keeps_its_database() {
    let _serial = one_at_a_time().await;
    // As a failed test's process in this `cargo test` run, which goes on: kept for inspection.
    let left = Holder::in_this_run().await.finish("exit").await;
    let swept = TestDb::sweep_stale().await;
    assert!(!swept.contains(&left.database), "{swept:?}");
    assert_eq!(left.existing().await, 3);
    left.drop_them().await;
}

#[tokio::test]
async fn a_prefix_whose_test_database_is_gone_is_swept() {
    let _serial = one_at_a_time().await;
    let left = TestObjects::left_without_their_test_database().await;
    let swept = TestDb::sweep_stale().await;
    assert!(swept.contains(&left.prefix), "{swept:?}");
    assert_eq!(left.existing().await, 0);
}

#[tokio::test]
async fn a_process_sweeps_before_its_first_database() {
    let _serial = one_at_a_time().await;
    let left = TestObjects::left_without_their_test_database().await;
    // A holder's only sweep is the one before its database.
    let holder = Holder::in_this_run().await;
    assert_eq!(left.existing().await, 0);
    assert_eq!(holder.finish("drop").await.existing().await, 0);
}
