//! Talking to the HTTP services `tenantctl` uses (the routers' admin listeners, an operator
//! API): their base URLs, and a client that follows no redirect and reads bounded answers.

/// Whether a base URL may be plain `http://` to another machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plaintext {
    /// Yes (the routers' admin listeners, on a private network).
    Anywhere,
    /// Only to this machine (what carries a token must not cross a network in clear).
    LoopbackOnly,
}

/// `raw` as a base URL: `http` or `https`, a host, no user or password (they would be shown
/// and logged with it), no query or fragment, no trailing slash; `host:port` alone means
/// `http://host:port`. The error says what was expected, with `example`, and never repeats
/// `raw` (it may hold a password).
pub(crate) fn parse_base_url(
    raw: &str,
    what: &str,
    example: &str,
    plaintext: Plaintext,
) -> Result<String, String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") { raw.to_owned() } else { format!("http://{raw}") };
    let Ok(url) = reqwest::Url::parse(&with_scheme) else {
        return Err(format!("expected {what} such as {example}"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{what} takes no user or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{what} takes no query or fragment"));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("expected {what} such as {example}"));
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if url.scheme() == "http" && plaintext == Plaintext::LoopbackOnly && !loopback {
        return Err(format!("{what} must be https:// (http:// only to this machine): a token would cross the network in clear"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A client that follows no redirect: the services never send one, and following it would let
/// whoever answers in their place point this process elsewhere (or turn a POST into a GET).
pub(crate) fn client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build()
}

/// The response's body, refused past `max` bytes.
pub(crate) async fn read_at_most(mut response: reqwest::Response, max: u64) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|length| length > max) {
        return Err(format!("answered more than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > max {
            return Err(format!("answered more than {max} bytes"));
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::{parse_base_url, Plaintext};

    #[test]
    fn base_urls_are_plain_and_tokens_cross_networks_encrypted() {
        let api =
            |raw| parse_base_url(raw, "the API's URL", "https://ops.example.com", Plaintext::LoopbackOnly);
        assert_eq!(api("https://ops.example.com/").unwrap(), "https://ops.example.com");
        assert_eq!(api("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(api("localhost:8080").unwrap(), "http://localhost:8080");
        assert!(api("http://ops.example.com").unwrap_err().contains("https"));
        let leaked = api("https://u:hunter2@ops.example.com").unwrap_err();
        assert!(!leaked.contains("hunter2"), "{leaked}");
        assert!(api("https://ops.example.com/?a=b").is_err() && api("https://ops.example.com/#x").is_err());
        assert!(parse_base_url("http://10.0.1.5:9091", "x", "y", Plaintext::Anywhere).is_ok());
        for bad in ["", "ftp://r:21", "http://"] {
            assert!(parse_base_url(bad, "x", "y", Plaintext::Anywhere).is_err(), "{bad:?}");
        }
    }
}
