//! PostgreSQL identifiers derived from tenants: schema, role and database names.
//!
//! They are built only from validated parts (a [`Slug`], a validated prefix), limited to
//! `[a-z0-9_]`, at most 63 bytes, and always rendered quoted with [`quote_ident`].

use super::Slug;
use sha2::{Digest, Sha256};
use std::fmt;

/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// Why a string is not an identifier we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error(
        "{what} must be 1 to 63 characters of a-z, 0-9 and '_', starting with a letter or '_'; got {value:?}"
    )]
    Invalid { what: &'static str, value: String },
}

/// Quotes an identifier for SQL (`"name"`, doubling any `"`).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn is_identifier(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_IDENT
        && raw.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `prefix` + `fragment`, shortened with a hash of the fragment when the result would exceed
/// PostgreSQL's limit, so two different fragments never map to the same name.
fn bounded(prefix: &str, fragment: &str) -> String {
    bounded_to(prefix, fragment, MAX_IDENT)
}

/// [`bounded`], to at most `max` bytes.
fn bounded_to(prefix: &str, fragment: &str, max: usize) -> String {
    let full = format!("{prefix}{fragment}");
    if full.len() <= max {
        return full;
    }
    let digest = hex::encode(&Sha256::digest(fragment.as_bytes())[..4]);
    let keep = max - prefix.len() - digest.len() - 1;
    format!("{prefix}{}_{digest}", &fragment[..keep])
}

macro_rules! identifier_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates a name read back from the catalog or given by an operator.
            pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
                if is_identifier(raw) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(IdentifierError::Invalid { what: $what, value: raw.to_owned() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name quoted for SQL.
            pub fn quoted(&self) -> String {
                quote_ident(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

identifier_type!(
    /// The schema that holds one tenant's tables: `t_<slug>`.
    SchemaName,
    "schema name"
);
identifier_type!(
    /// A PostgreSQL role: a tenant's runtime login role (`<prefix>_<slug>`) or the owner role
    /// that owns tenant schemas and runs migrations (`<prefix>_owner`).
    RoleName,
    "role name"
);
identifier_type!(
    /// The database that holds a tenant with `database` isolation: `t_<slug>`.
    DatabaseName,
    "database name"
);

/// `prefix` + `fragment` + `_<kind><move>_`: the name of what move `move_id` creates for a
/// tenant (`m`) or gives what it leaves behind (`r`). Never a name of a tenant that has not
/// moved: those end with a letter or digit (a slug never ends with '-'; [`bounded`] ends with
/// hex). Two moves' names differ in their ids.
fn for_move(prefix: &str, fragment: &str, kind: char, move_id: i64) -> String {
    let suffix = format!("_{kind}{move_id}_");
    format!("{}{suffix}", bounded_to(prefix, fragment, MAX_IDENT - suffix.len()))
}

impl SchemaName {
    pub fn for_tenant(slug: &Slug) -> Self {
        Self(bounded("t_", &slug.as_identifier_fragment()))
    }

    /// The tenant's schema on the shared database of the cluster a move takes it to.
    pub fn for_move(slug: &Slug, move_id: i64) -> Self {
        Self(for_move("t_", &slug.as_identifier_fragment(), 'm', move_id))
    }

    /// The name a moved tenant's old schema (in a shared database) gets at the switch, so that
    /// the tenant may move back there before the old copy is dropped.
    pub fn retired(slug: &Slug, move_id: i64) -> Self {
        Self(for_move("t_", &slug.as_identifier_fragment(), 'r', move_id))
    }
}

impl DatabaseName {
    /// The database of a tenant with `database` isolation: `<prefix>_<slug>` (databases, like
    /// roles, are cluster-wide, so they carry the deployment's prefix).
    pub fn for_tenant(prefix: &str, slug: &Slug) -> Self {
        Self(bounded(&format!("{prefix}_"), &slug.as_identifier_fragment()))
    }

    /// The tenant's own database that a move creates.
    pub fn for_move(prefix: &str, slug: &Slug, move_id: i64) -> Self {
        Self(for_move(&format!("{prefix}_"), &slug.as_identifier_fragment(), 'm', move_id))
    }

    /// The migrated template that tenant databases are cloned from: `<prefix>_template`
    /// (`template` is a reserved slug, so no tenant database has this name).
    pub fn template(prefix: &str) -> Self {
        Self(format!("{prefix}_template"))
    }

    /// The database of a cluster that holds its schema-isolated tenants, one schema each:
    /// `<prefix>_tenants` (`tenants` is a reserved slug). Never the catalog's database, nor
    /// the cluster's control database.
    pub fn shared_tenants(prefix: &str) -> Self {
        Self(format!("{prefix}_tenants"))
    }

    /// The database of a cluster where the control plane takes its locks (migrations of a
    /// tenant, the template, role DDL): `<prefix>_control` (`control` is a reserved slug). No
    /// tenant role may connect to it, so no tenant can hold or wait on those locks.
    pub fn control(prefix: &str) -> Self {
        Self(format!("{prefix}_control"))
    }
}

impl SchemaName {
    /// The schema inside a tenant's own database (the same in every one: they are clones).
    pub fn database_tenant() -> Self {
        Self("app".to_owned())
    }
}

impl RoleName {
    /// Validates a role prefix (`TENANT_ROLE_PREFIX`): roles are cluster-wide, so two
    /// deployments (or two tests) on one PostgreSQL server use different prefixes.
    pub fn check_prefix(prefix: &str) -> Result<(), IdentifierError> {
        // No '_' in the prefix: then `<prefix>_owner` can never equal another deployment's
        // `<prefix2>_<slug>`.
        let valid = !prefix.is_empty()
            && prefix.len() <= 24
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if valid {
            Ok(())
        } else {
            Err(IdentifierError::Invalid {
                what: "role prefix (1 to 24 characters of a-z and 0-9, starting with a letter)",
                value: prefix.to_owned(),
            })
        }
    }

    /// The runtime login role of a tenant. Never equal to [`RoleName::owner`] because `owner` is a
    /// reserved slug.
    pub fn for_tenant(prefix: &str, slug: &Slug) -> Self {
        Self(bounded(&format!("{prefix}_"), &slug.as_identifier_fragment()))
    }

    /// The name a move creates the tenant's runtime role under where it goes; at the switch it
    /// takes the tenant's own name (and password), so clients log in as before.
    pub fn for_move(prefix: &str, slug: &Slug, move_id: i64) -> Self {
        Self(for_move(&format!("{prefix}_"), &slug.as_identifier_fragment(), 'm', move_id))
    }

    /// The name the tenant's old runtime role gets at a move's switch (unable to log in, kept
    /// with the old copy until that is dropped).
    pub fn retired(prefix: &str, slug: &Slug, move_id: i64) -> Self {
        Self(for_move(&format!("{prefix}_"), &slug.as_identifier_fragment(), 'r', move_id))
    }

    /// The tenant's read-only login role, derived from its runtime role `<prefix>_<rest>`:
    /// `<prefix>__ro_<rest>` (bounded like every name). It can never equal a runtime role, nor
    /// the owner, router or group role, of this or any other deployment: the prefix has no '_',
    /// so a role's first '_' ends its prefix; in every other name a letter follows it (a slug,
    /// and so its fragment, starts with a letter; `owner`, `router`, `tenants` do too), in a
    /// reader's name another '_'. Two readers are equal only if their runtime roles are
    /// ([`bounded`] keeps distinct fragments distinct).
    pub fn reader(&self) -> Self {
        let (prefix, rest) = self.0.split_once('_').unwrap_or((self.0.as_str(), ""));
        Self(bounded(&format!("{prefix}__ro_"), rest))
    }

    /// The role that owns every tenant schema of a deployment and runs its migrations.
    pub fn owner(prefix: &str) -> Self {
        Self(format!("{prefix}_owner"))
    }

    /// The role routers read the catalog with: routing records and, with the `local` secrets
    /// backend, tenants' encrypted secrets; nothing else (`router` is a reserved slug).
    pub fn router(prefix: &str) -> Self {
        Self(format!("{prefix}_router"))
    }

    /// The group role every schema-isolated tenant's role is a member of, which holds `CONNECT`
    /// on the shared database: one privilege in the database's ACL instead of one per tenant
    /// (each grant rewrites that ACL, so per-tenant grants made provisioning slower with every
    /// tenant). Never a tenant's role: `tenants` is a reserved slug.
    pub fn tenants_group(prefix: &str) -> Self {
        Self(format!("{prefix}_tenants"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_slug() {
        let slug = Slug::parse("acme-corp").unwrap();
        assert_eq!(SchemaName::for_tenant(&slug).as_str(), "t_acme_corp");
        assert_eq!(RoleName::for_tenant("tenant", &slug).as_str(), "tenant_acme_corp");
        assert_eq!(RoleName::owner("tenant").as_str(), "tenant_owner");
        assert_eq!(SchemaName::for_tenant(&slug).quoted(), "\"t_acme_corp\"");
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let a = Slug::parse(&format!("{}a", "x".repeat(62))).unwrap();
        let b = Slug::parse(&format!("{}b", "x".repeat(62))).unwrap();
        let (ra, rb) = (RoleName::for_tenant("prefix", &a), RoleName::for_tenant("prefix", &b));
        assert!(ra.as_str().len() <= 63 && rb.as_str().len() <= 63);
        assert_ne!(ra, rb);
        assert!(RoleName::parse(ra.as_str()).is_ok());
        let (sa, sb) = (SchemaName::for_tenant(&a), SchemaName::for_tenant(&b));
        assert_ne!(sa, sb);
        assert!(sa.as_str().len() <= 63);
    }

    #[test]
    fn a_moves_names_are_its_own() {
        let slug = Slug::parse("acme-corp").unwrap();
        let role = RoleName::for_move("tenant", &slug, 42);
        assert_eq!(role.as_str(), "tenant_acme_corp_m42_");
        assert_eq!(role.reader().as_str(), "tenant__ro_acme_corp_m42_");
        assert_eq!(SchemaName::for_move(&slug, 7).as_str(), "t_acme_corp_m7_");
        assert_eq!(DatabaseName::for_move("tenant", &slug, 7).as_str(), "tenant_acme_corp_m7_");
        assert_eq!(RoleName::retired("tenant", &slug, 7).as_str(), "tenant_acme_corp_r7_");
        // Never a tenant's own name: a slug cannot end with '-'.
        let lookalike = Slug::parse("acme-corp-m42").unwrap();
        assert_ne!(RoleName::for_tenant("tenant", &lookalike), role);
        // Long slugs: bounded, the move's id kept whole, distinct slugs still distinct.
        let a = Slug::parse(&format!("{}a", "x".repeat(62))).unwrap();
        let b = Slug::parse(&format!("{}b", "x".repeat(62))).unwrap();
        let (ra, rb) =
            (RoleName::for_move("prefix", &a, i64::MAX), RoleName::for_move("prefix", &b, i64::MAX));
        assert!(ra.as_str().len() <= 63 && ra.as_str().ends_with(&format!("_m{}_", i64::MAX)));
        assert_ne!(ra, rb);
        assert!(RoleName::parse(ra.as_str()).is_ok() && RoleName::parse(ra.reader().as_str()).is_ok());
    }

    #[test]
    fn parse_refuses_what_would_need_unusual_quoting() {
        assert!(SchemaName::parse("t_acme").is_ok());
        assert!(SchemaName::parse("t\"; drop table x; --").is_err());
        assert!(SchemaName::parse("T_ACME").is_err());
        assert!(SchemaName::parse("").is_err());
        assert!(SchemaName::parse(&"a".repeat(64)).is_err());
        assert!(RoleName::check_prefix("tenant").is_ok());
        assert!(RoleName::check_prefix("tenant_").is_err());
        assert!(RoleName::check_prefix("tenant_x").is_err(), "would collide with tenant_<slug>");
        assert!(RoleName::check_prefix("Bad").is_err());
    }

    #[test]
    fn reader_roles_have_their_own_names() {
        let slug = Slug::parse("acme-corp").unwrap();
        let runtime = RoleName::for_tenant("tenant", &slug);
        assert_eq!(runtime.reader().as_str(), "tenant__ro_acme_corp");
        // The slug `ro-acme-corp` does not make a runtime role of that name.
        let lookalike = RoleName::for_tenant("tenant", &Slug::parse("ro-acme-corp").unwrap());
        assert_eq!(lookalike.as_str(), "tenant_ro_acme_corp");
        assert_ne!(lookalike, runtime.reader());
        let long = RoleName::for_tenant("abcdefghijklmnopqrstuvwx", &Slug::parse(&"y".repeat(63)).unwrap());
        assert!(long.reader().as_str().len() <= 63);
        assert!(RoleName::parse(long.reader().as_str()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn a_reader_role_is_nobody_elses_role(
            a in "[a-z][a-z0-9-]{1,61}[a-z0-9]",
            b in "[a-z][a-z0-9-]{1,61}[a-z0-9]",
            pa in "[a-z][a-z0-9]{0,23}",
            pb in "[a-z][a-z0-9]{0,23}",
        ) {
            let (Ok(sa), Ok(sb)) = (Slug::parse(&a), Slug::parse(&b)) else { return Ok(()) };
            let reader = RoleName::for_tenant(&pa, &sa).reader();
            proptest::prop_assert!(RoleName::parse(reader.as_str()).is_ok());
            // Never another tenant's (or the same tenant's) runtime role, nor a shared role.
            proptest::prop_assert_ne!(&reader, &RoleName::for_tenant(&pb, &sb));
            proptest::prop_assert_ne!(&reader, &RoleName::for_tenant(&pa, &sa));
            for shared in [RoleName::owner(&pb), RoleName::router(&pb), RoleName::tenants_group(&pb)] {
                proptest::prop_assert_ne!(&reader, &shared);
            }
            // Another tenant's reader only if it is the same tenant.
            let other = RoleName::for_tenant(&pb, &sb).reader();
            proptest::prop_assert_eq!(reader == other, pa == pb && sa == sb);
        }
    }

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
