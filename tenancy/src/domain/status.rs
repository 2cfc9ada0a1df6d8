//! Tenant lifecycle status, isolation mode and pool mode, stored as text in the catalog.

use std::fmt;

/// `provisioning → active ⇄ suspended → deprovisioning → deleted`, plus `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Provisioning,
    Active,
    Suspended,
    Deprovisioning,
    Deleted,
    Failed,
}

/// Isolation of one tenant: its own schema in a shared database, or its own database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    Schema,
    Database,
}

/// How the router's PostgreSQL-protocol door lends a tenant's server connections to its clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// A client holds a server connection for one transaction at a time (many clients share
    /// few connections; what a client sets is carried from connection to connection).
    #[default]
    Transaction,
    /// A client holds one server connection for as long as it stays connected (for what needs
    /// a session: `LISTEN`, session advisory locks, `WITH HOLD` cursors).
    Session,
}

/// How a move copies a tenant's data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveMethod {
    /// PostgreSQL's logical replication: the tenant reads and writes throughout, and its new
    /// requests are held only for the switch.
    #[default]
    Replication,
    /// `pg_dump` and `pg_restore`, for servers without logical replication: the tenant's
    /// writes wait while its data is copied (its reads go on).
    Dump,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// `as_str`, `ALL`, `FromStr` and `Display` for an enum stored as text in the catalog.
macro_rules! catalog_text {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == s)
                    .ok_or_else(|| UnknownValue { what: $what, value: s.to_owned() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

catalog_text!(TenantStatus, "tenant status", {
    Provisioning => "provisioning",
    Active => "active",
    Suspended => "suspended",
    Deprovisioning => "deprovisioning",
    Deleted => "deleted",
    Failed => "failed",
});

catalog_text!(Isolation, "isolation", { Schema => "schema", Database => "database" });

catalog_text!(PoolMode, "pool mode", { Transaction => "transaction", Session => "session" });

catalog_text!(MoveMethod, "move method", { Replication => "replication", Dump => "dump" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_text() {
        for &status in TenantStatus::ALL {
            assert_eq!(status.as_str().parse::<TenantStatus>().unwrap(), status);
        }
        assert!("gone".parse::<TenantStatus>().is_err());
    }

    #[test]
    fn pool_mode_round_trips_through_text() {
        for &mode in PoolMode::ALL {
            assert_eq!(mode.as_str().parse::<PoolMode>().unwrap(), mode);
        }
        assert_eq!("database".parse::<Isolation>().unwrap(), Isolation::Database);
        assert!("statement".parse::<PoolMode>().is_err());
    }
}
