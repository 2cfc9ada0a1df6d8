//! The control plane of schema-per-tenant PostgreSQL: the catalog, tenant provisioning (a
//! durable, idempotent state machine run by job workers), billing webhooks, fleet migrations and
//! the `tenantctl` command line.
//!
//! A map, from the edges in:
//!
//! - **Edges.** [`cli`] (the command line's shape) and [`commands`] (what each command does,
//!   and the one mapping of errors to exit codes); [`http`] (the operator API, the billing
//!   webhook, health and metrics, and the one mapping of errors to HTTP statuses).
//! - **Workflows.** [`provisioning`] (a tenant request, and the steps that build a tenant),
//!   [`lifecycle`] (suspend, resume, plan, credentials, delete/restore: a checked transition,
//!   recorded with its job), [`billing`] (signed events to lifecycle requests), [`domains`]
//!   (custom host names), [`fleet`] (migration runs over many tenants, their ledger and plan).
//! - **Work after the request.** [`jobs`]: the kinds, the runner that claims and retries them,
//!   and the handlers that make databases match the catalog.
//! - **Where tenants live.** [`clusters`]: registration, placement and each cluster's handle
//!   (databases, roles, pools); [`tenant_migrations`] (migrating one tenant schema) and
//!   [`plans`] (plan templates).
//! - **State.** [`catalog`]: the catalog's migrations and its tables' queries;
//!   [`control_plane::ControlPlane`]: what every operation is given (catalog pool, clusters,
//!   secret store, Redis publisher, settings).
//! - Across all: [`tenancy::error::ErrorKind`], the kind every operation error carries.

pub mod billing;
pub mod catalog;
pub mod cli;
pub mod clusters;
pub mod commands;
pub mod control_plane;
pub mod fleet;
pub mod http;
pub mod jobs;
pub(crate) mod metrics;
pub(crate) mod output;
pub(crate) mod plans;
pub mod settings;
pub mod tenant_migrations;
pub mod tenants;
