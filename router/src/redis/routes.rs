//! The second cache layer: routing records in Redis (`<REDIS_KEY_PREFIX>route:<slug>`), shared by
//! every router, written on a catalog hit and deleted by the control plane on every change.
//! Any failure falls through to the catalog.
//!
//! Redis is not trusted with who a tenant is: a record is signed by the router that wrote it
//! (HMAC-SHA256 with `ROUTER_RECORDS_KEY`, which every router of a deployment shares) and
//! carries its expiry. A record that fails the signature, has expired, or names another tenant
//! than the key it is stored under is ignored, counted
//! (`tenant_router_shared_records_rejected_total`) and read from the catalog instead, so
//! write access to Redis does not let anyone route a tenant's requests to another tenant's
//! role.

use super::RedisLink;
use hmac::{Hmac, Mac};
use prometheus_client::metrics::counter::Counter;
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenancy::catalog::TenantRecord;
use tenancy::domain::Slug;
use tenancy::invalidation::RedisNames;
use tenancy::secret::Secret;

/// The first part of every record this version writes.
const VERSION: &str = "v1";

/// The shortest `ROUTER_RECORDS_KEY` accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The key routing records are signed with.
#[derive(Clone)]
pub struct RecordKey(Secret);

impl RecordKey {
    /// A key of at least [`MIN_KEY_LEN`] bytes.
    pub fn new(key: Secret) -> Result<Self, String> {
        if key.expose().len() < MIN_KEY_LEN {
            return Err(format!("ROUTER_RECORDS_KEY must be at least {MIN_KEY_LEN} bytes"));
        }
        Ok(Self(key))
    }

    fn mac(&self, expires: u64, json: &str) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC: this cannot fail.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.expose().as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(VERSION.as_bytes());
        mac.update(b".");
        mac.update(expires.to_string().as_bytes());
        mac.update(b".");
        mac.update(json.as_bytes());
        mac
    }

    /// `v1.<expires>.<signature>.<json>`.
    fn seal(&self, expires: u64, json: &str) -> String {
        let signature = hex::encode(self.mac(expires, json).finalize().into_bytes());
        format!("{VERSION}.{expires}.{signature}.{json}")
    }

    /// The record in `raw` if it is signed with this key, has not expired at `now`, and is
    /// `slug`'s.
    fn open(&self, raw: &str, slug: &Slug, now: u64) -> Option<TenantRecord> {
        let mut parts = raw.splitn(4, '.');
        let (version, expires, signature, json) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expires: u64 = expires.parse().ok()?;
        let signature = hex::decode(signature).ok()?;
        if version != VERSION || self.mac(expires, json).verify_slice(&signature).is_err() || expires <= now {
            return None;
        }
        serde_json::from_str::<TenantRecord>(json).ok().filter(|tenant| tenant.slug == *slug)
    }
}

pub struct SharedRoutes {
    redis: Arc<RedisLink>,
    names: RedisNames,
    ttl: Duration,
    key: RecordKey,
    rejected: Counter,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SharedRoutes {
    pub fn new(
        redis: Arc<RedisLink>,
        names: RedisNames,
        ttl: Duration,
        key: RecordKey,
        rejected: Counter,
    ) -> Self {
        Self { redis, names, ttl, key, rejected }
    }

    /// The routing record of `slug`, if Redis has one that this deployment's routers signed,
    /// and answers in time.
    pub async fn get(&self, slug: &Slug) -> Option<TenantRecord> {
        let raw: Option<String> = self.redis.query(redis::cmd("GET").arg(self.names.route_key(slug))).await?;
        let record = self.key.open(&raw?, slug, unix_now());
        if record.is_none() {
            self.rejected.inc();
            tracing::warn!(tenant = %slug, "a routing record in Redis was rejected (signature, expiry or tenant); reading the catalog");
        }
        record
    }

    /// Stores `tenant`'s routing record, signed (best effort).
    pub async fn put(&self, tenant: &Arc<TenantRecord>) {
        let Ok(json) = serde_json::to_string(&**tenant) else { return };
        let seconds = self.ttl.as_secs().max(1);
        let sealed = self.key.seal(unix_now() + seconds, &json);
        let _: Option<()> = self
            .redis
            .query(
                redis::cmd("SET").arg(self.names.route_key(&tenant.slug)).arg(sealed).arg("EX").arg(seconds),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> RecordKey {
        RecordKey::new(Secret::from(text.repeat(32))).unwrap()
    }

    fn record(slug: &str) -> String {
        let tenant = serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000001", "slug": slug, "display_name": slug,
            "plan": "starter", "status": "active", "isolation": "schema", "cluster": "default",
            "schema_name": format!("t_{slug}"), "database_name": null, "role_name": format!("tenant_{slug}"),
            "secret_ref": null, "pool_size": 2, "rate_limit_per_second": null, "statement_timeout_ms": null,
            "config": {}, "provision_step": null, "failed_step": null, "last_error": null, "generation": 1,
            "created_at": "2026-12-03T00:00:00Z", "updated_at": "2026-12-03T00:00:00Z"
        });
        let parsed: Result<TenantRecord, _> = serde_json::from_value(tenant.clone());
        parsed.map(|t| serde_json::to_string(&t).unwrap()).unwrap_or_else(|e| panic!("{e}: {tenant}"))
    }

    #[test]
    fn only_signed_unexpired_records_of_the_right_tenant_are_used() {
        let (acme, globex) = (Slug::parse("acme").unwrap(), Slug::parse("globex").unwrap());
        let k = key("k");
        let sealed = k.seal(100, &record("acme"));
        assert!(k.open(&sealed, &acme, 99).is_some());
        // Expired, another tenant's key, another deployment's key.
        assert!(k.open(&sealed, &acme, 100).is_none());
        assert!(k.open(&sealed, &globex, 99).is_none());
        assert!(key("other").open(&sealed, &acme, 99).is_none());
        // Tampered: the record, the expiry, the signature; unsigned; the old format.
        let tampered = sealed.replace("t_acme", "t_globex");
        assert!(k.open(&tampered, &acme, 99).is_none());
        assert!(k.open(&sealed.replacen(".100.", ".999.", 1), &acme, 99).is_none());
        assert!(k.open(&format!("v1.100.{}.{}", "00".repeat(32), record("acme")), &acme, 99).is_none());
        assert!(k.open(&record("acme"), &acme, 99).is_none());
        assert!(k.open("", &acme, 99).is_none());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(RecordKey::new(Secret::from("x".repeat(MIN_KEY_LEN - 1))).is_err());
        assert!(RecordKey::new(Secret::from("x".repeat(MIN_KEY_LEN))).is_ok());
    }
}
