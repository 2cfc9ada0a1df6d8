//! Shared building blocks of the tenant router and the control plane.
//!
//! - [`domain`]: validated domain types (tenant ids, slugs, schema and role names, plans, status).
//!   Every identifier that reaches SQL comes from one of these types and is quoted.
//! - [`catalog`]: the catalog rows both binaries read (tenants, routing records).
//! - [`secrets`]: the secret store holding each tenant's database credentials (`aws` or `local`).
//! - [`invalidation`]: the Redis channel and message that tell routers a tenant changed.
//! - [`settings`]: configuration shared by both binaries (flags + environment variables).
//! - [`listener`]: serving HTTP with header-read and idle timeouts and a connection limit.
//! - [`error`]: the kinds of failure operations report, from which each edge derives its answer.
//! - [`telemetry`]: structured logging set-up; [`shutdown`]: waiting for SIGTERM / Ctrl-C.

pub mod catalog;
pub mod domain;
pub mod error;
pub mod invalidation;
pub mod listener;
pub mod pg;
pub mod secret;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
