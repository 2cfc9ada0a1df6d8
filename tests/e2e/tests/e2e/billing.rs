//! The billing webhook refuses what it must refuse (400, nothing stored) and records what it
//! cannot act on (acknowledged, outcome kept next to the event, nothing half-created).

use control_plane::billing::send::TestEvent;
use control_plane::billing::signature;
use e2e_tests::{spawn_control_plane, wait_until_active, WEBHOOK_SECRET};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::{common_settings, SecretsFor, TestDb};

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

fn event(slug: &str, plan: &str) -> Value {
    let event = TestEvent::subscription_created(slug, plan);
    event.body(now())
}

/// Posts `body` signed at `at`; returns the status and the JSON answer.
async fn deliver(url: &str, body: &[u8], at: i64) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("stripe-signature", signature::sign(WEBHOOK_SECRET, at, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the event is processed; returns its outcome and error.
async fn outcome(db: &TestDb, event_id: &str) -> (String, Option<String>) {
    let started = Instant::now();
    loop {
        let row = db
            .client()
            .await
            .query_opt("SELECT outcome, error FROM control.billing_events WHERE event_id = $1 AND processed_at IS NOT NULL", &[&event_id])
            .await
            .unwrap();
        if let Some(row) = row {
            return (row.get(0), row.get(1));
        }
        assert!(started.elapsed() < Duration::from_secs(20), "event {event_id} not processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_refused_and_unusable_events_are_recorded_without_side_effects() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = spawn_control_plane(&db, &common).await;
    let url = format!("{}/v1/webhooks/billing", control.url);

    // Refused with 400, nothing stored: malformed JSON (correctly signed), a stale signature.
    let (status, body) = deliver(&url, b"{\"id\": \"evt_1\", ", now()).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("malformed_event")));
    let stale = serde_json::to_vec(&event("acme", "starter")).unwrap();
    let (status, body) = deliver(&url, &stale, now() - 301).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("invalid_signature")));
    assert_eq!(db.count("SELECT count(*) FROM control.billing_events").await, 0);

    // Acknowledged, stored exactly as received, then processed.
    let good = serde_json::to_vec(&event("acme", "starter")).unwrap();
    assert_eq!(deliver(&url, &good, now()).await.0, 200);
    let good_id = serde_json::from_slice::<Value>(&good).unwrap()["id"].as_str().unwrap().to_owned();
    let raw: String = db
        .client()
        .await
        .query_one("SELECT raw_body FROM control.billing_events WHERE event_id = $1", &[&good_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw.as_bytes(), good.as_slice());
    wait_until_active(&control.cp, "acme", Duration::from_secs(30)).await;

    // Acknowledged, recorded as rejected, nothing created: missing metadata, a reserved slug,
    // a slug that is taken, a plan that does not exist.
    let mut no_slug = event("x", "starter");
    no_slug["data"]["object"]["metadata"] = json!({});
    let cases = [
        (no_slug, "tenant_slug"),
        (event("www", "starter"), "reserved"),
        (event("acme", "pro"), "already exists"),
        (event("umbrella", "platinum"), "no plan named"),
    ];
    for (body, reason) in cases {
        let raw = serde_json::to_vec(&body).unwrap();
        assert_eq!(deliver(&url, &raw, now()).await.0, 200);
        let (outcome, error) = outcome(&db, body["id"].as_str().unwrap()).await;
        assert_eq!(outcome, "rejected");
        assert!(error.as_deref().unwrap_or_default().contains(reason), "{error:?} should say {reason}");
    }
    // Unknown types are recorded and acknowledged.
    let mut unknown = event("acme", "starter");
    unknown["type"] = json!("customer.tax_id.created");
    assert_eq!(deliver(&url, &serde_json::to_vec(&unknown).unwrap(), now()).await.0, 200);
    let (outcome, _) = outcome(&db, unknown["id"].as_str().unwrap()).await;
    assert!(outcome.starts_with("ignored"), "{outcome}");

    assert_eq!(db.count("SELECT count(*) FROM control.tenants").await, 1, "only acme");
    assert_eq!(
        db.roles().await.len(),
        5,
        "acme's roles (runtime and read-only), the owner, the tenants group and the routers' role, nothing half-created"
    );
    control.server.stop().await.unwrap();
}
