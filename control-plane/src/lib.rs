//! The control plane of schema-per-tenant PostgreSQL: the catalog, tenant provisioning (a
//! durable, idempotent state machine run by job workers), billing webhooks, fleet migrations and
//! the `tenantctl` command line.

pub mod billing;
pub mod catalog;
pub mod cli;
pub mod clusters;
pub mod commands;
pub mod control_plane;
pub mod domains;
pub mod fleet;
pub mod http;
pub mod jobs;
pub mod lifecycle;
pub mod metrics;
pub mod output;
pub mod plans;
pub mod provisioning;
pub mod settings;
pub mod tenant_migrations;
