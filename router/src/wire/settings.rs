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
    startup: Vec<String>,
    /// The same, as names (lower case) and values.
    startup_values: Vec<(String, String)>,
    /// The settings set since, each by its last `SET` (by name, in the order first set), at
    /// most [`MAX_TRACKED_SETTINGS`].
    changes: Vec<(String, String)>,
    /// Of all of them, kept as they change: compared with a connection's before every
    /// transaction.
    fingerprint: Option<u64>,
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
        let mut settings =
            Self { startup: statements, startup_values, changes: Vec::new(), fingerprint: None };
        settings.changed();
        settings
    }

    /// Why a tenant may not choose one of these settings, if it may not.
    pub(crate) fn not_allowed(
        &self,
        classifier: &crate::statement::Classifier,
    ) -> Option<crate::statement::NotAllowed> {
        self.startup.iter().find_map(|sql| classifier.classify(sql).not_allowed)
    }

    /// Whether `name` (lower case) has `value` from the startup packet.
    pub(super) fn is_startup_value(&self, name: &str, value: &str) -> bool {
        self.startup_values.iter().any(|(n, v)| n == name && v == value)
    }

    /// `name` (lower case) is set by `sql` now (see [`ClientSettings::trim`]).
    pub(super) fn set(&mut self, name: String, sql: String) {
        match self.changes.iter_mut().find(|(n, _)| *n == name) {
            Some((_, kept)) => *kept = sql,
            None => self.changes.push((name, sql)),
        }
        self.changed();
    }

    /// Drops the newest settings past [`MAX_TRACKED_SETTINGS`]; `true` if there were any.
    #[must_use]
    pub(super) fn trim(&mut self) -> bool {
        if self.changes.len() <= MAX_TRACKED_SETTINGS {
            return false;
        }
        self.changes.truncate(MAX_TRACKED_SETTINGS);
        self.changed();
        true
    }

    /// `name` goes back to the startup setting, or the session's default.
    pub(super) fn reset(&mut self, name: &str) {
        self.changes.retain(|(n, _)| n != name);
        self.changed();
    }

    /// Every setting goes back to the startup settings.
    pub(super) fn reset_all(&mut self) {
        self.changes.clear();
        self.changed();
    }

    /// The settings set since startup are `changes` (by name; past the first
    /// [`MAX_TRACKED_SETTINGS`], dropped).
    pub(super) fn replace(&mut self, mut changes: Vec<(String, String)>) {
        changes.truncate(MAX_TRACKED_SETTINGS);
        self.changes = changes;
        self.changed();
    }

    /// The SQL that brings a connection's settings to the client's (`None`: nothing to do).
    fn sql(&self) -> String {
        self.all().cloned().collect::<Vec<_>>().join("; ")
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.startup.iter().chain(self.changes.iter().map(|(_, sql)| sql))
    }

    fn changed(&mut self) {
        let fingerprint = self.all().next().is_some().then(|| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            for statement in self.all() {
                statement.hash(&mut hasher);
            }
            hasher.finish()
        });
        self.fingerprint = fingerprint;
    }

    /// Of the settings' SQL: a connection whose settings have the same has them.
    pub(super) fn fingerprint(&self) -> Option<u64> {
        self.fingerprint
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
