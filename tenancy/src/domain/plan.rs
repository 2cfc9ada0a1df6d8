//! Plan names (`starter`, `pro`, `enterprise`, …). Which plans exist is decided by the templates
//! in `tenant-templates/`; this type only guarantees the name is well-formed.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PlanName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan name must be 1 to 32 characters of a-z, 0-9, '-' and '_', starting with a letter; got {0:?}")]
pub struct PlanNameError(pub String);

impl PlanName {
    pub fn parse(raw: &str) -> Result<Self, PlanNameError> {
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(PlanNameError(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for PlanName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <String as serde::Deserialize>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PlanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PlanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlanName({})", self.0)
    }
}

impl std::str::FromStr for PlanName {
    type Err = PlanNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names() {
        assert!(PlanName::parse("starter").is_ok());
        assert!(PlanName::parse("pro_2024").is_ok());
        assert!(PlanName::parse("../etc/passwd").is_err());
        assert!(PlanName::parse("").is_err());
        assert!(PlanName::parse("Pro").is_err());
    }
}
