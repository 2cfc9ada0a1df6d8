//! Tenant slugs: the DNS label that names a tenant (`acme` in `acme.app.example.com`).

use std::fmt;

/// Slugs that can never name a tenant: host names the product itself needs, and names that
/// would be confusing in a URL or collide with our own roles. The only list of its kind.
pub const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "api",
    "app",
    "apps",
    "assets",
    "auth",
    "billing",
    "blog",
    "cdn",
    "console",
    "control",
    "dashboard",
    "dev",
    "docs",
    "ftp",
    "help",
    "imap",
    "internal",
    "login",
    "mail",
    "metrics",
    "mx",
    "ns1",
    "ns2",
    "owner",
    "pop",
    "postgres",
    "public",
    "root",
    "router",
    "smtp",
    "sso",
    "staging",
    "static",
    "status",
    "support",
    "system",
    "template",
    "tenants",
    "test",
    "webhooks",
    "www",
];

const MIN_LEN: usize = 3;
const MAX_LEN: usize = 63;

/// A tenant's slug: `^[a-z][a-z0-9-]{1,61}[a-z0-9]$` and not in [`RESERVED_SLUGS`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

/// Why a string is not a valid slug. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("slug must be {MIN_LEN} to {MAX_LEN} characters long, got {0}")]
    Length(usize),
    #[error("slug must start with a lower-case letter (a-z)")]
    Start,
    #[error("slug must end with a lower-case letter or a digit")]
    End,
    #[error("slug may contain only lower-case letters, digits and '-'; found {0:?}")]
    Character(char),
    #[error("slug {0:?} is reserved")]
    Reserved(String),
}

impl Slug {
    /// Validates `raw` as a slug.
    pub fn parse(raw: &str) -> Result<Self, SlugError> {
        let len = raw.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(SlugError::Length(len));
        }
        if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(SlugError::Character(bad));
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(SlugError::Start);
        }
        if raw.ends_with('-') {
            return Err(SlugError::End);
        }
        if RESERVED_SLUGS.contains(&raw) {
            return Err(SlugError::Reserved(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slug with `-` replaced by `_`: a valid unquoted SQL identifier fragment. The mapping
    /// is one-to-one because slugs never contain `_`.
    pub(crate) fn as_identifier_fragment(&self) -> String {
        self.0.replace('-', "_")
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slug({})", self.0)
    }
}

impl std::str::FromStr for Slug {
    type Err = SlugError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_slugs() {
        for ok in ["acme", "acme-corp", "a1b", "abc", &"a".repeat(63)] {
            assert_eq!(Slug::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_slugs_with_the_reason() {
        assert_eq!(Slug::parse("Acme!"), Err(SlugError::Character('A')));
        assert_eq!(Slug::parse("acme!"), Err(SlugError::Character('!')));
        assert_eq!(Slug::parse("-a"), Err(SlugError::Length(2)));
        assert_eq!(Slug::parse("-ab"), Err(SlugError::Start));
        assert_eq!(Slug::parse("1ab"), Err(SlugError::Start));
        assert_eq!(Slug::parse("ab-"), Err(SlugError::End));
        assert_eq!(Slug::parse(&"a".repeat(70)), Err(SlugError::Length(70)));
        assert_eq!(Slug::parse("www"), Err(SlugError::Reserved("www".into())));
        assert_eq!(Slug::parse("acme_corp"), Err(SlugError::Character('_')));
        assert_eq!(Slug::parse("ÿacme"), Err(SlugError::Character('ÿ')));
    }

    #[test]
    fn error_messages_say_why() {
        let msg = Slug::parse("www").unwrap_err().to_string();
        assert!(msg.contains("reserved"), "{msg}");
        let msg = Slug::parse(&"a".repeat(70)).unwrap_err().to_string();
        assert!(msg.contains("3 to 63") && msg.contains("70"), "{msg}");
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_documented_pattern(raw in "[a-z0-9A-Z_.!-]{0,70}") {
            let pattern_ok = raw.len() >= 3
                && raw.len() <= 63
                && raw.starts_with(|c: char| c.is_ascii_lowercase())
                && raw.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !RESERVED_SLUGS.contains(&raw.as_str());
            prop_assert_eq!(Slug::parse(&raw).is_ok(), pattern_ok);
        }

        #[test]
        fn identifier_fragment_is_injective(a in "[a-z][a-z0-9-]{1,20}[a-z0-9]", b in "[a-z][a-z0-9-]{1,20}[a-z0-9]") {
            if let (Ok(sa), Ok(sb)) = (Slug::parse(&a), Slug::parse(&b)) {
                prop_assert_eq!(sa == sb, sa.as_identifier_fragment() == sb.as_identifier_fragment());
            }
        }
    }
}
