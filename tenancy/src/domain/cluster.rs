use std::fmt;

/// The name of a PostgreSQL cluster that holds tenants (`default` is the catalog's own server).
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ClusterName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster name must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter; got {0:?}")]
pub struct ClusterNameError(pub String);

impl ClusterName {
    pub const DEFAULT: &'static str = "default";

    pub fn parse(raw: &str) -> Result<Self, ClusterNameError> {
        let ok = !raw.is_empty()
            && raw.len() <= 63
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ClusterNameError(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterName({})", self.0)
    }
}

impl std::str::FromStr for ClusterName {
    type Err = ClusterNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterName;

    #[test]
    fn cluster_names() {
        assert!(ClusterName::parse("eu-west-1").is_ok());
        assert!(ClusterName::parse("EU").is_err());
        assert!(ClusterName::parse("1a").is_err());
        assert!(ClusterName::parse("a/b").is_err());
    }
}
