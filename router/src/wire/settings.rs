//! The settings a client of the PostgreSQL-protocol door carries from connection to
//! connection (see [`super::relay`]): those of its startup packet, and those it set since, by
//! name, each by its last value; applied on a server connection only when it lacks them.

use super::frame::Frame;
use crate::pool::Checkout;
use std::hash::{Hash as _, Hasher as _};

/// Most settings a client may carry (by name).
pub(super) const MAX_TRACKED_SETTINGS: usize = 64;

/// The settings a client carries from connection to connection.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientSettings {
    /// From the startup packet: what `RESET ALL` goes back to.
    pub(super) startup: Vec<String>,
    /// The same, as names (lower case) and values.
    pub(super) startup_values: Vec<(String, String)>,
    /// The settings set since, each by its last `SET` (by name, in the order first set).
    pub(super) changes: Vec<(String, String)>,
}

impl ClientSettings {
    /// The startup settings, as SQL.
    pub(crate) fn from_startup(settings: &[(String, String)]) -> Self {
        let statements = settings
            .iter()
            .map(|(name, value)| {
                format!("SET {} TO {}", tenancy::domain::quote_ident(name), quote_literal(value))
            })
            .collect();
        let startup_values = settings.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
        Self { startup: statements, startup_values, changes: Vec::new() }
    }

    /// Why a tenant may not choose one of these settings, if it may not.
    pub(crate) fn not_allowed(
        &self,
        classifier: &crate::statement::Classifier,
    ) -> Option<crate::statement::NotAllowed> {
        self.startup.iter().find_map(|sql| classifier.classify(sql).not_allowed)
    }

    /// The SQL that brings a connection's settings to the client's (`None`: nothing to do).
    fn sql(&self) -> String {
        self.all().cloned().collect::<Vec<_>>().join("; ")
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.startup.iter().chain(self.changes.iter().map(|(_, sql)| sql))
    }

    pub(super) fn fingerprint(&self) -> Option<u64> {
        self.all().next()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for statement in self.all() {
            statement.hash(&mut hasher);
        }
        Some(hasher.finish())
    }
}

/// `value` as an SQL string literal, whatever `standard_conforming_strings` is.
pub(super) fn quote_literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Gives `checkout` the client's settings (unless it has them): `RESET ALL`, then the client's
/// `SET`s, their answers kept from the client. The first error, if one failed.
pub(crate) async fn apply_settings(
    checkout: &mut Checkout,
    settings: &ClientSettings,
) -> Result<Option<Frame>, std::io::Error> {
    let socket = checkout.socket().ok_or_else(|| std::io::Error::other("not a wire connection"))?;
    let wanted = settings.fingerprint();
    if socket.applied_settings == wanted {
        return Ok(None);
    }
    let sql = match socket.applied_settings {
        None => settings.sql(),
        Some(_) if wanted.is_none() => "RESET ALL".to_owned(),
        Some(_) => format!("RESET ALL; {}", settings.sql()),
    };
    let failed = socket.run_quietly(&sql).await?;
    socket.applied_settings = if failed.is_none() { wanted } else { None };
    if failed.is_some() {
        // Whatever part of it ran must not stay.
        checkout.clean = false;
    }
    Ok(failed)
}
