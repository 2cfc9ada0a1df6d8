//! The server connection a client of the PostgreSQL door holds for a transaction (or, in
//! session pooling, for its session), and what the client did on it.

use super::frame::Notice;
use super::owed::Owed;
use super::statements::Acks;
use super::WireError;
use crate::pool::Checkout;
use bytes::BytesMut;

/// The server connection a client holds, and what it did on it.
pub(super) struct Held {
    pub(super) checkout: Checkout,
    /// `Query` and `Sync` messages relayed and not yet answered by `ReadyForQuery`.
    pub(super) pending: u32,
    /// The transaction status of the last `ReadyForQuery`.
    pub(super) status: u8,
    /// Something ran that may have left state in the session.
    pub(super) dirty: bool,
    /// The server's answers the router must translate or keep from the client.
    pub(super) acks: Acks,
    /// Messages were relayed since the last `Sync` (a pipeline the client has not ended).
    pub(super) unsynced: bool,
    /// When the running statement is cancelled: the plan's statement timeout, which the client
    /// cannot raise by setting its own.
    pub(super) deadline: Option<tokio::time::Instant>,
    /// When the client last sent anything, and the server last answered (a transaction, or a
    /// pipeline, left idle past `ROUTER_PG_IDLE_TRANSACTION_TIMEOUT` is ended).
    pub(super) last_heard: tokio::time::Instant,
    pub(super) last_answer: tokio::time::Instant,
    /// What the server is still to answer.
    pub(super) owed: Owed,
    /// Settings may have changed in ways only the server knows (see [`super::relay::Session::read_back_settings`]).
    pub(super) read_settings: bool,
    /// What goes to the server next: the messages of what the client sent at once, written
    /// together (one write, as the client wrote them) before the router waits again.
    pub(super) to_server: BytesMut,
    /// Batches the router sent for itself (their answers are kept from the client).
    pub(super) internal: std::collections::VecDeque<u64>,
    /// The router's refusals, in order, standing in for the server's errors that carry
    /// [`refusal_marker`].
    pub(super) refusals: std::collections::VecDeque<Notice>,
    /// A `Query` made only of settings is running: kept for the client if it succeeds.
    pub(super) setting: Option<String>,
    pub(super) failed: bool,
}

impl Held {
    /// The server is idle outside a transaction, with nothing pending or unfinished.
    pub(super) fn is_idle(&self) -> bool {
        self.pending == 0 && self.status == b'I' && !self.unsynced && !self.owed.copy_in
    }

    /// Writes what the client's messages put in [`Held::to_server`], at once.
    pub(super) async fn send_to_server(&mut self) -> Result<(), WireError> {
        if self.to_server.is_empty() {
            return Ok(());
        }
        let socket = self.checkout.socket().ok_or(WireError::Closed)?;
        socket.write(&self.to_server).await?;
        self.to_server.clear();
        Ok(())
    }
}

impl Drop for Held {
    /// A connection not given back idle ([`super::relay::Session::release`]) is closed: whatever it is in the
    /// middle of must not reach another client. A query still running is cancelled.
    fn drop(&mut self) {
        if self.checkout.retire && !self.is_idle() {
            tokio::spawn(self.checkout.cancel_query());
        }
    }
}
