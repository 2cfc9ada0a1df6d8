//! Named prepared statements in transaction pooling. A client's statement names are its own;
//! on the server, a statement is prepared under a name made from its text and parameter types
//! (`tr_<hash>`), on whichever connection the client holds when it uses it:
//!
//! - a `Parse` with a name is recorded for the client and sent under the server name, unless the
//!   connection has that statement already (its `ParseComplete` is then the answer to a `Close`
//!   of a name that never exists, so it arrives in order);
//! - a `Bind` or `Describe` of a recorded name on a connection that lacks the statement has the
//!   statement prepared there first, and that `ParseComplete` is kept from the client;
//! - a `Close` of a recorded name closes the server's statement.
//!
//! Before each `Parse` under a server name, a `Close` of it is sent too (its answer kept from
//! the client): a connection whose list of statements is in doubt after an error cannot fail
//! with "already exists". Statements of the same text are shared by the clients that take turns
//! on a connection (they are the same tenant's, as the pool is).
//!
//! The **unnamed statement** is the client's own too. PostgreSQL keeps it in the session until
//! the next `Parse` of the unnamed statement, a `Close` of it or a simple `Query`; so a client
//! may prepare it in one transaction and run it in the next, and the connection it ran on last
//! still has it when another client gets that connection. A `Bind` or `Describe` of the unnamed
//! statement on a connection where the client has not prepared it in this transaction has the
//! client's own prepared there first, or, when the client has none, the connection's closed (so
//! PostgreSQL answers "does not exist", as it would the client alone).

use super::frame::{self, Frame, Notice};
use crate::statement::Classification;
use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Most named statements a client may hold at once.
const MAX_PER_CLIENT: usize = 4096;

/// A name no statement is ever prepared under: a `Close` of it is answered, and does nothing.
const NOBODY: &str = "tr_";

/// The most of a client's unnamed `Parse` buffer kept once it is replaced by a smaller one.
const UNNAMED_CAPACITY: usize = 8 * 1024;

/// A client's statement: its name on the server, the `Parse` that prepares it there, and what
/// its SQL does to a session.
#[derive(Clone)]
struct Prepared {
    server_name: Arc<str>,
    parse: Bytes,
    classification: Option<Classification>,
}

/// The client's unnamed statement: its `Parse` as the client sent it (the buffer kept for the
/// next one), and what its SQL does; `None` when the client has none.
#[derive(Default)]
struct Unnamed {
    parse: Vec<u8>,
    classification: Option<Option<Classification>>,
}

/// The prepared statements of one client.
#[derive(Default)]
pub(crate) struct ClientStatements {
    by_name: HashMap<String, Prepared>,
    unnamed: Unnamed,
}

impl Unnamed {
    /// The client has no unnamed statement any more.
    fn forget(&mut self) {
        self.classification = None;
        self.parse.clear();
        self.parse.shrink_to(UNNAMED_CAPACITY);
    }

    /// The client's new unnamed statement, `parse`.
    fn keep(&mut self, parse: &[u8], classification: Option<Classification>) {
        self.parse.clear();
        self.parse.shrink_to(UNNAMED_CAPACITY);
        self.parse.extend_from_slice(parse);
        self.classification = Some(classification);
    }
}

/// What becomes of a server's `ParseComplete` (`1`) or `CloseComplete` (`3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// Relayed: it answers the client's own message.
    Forward,
    /// Kept from the client: it answers a message the router added.
    Swallow,
    /// A `CloseComplete` relayed as `ParseComplete` (a `Parse` the connection did not need).
    AsParse,
}

/// The answers expected from the server, in order, each tagged with the batch (`Sync` or
/// `Query`) it belongs to: after an error the server skips to the batch's end, and those
/// answers never come.
#[derive(Default)]
pub(crate) struct Acks {
    pub(crate) parses: VecDeque<(u64, Ack)>,
    pub(crate) closes: VecDeque<(u64, Ack)>,
    /// Batches sent to the server, and answered by `ReadyForQuery`.
    pub(crate) sent: u64,
    pub(crate) answered: u64,
    /// Server names prepared in batches not yet answered: in doubt if one of them fails.
    pub(crate) parsed: Vec<(u64, Arc<str>)>,
    /// The connection's unnamed statement is the client's: the client prepared, closed or
    /// dropped it (by a simple `Query`) since it got the connection, or the router prepared
    /// the client's there.
    pub(crate) unnamed_is_clients: bool,
}

impl Acks {
    /// A `ReadyForQuery` ended the oldest batch.
    pub(crate) fn batch_done(&mut self) {
        self.answered += 1;
        let answered = self.answered;
        self.parses.retain(|(batch, _)| *batch >= answered);
        self.closes.retain(|(batch, _)| *batch >= answered);
        self.parsed.retain(|(batch, _)| *batch >= answered);
    }

    /// An error: statements prepared in unanswered batches may not exist.
    pub(crate) fn failed(&mut self, on_server: &mut HashSet<Arc<str>>) {
        for (_, name) in self.parsed.drain(..) {
            on_server.remove(&name);
        }
    }
}

fn server_name(definition: &[u8]) -> Arc<str> {
    let digest = Sha256::digest(definition);
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{NOBODY}{hex}").into()
}

fn parse_message(name: &str, definition: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    frame::put_message(&mut out, b'P', |b| {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_slice(definition);
    });
    out.freeze()
}

fn close_statement(out: &mut BytesMut, name: &str) {
    frame::put_message(out, b'C', |b| {
        b.put_u8(b'S');
        b.put_slice(name.as_bytes());
        b.put_u8(0);
    });
}

/// `kind`, `name` and what follows, of a `Describe` or `Close` body.
fn target(body: &[u8]) -> Option<(u8, &str, &[u8])> {
    let (&kind, rest) = body.split_first()?;
    let (name, rest) = frame::cstr(rest).ok()?;
    Some((kind, name, rest))
}

impl ClientStatements {
    /// Writes to `out` what the server gets for the client's `frame`, and the answers it
    /// expects to `acks`. `classification`: of the SQL a `Parse` carries. `on_server`: the
    /// statements the connection has.
    pub(crate) fn relay(
        &mut self,
        frame: &Frame,
        classification: Option<Classification>,
        on_server: &mut HashSet<Arc<str>>,
        acks: &mut Acks,
        out: &mut BytesMut,
    ) -> Result<(), Notice> {
        let batch = acks.sent;
        match frame.tag {
            b'P' => {
                let malformed = || Notice::fatal("08P01", "malformed Parse message");
                let (name, definition) = frame::cstr(frame.body()).map_err(|_| malformed())?;
                if name.is_empty() {
                    self.unnamed.keep(&frame.bytes, classification);
                    acks.unnamed_is_clients = true;
                    acks.parses.push_back((batch, Ack::Forward));
                    out.extend_from_slice(&frame.bytes);
                    return Ok(());
                }
                if !self.by_name.contains_key(name) && self.by_name.len() >= MAX_PER_CLIENT {
                    return Err(Notice::fatal(
                        "54000",
                        format!("a client may hold at most {MAX_PER_CLIENT} prepared statements"),
                    ));
                }
                let server_name = server_name(definition);
                let parse = parse_message(&server_name, definition);
                let prepared = Prepared { parse, server_name, classification };
                if on_server.contains(&prepared.server_name) {
                    close_statement(out, NOBODY);
                    acks.closes.push_back((batch, Ack::AsParse));
                } else {
                    self.prepare(&prepared, on_server, acks, out, Ack::Forward);
                }
                self.by_name.insert(name.to_owned(), prepared);
            }
            b'B' => {
                let (portal, rest) =
                    frame::cstr(frame.body()).map_err(|_| Notice::fatal("08P01", "malformed Bind"))?;
                let (name, rest) = frame::cstr(rest).map_err(|_| Notice::fatal("08P01", "malformed Bind"))?;
                match self.by_name.get(name).cloned() {
                    Some(prepared) if !name.is_empty() => {
                        self.ensure(&prepared, on_server, acks, out);
                        frame::put_message(out, b'B', |b| {
                            b.put_slice(portal.as_bytes());
                            b.put_u8(0);
                            b.put_slice(prepared.server_name.as_bytes());
                            b.put_u8(0);
                            b.put_slice(rest);
                        });
                    }
                    _ => {
                        if name.is_empty() {
                            self.ensure_unnamed(acks, out);
                        }
                        out.extend_from_slice(&frame.bytes);
                    }
                }
            }
            b'D' => match target(frame.body()) {
                Some((b'S', name, _)) if !name.is_empty() && self.by_name.contains_key(name) => {
                    let prepared = self.by_name[name].clone();
                    self.ensure(&prepared, on_server, acks, out);
                    frame::put_message(out, b'D', |b| {
                        b.put_u8(b'S');
                        b.put_slice(prepared.server_name.as_bytes());
                        b.put_u8(0);
                    });
                }
                Some((b'S', "", _)) => {
                    self.ensure_unnamed(acks, out);
                    out.extend_from_slice(&frame.bytes);
                }
                _ => out.extend_from_slice(&frame.bytes),
            },
            b'C' => {
                acks.closes.push_back((batch, Ack::Forward));
                match target(frame.body()) {
                    Some((b'S', name, _)) if !name.is_empty() && self.by_name.contains_key(name) => {
                        let prepared = self.by_name.remove(name).map(|p| p.server_name);
                        if let Some(server_name) = prepared {
                            on_server.remove(&server_name);
                            close_statement(out, &server_name);
                        }
                    }
                    Some((b'S', "", _)) => {
                        self.unnamed.forget();
                        acks.unnamed_is_clients = true;
                        out.extend_from_slice(&frame.bytes);
                    }
                    _ => out.extend_from_slice(&frame.bytes),
                }
            }
            _ => out.extend_from_slice(&frame.bytes),
        }
        Ok(())
    }

    /// A simple `Query` is sent: PostgreSQL drops the unnamed statement (and the client's
    /// copy of a large one is given back).
    pub(crate) fn query_sent(&mut self, acks: &mut Acks) {
        self.unnamed.forget();
        acks.unnamed_is_clients = true;
    }

    /// `frame` was refused in place: the failing unnamed `Parse` or `Query` sent in its stead
    /// dropped the connection's unnamed statement. A refused `Query` or unnamed `Parse` drops
    /// the client's too, as they would in PostgreSQL; after a refused named `Parse` the client's
    /// is prepared again where it is used next.
    pub(crate) fn refused(&mut self, frame: &Frame, acks: &mut Acks) {
        let unnamed_parse = frame.tag == b'P' && frame.body().first() == Some(&0);
        if frame.tag == b'Q' || unnamed_parse {
            self.query_sent(acks);
        } else if frame.tag == b'P' {
            acks.unnamed_is_clients = false;
        }
    }

    /// The SQL, and its classification, of the client's statement that `frame`, a `Bind`, runs
    /// when it may have been prepared in an earlier transaction, on another connection: a named
    /// statement, or the unnamed one not prepared on this connection by the client (`None` for
    /// another message, the unnamed statement prepared here, or a name the client has not
    /// prepared).
    pub(crate) fn prepared_earlier(&self, frame: &Frame, acks: &Acks) -> Option<(&str, Classification)> {
        if frame.tag != b'B' {
            return None;
        }
        let (_portal, rest) = frame::cstr(frame.body()).ok()?;
        let (name, _) = frame::cstr(rest).ok()?;
        let (parse, classification) = if name.is_empty() {
            if acks.unnamed_is_clients {
                return None;
            }
            (self.unnamed.parse.as_slice(), self.unnamed.classification??)
        } else {
            let prepared = self.by_name.get(name)?;
            (&prepared.parse[..], prepared.classification?)
        };
        // The `Parse`: the statement's name, then the SQL.
        let (_name, rest) = frame::cstr(parse.get(5..)?).ok()?;
        frame::cstr(rest).ok().map(|(sql, _)| (sql, classification))
    }

    /// Before a `Bind` or `Describe` of the unnamed statement: unless the connection's is the
    /// client's, the client's is prepared there (the answer kept from the client), or, when it
    /// has none, the connection's is closed.
    fn ensure_unnamed(&self, acks: &mut Acks, out: &mut BytesMut) {
        if acks.unnamed_is_clients {
            return;
        }
        acks.unnamed_is_clients = true;
        let batch = acks.sent;
        if self.unnamed.classification.is_some() {
            out.extend_from_slice(&self.unnamed.parse);
            acks.parses.push_back((batch, Ack::Swallow));
        } else {
            close_statement(out, "");
            acks.closes.push_back((batch, Ack::Swallow));
        }
    }

    /// Prepares `prepared` on the connection if it lacks it (the answers kept from the client).
    fn ensure(
        &self,
        prepared: &Prepared,
        on_server: &mut HashSet<Arc<str>>,
        acks: &mut Acks,
        out: &mut BytesMut,
    ) {
        if !on_server.contains(&prepared.server_name) {
            self.prepare(prepared, on_server, acks, out, Ack::Swallow);
        }
    }

    /// `Close` then `Parse` of the server name; the `ParseComplete` goes as `parse_ack` says.
    fn prepare(
        &self,
        prepared: &Prepared,
        on_server: &mut HashSet<Arc<str>>,
        acks: &mut Acks,
        out: &mut BytesMut,
        parse_ack: Ack,
    ) {
        let batch = acks.sent;
        close_statement(out, &prepared.server_name);
        acks.closes.push_back((batch, Ack::Swallow));
        out.extend_from_slice(&prepared.parse);
        acks.parses.push_back((batch, parse_ack));
        acks.parsed.push((batch, prepared.server_name.clone()));
        on_server.insert(prepared.server_name.clone());
    }
}

/// What to relay for a server's `ParseComplete` or `CloseComplete` (`frame`): itself, a
/// `ParseComplete`, or nothing.
pub(crate) fn answer(frame: &Frame, acks: &mut Acks, out: &mut BytesMut) {
    let queue = if frame.tag == b'1' { &mut acks.parses } else { &mut acks.closes };
    match queue.pop_front().map(|(_, ack)| ack) {
        Some(Ack::Swallow) => {}
        Some(Ack::AsParse) => frame::put_message(out, b'1', |_| {}),
        Some(Ack::Forward) | None => out.extend_from_slice(&frame.bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Frame {
        let mut out = BytesMut::new();
        frame::put_message(&mut out, tag, |b| b.put_slice(body));
        frame::next_frame(&mut out, frame::MAX_MESSAGE).unwrap().unwrap()
    }

    fn tags(out: &BytesMut) -> Vec<(u8, String)> {
        let mut buf = out.clone();
        let mut seen = Vec::new();
        while let Some(f) = frame::next_frame(&mut buf, frame::MAX_MESSAGE).unwrap() {
            let name = match f.tag {
                b'P' | b'B' => {
                    frame::cstr(if f.tag == b'B' { frame::cstr(f.body()).unwrap().1 } else { f.body() })
                        .unwrap()
                        .0
                        .to_owned()
                }
                b'C' | b'D' => target(f.body()).unwrap().1.to_owned(),
                _ => String::new(),
            };
            seen.push((f.tag, name));
        }
        seen
    }

    #[test]
    fn a_statement_follows_its_client_to_another_connection() {
        let mut client = ClientStatements::default();
        let (mut first, mut second) = (HashSet::new(), HashSet::new());
        let mut acks = Acks::default();
        let mut out = BytesMut::new();
        client.relay(&message(b'P', b"s1\0SELECT 1\0\0\0"), None, &mut first, &mut acks, &mut out).unwrap();
        let server = tags(&out)[1].1.clone();
        assert!(server.starts_with("tr_") && server.len() > 3);
        assert_eq!(tags(&out), vec![(b'C', server.clone()), (b'P', server.clone())]);
        assert_eq!(acks.closes.back(), Some(&(0, Ack::Swallow)));
        assert_eq!(acks.parses.back(), Some(&(0, Ack::Forward)));

        // On another connection, a Bind of s1 prepares it there first.
        let mut out = BytesMut::new();
        let mut acks = Acks::default();
        client.relay(&message(b'B', b"\0s1\0\0\0\0\0\0\0"), None, &mut second, &mut acks, &mut out).unwrap();
        assert_eq!(tags(&out), vec![(b'C', server.clone()), (b'P', server.clone()), (b'B', server.clone())]);
        assert_eq!(acks.parses.back(), Some(&(0, Ack::Swallow)));

        // Parsing the same text again where it exists: answered by a Close of nobody.
        let mut out = BytesMut::new();
        client.relay(&message(b'P', b"s2\0SELECT 1\0\0\0"), None, &mut second, &mut acks, &mut out).unwrap();
        assert_eq!(tags(&out), vec![(b'C', NOBODY.to_owned())]);
        assert_eq!(acks.closes.back(), Some(&(0, Ack::AsParse)));
        let mut relayed = BytesMut::new();
        answer(
            &message(b'3', b""),
            &mut Acks { closes: [(0, Ack::AsParse)].into(), ..Acks::default() },
            &mut relayed,
        );
        assert_eq!(tags(&relayed), vec![(b'1', String::new())]);

        // Closing s1 closes the server's statement; an error puts unanswered ones in doubt.
        let mut out = BytesMut::new();
        client.relay(&message(b'C', b"Ss1\0"), None, &mut second, &mut acks, &mut out).unwrap();
        assert_eq!(tags(&out), vec![(b'C', server.clone())]);
        assert!(!second.contains(server.as_str()));

        // An error puts the statements of unanswered batches in doubt, and only those.
        let mut acks = Acks::default();
        let mut out = BytesMut::new();
        client.relay(&message(b'P', b"s3\0SELECT 3\0\0\0"), None, &mut first, &mut acks, &mut out).unwrap();
        let third = tags(&out)[1].1.clone();
        acks.batch_done();
        acks.failed(&mut first);
        assert!(first.contains(third.as_str()), "answered batches are not in doubt");
        acks.sent = 1;
        client.relay(&message(b'P', b"s4\0SELECT 4\0\0\0"), None, &mut first, &mut acks, &mut out).unwrap();
        let fourth = tags(&out).last().unwrap().1.clone();
        acks.failed(&mut first);
        assert!(!first.contains(fourth.as_str()) && first.contains(third.as_str()));
    }

    #[test]
    fn the_unnamed_statement_is_the_clients_own_on_any_connection() {
        let (mut mine, mut theirs) = (ClientStatements::default(), ClientStatements::default());
        let mut on_server = HashSet::new();
        let bind = message(b'B', b"\0\0\0\0\0\0\0\0");
        let relay = |client: &mut ClientStatements, frame: &Frame, acks: &mut Acks, on: &mut HashSet<_>| {
            let mut out = BytesMut::new();
            let classification = (frame.tag == b'P').then(|| crate::statement::classify("SELECT 1"));
            client.relay(frame, classification, on, acks, &mut out).unwrap();
            tags(&out)
        };

        // Parsed and bound in one transaction: relayed as they are.
        let mut acks = Acks::default();
        let parse = message(b'P', b"\0SELECT 1\0\0\0");
        assert_eq!(relay(&mut mine, &parse, &mut acks, &mut on_server), vec![(b'P', String::new())]);
        assert_eq!(relay(&mut mine, &bind, &mut acks, &mut on_server), vec![(b'B', String::new())]);
        assert!(mine.prepared_earlier(&bind, &acks).is_none(), "prepared here, in this transaction");

        // Another client of the same connection, which has prepared nothing: the connection's
        // unnamed statement is closed first, so PostgreSQL says it does not exist.
        let mut acks = Acks::default();
        assert_eq!(
            relay(&mut theirs, &bind, &mut acks, &mut on_server),
            vec![(b'C', String::new()), (b'B', String::new())]
        );
        assert_eq!(acks.closes.back(), Some(&(0, Ack::Swallow)));
        let describe = message(b'D', b"S\0");
        assert_eq!(relay(&mut theirs, &describe, &mut acks, &mut on_server), vec![(b'D', String::new())]);

        // Its owner, on a connection of a later transaction: its own is prepared there first.
        let mut acks = Acks::default();
        assert_eq!(mine.prepared_earlier(&bind, &acks).map(|(sql, _)| sql), Some("SELECT 1"));
        assert_eq!(
            relay(&mut mine, &describe, &mut acks, &mut on_server),
            vec![(b'P', String::new()), (b'D', String::new())]
        );
        assert_eq!(acks.parses.back(), Some(&(0, Ack::Swallow)));

        // A simple query drops it, as PostgreSQL does; so does a Close of it.
        let mut acks = Acks::default();
        mine.query_sent(&mut acks);
        let mut acks = Acks::default();
        assert_eq!(relay(&mut mine, &bind, &mut acks, &mut on_server)[0], (b'C', String::new()));
        let mut acks = Acks::default();
        relay(&mut mine, &parse, &mut acks, &mut on_server);
        relay(&mut mine, &message(b'C', b"S\0"), &mut acks, &mut on_server);
        let mut acks = Acks::default();
        assert_eq!(relay(&mut mine, &bind, &mut acks, &mut on_server)[0], (b'C', String::new()));
    }
}
