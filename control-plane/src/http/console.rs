//! The web console at `/console`: four static files compiled into the binary (no build step,
//! nothing fetched at run time), over the operator API with the signed-in operator's token.
//! The page itself needs no token; every piece of data it shows does.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../console/index.html");
const LIB: &str = include_str!("../../console/lib.js");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");

/// Only this origin's script and style, no inline code, no framing, no form posts elsewhere:
/// text from the API can never run as script even if it were rendered as HTML.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary: revalidate rather than cache across upgrades.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `/console` (and `/console/`), its scripts and its style.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    let index = || async { asset(INDEX, "text/html; charset=utf-8") };
    axum::Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/lib.js", get(|| async { asset(LIB, "text/javascript; charset=utf-8") }))
        .route("/console/console.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/console/console.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
}
