//! Host names: the base domain tenants live under, and normalisation of a request's `Host`.

use std::fmt;

const MAX_HOST: usize = 253;

/// Why a host name was refused. Messages are safe to return to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host is empty")]
    Empty,
    #[error("host is longer than {MAX_HOST} characters")]
    TooLong,
    #[error("host has an invalid port")]
    Port,
    #[error("host label {0:?} is not a valid DNS label")]
    Label(String),
    #[error("IP addresses are not tenant hosts")]
    IpLiteral,
}

/// Lower-cases `raw`, removes a `:port` and a trailing dot, and checks that what is left is a
/// DNS name made of valid labels.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    if raw.len() > MAX_HOST + 7 {
        return Err(HostError::TooLong);
    }
    if raw.starts_with('[') {
        return Err(HostError::IpLiteral);
    }
    let name = match raw.rsplit_once(':') {
        Some((name, port)) => {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HostError::Port);
            }
            name
        }
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_HOST {
        return Err(HostError::TooLong);
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(HostError::Label(label.chars().take(64).collect()));
        }
    }
    if name.split('.').all(|label| label.bytes().all(|b| b.is_ascii_digit())) {
        return Err(HostError::IpLiteral);
    }
    Ok(name)
}

/// The domain under which every tenant has a subdomain (`TENANT_BASE_DOMAIN`, e.g.
/// `app.example.com`): `acme.app.example.com` is tenant `acme`.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseDomain(String);

impl BaseDomain {
    pub fn parse(raw: &str) -> Result<Self, HostError> {
        if raw.contains(':') {
            return Err(HostError::Port);
        }
        normalize_host(raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The single label in front of the base domain, if `host` (already normalised) is a direct
    /// subdomain of it: `acme` for `acme.app.example.com`; `None` for `a.b.app.example.com`,
    /// `app.example.com` or `other.com`.
    pub fn subdomain_of<'h>(&self, host: &'h str) -> Option<&'h str> {
        let label = host.strip_suffix(self.0.as_str())?.strip_suffix('.')?;
        (!label.is_empty() && !label.contains('.')).then_some(label)
    }

    /// `<slug>.<base domain>`.
    pub fn host_for(&self, slug: &super::Slug) -> String {
        format!("{slug}.{}", self.0)
    }
}

impl fmt::Display for BaseDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BaseDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseDomain({})", self.0)
    }
}

impl std::str::FromStr for BaseDomain {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_port_and_trailing_dot() {
        assert_eq!(normalize_host("ACME.App.Localhost:8081").unwrap(), "acme.app.localhost");
        assert_eq!(normalize_host("acme.app.localhost.").unwrap(), "acme.app.localhost");
        assert_eq!(normalize_host("acme.app.localhost.:443").unwrap(), "acme.app.localhost");
    }

    #[test]
    fn refuses_hostile_hosts() {
        assert_eq!(normalize_host(""), Err(HostError::Empty));
        assert_eq!(normalize_host(":80"), Err(HostError::Empty));
        assert_eq!(normalize_host("a..b"), Err(HostError::Label(String::new())));
        assert!(normalize_host("acme.app.localhost:80:80").is_err());
        assert!(matches!(normalize_host("acme.app.localhost:abc"), Err(HostError::Port)));
        assert!(matches!(normalize_host("ac me.x"), Err(HostError::Label(_))));
        assert!(matches!(normalize_host("acme/../x"), Err(HostError::Label(_))));
        assert!(matches!(normalize_host("-acme.x"), Err(HostError::Label(_))));
        assert_eq!(normalize_host("127.0.0.1:80"), Err(HostError::IpLiteral));
        assert_eq!(normalize_host("[::1]:80"), Err(HostError::IpLiteral));
        assert_eq!(normalize_host(&"a.".repeat(200)), Err(HostError::TooLong));
    }

    #[test]
    fn subdomain_of_base() {
        let base = BaseDomain::parse("app.localhost").unwrap();
        assert_eq!(base.subdomain_of("acme.app.localhost"), Some("acme"));
        assert_eq!(base.subdomain_of("a.b.app.localhost"), None);
        assert_eq!(base.subdomain_of("app.localhost"), None);
        assert_eq!(base.subdomain_of("xapp.localhost"), None);
        assert_eq!(base.subdomain_of("acme.other.com"), None);
    }

    proptest! {
        #[test]
        fn normalize_never_panics_and_is_idempotent(raw in "\\PC{0,300}") {
            if let Ok(host) = normalize_host(&raw) {
                prop_assert_eq!(normalize_host(&host), Ok(host.clone()));
                prop_assert!(host.len() <= MAX_HOST);
            }
        }
    }
}
