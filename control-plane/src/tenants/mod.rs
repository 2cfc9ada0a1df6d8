//! The tenant service: every request on a tenant (create, lifecycle operations, config, custom
//! domains), as the API, the CLI and billing make them.

pub mod create;
pub mod domains;
pub mod lifecycle;
