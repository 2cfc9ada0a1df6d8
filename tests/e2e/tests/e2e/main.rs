//! End-to-end tests: `tenantctl` and `tenant-router` together, in-process on port 0, against the
//! harness's real PostgreSQL (password-checked), Redis and moto.

mod slice;
mod sql_over_http;
