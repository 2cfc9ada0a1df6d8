//! The router's own conversations with a server connection of the PostgreSQL-protocol door:
//! resetting its session, and applying a client's settings, with their answers kept from the
//! client.

use super::frame::{self, Frame, MAX_MESSAGE};
use crate::pool::connection::ServerSocket;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `DISCARD ALL` leaves a session as a new one: no settings, prepared statements, portals,
/// temporary tables, advisory locks, listeners or cached plans. Nothing of the router's own
/// lives on these connections, so nothing is kept.
const RESET: &str = "DISCARD ALL";

impl ServerSocket {
    /// The next whole message from the server.
    pub(crate) async fn read_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            match frame::next_frame(&mut self.read_buf, MAX_MESSAGE) {
                Ok(Some(frame)) => {
                    if frame.tag == b'S' {
                        self.note_parameter(&frame);
                    }
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(err) => return Err(self.broke(std::io::Error::other(err.to_string()))),
            }
            frame::make_room(&mut self.read_buf, frame::SERVER_READ_ROOM);
            match self.stream.read_buf(&mut self.read_buf).await {
                Ok(0) => return Err(self.broke(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(err) => return Err(self.broke(err)),
            }
        }
    }

    /// Writes `bytes` to the server.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.stream.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.broke(err)),
        }
    }

    /// Whether the server has sent nothing since its last answer (a server connection between
    /// clients sends nothing: bytes or an end mean it was terminated, or is out of step).
    /// Never waits.
    pub(crate) fn is_quiet(&mut self) -> bool {
        use futures::FutureExt as _;
        if !self.read_buf.is_empty() {
            return false;
        }
        match self.stream.read_buf(&mut self.read_buf).now_or_never() {
            None => true,
            Some(_) => {
                self.broken = true;
                false
            }
        }
    }

    /// Marks the socket unusable and passes `err` on.
    pub(crate) fn broke(&mut self, err: std::io::Error) -> std::io::Error {
        self.broken = true;
        err
    }

    /// Keeps the server's parameters as it reports them (`ParameterStatus`).
    pub(crate) fn note_parameter(&mut self, frame: &Frame) {
        if let Ok((name, rest)) = frame::cstr(frame.body()) {
            if let Ok((value, _)) = frame::cstr(rest) {
                self.parameters.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// Runs `sql` as a simple query and reads its answers up to `ReadyForQuery`; the first
    /// error's frame, if it failed.
    pub(crate) async fn run_quietly(&mut self, sql: &str) -> std::io::Result<Option<Frame>> {
        let mut out = BytesMut::new();
        frame::query(&mut out, sql);
        self.write(&out).await?;
        let mut error = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'E' => {
                    error.get_or_insert(frame);
                }
                b'Z' => return Ok(error),
                _ => {}
            }
        }
    }
}

impl ServerSocket {
    /// Runs `sql` as a simple query and returns its rows (text values), or the error's frame.
    pub(crate) async fn rows_quietly(
        &mut self,
        sql: &str,
    ) -> std::io::Result<Result<Vec<Vec<Option<String>>>, Frame>> {
        let mut out = BytesMut::new();
        frame::query(&mut out, sql);
        self.write(&out).await?;
        let (mut rows, mut error) = (Vec::new(), None);
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'D' => rows.push(data_row(frame.body())),
                b'E' => {
                    error.get_or_insert(frame);
                }
                b'Z' => return Ok(error.map_or(Ok(rows), Err)),
                _ => {}
            }
        }
    }
}

/// The values of a `DataRow` body, as text.
fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut values = Vec::new();
    let Some((count, mut rest)) = body.split_first_chunk::<2>() else { return values };
    for _ in 0..u16::from_be_bytes(*count) {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else { break };
        let length = i32::from_be_bytes(*length);
        match usize::try_from(length) {
            Ok(length) if length <= tail.len() => {
                values.push(Some(String::from_utf8_lossy(&tail[..length]).into_owned()));
                rest = &tail[length..];
            }
            _ => {
                values.push(None);
                rest = tail;
            }
        }
    }
    values
}

/// Resets the session of a PostgreSQL-protocol connection between clients.
///
/// # Errors
/// When it fails: the connection must be closed.
pub(crate) async fn reset(socket: &mut ServerSocket) -> Result<(), crate::session::ResetError> {
    if !socket.is_quiet() {
        socket.broken = true;
        return Err(crate::session::ResetError::Wire("the server sent something unasked".into()));
    }
    match socket.run_quietly(RESET).await {
        Ok(None) => {
            socket.applied_settings = None;
            socket.prepared.clear();
            Ok(())
        }
        Ok(Some(error)) => {
            socket.broken = true;
            Err(crate::session::ResetError::Wire(format!(
                "DISCARD ALL failed ({})",
                frame::error_code(error.body()).unwrap_or("?")
            )))
        }
        Err(err) => Err(crate::session::ResetError::Wire(err.to_string())),
    }
}
