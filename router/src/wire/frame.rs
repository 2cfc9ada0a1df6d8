//! PostgreSQL protocol 3.0 as the router reads and writes it: frames (a type byte, then a
//! length that counts itself and the body), startup packets (a length and a code, no type
//! byte), and the few messages the router composes itself.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest message before authentication (PostgreSQL's own limit for startup packets).
pub(crate) const MAX_STARTUP: usize = 10_000;

/// Largest message after it: PostgreSQL's (1 GB - 1).
pub(crate) const MAX_MESSAGE: usize = 0x3fff_ffff;

/// Room made before reading from a client: its usual messages fit at once.
pub(crate) const CLIENT_READ_ROOM: usize = 1024;

/// Room made before reading from a server: its answers are larger (rows).
pub(crate) const SERVER_READ_ROOM: usize = 8 * 1024;

/// Makes `room` bytes of room at the end of `buf` before a read into it. A read that fills all
/// the room there was cannot tell that the socket is drained (tokio takes a short read as the
/// sign), so it costs another `recv`; and after frames are split off the front, what room is
/// left at the end of the buffer can be a few bytes. Once those frames are dropped, making room
/// in an empty buffer reuses its allocation. A message begun (its length read) already has room
/// for the rest of it ([`next_frame`]): more would only grow the buffer, by as much as it holds.
pub(crate) fn make_room(buf: &mut BytesMut, room: usize) {
    if buf.len() < 5 && buf.capacity() - buf.len() < room {
        buf.reserve(room);
    }
}

/// A protocol violation: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("message of {0} bytes is too long")]
    TooLong(usize),
    #[error("invalid message length {0}")]
    BadLength(i32),
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

/// One whole message: its type byte and all of its bytes (type and length included), ready to
/// be relayed as they are.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) tag: u8,
    pub(crate) bytes: Bytes,
}

impl Frame {
    /// The message's body, after the type and length.
    pub(crate) fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

/// The next whole frame in `buf` (removed from it), or `None` until more bytes arrive.
pub(crate) fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let length = usize::try_from(length).ok().filter(|l| *l >= 4).ok_or(FrameError::BadLength(length))?;
    if length > max {
        return Err(FrameError::TooLong(length));
    }
    if buf.len() < 1 + length {
        buf.reserve(1 + length - buf.len());
        return Ok(None);
    }
    let bytes = buf.split_to(1 + length).freeze();
    Ok(Some(Frame { tag: bytes[0], bytes }))
}

/// The next whole startup packet in `buf` (its code and body, the length removed).
pub(crate) fn next_startup_packet(buf: &mut BytesMut) -> Result<Option<(i32, Bytes)>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let length = usize::try_from(length).ok().filter(|l| *l >= 8).ok_or(FrameError::BadLength(length))?;
    if length > MAX_STARTUP {
        return Err(FrameError::TooLong(length));
    }
    if buf.len() < length {
        return Ok(None);
    }
    let mut packet = buf.split_to(length).freeze();
    packet.advance(4);
    let code = packet.get_i32();
    Ok(Some((code, packet)))
}

/// A NUL-terminated string at the start of `body`, and the rest.
pub(crate) fn cstr(body: &[u8]) -> Result<(&str, &[u8]), FrameError> {
    let end = body.iter().position(|b| *b == 0).ok_or(FrameError::Malformed("string"))?;
    let text = std::str::from_utf8(&body[..end]).map_err(|_| FrameError::Malformed("string"))?;
    Ok((text, &body[end + 1..]))
}

/// The name/value pairs of a startup packet's body.
pub(crate) fn startup_parameters(mut body: &[u8]) -> Result<Vec<(String, String)>, FrameError> {
    let mut parameters = Vec::new();
    loop {
        let (name, rest) = cstr(body)?;
        if name.is_empty() {
            return Ok(parameters);
        }
        let (value, rest) = cstr(rest)?;
        parameters.push((name.to_owned(), value.to_owned()));
        body = rest;
    }
}

/// Appends a message of type `tag` whose body `write` writes.
pub(crate) fn put_message(out: &mut BytesMut, tag: u8, write: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    write(out);
    let length = i32::try_from(out.len() - at).unwrap_or(i32::MAX);
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_u8(0);
}

/// `AuthenticationSASL` offering `mechanism`.
pub(crate) fn authentication_sasl(out: &mut BytesMut, mechanism: &str) {
    put_message(out, b'R', |b| {
        b.put_i32(10);
        put_cstr(b, mechanism);
        b.put_u8(0);
    });
}

/// `AuthenticationSASLContinue` (11) or `AuthenticationSASLFinal` (12) carrying `data`.
pub(crate) fn authentication_sasl_data(out: &mut BytesMut, code: i32, data: &[u8]) {
    put_message(out, b'R', |b| {
        b.put_i32(code);
        b.put_slice(data);
    });
}

pub(crate) fn authentication_cleartext_password(out: &mut BytesMut) {
    put_message(out, b'R', |b| b.put_i32(3));
}

pub(crate) fn authentication_ok(out: &mut BytesMut) {
    put_message(out, b'R', |b| b.put_i32(0));
}

pub(crate) fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    put_message(out, b'S', |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

pub(crate) fn backend_key_data(out: &mut BytesMut, process_id: i32, secret_key: i32) {
    put_message(out, b'K', |b| {
        b.put_i32(process_id);
        b.put_i32(secret_key);
    });
}

pub(crate) fn ready_for_query(out: &mut BytesMut, status: u8) {
    put_message(out, b'Z', |b| b.put_u8(status));
}

/// `NegotiateProtocolVersion`: the newest minor version the router speaks (3.0), and the
/// protocol options (`_pq_.*`) it does not know.
pub(crate) fn negotiate_protocol_version(out: &mut BytesMut, unknown_options: &[String]) {
    put_message(out, b'v', |b| {
        b.put_i32(0);
        b.put_i32(i32::try_from(unknown_options.len()).unwrap_or(i32::MAX));
        for option in unknown_options {
            put_cstr(b, option);
        }
    });
}

/// A message text (primary, `M`), its SQLSTATE (`C`) and severity (`S`, `V`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) severity: &'static str,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Notice {
    pub(crate) fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self { severity: "FATAL", code, message: message.into() }
    }

    pub(crate) fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self { severity: "ERROR", code, message: message.into() }
    }

    /// Appends it as an `ErrorResponse`.
    pub(crate) fn put(&self, out: &mut BytesMut) {
        put_message(out, b'E', |b| {
            for (field, value) in
                [(b'S', self.severity), (b'V', self.severity), (b'C', self.code), (b'M', &self.message)]
            {
                b.put_u8(field);
                put_cstr(b, value);
            }
            b.put_u8(0);
        });
    }
}

/// A simple `Query` message.
pub(crate) fn query(out: &mut BytesMut, sql: &str) {
    put_message(out, b'Q', |b| put_cstr(b, sql));
}

/// The SQLSTATE of an `ErrorResponse` body, if it has one.
pub(crate) fn error_code(body: &[u8]) -> Option<&str> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let (value, tail) = cstr(tail).ok()?;
        if field == b'C' {
            return Some(value);
        }
        rest = tail;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_whole_and_lengths_checked() {
        let mut buf = BytesMut::new();
        query(&mut buf, "SELECT 1");
        ready_for_query(&mut buf, b'I');
        let whole = buf.clone();
        let mut partial = BytesMut::from(&whole[..7]);
        assert!(next_frame(&mut partial, MAX_MESSAGE).unwrap().is_none());
        let first = next_frame(&mut buf, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(first.tag, b'Q');
        assert_eq!(cstr(first.body()).unwrap().0, "SELECT 1");
        let second = next_frame(&mut buf, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!((second.tag, second.body()), (b'Z', &b"I"[..]));
        assert!(buf.is_empty());
        let mut bad = BytesMut::from(&[b'Q', 0, 0, 0, 2][..]);
        assert!(matches!(next_frame(&mut bad, MAX_MESSAGE), Err(FrameError::BadLength(2))));
        let mut long = BytesMut::from(&[b'Q', 0, 0, 0x30, 0][..]);
        assert!(matches!(next_frame(&mut long, MAX_STARTUP), Err(FrameError::TooLong(_))));
    }

    #[test]
    fn room_is_made_before_a_message_not_in_the_middle_of_one() {
        // Empty, or a few bytes left after frames were split off: room for a whole read.
        let mut buf = BytesMut::new();
        make_room(&mut buf, CLIENT_READ_ROOM);
        assert!(buf.capacity() >= CLIENT_READ_ROOM);
        let mut buf = BytesMut::with_capacity(64);
        query(&mut buf, "SELECT 1");
        let _ = next_frame(&mut buf, MAX_MESSAGE).unwrap().unwrap();
        make_room(&mut buf, CLIENT_READ_ROOM);
        assert!(buf.capacity() - buf.len() >= CLIENT_READ_ROOM);
        // A large message begun: the room for its rest is what it needs, never doubled.
        let length = 1_000_000_i32;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"D");
        buf.extend_from_slice(&length.to_be_bytes());
        buf.extend_from_slice(&[0; 100]);
        assert!(next_frame(&mut buf, MAX_MESSAGE).unwrap().is_none());
        let needed = buf.capacity();
        buf.extend_from_slice(&vec![0; needed - buf.len() - 10]);
        make_room(&mut buf, SERVER_READ_ROOM);
        assert_eq!(buf.capacity(), needed);
    }

    #[test]
    fn startup_packets_and_error_codes_read_back() {
        let mut buf = BytesMut::new();
        let body = b"user\0app_acme\0database\0acme\0\0";
        buf.put_i32(i32::try_from(8 + body.len()).unwrap());
        buf.put_i32(196_608);
        buf.put_slice(body);
        let (code, packet) = next_startup_packet(&mut buf).unwrap().unwrap();
        assert_eq!(code, 196_608);
        assert_eq!(
            startup_parameters(&packet).unwrap(),
            vec![("user".into(), "app_acme".into()), ("database".into(), "acme".into())]
        );
        let mut out = BytesMut::new();
        Notice::error("42501", "no").put(&mut out);
        let frame = next_frame(&mut out, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(error_code(frame.body()), Some("42501"));
    }
}
