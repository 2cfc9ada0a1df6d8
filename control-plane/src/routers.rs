//! The routers' admin listeners (`GET /pools`, `GET /stats`), asked at once: for `tenantctl
//! routers pools|stats` and the console. A router that does not answer is reported on its own;
//! the others' answers still count.

use serde_json::Value;
use std::time::Duration;
use tenancy::domain::Slug;

/// Why a router gave no answer.
#[derive(Debug, Clone)]
pub(crate) struct AdminError {
    /// `router_timeout`, `router_unreachable` or `router_error`.
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// One router's answer (its JSON), or why there is none.
pub(crate) struct Answer {
    pub(crate) router: String,
    pub(crate) body: Result<Value, AdminError>,
}

/// A router's admin URL as given (`http://10.0.1.5:9091`, or `10.0.1.5:9091`), without a
/// trailing slash (a clap value parser).
pub(crate) fn admin_url(raw: &str) -> Result<String, String> {
    crate::http_client::parse_base_url(
        raw,
        "a router's admin URL",
        "http://10.0.1.5:9091",
        crate::http_client::Plaintext::Anywhere,
    )
}

/// Asks every router for `path` (about `tenants` only, when any is given), giving up on each
/// after `timeout`.
pub(crate) async fn ask(
    routers: &[String],
    path: &str,
    tenants: &[Slug],
    timeout: Duration,
) -> Result<Vec<Answer>, reqwest::Error> {
    let http = crate::http_client::client(timeout)?;
    let filter = tenants.iter().map(Slug::as_str).collect::<Vec<_>>().join(",");
    let asked = routers.iter().map(|router| {
        let request = http.get(format!("{router}/{path}"));
        let request = if filter.is_empty() { request } else { request.query(&[("tenant", filter.as_str())]) };
        async move {
            let body = fetch(request, timeout).await;
            Answer { router: router.clone(), body }
        }
    });
    Ok(futures::future::join_all(asked).await)
}

/// The largest answer read from a router (a router with thousands of pools answers a few MiB).
const MAX_ANSWER_BYTES: u64 = 16 << 20;

async fn fetch(request: reqwest::RequestBuilder, timeout: Duration) -> Result<Value, AdminError> {
    let unavailable = |code, message: String| AdminError { code, message };
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            unavailable("router_timeout", format!("no answer within {}", humantime::format_duration(timeout)))
        } else {
            unavailable("router_unreachable", format!("could not reach it: {}", cause(&e)))
        }
    })?;
    let status = response.status();
    let body = crate::http_client::read_at_most(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| unavailable("router_error", e))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|error| error["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(unavailable("router_error", format!("answered {status}: {message}")));
    }
    serde_json::from_slice(&body)
        .map_err(|e| unavailable("router_error", format!("answered something other than JSON: {e}")))
}

/// The innermost cause of a request's failure (e.g. "Connection refused"), after its summary.
fn cause(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    message
}

/// `{"routers": [{"router": <url>, …its answer}, {"router": <url>, "error": {…}}]}`, and
/// whether every router answered.
pub(crate) fn answers_json(answers: Vec<Answer>) -> (Value, bool) {
    let mut all_answered = true;
    let routers: Vec<Value> = answers
        .into_iter()
        .map(|Answer { router, body }| {
            let mut entry = serde_json::Map::new();
            match body {
                Ok(Value::Object(answer)) => entry.extend(answer),
                Ok(other) => {
                    entry.insert("answer".into(), other);
                }
                Err(error) => {
                    all_answered = false;
                    entry.insert(
                        "error".into(),
                        serde_json::json!({ "code": error.code, "message": error.message }),
                    );
                }
            }
            // Last: an answer's own `router` key cannot pass for another router.
            entry.insert("router".into(), router.into());
            Value::Object(entry)
        })
        .collect();
    (serde_json::json!({ "routers": routers }), all_answered)
}

#[cfg(test)]
mod tests {
    use super::admin_url;

    #[test]
    fn a_router_is_named_by_its_admin_url_or_host_and_port() {
        assert_eq!(admin_url("10.0.1.5:9091").unwrap(), "http://10.0.1.5:9091");
        assert_eq!(admin_url("http://router-a:9091/").unwrap(), "http://router-a:9091");
        assert_eq!(admin_url(" https://r.internal ").unwrap(), "https://r.internal");
        for bad in ["", "ftp://r:21", "http://", "http://user:secret@r:9091"] {
            assert!(admin_url(bad).is_err(), "{bad:?}");
        }
    }
}
