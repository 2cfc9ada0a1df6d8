//! A client's session after startup. In transaction pooling (the plan's `pool_mode`, by
//! default) the client holds a server connection of its tenant's pool from its first message
//! after a `ReadyForQuery` until the server is idle again outside a transaction
//! (`ReadyForQuery` with status `I`, nothing else pending), then gives it back. In session
//! pooling it keeps that first connection until it disconnects; each transaction is still
//! checked (the tenant suspended, the plan's rate limit) and counted as it starts.
//! Messages are relayed as they are, whole; the router reads only what it must:
//!
//! - SQL (`Query`, `Parse`) is classified ([`crate::statement`]): what a tenant may not send is
//!   refused with an error (42501); what may leave state in the session has the connection
//!   reset (`DISCARD ALL`) before anyone else gets it.
//! - **Settings** the client chose at startup, and those it sets with a `Query` made only of
//!   `SET`/`RESET` outside a transaction, are the client's own: they are applied on whichever
//!   connection it gets, before its first message there (nothing is sent when the connection
//!   has them already). A `SET` inside a transaction lasts until the transaction ends.
//! - **Prepared statements**, named and unnamed, are the client's own too, prepared on
//!   whichever connection it gets ([`super::statements`]).

use super::cancel::Registration;
use super::frame::{self, Frame, Notice, MAX_MESSAGE};
use super::held::Held;
use super::owed::{Expect, Owed, MAX_OWED};
use super::settings::{apply_settings, quote_literal, ClientSettings};
use super::startup::ClientConn;
use super::statements::{self, Acks, ClientStatements};
use super::WireError;
use crate::pool::{Checkout, TenantPool};
use crate::state::AppState;
use crate::statement::{Classification, SettingChange};
use bytes::BytesMut;
use std::sync::Arc;
use tenancy::catalog::TenantRecord;
use tenancy::domain::PoolMode;
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

/// Most statements kept prepared on a server connection; past it, it is reset before its next
/// use.
const MAX_STATEMENTS_PER_CONNECTION: usize = 1024;

/// What admission found for a client.
pub(crate) struct Admitted {
    pub(crate) tenant: Arc<TenantRecord>,
    /// The tenant's own host, by which it is looked up again before each transaction.
    pub(crate) host: String,
    pub(crate) pool: Arc<TenantPool>,
    pub(crate) settings: ClientSettings,
    pub(crate) cancel: Registration,
    /// The connection the client keeps from the start (session pooling).
    pub(crate) kept: Option<Checkout>,
}

/// One client's session.
pub(crate) struct Session {
    conn: ClientConn,
    state: AppState,
    tenant: Arc<TenantRecord>,
    host: String,
    pool: Arc<TenantPool>,
    settings: ClientSettings,
    statements: ClientStatements,
    cancel: Registration,
    shutdown: CancellationToken,
    idle_transaction_timeout: std::time::Duration,
    /// The connection the client keeps from the start (session pooling), until it is held.
    kept: Option<Checkout>,
    /// [`Held::to_server`]'s buffer between transactions, kept for the next one.
    spare: BytesMut,
    /// When the tenant was last looked up, and the resolver's epoch then.
    checked: Option<(tokio::time::Instant, u64)>,
    /// What its access log line says.
    log: crate::access_log::SessionLog,
}

/// Longest a client goes on with its tenant as last looked up while no invalidation arrived
/// (at most the resolver's time to live): a change this router hears of is seen at the
/// client's next transaction, one it does not (Redis away) once the resolver's cache has
/// expired and within this time after. Looking the tenant up before every transaction cost
/// a fifth of the router's own work per transaction.
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The most of [`Session::spare`] kept between transactions: one of the client's largest
/// messages is not kept for its whole session.
const SPARE_CAPACITY: usize = 8 * 1024;

/// What a client is told when the router shuts down under it.
const SHUTTING_DOWN: &str = "terminating connection: the router is shutting down";

/// Whether a session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    End,
}

/// What a session carries from one message to the next.
struct Turn {
    held: Option<Held>,
    /// After an error the router raised itself with no server connection held: the client's
    /// messages up to its next `Sync` are dropped (as PostgreSQL does after an error in the
    /// extended protocol).
    skipping: bool,
    /// What goes to the client next.
    out: BytesMut,
}

impl Turn {
    /// Answers `frame` with `notice`, the router's own error, holding no server connection.
    fn refuse(&mut self, frame: &Frame, notice: &Notice) {
        notice.put(&mut self.out);
        if matches!(frame.tag, b'Q' | b'F') {
            frame::ready_for_query(&mut self.out, b'I');
        } else {
            self.skipping = true;
        }
    }
}

impl Session {
    pub(crate) fn new(
        conn: ClientConn,
        state: AppState,
        admitted: Admitted,
        shutdown: CancellationToken,
        idle_transaction_timeout: std::time::Duration,
    ) -> Self {
        let Admitted { tenant, host, pool, settings, cancel, kept } = admitted;
        let statements = ClientStatements::default();
        Self {
            conn,
            state,
            tenant,
            host,
            pool,
            settings,
            statements,
            cancel,
            shutdown,
            idle_transaction_timeout,
            kept,
            spare: BytesMut::new(),
            checked: None,
            log: crate::access_log::SessionLog::default(),
        }
    }

    /// Relays until the client terminates or disconnects (or the router shuts down and the
    /// client holds no connection). A client that breaks the protocol is told so before it is
    /// disconnected.
    pub(crate) async fn run(mut self) -> Result<(), WireError> {
        let result = self.relay().await;
        match &result {
            Err(WireError::Protocol(err)) => self.end_with(&Notice::fatal("08P01", err.to_string())).await,
            Err(WireError::Refused(notice)) => self.end_with(notice).await,
            _ => {}
        }
        let websocket = matches!(self.conn.transport, super::startup::Transport::WebSocket { .. });
        self.log.ended(self.tenant.slug.as_str(), websocket, &result);
        result
    }

    async fn relay(&mut self) -> Result<(), WireError> {
        let held = self.kept.take().map(|checkout| self.hold(checkout));
        let mut turn = Turn { held, skipping: false, out: BytesMut::new() };
        let result = self.turns(&mut turn).await;
        if matches!(result, Err(WireError::Refused(_) | WireError::Protocol(_))) {
            // What the client was owed before the refusal reaches it first.
            let _ = self.flush(&mut turn.out).await;
        }
        result
    }

    /// The session's turns: the client's messages relayed, what comes back waited for.
    async fn turns(&mut self, turn: &mut Turn) -> Result<(), WireError> {
        loop {
            while let Some(frame) = frame::next_frame(&mut self.conn.buf, MAX_MESSAGE)? {
                if self.client_message(turn, frame).await? == Flow::End {
                    return Ok(());
                }
            }
            if let Some(held) = &mut turn.held {
                held.send_to_server().await?;
            }
            self.flush(&mut turn.out).await?;
            let flow = match turn.held {
                None => self.wait_for_client().await?,
                Some(_) => self.wait_with_server(turn).await?,
            };
            if flow == Flow::End {
                return Ok(());
            }
        }
    }

    async fn flush(&mut self, out: &mut BytesMut) -> Result<(), WireError> {
        if !out.is_empty() {
            self.conn.send(out).await?;
            out.clear();
        }
        Ok(())
    }

    /// Tells the client the router is shutting down, and ends the session.
    async fn shutting_down(&mut self) -> Flow {
        self.end_with(&Notice::fatal("57P01", SHUTTING_DOWN)).await;
        Flow::End
    }

    /// One whole message from the client: relayed, refused, or answered by the router.
    async fn client_message(&mut self, turn: &mut Turn, frame: Frame) -> Result<Flow, WireError> {
        if frame.tag == b'X' {
            if let Some(held) = turn.held.take() {
                self.release(held);
            }
            return Ok(Flow::End);
        }
        if turn.skipping {
            if frame.tag == b'S' {
                turn.skipping = false;
                match &mut turn.held {
                    Some(held) => self.relay_to_server(held, &frame, None)?,
                    None => frame::ready_for_query(&mut turn.out, b'I'),
                }
            }
            return Ok(Flow::Go);
        }
        if turn.held.as_ref().is_some_and(|held| held.owed.copy_in)
            && !matches!(frame.tag, b'd' | b'c' | b'f' | b'S' | b'H')
        {
            // PostgreSQL fails the COPY and the client's message with it (a refused one
            // included); the router could not tell what the server answers next.
            return Err(WireError::Refused(Notice::fatal(
                "08P01",
                format!("unexpected message type 0x{:02X} during COPY from stdin", frame.tag),
            )));
        }
        let classification = match self.judge(&frame) {
            Ok(classification) => classification,
            Err(refusal) => {
                match &mut turn.held {
                    // The server fails in its place, in order, and the transaction with it.
                    Some(held) => self.fail_in_place(held, &frame, refusal),
                    None => {
                        self.statements.refused(&frame, &mut Acks::default());
                        turn.refuse(&frame, &refusal);
                    }
                }
                return Ok(Flow::Go);
            }
        };
        // A COPY's data, end or failure outside a COPY (what a client sends on after its COPY
        // failed) is ignored by PostgreSQL: it starts nothing, and needs no connection.
        let copy_message = matches!(frame.tag, b'd' | b'c' | b'f');
        let idle_held = turn.held.as_ref().is_some_and(Held::is_idle);
        if copy_message && (turn.held.is_none() || idle_held) {
            return Ok(Flow::Go);
        }
        if idle_held && !matches!(frame.tag, b'S' | b'H') {
            // Session pooling: a transaction starts on the connection the client keeps.
            if let Err(notice) = self.begin_transaction().await {
                if notice.severity == "FATAL" {
                    self.flush(&mut turn.out).await?;
                    self.end_with(&notice).await;
                    return Ok(Flow::End);
                }
                turn.refuse(&frame, &notice);
                return Ok(Flow::Go);
            }
            self.count_transaction();
        }
        if turn.held.is_none() {
            if matches!(frame.tag, b'S' | b'H') {
                // Nothing pending: a bare Sync is answered, a Flush has nothing to flush.
                if frame.tag == b'S' {
                    frame::ready_for_query(&mut turn.out, b'I');
                }
                return Ok(Flow::Go);
            }
            match self.attach(&frame, classification).await {
                Ok(held) => turn.held = Some(held),
                Err(notice) if notice.severity == "FATAL" => {
                    self.flush(&mut turn.out).await?;
                    self.end_with(&notice).await;
                    return Ok(Flow::End);
                }
                Err(notice) => {
                    turn.refuse(&frame, &notice);
                    return Ok(Flow::Go);
                }
            }
        }
        if let Some(held) = &mut turn.held {
            self.relay_to_server(held, &frame, classification)?;
        }
        Ok(Flow::Go)
    }

    /// Waits for the client's next bytes, holding no server connection.
    async fn wait_for_client(&mut self) -> Result<Flow, WireError> {
        frame::make_room(&mut self.conn.buf, frame::CLIENT_READ_ROOM);
        tokio::select! {
            read = self.conn.io.read_buf(&mut self.conn.buf) => {
                Ok(if read? == 0 { Flow::End } else { Flow::Go })
            }
            () = self.shutdown.cancelled() => Ok(self.shutting_down().await),
        }
    }

    /// Waits for the client or the server, holding a server connection, and relays what the
    /// server sent; gives the connection back once the transaction is over.
    async fn wait_with_server(&mut self, turn: &mut Turn) -> Result<Flow, WireError> {
        let Some(held) = &mut turn.held else { return Ok(Flow::Go) };
        let idle = held.is_idle();
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
        let statement_deadline = held.deadline.unwrap_or(far);
        // Idle in a transaction, or in a pipeline the client left without a `Sync` (nothing
        // running: the server waits for the client), as PostgreSQL counts it: since the later
        // of the client's last message and the server's last answer.
        let idle_in_transaction =
            held.pending == 0 && held.owed.executing == 0 && (held.status != b'I' || held.unsynced);
        let idle_deadline = held.last_heard.max(held.last_answer) + self.idle_transaction_timeout;
        let socket = held.checkout.socket().ok_or(WireError::Closed)?;
        frame::make_room(&mut self.conn.buf, frame::CLIENT_READ_ROOM);
        frame::make_room(&mut socket.read_buf, frame::SERVER_READ_ROOM);
        let read_client = self.conn.io.read_buf(&mut self.conn.buf);
        let read_server = tokio::io::AsyncReadExt::read_buf(&mut socket.stream, &mut socket.read_buf);
        tokio::select! {
            read = read_client => {
                if !matches!(read, Ok(n) if n > 0) {
                    // Gone: mid-transaction or mid-query, the connection is closed and its
                    // query cancelled.
                    if let Some(held) = turn.held.take() {
                        self.release(held);
                    }
                    return Ok(Flow::End);
                }
                return Ok(Flow::Go);
            }
            () = tokio::time::sleep_until(statement_deadline), if statement_deadline < far => {
                tokio::spawn(held.checkout.canceller().cancel());
                held.deadline = None;
                return Ok(Flow::Go);
            }
            () = tokio::time::sleep_until(idle_deadline), if idle_in_transaction => {
                if let Some(held) = turn.held.take() {
                    self.release(held);
                }
                let notice = Notice::fatal("25P03", "terminating connection due to idle-in-transaction timeout");
                self.end_with(&notice).await;
                return Ok(Flow::End);
            }
            // A client between transactions is let go at shutdown.
            () = self.shutdown.cancelled(), if idle => {
                if let Some(held) = turn.held.take() {
                    self.release(held);
                }
                return Ok(self.shutting_down().await);
            }
            read = read_server => {
                if !matches!(read, Ok(n) if n > 0) {
                    socket.broken = true;
                    let message = match read {
                        Err(err) => format!("the server connection was lost: {err}"),
                        Ok(_) => "the server closed the connection".to_owned(),
                    };
                    self.end_with(&Notice::fatal("08006", message)).await;
                    return Err(WireError::Closed);
                }
            }
        }
        let done = self.relay_from_server(held, &mut turn.out)?;
        self.flush(&mut turn.out).await?;
        if !done {
            return Ok(Flow::Go);
        }
        if self.tenant.pool_mode == PoolMode::Transaction {
            if let Some(mut held) = turn.held.take() {
                if held.read_settings {
                    // Boxed: rare, and its future would make every session's larger.
                    Box::pin(self.read_back_settings(&mut held)).await;
                }
                self.release(held);
            }
        }
        if self.shutdown.is_cancelled() {
            return Ok(self.shutting_down().await);
        }
        Ok(Flow::Go)
    }

    /// When a statement sent now is cancelled by the router: a little after the plan's statement
    /// timeout (PostgreSQL's own, from the pool's settings, fires first unless the client raised
    /// it).
    fn statement_deadline(&self) -> Option<tokio::time::Instant> {
        let ms = u64::try_from(self.tenant.statement_timeout_ms?).ok().filter(|ms| *ms > 0)?;
        Some(tokio::time::Instant::now() + std::time::Duration::from_millis(ms + 100))
    }

    /// Sends the server, in place of the refused `frame`, a message that fails there: the
    /// error reaches the client in order, and aborts the transaction, as PostgreSQL's own would
    /// (its text is replaced by `refusal`'s).
    fn fail_in_place(&mut self, held: &mut Held, frame: &Frame, refusal: Notice) {
        self.statements.refused(frame, &mut held.acks);
        let out = &mut held.to_server;
        if frame.tag == b'P' {
            frame::put_message(out, b'P', |b| {
                b.extend_from_slice(b"\0");
                b.extend_from_slice(refusal_marker().as_bytes());
                b.extend_from_slice(b"\0\0\0");
            });
            held.unsynced = true;
        } else {
            frame::query(out, refusal_marker());
            if !held.owed.ready_sent(false) {
                // Skipped by the server (after an error, until a `Sync`), as the client's
                // own query would have been.
                return;
            }
            held.unsynced = false;
            held.pending += 1;
            held.acks.sent += 1;
        }
        if !held.owed.skipping {
            held.refusals.push_back(refusal);
        }
    }

    /// The classification of the SQL `frame` carries (`None` for a message without SQL), or
    /// why the router refuses `frame` itself.
    fn judge(&self, frame: &Frame) -> Result<Option<Classification>, Notice> {
        match frame.tag {
            b'Q' | b'P' => {}
            b'F' => return Err(Notice::error(
                "0A000",
                "the FunctionCall message is not supported through the router; call the function with SELECT",
            )),
            _ => return Ok(None),
        }
        let Some(sql) = sql_of(frame) else {
            // Text the router cannot read is text it cannot judge.
            return Err(Notice::error("22021", "SQL text must be UTF-8"));
        };
        let classification = self.state.classifier.classify(sql);
        match classification.not_allowed {
            Some(not_allowed) => Err(Notice::error("42501", not_allowed.message())),
            None => Ok(Some(classification)),
        }
    }

    /// The tenant as it is now (from the resolver's cache): a client connected before a
    /// suspension or deletion is refused (`FATAL`), and after any change (a rotation, a new
    /// plan) it is served from the tenant's current pool.
    ///
    /// While the directory itself cannot be read (catalog and shared cache away, the record
    /// expired from the router's own cache), the client goes on as the tenant it logged in as:
    /// a suspension in that window is still enforced by PostgreSQL, whose sessions of the
    /// tenant's roles the control plane ends.
    async fn recheck_tenant(&mut self) -> Result<(), Notice> {
        let epoch = self.state.resolver.epoch();
        let now = tokio::time::Instant::now();
        let fresh_for = RECHECK_AFTER.min(self.state.resolver.ttl());
        if self.checked.is_some_and(|(at, seen)| seen == epoch && now.duration_since(at) < fresh_for) {
            return Ok(());
        }
        self.checked = None;
        let current = match self.state.resolver.resolve(Some(&self.host)).await {
            Ok(current) => current,
            Err(crate::resolve::ResolveTenantError::Unavailable(reason)) => {
                tracing::warn!(tenant = %self.tenant.slug, %reason, "tenant directory unavailable: the PostgreSQL client goes on as the tenant it logged in as");
                return Ok(());
            }
            Err(err) => return Err(super::startup::resolve_notice(&err, "the connection")),
        };
        if current.id != self.tenant.id {
            return Err(Notice::fatal("57P01", "the tenant this connection was for is gone"));
        }
        if current.generation != self.tenant.generation {
            let (access, door) = (self.pool.access(), crate::pool::Door::Wire);
            self.pool = self.state.pools.pool_for_door(&current, access, door).await.map_err(|err| {
                let notice = super::startup::pool_notice(&err);
                Notice::error(notice.code, notice.message)
            })?;
            self.tenant = current;
        }
        self.checked = Some((now, epoch));
        Ok(())
    }

    /// A transaction may start: the tenant is still served, and the plan's rate limit allows it.
    async fn begin_transaction(&mut self) -> Result<(), Notice> {
        self.recheck_tenant().await?;
        if !self.state.rate_limits.allow(&self.tenant).await {
            self.state.metrics.rate_limited.inc();
            return Err(Notice::error("53400", "the tenant's plan rate limit is exceeded; retry shortly"));
        }
        Ok(())
    }

    /// Tells the client why the router ends its session (noted for its access log line).
    async fn end_with(&mut self, notice: &Notice) {
        self.log.ended_by = Some(notice.code);
        self.conn.refuse(notice).await;
    }

    /// A transaction has a server connection to run on.
    fn count_transaction(&mut self) {
        self.log.transactions += 1;
        self.state.metrics.wire_transactions.inc();
        self.pool.transaction_started();
    }

    /// A server connection for the client, with its settings, charged to the plan's rate limit.
    /// A connection lost while its settings are applied (PostgreSQL restarting, say: the client
    /// has sent it nothing yet) is closed and another one taken, a few times at most.
    /// Whether `frame`, the first message of a transaction, may write: SQL not known to only
    /// read (a `BEGIN` included) but settings, or a `Bind` of such a statement.
    fn may_write(&self, frame: &Frame, classification: Option<Classification>) -> bool {
        match frame.tag {
            b'Q' | b'P' => {
                !classification.is_some_and(|c| c.read_only)
                    && sql_of(frame).is_none_or(|sql| crate::statement::setting_changes(sql).is_none())
            }
            b'B' => {
                !self.statements.prepared_earlier(frame, &Acks::default()).is_some_and(|(_, c)| c.read_only)
            }
            _ => false,
        }
    }

    /// A server connection for a transaction starting with `first` (classified as
    /// `classification`): held while the tenant's writes are paused (a move by dump copying it)
    /// if `first` may write.
    async fn attach(
        &mut self,
        first: &Frame,
        classification: Option<Classification>,
    ) -> Result<Held, Notice> {
        const ATTEMPTS: usize = 3;
        self.begin_transaction().await?;
        if self.tenant.writes_paused() && self.may_write(first, classification) {
            // Boxed: rare, and its future would make every session's larger.
            let held = Box::pin(self.state.resolver.hold_writes(Some(&self.host)));
            tokio::select! {
                held = held => held.map_err(|err| super::startup::resolve_notice(&err, "the connection"))?,
                () = self.shutdown.cancelled() => {
                    return Err(Notice::fatal("57P01", SHUTTING_DOWN));
                }
            };
            self.checked = None;
            self.recheck_tenant().await?;
        }
        let waited = std::time::Instant::now();
        for attempt in 1..=ATTEMPTS {
            let mut checkout = self.state.pools.checkout(&self.pool).await.map_err(|err| {
                let notice = super::startup::pool_notice(&err);
                Notice::error(notice.code, notice.message)
            })?;
            let checked_out = waited.elapsed();
            match apply_settings(&mut checkout, &self.settings).await {
                Ok(None) => {
                    self.state.metrics.checkout_wait.observe(checked_out.as_secs_f64());
                    self.count_transaction();
                    return Ok(self.hold(checkout));
                }
                Err(_) if attempt < ATTEMPTS => checkout.retire = true,
                Ok(Some(_)) | Err(_) => {
                    checkout.clean = false;
                    break;
                }
            }
        }
        Err(Notice::error("08006", "the client's settings could not be applied on a server connection"))
    }

    /// The client holds `checkout` (which has its settings).
    fn hold(&mut self, mut checkout: Checkout) -> Held {
        // Closed unless given back idle (see `Held`'s drop).
        checkout.retire = true;
        self.cancel.target.set(Some(checkout.canceller()));
        Held {
            checkout,
            pending: 0,
            status: b'I',
            dirty: false,
            acks: Acks::default(),
            unsynced: false,
            refusals: std::collections::VecDeque::new(),
            owed: Owed::default(),
            internal: std::collections::VecDeque::new(),
            read_settings: false,
            to_server: std::mem::take(&mut self.spare),
            deadline: None,
            last_heard: tokio::time::Instant::now(),
            last_answer: tokio::time::Instant::now(),
            setting: None,
            failed: false,
        }
    }

    /// Gives the server connection back when the server is idle outside a transaction with
    /// nothing pending; otherwise it is closed (its query cancelled, see [`Held`]'s drop).
    fn release(&mut self, mut held: Held) {
        self.cancel.target.set(None);
        if held.to_server.capacity() <= SPARE_CAPACITY {
            self.spare = std::mem::take(&mut held.to_server);
            self.spare.clear();
        }
        if held.is_idle() {
            held.checkout.retire = false;
            held.checkout.clean = !held.dirty;
        }
    }

    /// What running `sql` (classified as `classification`, sent in a message tagged `tag`)
    /// does to the session `held` is on: statements discarded, the sequence cache read, state
    /// left for the next client (the connection reset before it), settings the client keeps.
    fn note_effects(held: &mut Held, tag: u8, sql: &str, classification: Classification) {
        if classification.discards_statements {
            if let Some(socket) = held.checkout.socket() {
                socket.prepared.clear();
            }
        }
        // `currval`/`lastval` first thing on this connection: what another client's `nextval`
        // left in the session's sequence cache is discarded first (as on a fresh session).
        if classification.reads_sequence_cache && held.acks.sent == 0 && !held.unsynced {
            frame::query(&mut held.to_server, crate::session::DISCARD_SEQUENCES);
            held.internal.push_back(held.acks.sent);
            held.owed.push(Expect::Ready);
            held.pending += 1;
            held.acks.sent += 1;
        }
        // `BEGIN`, `COMMIT` and the like leave nothing behind: `ReadyForQuery` tells when
        // the transaction is over.
        if classification.needs_reset() && !crate::statement::only_transaction_control(sql) {
            let settings_only = tag == b'Q'
                && held.status == b'I'
                && held.pending == 0
                && crate::statement::setting_changes(sql).is_some();
            if settings_only {
                held.setting = Some(sql.to_owned());
            } else {
                held.dirty = true;
                // A SET in a transaction, or set_config: what the session's settings are once
                // the transaction is over is read back then, and kept for the client.
                held.read_settings |=
                    classification.sets_config || crate::statement::setting_changes(sql).is_some();
            }
        }
    }

    /// Adds `frame` (or what stands for it) to what goes to the server next; `classification`:
    /// of the SQL it carries ([`Session::judge`]).
    fn relay_to_server(
        &mut self,
        held: &mut Held,
        frame: &Frame,
        classification: Option<Classification>,
    ) -> Result<(), WireError> {
        held.last_heard = tokio::time::Instant::now();
        if let (Some(sql), Some(classification)) = (sql_of(frame), classification) {
            Self::note_effects(held, frame.tag, sql, classification);
        } else if let Some((sql, classification)) = self.statements.prepared_earlier(frame, &held.acks) {
            // A statement run on a connection in a later transaction than the one that
            // prepared it: what it leaves in the session is this connection's to reset now.
            Self::note_effects(held, frame.tag, sql, classification);
        }
        if held.owed.queue.len() >= MAX_OWED {
            return Err(WireError::Refused(Notice::fatal(
                "54000",
                format!("more than {MAX_OWED} messages sent without waiting for their answers"),
            )));
        }
        let socket = held.checkout.socket().ok_or(WireError::Closed)?;
        match frame.tag {
            b'Q' | b'S' => {
                if !held.owed.ready_sent(frame.tag == b'S') {
                    // Ignored by the server (a `Sync` in a COPY FROM STDIN, a `Query` while it
                    // skips to a `Sync`): no answer comes.
                    held.to_server.extend_from_slice(&frame.bytes);
                    return Ok(());
                }
                // A statement may start now: its own time, unless one runs (whose time goes on).
                if (held.pending == 0 && held.owed.executing == 0) || held.deadline.is_none() {
                    held.deadline = self.statement_deadline();
                }
                held.pending += 1;
                held.unsynced = false;
                held.to_server.extend_from_slice(&frame.bytes);
                if frame.tag == b'Q' {
                    self.statements.query_sent(&mut held.acks);
                }
                held.acks.sent += 1;
            }
            b'H' => held.to_server.extend_from_slice(&frame.bytes),
            // A COPY's data, end or failure: part of the `Query` or `Execute` that started it,
            // which the server answers once it ends (a `Query`'s COPY is followed by no
            // `Sync`: were these taken for a pipeline, the client would keep its connection
            // after the COPY until it sent something else).
            b'd' => held.to_server.extend_from_slice(&frame.bytes),
            b'c' | b'f' => {
                held.owed.copy_ended();
                held.to_server.extend_from_slice(&frame.bytes);
            }
            _ => {
                if frame.tag == b'E' {
                    // Run without a `Sync` (a pipeline, flushed), a statement is still bounded
                    // by the plan's timeout.
                    held.owed.execute_sent();
                    if held.deadline.is_none() {
                        held.deadline = self.statement_deadline();
                    }
                }
                held.unsynced = true;
                self.statements
                    .relay(frame, classification, &mut socket.prepared, &mut held.acks, &mut held.to_server)
                    .map_err(WireError::Refused)?;
            }
        }
        Ok(())
    }

    /// Relays the server's whole messages to `out`; `true` once the connection can be given
    /// back.
    fn relay_from_server(&mut self, held: &mut Held, out: &mut BytesMut) -> Result<bool, WireError> {
        let socket = held.checkout.socket().ok_or(WireError::Closed)?;
        held.last_answer = tokio::time::Instant::now();
        let mut done = false;
        while let Some(frame) = frame::next_frame(&mut socket.read_buf, MAX_MESSAGE)? {
            if held.internal.front() == Some(&held.acks.answered) {
                // The answer to the router's own query, kept from the client.
                if frame.tag == b'Z' {
                    held.internal.pop_front();
                    held.owed.ready();
                    held.pending = held.pending.saturating_sub(1);
                    held.acks.batch_done();
                }
                continue;
            }
            match frame.tag {
                b'1' | b'3' => {
                    statements::answer(&frame, &mut held.acks, out);
                    continue;
                }
                b'S' => socket.note_parameter(&frame),
                b'C' | b'I' | b's' => {
                    held.owed.execute_done();
                    if held.owed.executing > 0 {
                        // The next statement of a pipeline starts: its own time.
                        held.deadline = self.statement_deadline();
                    } else if held.pending == 0 {
                        held.deadline = None;
                    }
                }
                b'G' => {
                    if let Some(ignored) = held.owed.copy_in_started() {
                        for _ in 0..ignored {
                            held.pending = held.pending.saturating_sub(1);
                            held.acks.batch_done();
                        }
                        // The server waits for a `Sync` sent after the COPY (after an error
                        // in it too): the connection is not idle before.
                        held.unsynced = true;
                    }
                }
                b'E' => {
                    held.owed.error();
                    if held.owed.skipping {
                        held.unsynced = true;
                    }
                    if held.owed.executing == 0 && held.pending == 0 {
                        held.deadline = None;
                    }
                    held.failed = true;
                    held.acks.failed(&mut socket.prepared);
                    if is_refusal(&frame) {
                        if let Some(refusal) = held.refusals.pop_front() {
                            refusal.put(out);
                            continue;
                        }
                    }
                }
                b'Z' => {
                    held.owed.ready();
                    held.pending = held.pending.saturating_sub(1);
                    held.deadline = if held.pending > 0 || held.owed.executing > 0 {
                        self.statement_deadline()
                    } else {
                        None
                    };
                    held.acks.batch_done();
                    held.status = frame.body().first().copied().unwrap_or(b'I');
                    if held.pending == 0 {
                        if let Some(sql) = held.setting.take() {
                            if !held.failed && held.status == b'I' {
                                self.keep_setting(&sql, &mut held.dirty, &mut socket.applied_settings);
                            } else {
                                held.dirty = true;
                            }
                        }
                        held.failed = false;
                        done = held.status == b'I' && !held.unsynced;
                    }
                }
                _ => {}
            }
            out.extend_from_slice(&frame.bytes);
        }
        if socket.prepared.len() > MAX_STATEMENTS_PER_CONNECTION {
            // Too many kept: the reset before its next use drops them all.
            held.dirty = true;
        }
        Ok(done)
    }

    /// Reads the session's settings back from the server once a transaction that may have
    /// changed them (a `SET` inside it, `set_config`) is over, and keeps them as the client's.
    /// If they cannot be read, the connection is closed and the client keeps what it had.
    async fn read_back_settings(&mut self, held: &mut Held) {
        const SESSION_SETTINGS: &str =
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'";
        let Some(socket) = held.checkout.socket() else { return };
        let rows = match socket.rows_quietly(SESSION_SETTINGS).await {
            Ok(Ok(rows)) => rows,
            _ => {
                held.dirty = true;
                held.unsynced = true; // not idle: closed, not given back
                return;
            }
        };
        let mut changes = Vec::new();
        for row in rows {
            let [Some(name), Some(value)] = <[Option<String>; 2]>::try_from(row).unwrap_or_default() else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if self.settings.is_startup_value(&name, &value) {
                continue;
            }
            let sql = format!("SET {} TO {}", tenancy::domain::quote_ident(&name), quote_literal(&value));
            if crate::statement::setting_changes(&sql).is_some() {
                changes.push((name, sql));
            }
        }
        self.settings.replace(changes);
        held.dirty = true;
    }

    /// A `SET` query that succeeded becomes one of the client's settings; the connection has
    /// exactly the client's settings now.
    fn keep_setting(&mut self, sql: &str, dirty: &mut bool, applied: &mut Option<u64>) {
        let Some(changes) = crate::statement::setting_changes(sql) else {
            *dirty = true;
            return;
        };
        for change in changes {
            match change {
                SettingChange::Set { name, sql } => self.settings.set(name, sql),
                SettingChange::Reset { name } => {
                    // Back to the default of a session the router opened, which is not the
                    // client's: reset and applied again, as after `RESET ALL`.
                    self.settings.reset(&name);
                    *dirty = true;
                }
                SettingChange::ResetAll => {
                    // Back to the startup settings, which this session no longer has: the
                    // connection is reset before its next use, and the client's settings
                    // applied again.
                    self.settings.reset_all();
                    *dirty = true;
                }
            }
        }
        if self.settings.trim() {
            // Too many to carry: the newest are dropped, and the connection must not be reused
            // as if it had them.
            *dirty = true;
        }
        if !*dirty {
            *applied = self.settings.fingerprint();
        }
    }
}

/// SQL that fails to parse, with a text of its own that the server's error repeats: sent in
/// place of what the router refuses.
fn refusal_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| format!("tenant_router_refused_{:016x}", rand::random::<u64>()))
}

/// Whether an `ErrorResponse` is the server's answer to [`refusal_marker`].
fn is_refusal(frame: &Frame) -> bool {
    let marker = refusal_marker().as_bytes();
    frame.body().windows(marker.len()).any(|window| window == marker)
}

/// The SQL text of a `Query` or `Parse` message.
fn sql_of(frame: &Frame) -> Option<&str> {
    match frame.tag {
        b'Q' => frame::cstr(frame.body()).ok().map(|(sql, _)| sql),
        b'P' => {
            let (_, rest) = frame::cstr(frame.body()).ok()?;
            frame::cstr(rest).ok().map(|(sql, _)| sql)
        }
        _ => None,
    }
}
