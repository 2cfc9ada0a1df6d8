//! The control plane of schema-per-tenant PostgreSQL: the catalog, tenant provisioning (a
//! durable, idempotent state machine run by job workers), billing webhooks, fleet migrations and
//! the `tenantctl` command line.
//!
//! A map, from the edges in:
//!
//! - **Edges.** [`cli`] (the command line's shape; `--json` is one global flag) and [`commands`]
//!   (what each command does, and the one mapping of errors to exit codes); [`http`] (the
//!   operator API, the billing webhook, health and metrics, and the one mapping of errors to
//!   HTTP statuses). Both are thin: they parse, call the tenant service or a workflow, render.
//! - **The tenant service.** [`tenants`]: create, the lifecycle operations (suspend, resume,
//!   plan, credentials, delete/restore, retry: a checked transition), config and custom domains.
//!   Each request is one catalog transaction (composable through its `*_in(tx, …)` form) that
//!   returns what to announce after commit: the workers to wake, the routers to tell.
//! - **Workflows.** [`billing`] (signed events, turned into tenant requests within the event's
//!   own transaction), [`fleet`] (migration runs over many tenants, and their plan).
//! - **Work after the request.** [`jobs`]: the kinds, the runner that claims and retries them,
//!   and one handler per kind ([`jobs::provision`], [`jobs::lifecycle`], billing events) that
//!   makes databases match the catalog.
//! - **Where tenants live.** [`clusters`]: registration, placement and each cluster's handle
//!   (databases, roles, pools); [`tenant_migrations`] (migrating one tenant schema) and
//!   [`plans`] (plan templates).
//! - **State.** [`catalog`]: the catalog's migrations and every query on its tables, one module
//!   per table or aggregate, each function taking any client or transaction;
//!   [`control_plane::ControlPlane`]: what every operation is given (catalog pool, clusters,
//!   secret store, Redis publisher, settings).
//! - Across all: [`tenancy::error::ErrorKind`], the kind every operation error carries.
//!
//! Below these modules everything is `pub(crate)` unless the tests or benchmarks use it.

pub mod billing;
pub mod catalog;
pub mod cli;
pub mod clusters;
pub mod commands;
pub(crate) mod contexts;
pub mod control_plane;
pub mod fleet;
pub mod http;
pub(crate) mod http_client;
pub mod jobs;
pub(crate) mod metrics;
pub mod moves;
pub(crate) mod output;
pub(crate) mod plans;
pub mod profile;
pub(crate) mod routers;
pub mod settings;
pub mod tenant_migrations;
pub mod tenants;
