//! This process's claims on its databases: one advisory lock per database key, taken before the
//! database is created and held on a session of the process's own (on the admin database)
//! until the database is dropped. PostgreSQL ends the session, and with it the claims, when the
//! process ends, however it ends: a lock that can be taken is a database no process uses.

use tokio_postgres::{Client, NoTls};

/// First key of the claims' advisory locks (two-key form, "tkit"): a key space of the kit's
/// own, apart from the single-key locks and the other classes the control plane takes.
pub(crate) const LOCK_CLASS: i32 = 0x746b_6974;

/// What a test's names end with (`test_<test>_<key>`, roles and databases `tk<key>_…`): 32
/// random bits, shown as 8 hex digits, and the second key of its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key(u32);

impl Key {
    fn random() -> Self {
        Self(rand::random())
    }

    pub(crate) fn parse(hex: &str) -> Option<Self> {
        let digits = hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        digits.then(|| u32::from_str_radix(hex, 16).ok().map(Self)).flatten()
    }

    pub(crate) fn hex(self) -> String {
        format!("{:08x}", self.0)
    }

    /// The second key of the advisory lock (the same 32 bits, as PostgreSQL's `int`).
    pub(crate) fn lock_id(self) -> i32 {
        i32::from_ne_bytes(self.0.to_ne_bytes())
    }
}

/// The session that holds this process's claims.
pub(crate) struct Claims {
    session: Client,
}

impl Claims {
    /// Opens the session. Its connection runs on a thread of its own, for as long as the
    /// process: a test's runtime ends with the test, and its connections with it.
    pub(crate) async fn open(admin_url: &str) -> Self {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let url = admin_url.to_owned();
        let thread = std::thread::Builder::new().name("testkit-claims".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = sender.send(Err(format!("no runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let (client, connection) = match tokio_postgres::connect(&url, NoTls).await {
                    Ok(connected) => connected,
                    Err(e) => {
                        let _ = sender.send(Err(tenancy::pg::describe_error(&e)));
                        return;
                    }
                };
                let _ = sender.send(Ok(client));
                let ended = connection.await.err().map(|e| e.to_string()).unwrap_or_default();
                eprintln!(
                    "testkit: the session holding this process's claims on its test databases \
                     ended ({ended}): other test runs may now sweep them"
                );
            });
        });
        if let Err(e) = thread {
            panic!("testkit: cannot start the claims' thread: {e}");
        }
        match receiver.await {
            Ok(Ok(session)) => Self { session },
            Ok(Err(e)) => panic!("cannot connect to the test PostgreSQL: {e}"),
            Err(_) => panic!("testkit: the claims' thread ended before connecting"),
        }
    }

    /// A new key, claimed: one no other process holds (a stale database with the same key,
    /// 1 in 2³² a test, is swept before this process claims anything).
    pub(crate) async fn claim_new(&self) -> Key {
        loop {
            let key = Key::random();
            let taken: bool = self
                .session
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key.lock_id()])
                .await
                .unwrap_or_else(|e| panic!("testkit: claiming a key: {}", tenancy::pg::describe_error(&e)))
                .get(0);
            if taken {
                return key;
            }
        }
    }

    /// Gives the claim up, once its databases and roles are gone.
    pub(crate) async fn release(&self, key: Key) {
        if let Err(e) =
            self.session.execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &key.lock_id()]).await
        {
            eprintln!("testkit: releasing the claim on {}: {e}", key.hex());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn keys_read_back_from_their_hex_digits() {
        for key in [Key(0), Key(1), Key(0x8000_0000), Key(u32::MAX)] {
            assert_eq!(Key::parse(&key.hex()), Some(key));
        }
        assert_eq!(Key(u32::MAX).lock_id(), -1);
        assert_eq!(Key::parse("0a1b2c3"), None);
        assert_eq!(Key::parse("0a1b2c3g"), None);
        assert_eq!(Key::parse("+a1b2c3d"), None);
    }
}
