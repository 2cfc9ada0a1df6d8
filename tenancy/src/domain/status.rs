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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl TenantStatus {
    pub const ALL: [Self; 6] = [
        Self::Provisioning,
        Self::Active,
        Self::Suspended,
        Self::Deprovisioning,
        Self::Deleted,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deprovisioning => "deprovisioning",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for TenantStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue { what: "tenant status", value: s.to_owned() })
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schema => "schema",
            Self::Database => "database",
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "schema" => Ok(Self::Schema),
            "database" => Ok(Self::Database),
            other => Err(UnknownValue { what: "isolation", value: other.to_owned() }),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Session => "session",
        }
    }
}

impl std::str::FromStr for PoolMode {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transaction" => Ok(Self::Transaction),
            "session" => Ok(Self::Session),
            other => Err(UnknownValue { what: "pool mode", value: other.to_owned() }),
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_text() {
        for status in TenantStatus::ALL {
            assert_eq!(status.as_str().parse::<TenantStatus>().unwrap(), status);
        }
        assert!("gone".parse::<TenantStatus>().is_err());
    }

    #[test]
    fn pool_mode_round_trips_through_text() {
        for mode in [PoolMode::Transaction, PoolMode::Session] {
            assert_eq!(mode.as_str().parse::<PoolMode>().unwrap(), mode);
        }
        assert!("statement".parse::<PoolMode>().is_err());
    }
}
