//! End-to-end tests: `tenantctl` and `tenant-router` together, in-process on port 0, against the
//! harness's real PostgreSQL (password-checked), Redis and moto.

// A failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod billing;
mod budget;
mod cli_habits;
mod clusters;
mod console;
mod contexts;
mod degraded;
mod deletion;
mod domains;
mod embed;
mod identity;
mod lifecycle;
mod moves;
mod neon_driver;
mod observability;
mod operator_api;
mod operator_tokens;
mod pg_tls;
mod pool_view;
mod postgres_clients;
mod postgres_load;
mod postgres_protocol;
mod postgres_websocket;
mod proxy;
mod rate_limits;
mod request_hygiene;
mod session_reset;
mod slice;
mod slow_clients;
mod sql_over_http;
mod templates;
mod tenant_attacks;
mod webhook_send;
