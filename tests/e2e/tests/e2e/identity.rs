//! Identity from an identity provider shaped like Cognito: a JWKS endpoint (served here, keys
//! chosen by `kid`), ID tokens with `custom:tenantId` and `custom:role`, `iss` and `aud`. The
//! tenant picker and the four roles on `POST /sql` (PostgreSQL's read-only role for viewers) and
//! on the reverse proxy (identity headers for the application), internal users' accesses in the
//! audit log (and `tenantctl audit`), and a provider's key rotation in the middle of traffic.

use control_plane::control_plane::ControlPlane;
use e2e_tests::{provisioned, provisioning_settings, router_settings, spawn_router_with};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{common_settings, SecretsFor, TestDb};

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example";
const CLIENT_ID: &str = "4tq1example0client0id";

fn fixture_file(name: &str) -> String {
    let path = format!("{}/../fixtures/identity/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn jwk(kid: &str) -> Value {
    serde_json::from_str(&fixture_file(&format!("{kid}.jwk.json"))).unwrap()
}

/// The identity provider's key set endpoint: what it publishes can change, and it counts how
/// often it is asked.
#[derive(Clone)]
struct Provider {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

impl Provider {
    async fn start(kids: &[&str]) -> Self {
        let keys = Arc::new(Mutex::new(kids.iter().map(|kid| jwk(kid)).collect::<Vec<_>>()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/eu-west-1_Example/.well-known/jwks.json",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let keys = served.lock().unwrap().clone();
                    axum::Json(json!({ "keys": keys }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            format!("http://{}/eu-west-1_Example/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { keys, fetches, url }
    }

    fn publish(&self, kids: &[&str]) {
        *self.keys.lock().unwrap() = kids.iter().map(|kid| jwk(kid)).collect();
    }
}

fn now() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}

/// `claims` signed RS256 by fixture key `key`, naming `kid` in its header.
fn signed(kid: &str, key: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(fixture_file(&format!("{key}.key")).as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The claims of `token`, read without checking anything.
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

/// A Cognito ID token for `user`, signed by fixture key `kid`.
fn id_token(kid: &str, user: &str, tenant: &str, role: &str, extra: &Value) -> String {
    let now = now();
    let mut claims = json!({
        "sub": user, "cognito:username": user, "token_use": "id", "auth_time": now, "iat": now,
        "exp": now + 3600, "iss": ISSUER, "aud": CLIENT_ID,
        "custom:tenantId": tenant, "custom:role": role,
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        claims[key] = value.clone();
    }
    signed(kid, kid, &claims)
}

/// An application behind the proxy that answers with the identity headers it received, and
/// counts the requests that reached it.
async fn echo_app(hits: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let seen: serde_json::Map<String, Value> = headers
                .iter()
                .filter(|(name, _)| {
                    name.as_str().starts_with("x-user-") || name.as_str().starts_with("x-tenant-")
                })
                .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or_default())))
                .collect();
            axum::Json(Value::Object(seen))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Fixture {
    db: TestDb,
    common: tenancy::settings::CommonSettings,
    _cp: Arc<ControlPlane>,
    provider: Provider,
    router: tenant_router::http::RunningRouter,
    app_hits: Arc<AtomicUsize>,
}

async fn fixture(refresh: Duration) -> Fixture {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let cp = ControlPlane::start(&common, &provisioning_settings(&db)).await.unwrap();
    provisioned(&cp, "acme", "starter").await;
    provisioned(&cp, "globex", "starter").await;
    let provider = Provider::start(&["rsa-a"]).await;
    let app_hits = Arc::new(AtomicUsize::new(0));
    let app = echo_app(app_hits.clone()).await;
    let mut settings = router_settings(&common);
    settings.upstream = Some(format!("http://{app}").parse().unwrap());
    let identity = &mut settings.identity;
    identity.jwks_url = Some(provider.url.clone());
    identity.jwks_refresh = refresh;
    identity.jwks_min_refetch = Duration::ZERO;
    identity.jwt_tenant_claim = "custom:tenantId".into();
    identity.jwt_role_claim = "custom:role".into();
    identity.jwt_issuer = Some(ISSUER.into());
    identity.jwt_audience = vec![CLIENT_ID.into()];
    let router = spawn_router_with(&settings).await;
    Fixture { db, common, _cp: cp, provider, router, app_hits }
}

impl Fixture {
    /// `POST /sql` on `slug`'s host with `token`: status, error code (or SQLSTATE), body.
    async fn sql(&self, slug: &str, token: &str, query: &str) -> (u16, String, Value) {
        let response = reqwest::Client::new()
            .post(format!("http://{}/sql", self.router.addr))
            .header("host", format!("{slug}.app.localhost"))
            .bearer_auth(token)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code =
            body["error"]["code"].as_str().or_else(|| body["code"].as_str()).unwrap_or_default().to_owned();
        (status, code, body)
    }

    /// A request through the reverse proxy on `slug`'s host: status and what the application saw.
    async fn proxied(&self, slug: &str, method: reqwest::Method, token: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("http://{}/dashboard?tab=usage", self.router.addr))
            .header("host", format!("{slug}.app.localhost"))
            // Forged: never reaches the application.
            .header("x-user-role", "internal-admin")
            .header("x-user-id", "someone-else");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// The audit log's `tenant.access` entries of `actor`, waiting (10 s at most) for `count` of
    /// them: the router writes them in batches.
    async fn accesses(&self, actor: &str, count: usize) -> Vec<(String, Value)> {
        let catalog = self.db.client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = catalog
                .query(
                    "SELECT t.slug, a.detail FROM control.audit_log a JOIN control.tenants t ON t.id = a.tenant_id
                      WHERE a.action = 'tenant.access' AND a.actor = $1 ORDER BY a.id",
                    &[&actor],
                )
                .await
                .unwrap();
            if rows.len() >= count || tokio::time::Instant::now() > deadline {
                return rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_tokens_reach_their_tenant_with_their_role_and_staff_pick_any_tenant_audited() {
    let f = fixture(Duration::from_secs(600)).await;
    let none = json!({});
    let acme_admin = id_token("rsa-a", "alice", "acme", "tenant-admin", &none);
    let acme_viewer = id_token("rsa-a", "victor", "acme", "tenant-viewer", &none);
    let staff_admin = id_token("rsa-a", "staff-1", "*", "internal-admin", &none);
    let staff_viewer = id_token("rsa-a", "staff-2", "*", "internal-viewer", &none);

    // A tenant's admin: its own tenant, read-write; another tenant refused.
    let (status, _, body) =
        f.sql("acme", &acme_admin, "INSERT INTO settings VALUES ('note', 'by alice')").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.sql("globex", &acme_admin, "SELECT 1").await.1, "wrong_tenant");
    // A tenant's viewer reads, and PostgreSQL (its read-only role) refuses its writes.
    let (status, _, body) =
        f.sql("acme", &acme_viewer, "SELECT value FROM settings WHERE key = 'note'").await;
    assert_eq!((status, &body["rows"]), (200, &json!([{"value": "by alice"}])), "{body}");
    assert_eq!(
        f.sql("acme", &acme_viewer, "INSERT INTO settings VALUES ('x', 'by victor')").await.1,
        "25006"
    );
    assert_eq!(f.sql("acme", &acme_viewer, "DELETE FROM settings").await.1, "25006");

    // Staff pick the tenant by host: an internal admin writes to globex, an internal viewer
    // reads acme and cannot write to it.
    let (status, _, body) =
        f.sql("globex", &staff_admin, "INSERT INTO settings VALUES ('note', 'by staff')").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) =
        f.sql("globex", &staff_admin, "SELECT value FROM settings WHERE key = 'note'").await;
    assert_eq!((status, &body["rows"]), (200, &json!([{"value": "by staff"}])), "{body}");
    let (status, _, body) =
        f.sql("acme", &staff_viewer, "SELECT value FROM settings WHERE key = 'note'").await;
    assert_eq!((status, &body["rows"]), (200, &json!([{"value": "by alice"}])), "{body}");
    assert_eq!(
        f.sql("acme", &staff_viewer, "INSERT INTO settings VALUES ('x', 'by staff-2')").await.1,
        "25006"
    );
    let (_, _, body) = f.sql("acme", &acme_admin, "SELECT key FROM settings WHERE value LIKE 'by %'").await;
    assert_eq!(body["rows"], json!([{"key": "note"}]), "nothing written by viewers");

    // Refused, each with its reason.
    let now = now();
    for (token, want) in [
        (id_token("rsa-a", "mallory", "*", "tenant-admin", &none), (403, "role_not_allowed")),
        (id_token("rsa-a", "mallory", "acme", "internal-admin", &none), (403, "role_not_allowed")),
        (id_token("rsa-a", "mallory", "acme", "owner", &none), (403, "role_not_allowed")),
        (
            id_token("rsa-a", "alice", "acme", "tenant-admin", &json!({"exp": now - 120})),
            (401, "invalid_token"),
        ),
        (
            id_token("rsa-a", "alice", "acme", "tenant-admin", &json!({"nbf": now + 300})),
            (401, "invalid_token"),
        ),
        (
            id_token("rsa-a", "alice", "acme", "tenant-admin", &json!({"aud": "another-client"})),
            (401, "invalid_token"),
        ),
        (
            id_token("rsa-a", "alice", "acme", "tenant-admin", &json!({"iss": "https://evil.example"})),
            (401, "invalid_token"),
        ),
        // Signed by a key the provider does not publish, under a kid it does.
        (signed("rsa-a", "rsa-b", &claims_of(&acme_admin)), (401, "invalid_token")),
    ] {
        let (status, code, body) = f.sql("acme", &token, "SELECT 1").await;
        assert_eq!((status, code.as_str()), want, "{}: {body}", claims_of(&token));
    }
    // Algorithm confusion: HS256 "signed" with the provider's public key, naming its kid.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("rsa-a".into());
    let claims = claims_of(&acme_admin);
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(fixture_file("rsa-a.pub").as_bytes()),
    )
    .unwrap();
    assert_eq!(f.sql("acme", &confused, "SELECT 1").await.1, "invalid_token");
    // A header changed after signing (another kid), and a payload changed (the tenant).
    let parts: Vec<&str> = acme_admin.split('.').collect();
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let reheaded = format!("{}.{}.{}", b64(&json!({"alg": "RS256", "kid": "ec-p256"})), parts[1], parts[2]);
    assert_eq!(f.sql("acme", &reheaded, "SELECT 1").await.1, "invalid_token");
    let mut payload = claims.clone();
    payload["custom:tenantId"] = json!("*");
    payload["custom:role"] = json!("internal-admin");
    let forged = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    assert_eq!(f.sql("globex", &forged, "SELECT 1").await.1, "invalid_token");

    // The reverse proxy: verified identity in headers the application can trust; forged
    // copies removed; a bad token never reaches the application.
    let (status, seen) = f.proxied("acme", reqwest::Method::GET, Some(&acme_viewer)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (seen["x-user-id"].as_str(), seen["x-user-role"].as_str()),
        (Some("victor"), Some("tenant-viewer"))
    );
    assert_eq!(seen["x-tenant-slug"], json!("acme"));
    let (status, seen) = f.proxied("globex", reqwest::Method::POST, Some(&staff_viewer)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (seen["x-user-id"].as_str(), seen["x-user-role"].as_str()),
        (Some("staff-2"), Some("internal-viewer"))
    );
    assert_eq!(seen["x-tenant-slug"], json!("globex"));
    let (status, seen) = f.proxied("acme", reqwest::Method::GET, None).await;
    assert_eq!(status, 200);
    assert!(seen.get("x-user-id").is_none() && seen.get("x-user-role").is_none(), "{seen}");
    // The application's own credentials (not JWTs) pass through untouched, with no identity.
    let (status, seen) = f.proxied("acme", reqwest::Method::GET, Some("sk_live_application_key")).await;
    assert_eq!(status, 200);
    assert!(seen.get("x-user-id").is_none(), "{seen}");
    // Underscore spellings of the identity headers are removed too; two Authorization headers
    // are refused.
    let response = reqwest::Client::new()
        .get(format!("http://{}/x", f.router.addr))
        .header("host", "acme.app.localhost")
        .header("x-user_role", "internal-admin")
        .header("x_user_id", "someone-else")
        .send()
        .await
        .unwrap();
    let seen: Value = response.json().await.unwrap();
    assert!(seen.as_object().unwrap().keys().all(|k| !k.contains("user")), "{seen}");
    let hits = f.app_hits.load(Ordering::SeqCst);
    let twice = reqwest::Client::new()
        .get(format!("http://{}/x", f.router.addr))
        .header("host", "acme.app.localhost")
        .header("authorization", format!("Bearer {acme_viewer}"))
        .header("authorization", "Bearer sk_other")
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status().as_u16(), 400);
    assert_eq!(f.proxied("globex", reqwest::Method::GET, Some(&acme_admin)).await.0, 403);
    assert_eq!(f.proxied("acme", reqwest::Method::GET, Some(&forged)).await.0, 401);
    assert_eq!(f.app_hits.load(Ordering::SeqCst), hits, "refused requests never reached the application");

    // Every internal access is in the audit log: who, which tenant, what kind, through which door.
    let admin = f.accesses("user:staff-1", 2).await;
    let kinds: Vec<(&str, &str, &str)> = admin
        .iter()
        .map(|(slug, d)| (slug.as_str(), d["access"].as_str().unwrap(), d["door"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("globex", "write", "sql"), ("globex", "read", "sql")]);
    assert_eq!(admin[0].1["role"], json!("internal-admin"));
    let viewer = f.accesses("user:staff-2", 3).await;
    let kinds: Vec<(&str, &str, &str, &str)> = viewer
        .iter()
        .map(|(slug, d)| {
            (
                slug.as_str(),
                d["access"].as_str().unwrap(),
                d["door"].as_str().unwrap(),
                d["request"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("acme", "read", "sql", "POST /sql"),
            ("acme", "read", "sql", "POST /sql"),
            ("globex", "read", "proxy", "POST /dashboard"),
        ]
    );
    assert!(f.accesses("user:alice", 0).await.is_empty(), "tenant users are not audited as staff");

    // And through `tenantctl audit`.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl-under-test"))
        .args(["audit", "--actor", "user:staff-2", "--action", "tenant.access", "--since", "1h", "--json"])
        .args(e2e_tests::catalog_flags(&f.db, &f.common))
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0]["detail"]["door"], json!("proxy"), "newest first");

    // An access just before shutdown is written before the router exits.
    let (status, _, _) = f.sql("acme", &staff_viewer, "SELECT 1").await;
    assert_eq!(status, 200);
    let Fixture { router, db, .. } = f;
    router.stop().await.unwrap();
    let written: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM control.audit_log WHERE actor = 'user:staff-2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_key_rotation_in_the_middle_of_traffic_needs_no_restart() {
    let f = Arc::new(fixture(Duration::from_secs(1)).await);
    let none = json!({});
    let (status, _, body) =
        f.sql("acme", &id_token("rsa-a", "alice", "acme", "tenant-admin", &none), "SELECT 1").await;
    assert_eq!(status, 200, "{body}");
    // Clients sign with whichever key the provider uses now (paced within the plan's rate
    // limit of 20 requests a second).
    let rotated = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (f, rotated, stop) = (f.clone(), rotated.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut served, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let kid = if rotated.load(Ordering::SeqCst) { "rsa-b" } else { "rsa-a" };
                let token = id_token(kid, "alice", "acme", "tenant-admin", &json!({}));
                match f.sql("acme", &token, "SELECT 1").await {
                    (200, _, _) => served += 1,
                    (status, code, _) => failed.push(format!("{kid}: {status} {code}")),
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (served, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The provider publishes its next key beside the current one, then signs with it.
    f.provider.publish(&["rsa-a", "rsa-b"]);
    rotated.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Then withdraws the old key.
    f.provider.publish(&["rsa-b"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut served, mut failed) = (0, Vec::new());
    for client in clients {
        let (s, f) = client.await.unwrap();
        served += s;
        failed.extend(f);
    }
    assert!(served > 0);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        served + failed.len(),
        &failed[..failed.len().min(5)]
    );
    // The withdrawn key stops being accepted once the key set is refreshed (every second here).
    let old = id_token("rsa-a", "alice", "acme", "tenant-admin", &none);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, code, _) = f.sql("acme", &old, "SELECT 1").await;
        if status == 401 {
            assert_eq!(code, "invalid_token");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the withdrawn key is still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Far fewer fetches than requests: the key set is fetched for an unknown kid, not per token.
    let fetches = f.provider.fetches.load(Ordering::SeqCst);
    assert!(fetches < 30, "{fetches} fetches for {served} requests");
}
