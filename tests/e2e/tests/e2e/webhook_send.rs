//! `tenantctl webhook send` against a running control plane: `--tenant` uses the tenant's real
//! subscription, nothing is invented for an event about an existing subscription, and the
//! command's exit code says what the control plane did with the event (which `tenantctl billing
//! events` lists too).

use control_plane::billing::send::{send, TestEvent};
use e2e_tests::{spawn_control_plane, tenantctl, wait_until_active, WEBHOOK_SECRET};
use std::process::ExitCode;
use std::time::Duration;
use testkit::{common_settings, SecretsFor, TestDb};

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_send_uses_the_tenants_subscription_and_reports_the_outcome() {
    let db = TestDb::create().await;
    let common = common_settings(&db, SecretsFor::Local);
    let control = spawn_control_plane(&db, &common).await;
    let url = format!("{}/v1/webhooks/billing", control.url);
    let created = TestEvent {
        subscription_id: Some("sub_acme_real".into()),
        ..TestEvent::subscription_created("acme", "starter")
    };
    send(&url, WEBHOOK_SECRET, &created.body(now() - 60)).await.unwrap();
    wait_until_active(&control.cp, "acme", Duration::from_secs(30)).await;

    let webhook = |extra: &'static [&'static str]| {
        let mut args =
            vec!["webhook", "send", "--url", url.as_str(), "--secret", WEBHOOK_SECRET, "--timeout", "20s"];
        args.extend_from_slice(extra);
        args
    };
    // The tenant's subscription goes past due: the event is processed and acme suspended.
    let args =
        webhook(&["--type", "customer.subscription.updated", "--status", "past_due", "--tenant", "acme"]);
    assert_eq!(tenantctl(&args, &db, &common).await, ExitCode::SUCCESS);
    let suspended =
        db.count("SELECT count(*) FROM control.tenants WHERE slug = 'acme' AND status = 'suspended'").await;
    assert_eq!(suspended, 1, "acme is suspended by its subscription's event");
    let about_acme = db
        .count(
            "SELECT count(*) FROM control.billing_events
              WHERE type = 'customer.subscription.updated' AND payload->'data'->'object'->>'id' = 'sub_acme_real'
                AND outcome LIKE 'applied%'",
        )
        .await;
    assert_eq!(about_acme, 1);

    // An event about an existing subscription is never sent with an invented one (usage: 3).
    let args =
        webhook(&["--type", "customer.subscription.updated", "--status", "past_due", "--slug", "acme"]);
    assert_eq!(tenantctl(&args, &db, &common).await, ExitCode::from(3));
    // Ignored: acknowledged and not acted on (0); rejected: failed, with why (1).
    let args = webhook(&["--type", "invoice.payment_failed", "--tenant", "acme"]);
    assert_eq!(tenantctl(&args, &db, &common).await, ExitCode::SUCCESS);
    let args = webhook(&["--type", "customer.subscription.created", "--slug", "www"]);
    assert_eq!(tenantctl(&args, &db, &common).await, ExitCode::from(1));
    // A tenant without a subscription: nothing to send (3).
    assert_eq!(
        tenantctl(&["tenants", "create", "--slug", "bravo", "--plan", "starter"], &db, &common).await,
        ExitCode::SUCCESS
    );
    let args = webhook(&["--type", "customer.subscription.updated", "--tenant", "bravo"]);
    assert_eq!(tenantctl(&args, &db, &common).await, ExitCode::from(3));

    assert_eq!(tenantctl(&["billing", "events", "--json"], &db, &common).await, ExitCode::SUCCESS);
    let listed = control_plane::billing::events::list(&control.cp, &Default::default()).await.unwrap();
    let states: Vec<&str> = listed.iter().map(|e| e.state.as_str()).collect();
    // Newest first: the rejected creation, the ignored invoice, the update, the creation.
    assert_eq!(states, ["failed", "ignored", "processed", "processed"], "{listed:?}");
    assert!(listed[0].detail.as_deref().unwrap_or_default().contains("reserved"), "{listed:?}");
    control.server.stop().await.unwrap();
}
