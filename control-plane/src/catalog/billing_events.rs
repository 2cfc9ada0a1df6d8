//! `control.billing_events`: every billing event received, stored before it is acknowledged,
//! and the outcome of processing it.

use tokio_postgres::GenericClient;

/// Stores a received event (its raw body, which parsed as JSON, and the fields read from it);
/// `false` when an event with that id was stored already (a redelivery).
pub(crate) async fn insert(
    client: &impl GenericClient,
    event_id: &str,
    kind: &str,
    created: Option<chrono::DateTime<chrono::Utc>>,
    raw_body: &str,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = client
        .execute(
            "INSERT INTO control.billing_events (event_id, type, event_created, payload, raw_body)
             VALUES ($1, $2, $3, $4::text::jsonb, $4) ON CONFLICT (event_id) DO NOTHING",
            &[&event_id, &kind, &created, &raw_body],
        )
        .await?;
    Ok(inserted == 1)
}

/// The stored event's payload, and whether it was processed already.
pub(crate) async fn payload(
    client: &impl GenericClient,
    event_id: &str,
) -> Result<Option<(serde_json::Value, bool)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT payload, processed_at IS NOT NULL FROM control.billing_events WHERE event_id = $1",
            &[&event_id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Records what processing the event decided (`applied`, `ignored`, `rejected`) and why.
pub(crate) async fn record_outcome(
    client: &impl GenericClient,
    event_id: &str,
    outcome: &str,
    error: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE control.billing_events SET processed_at = now(), outcome = $2, error = $3 WHERE event_id = $1",
            &[&event_id, &outcome, &error],
        )
        .await
        .map(|_| ())
}

/// Takes a lock on billing subscription `subscription` for the rest of the transaction: one
/// subscription's events are acted on one at a time.
pub(crate) async fn lock_subscription(
    client: &impl GenericClient,
    subscription: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", &[&subscription])
        .await
        .map(|_| ())
}

/// Which events to list.
#[derive(Debug, Clone)]
pub struct EventFilter {
    /// Only events about these tenants' subscriptions (none: every event).
    pub(crate) tenants: Vec<String>,
    /// Only this event.
    pub(crate) event_id: Option<String>,
    /// At most this many, newest first.
    pub(crate) limit: i64,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self { tenants: Vec::new(), event_id: None, limit: 50 }
    }
}

/// A stored event, the live tenant of the subscription it names, and (for an event not
/// processed yet) its newest processing job.
pub(crate) struct EventRow {
    pub(crate) event_id: String,
    pub(crate) kind: String,
    pub(crate) received_at: chrono::DateTime<chrono::Utc>,
    pub(crate) subscription: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) processed: bool,
    pub(crate) outcome: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) job_state: Option<String>,
    pub(crate) attempts: i32,
    pub(crate) last_error: Option<String>,
}

/// The events of `filter`, newest first. The processing job is read only for events not
/// processed yet.
pub(crate) async fn list(
    client: &impl GenericClient,
    filter: &EventFilter,
) -> Result<Vec<EventRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH e AS (
                SELECT e.*, coalesce(e.payload->'data'->'object'->>'subscription',
                                     CASE WHEN e.payload->'data'->'object'->>'object' = 'subscription'
                                          THEN e.payload->'data'->'object'->>'id' END) AS subscription
                  FROM control.billing_events e)
             SELECT e.event_id, e.type, e.received_at, e.subscription, t.slug, e.processed_at IS NOT NULL,
                    e.outcome, e.error, j.state, coalesce(j.attempts, 0), j.last_error
               FROM e
               LEFT JOIN control.tenants t ON t.billing_subscription_id = e.subscription AND t.status <> 'deleted'
               LEFT JOIN LATERAL (
                    SELECT state, attempts, last_error FROM control.jobs
                     WHERE e.processed_at IS NULL AND kind = 'billing_event' AND payload->>'event_id' = e.event_id
                     ORDER BY id DESC LIMIT 1) j ON true
              WHERE (cardinality($1::text[]) = 0 OR t.slug = ANY($1)) AND ($2::text IS NULL OR e.event_id = $2)
              ORDER BY e.received_at DESC, e.event_id DESC
              LIMIT $3",
            &[&filter.tenants, &filter.event_id, &filter.limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| EventRow {
            event_id: row.get(0),
            kind: row.get(1),
            received_at: row.get(2),
            subscription: row.get(3),
            tenant: row.get(4),
            processed: row.get(5),
            outcome: row.get(6),
            error: row.get(7),
            job_state: row.get(8),
            attempts: row.get(9),
            last_error: row.get(10),
        })
        .collect())
}
