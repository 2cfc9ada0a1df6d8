//! The application behind the router (`ROUTER_UPSTREAM`): where the reverse proxy
//! ([`crate::proxy`]) sends requests, through one pooled client, how long it waits, and why
//! forwarding can fail.

use axum::body::Body;
use axum::http::Uri;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::time::Duration;

/// Where requests go, and how.
pub struct Upstream {
    pub(crate) client: Client<HttpConnector, Body>,
    pub(crate) base: Uri,
    pub(crate) timeout: Duration,
}

impl Upstream {
    pub fn new(base: Uri, timeout: Duration) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self { client, base, timeout }
    }
}

/// Why forwarding failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("no such endpoint")]
    NotConfigured,
    #[error("the application is unreachable")]
    Unreachable,
    #[error("the application did not answer in time")]
    Timeout,
}
