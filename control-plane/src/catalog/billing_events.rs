//! `control.billing_events`: every billing event received, stored before it is acknowledged,
//! and the outcome of processing it.

use tokio_postgres::GenericClient;

/// Stores a received event (its raw body, which parsed as JSON, and the fields read from it);
/// `false` when an event with that id was stored already (a redelivery).
pub async fn insert(
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
pub async fn payload(
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
pub async fn record_outcome(
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
