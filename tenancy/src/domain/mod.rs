//! Validated domain types. Constructors are the only way in, so a value of one of these types is
//! always valid: code that receives a [`Slug`] never re-checks it.

mod cluster;
mod host;
mod names;
mod plan;
mod slug;
mod status;
mod tenant_id;

pub use cluster::{ClusterName, ClusterNameError};
pub use host::{normalize_host, BaseDomain, HostError};
pub use names::{quote_ident, DatabaseName, IdentifierError, RoleName, SchemaName};
pub use plan::{PlanName, PlanNameError};
pub use slug::{Slug, SlugError, RESERVED_SLUGS};
pub use status::{Isolation, MoveMethod, PoolMode, TenantStatus, UnknownValue};
pub use tenant_id::TenantId;
