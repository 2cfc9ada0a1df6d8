//! Who a client is: the tenant's runtime role or its read-only role, as the tenant's secret
//! holds them, proved with that role's password.
//!
//! - Over TCP, with SCRAM-SHA-256 ([`super::scram`]): the password never crosses the wire,
//!   whether or not the client uses TLS.
//! - Over WebSocket, with the password itself (`AuthenticationCleartextPassword`), as Neon's
//!   proxy asks for it there: Neon's serverless driver sends it right after its startup message
//!   without waiting to be asked (`pipelineConnect: "password"`), to save a round trip. It
//!   travels inside the WebSocket's TLS (`wss://`, terminated by the load balancer in front
//!   of the router, as for `/sql`), and is compared in constant time.
//!
//! Either way a wrong user gets the same answer as a wrong password (28P01), each failure
//! counts against the client's address ([`crate::failed_attempts`]), and after a rotation the
//! client may know a newer password than the pool: the secret is read again (rate-limited) and
//! the pool rebuilt.

use super::frame::{self, Frame, Notice, MAX_STARTUP};
use super::scram::{self, ServerKeys};
use super::startup::{pool_notice, ClientConn};
use super::WireError;
use crate::failed_attempts::ClientAddress;
use crate::pool::{credentials_match, Access, Door, TenantPool};
use crate::state::AppState;
use bytes::BytesMut;
use std::sync::Arc;
use tenancy::catalog::TenantRecord;
use tenancy::secrets::DbCredentials;

/// How a client proves it knows the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Scram,
    Cleartext,
}

/// Who the client turned out to be.
pub(crate) struct Authenticated {
    pub(crate) pool: Arc<TenantPool>,
}

/// What the client sent to prove it knows the password.
enum Proof {
    /// A SCRAM exchange's last message, and the keys the exchange ran with.
    Scram { keys: ServerKeys, last: scram::ClientFinal },
    /// The password itself.
    Cleartext(Vec<u8>),
}

/// What a client whose proof passed is told before `AuthenticationOk`: SCRAM's final message
/// (the server's proof that it knows the password too), or nothing.
type Confirmation = Option<String>;

impl Proof {
    /// Whether this is a proof of `pool`'s own password (its SCRAM keys are derived once).
    fn of_pool(&self, pool: &TenantPool, user: &str) -> Option<Confirmation> {
        match self {
            Self::Scram { keys, last } => last.verify(keys).ok().map(Some),
            Self::Cleartext(password) => credentials_match(&pool.credentials, user, password).then_some(None),
        }
    }

    /// Whether this is a proof of `credentials`' password.
    fn of(&self, credentials: &DbCredentials, user: &str) -> Option<Confirmation> {
        match self {
            Self::Scram { keys, last } => {
                last.verify(&ServerKeys::derive(credentials.password.as_bytes(), keys.salt)).ok().map(Some)
            }
            Self::Cleartext(password) => credentials_match(credentials, user, password).then_some(None),
        }
    }
}

fn password_failed(user: &str) -> Notice {
    Notice::fatal("28P01", format!("password authentication failed for user \"{user}\""))
}

/// Authenticates the client as the tenant's runtime or read-only role with `method`, and picks
/// the pool it is served from.
pub(crate) async fn authenticate(
    state: &AppState,
    conn: &mut ClientConn,
    client: ClientAddress,
    tenant: &Arc<TenantRecord>,
    user: &str,
    method: Method,
) -> Result<Authenticated, WireError> {
    let (access, pool) = role(state, tenant, user).await?;
    let proof = match method {
        // An unknown user still gets a whole exchange, against keys nobody knows the password of.
        Method::Scram => {
            let keys = match access {
                Some(_) => pool.scram_keys().clone(),
                None => ServerKeys::mock(&tenant.id.0.to_string(), user),
            };
            scram_exchange(conn, keys).await?
        }
        Method::Cleartext => cleartext_password(conn).await?,
    };
    let accepted = match access {
        Some(access) => match proof.of_pool(&pool, user) {
            Some(confirmation) => Some((pool, confirmation)),
            None => rotated(state, tenant, &pool, access, user, &proof).await,
        },
        None => None,
    };
    let Some((pool, confirmation)) = accepted else {
        state.failed_attempts.record(client);
        state.metrics.wire_auth_failures.inc();
        return Err(WireError::Refused(password_failed(user)));
    };
    let mut out = BytesMut::new();
    if let Some(server_final) = confirmation {
        frame::authentication_sasl_data(&mut out, 12, server_final.as_bytes());
    }
    frame::authentication_ok(&mut out);
    conn.send(&out).await?;
    Ok(Authenticated { pool })
}

/// The role `user` names (`None`: neither of the tenant's), and the pool the client would be
/// served from.
async fn role(
    state: &AppState,
    tenant: &Arc<TenantRecord>,
    user: &str,
) -> Result<(Option<Access>, Arc<TenantPool>), WireError> {
    let writer = state
        .pools
        .pool_for_door(tenant, Access::ReadWrite, Door::Wire)
        .await
        .map_err(|e| WireError::Refused(pool_notice(&e)))?;
    if writer.credentials.username == user {
        Ok((Some(Access::ReadWrite), writer))
    } else if writer.credentials.reader_username.as_deref() == Some(user) {
        let reader = state
            .pools
            .pool_for_door(tenant, Access::ReadOnly, Door::Wire)
            .await
            .map_err(|e| WireError::Refused(pool_notice(&e)))?;
        Ok((Some(Access::ReadOnly), reader))
    } else {
        Ok((None, writer))
    }
}

/// SCRAM-SHA-256 up to the client's final message, against `keys`.
async fn scram_exchange(conn: &mut ClientConn, keys: ServerKeys) -> Result<Proof, WireError> {
    let mut out = BytesMut::new();
    frame::authentication_sasl(&mut out, scram::MECHANISM);
    conn.send(&out).await?;
    let initial = conn.read_frame(MAX_STARTUP).await?;
    let (mechanism, data) = sasl_initial_response(&initial)?;
    if mechanism != scram::MECHANISM {
        return Err(WireError::Refused(Notice::fatal(
            "28000",
            format!("SASL mechanism {mechanism:?} is not offered"),
        )));
    }
    let (exchange, server_first) = scram::Exchange::start(data, &keys).map_err(|e| sasl_error(&e))?;
    out.clear();
    frame::authentication_sasl_data(&mut out, 11, server_first.as_bytes());
    conn.send(&out).await?;
    let response = conn.read_frame(MAX_STARTUP).await?;
    if response.tag != b'p' {
        return Err(WireError::Refused(Notice::fatal("08P01", "expected a SASL response")));
    }
    let last = exchange.read_final(response.body()).map_err(|e| sasl_error(&e))?;
    Ok(Proof::Scram { keys, last })
}

/// Asks for the password (a client that pipelines sent it already) and reads it.
async fn cleartext_password(conn: &mut ClientConn) -> Result<Proof, WireError> {
    let mut out = BytesMut::new();
    frame::authentication_cleartext_password(&mut out);
    conn.send(&out).await?;
    let message = conn.read_frame(MAX_STARTUP).await?;
    let malformed = || WireError::Refused(Notice::fatal("08P01", "expected a password message"));
    if message.tag != b'p' {
        return Err(malformed());
    }
    match frame::cstr(message.body()) {
        Ok((password, [])) => Ok(Proof::Cleartext(password.as_bytes().to_vec())),
        _ => Err(malformed()),
    }
}

/// The pool for the tenant's credentials as the secret holds them now, if the client's proof
/// matches those (a rotation this router has not heard of yet).
async fn rotated(
    state: &AppState,
    tenant: &TenantRecord,
    pool: &Arc<TenantPool>,
    access: Access,
    user: &str,
    proof: &Proof,
) -> Option<(Arc<TenantPool>, Confirmation)> {
    let current = state.pools.current_credentials(tenant, pool).await?;
    let current = match access {
        Access::ReadWrite => current,
        Access::ReadOnly => current.reader()?,
    };
    let confirmation = proof.of(&current, user)?;
    let rebuilt = state.pools.rebuild(tenant, pool).await?;
    Some((rebuilt, confirmation))
}

fn sasl_initial_response(frame: &Frame) -> Result<(&str, &[u8]), WireError> {
    let malformed = || WireError::Refused(Notice::fatal("08P01", "malformed SASLInitialResponse"));
    if frame.tag != b'p' {
        return Err(malformed());
    }
    let (mechanism, rest) = frame::cstr(frame.body()).map_err(|_| malformed())?;
    let length = rest.get(..4).map(|l| i32::from_be_bytes([l[0], l[1], l[2], l[3]])).ok_or_else(malformed)?;
    let data = &rest[4..];
    if usize::try_from(length).ok() != Some(data.len()) {
        return Err(malformed());
    }
    Ok((mechanism, data))
}

fn sasl_error(err: &scram::ScramError) -> WireError {
    WireError::Refused(Notice::fatal("08P01", err.to_string()))
}
