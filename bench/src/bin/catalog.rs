//! Control-plane API latency with 10,000 tenants in the catalog: listing a page (keyset
//! pagination at random depths) and billing-webhook acknowledgement under a paced burst of
//! 200 events/s, while the workers provision the new tenants in the background.
//!
//! Run with `make bench` (starts the services). Prints Markdown for bench/RESULTS.md.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use control_plane::billing::{send::TestEvent, signature};
use control_plane::settings::ServeSettings;
use std::time::{Duration, Instant};
use tenancy_bench::Summary;

const TENANTS: i64 = 10_000;
const LIST_REQUESTS: usize = 1_000;
const EVENTS_PER_SECOND: u64 = 200;
const BURST_SECONDS: u64 = 5;
const SECRET: &str = "whsec_bench";

#[tokio::main]
async fn main() {
    let (db, cp) = tenancy_bench::control_plane().await;
    // 10,000 catalog rows (listing reads only the catalog, so no schemas are needed).
    db.client()
        .await
        .execute(
            "INSERT INTO control.tenants (id, slug, display_name, plan, template, cluster, schema_name, role_name, status, config)
             SELECT gen_random_uuid(), 'tenant-' || lpad(i::text, 5, '0'), 'Tenant ' || i, 'starter', 'starter',
                    'default', 't_tenant_' || lpad(i::text, 5, '0'), 'bench_tenant_' || lpad(i::text, 5, '0'),
                    'active', '{\"modules\": [\"projects\", \"tasks\"]}'
               FROM generate_series(1, $1::bigint) AS i",
            &[&TENANTS],
        )
        .await
        .unwrap();
    db.client().await.batch_execute("ANALYZE control.tenants").await.unwrap();
    let token = {
        let client = cp.catalog.get().await.unwrap();
        control_plane::catalog::tokens::create(
            &**client,
            &control_plane::catalog::tokens::NewToken::admin("bench"),
        )
        .await
        .unwrap()
        .0
    };
    let serve = ServeSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        http: tenancy::listener::HttpSettings::default(),
        billing_webhook_secret: Some(SECRET.into()),
        worker_concurrency: 4,
        routers: Vec::new(),
        shutdown_grace: Duration::from_secs(30),
    };
    let server = control_plane::http::spawn(cp.clone(), &serve, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    // Listing: pages of 50 starting at random depths.
    let mut list = Vec::with_capacity(LIST_REQUESTS);
    for i in 0..LIST_REQUESTS {
        let cursor = format!("tenant-{:05}", (i * 7919) % usize::try_from(TENANTS).unwrap());
        let started = Instant::now();
        let response = http
            .get(format!("{base}/v1/tenants?limit=50&cursor={cursor}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let _ = response.bytes().await.unwrap();
        list.push(started.elapsed());
    }
    let list = Summary::of(&mut list);

    // Webhooks: a paced burst, each delivery timed from send to acknowledgement.
    let url = format!("{base}/v1/webhooks/billing");
    let total = EVENTS_PER_SECOND * BURST_SECONDS;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / EVENTS_PER_SECOND));
    let mut deliveries = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let event = TestEvent {
            kind: "customer.subscription.created".into(),
            slug: format!("burst-{i}"),
            name: None,
            plan: "starter".into(),
            subscription_id: None,
            customer_id: None,
            status: "active".into(),
        };
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let body = serde_json::to_vec(&event.body(now)).unwrap();
        let header = signature::sign(SECRET, now, &body);
        let (http, url) = (http.clone(), url.clone());
        deliveries.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = http.post(url).header("stripe-signature", header).body(body).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            started.elapsed()
        }));
    }
    let mut acks = Vec::new();
    for delivery in deliveries {
        acks.push(delivery.await.unwrap());
    }
    let acks = Summary::of(&mut acks);

    println!(
        "| list a page of 50 with {TENANTS} tenants (p50 / p95 / p99 / max) | {} | p99 ≤ 50 ms |",
        list.row()
    );
    println!(
        "| webhook acknowledgement, {EVENTS_PER_SECOND} events/s for {BURST_SECONDS} s, workers provisioning meanwhile | {} | p99 ≤ 50 ms |",
        acks.row()
    );
    server.stop().await.unwrap();
}
