//! What the server still owes a client on a held connection (see [`super::relay`]), in the
//! order the client's messages were relayed, and PostgreSQL's rules for what it answers: no
//! answer to a `Sync` read in a COPY FROM STDIN, nothing but a `Sync` read after an error in
//! an extended-protocol message.

/// Most answers a client may have the server owe it at once (queries, `Sync`s, `Execute`s
/// relayed and not answered): what the router keeps of each is small, but not nothing.
pub(super) const MAX_OWED: usize = 1 << 20;

/// What the server is still to answer, in the order the client's messages were relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// A `ReadyForQuery`: a `Query` or `Sync` relayed (one of [`Held::pending`]).
    Ready,
    /// The end of an `Execute`.
    Execute,
    /// A COPY's end (`CopyDone`, `CopyFail`) the client sent before the server's
    /// `CopyInResponse` arrived.
    CopyEnd,
}

/// What the server is still to answer on a held connection, in the order the client's
/// messages were relayed; and what it does with the client's next messages.
#[derive(Debug, Default)]
pub(super) struct Owed {
    pub(super) queue: std::collections::VecDeque<Expect>,
    /// The `Execute`s in [`Owed::queue`]: statements the server runs or is to run.
    pub(super) executing: usize,
    /// The server is in a COPY FROM STDIN: it ignores the `Sync`s it reads until the COPY
    /// ends, and anything but the COPY's data, end or failure is a protocol violation.
    pub(super) copy_in: bool,
    /// After an error in an extended-protocol message, the server discards everything but a
    /// `Sync` until it reads one (PostgreSQL's `ignore_till_sync`).
    pub(super) skipping: bool,
}

impl Owed {
    pub(super) fn push(&mut self, expect: Expect) {
        if expect == Expect::Execute {
            self.executing += 1;
        }
        self.queue.push_back(expect);
    }

    fn pop_front(&mut self) -> Option<Expect> {
        let popped = self.queue.pop_front();
        if popped == Some(Expect::Execute) {
            self.executing -= 1;
        }
        popped
    }

    /// The client sent a `Query` (`sync`: a `Sync`): `false` when the server will not answer
    /// it (a `Sync` in a COPY FROM STDIN; a `Query` while it skips to a `Sync`).
    pub(super) fn ready_sent(&mut self, sync: bool) -> bool {
        if (sync && self.copy_in) || (!sync && self.skipping) {
            return false;
        }
        self.skipping &= !sync;
        self.push(Expect::Ready);
        true
    }

    /// The client sent an `Execute`: counted unless the server skips it.
    pub(super) fn execute_sent(&mut self) {
        if !self.skipping {
            self.push(Expect::Execute);
        }
    }

    /// A `ReadyForQuery` arrived: what it answers, and what came before it, is answered.
    pub(super) fn ready(&mut self) {
        while let Some(answered) = self.pop_front() {
            if answered == Expect::Ready {
                break;
            }
        }
    }

    /// An `Execute` finished (`CommandComplete` and the like; also a simple query's
    /// statement, which has no `Execute` to end).
    pub(super) fn execute_done(&mut self) {
        if self.queue.front() == Some(&Expect::Execute) {
            self.pop_front();
        }
    }

    /// An error: the server skips what follows up to the next `Sync`, a COPY's data included
    /// (when none is owed yet, until the client sends one).
    pub(super) fn error(&mut self) {
        while self.queue.front().is_some_and(|e| *e != Expect::Ready) {
            self.pop_front();
        }
        self.copy_in = false;
        self.skipping = self.queue.is_empty();
    }

    /// The client ended a COPY (`CopyDone`, `CopyFail`).
    pub(super) fn copy_ended(&mut self) {
        if !std::mem::take(&mut self.copy_in) && !self.queue.is_empty() {
            // Sent before the server said the COPY started (or outside any COPY, and then
            // ignored by the server: skipped when a COPY starts).
            self.push(Expect::CopyEnd);
        }
    }

    /// The server started a COPY FROM STDIN (`CopyInResponse`). Started by an `Execute`, the
    /// `Sync`s the client sent after it (tokio-postgres sends `Bind`, `Execute`, `Sync` before
    /// the data) are ignored by the server until the COPY ends: how many, to be taken as
    /// answered now (and `None` when the COPY was started by a simple `Query`). Those the
    /// client sends later, before the COPY's end, are not waited for.
    pub(super) fn copy_in_started(&mut self) -> Option<usize> {
        while self.queue.front() == Some(&Expect::CopyEnd) {
            self.queue.pop_front();
        }
        let started_by_execute = self.queue.front() == Some(&Expect::Execute);
        let (mut at, mut ignored, mut ended) = (1, 0, false);
        while at < self.queue.len() {
            match self.queue[at] {
                Expect::Ready if started_by_execute => {
                    self.queue.remove(at);
                    ignored += 1;
                }
                Expect::Ready => at += 1,
                Expect::CopyEnd => {
                    self.queue.remove(at);
                    ended = true;
                    break;
                }
                Expect::Execute => break,
            }
        }
        self.copy_in = !ended;
        started_by_execute.then_some(ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::{Expect, Owed};

    fn owed(queue: &[Expect]) -> Owed {
        let mut owed = Owed::default();
        for expect in queue {
            owed.push(*expect);
        }
        owed
    }

    #[test]
    fn syncs_sent_after_a_copys_execute_are_not_waited_for() {
        // tokio-postgres: Bind, Execute, Sync, then the data once the COPY started.
        let mut o = owed(&[Expect::Execute, Expect::Ready]);
        assert_eq!(o.copy_in_started(), Some(1));
        assert!(o.copy_in);
        // A Sync in the COPY is ignored by the server; the one after its end is answered.
        assert!(!o.ready_sent(true));
        o.copy_ended();
        assert!(!o.copy_in);
        assert!(o.ready_sent(true));
        o.execute_done();
        assert_eq!(o.executing, 0);
        o.ready();
        assert!(o.queue.is_empty());
    }

    #[test]
    fn a_copy_started_by_a_query_keeps_its_ready_for_query() {
        let mut o = owed(&[Expect::Ready]);
        assert_eq!(o.copy_in_started(), None);
        assert!(o.copy_in);
        o.copy_ended();
        o.ready();
        assert!(o.queue.is_empty() && !o.copy_in);
    }

    #[test]
    fn a_copy_ended_before_the_server_said_it_started_waits_for_what_follows_the_end() {
        // Execute, Sync (ignored), CopyDone, Sync (answered): all sent before CopyInResponse.
        let mut o = owed(&[Expect::Execute, Expect::Ready]);
        o.copy_ended();
        assert!(o.ready_sent(true));
        assert_eq!(o.copy_in_started(), Some(1));
        assert!(!o.copy_in);
        assert_eq!(o.queue, [Expect::Execute, Expect::Ready]);
    }

    #[test]
    fn a_copy_end_outside_a_copy_does_not_confuse_the_next_copy() {
        let mut o = Owed::default();
        o.copy_ended();
        assert!(o.queue.is_empty());
        let mut o = owed(&[Expect::Ready]);
        o.copy_ended();
        o.ready();
        o.execute_sent();
        assert!(o.ready_sent(true));
        assert_eq!(o.copy_in_started(), Some(1));
        assert!(o.copy_in);
    }

    #[test]
    fn an_error_ends_the_copy_and_skips_to_the_next_sync() {
        let mut o = owed(&[Expect::Execute, Expect::Execute, Expect::Ready]);
        o.copy_in = true;
        o.error();
        assert!(!o.copy_in && !o.skipping);
        assert_eq!(o.queue, [Expect::Ready]);
        assert_eq!(o.executing, 0);
    }

    #[test]
    fn after_an_unsynced_error_the_server_skips_everything_but_a_sync() {
        let mut o = owed(&[Expect::Execute]);
        o.error();
        assert!(o.skipping);
        o.execute_sent();
        assert!(!o.ready_sent(false), "a query is skipped");
        assert_eq!(o.executing, 0);
        assert!(o.ready_sent(true));
        assert!(!o.skipping);
        assert_eq!(o.queue, [Expect::Ready]);
    }
}
