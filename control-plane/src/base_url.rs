//! The base URL of an HTTP service `tenantctl` talks to (a router's admin listener, an operator
//! API): `http` or `https`, a host, no user or password in it (they would be shown and logged
//! with it), no trailing slash; `host:port` alone means `http://host:port`.

/// `raw` as a base URL; the error says what was expected, with `example`.
pub(crate) fn parse(raw: &str, what: &str, example: &str) -> Result<String, String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") { raw.to_owned() } else { format!("http://{raw}") };
    match reqwest::Url::parse(&with_scheme) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            Err(format!("{what} takes no user or password"))
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(url.as_str().trim_end_matches('/').to_owned())
        }
        _ => Err(format!("expected {what} such as {example}, got {raw:?}")),
    }
}
