//! Cancel requests. Each client gets a key of the router's own (`BackendKeyData`); a
//! `CancelRequest` carrying it cancels whatever that client's server connection is running,
//! whichever connection that is at the time. A key that matches no client does nothing, as in
//! PostgreSQL.

use crate::pool::connection::Canceller;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The keys of the clients connected now.
#[derive(Default)]
pub(crate) struct CancelKeys {
    clients: Mutex<HashMap<(i32, i32), Arc<Target>>>,
}

/// What a client's key cancels: its server connection's query, while it holds one.
#[derive(Default)]
pub(crate) struct Target {
    current: Mutex<Option<Canceller>>,
}

impl Target {
    /// The client holds a server connection now (`Some`), or none (`None`).
    pub(crate) fn set(&self, canceller: Option<Canceller>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = canceller;
    }
}

/// A client's key, given up when dropped.
pub(crate) struct Registration {
    keys: Arc<CancelKeys>,
    pub(crate) process_id: i32,
    pub(crate) secret_key: i32,
    pub(crate) target: Arc<Target>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.keys
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(self.process_id, self.secret_key));
    }
}

impl CancelKeys {
    /// A new random key for a client.
    pub(crate) fn register(self: &Arc<Self>) -> Registration {
        let target = Arc::new(Target::default());
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let key = (rand::random::<i32>() & i32::MAX, rand::random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(slot) = clients.entry(key) {
                slot.insert(target.clone());
                return Registration { keys: self.clone(), process_id: key.0, secret_key: key.1, target };
            }
        }
    }

    /// Cancels the query of the client with this key, if there is one and it is running one.
    pub(crate) async fn cancel(&self, process_id: i32, secret_key: i32) {
        let target = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(process_id, secret_key))
            .cloned();
        let canceller = target.and_then(|t| t.current.lock().unwrap_or_else(PoisonError::into_inner).clone());
        if let Some(canceller) = canceller {
            canceller.cancel().await;
        }
    }
}
