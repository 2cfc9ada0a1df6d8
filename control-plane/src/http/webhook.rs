//! `POST /v1/webhooks/billing`: verify the signature, store the event (unique id, raw payload)
//! and its processing job in one transaction, acknowledge. Processing is asynchronous; a repeated
//! event id is acknowledged and not processed again.

use super::{ApiError, AppState};
use crate::billing::event::Envelope;
use crate::billing::signature;
use crate::catalog::jobs;
use crate::jobs::JobKind;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use tenancy::catalog::CatalogError;

pub(super) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(|rejection| ApiError::from_bytes_rejection(&rejection))?;
    let result = accept(&state, &headers, &body).await;
    state.cp.metrics.webhook(match &result {
        Ok(json) if json["duplicate"] == true => "duplicate",
        Ok(_) => "accepted",
        Err(_) => "rejected",
    });
    result
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(secret) = state.webhook_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_not_configured",
            "billing webhooks are not configured (BILLING_WEBHOOK_SECRET is unset)",
        ));
    };
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    signature::verify(header, body, secret, chrono::Utc::now().timestamp())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", e.to_string()))?;
    let envelope =
        Envelope::parse(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;

    let mut client = state.cp.catalog.get().await.map_err(CatalogError::from)?;
    let tx = client.transaction().await.map_err(CatalogError::from)?;
    let created = chrono::DateTime::from_timestamp(envelope.created, 0);
    // The body parsed as JSON above, so it is UTF-8 and PostgreSQL reads the same document.
    let inserted = tx
        .execute(
            "INSERT INTO control.billing_events (event_id, type, event_created, payload, raw_body)
             VALUES ($1, $2, $3, $4::text::jsonb, $4) ON CONFLICT (event_id) DO NOTHING",
            &[&envelope.id, &envelope.kind, &created, &String::from_utf8_lossy(body).as_ref()],
        )
        .await
        .map_err(CatalogError::from)?;
    let duplicate = inserted == 0;
    if !duplicate {
        jobs::enqueue(&*tx, JobKind::BillingEvent, None, &serde_json::json!({ "event_id": envelope.id }))
            .await
            .map_err(CatalogError::from)?;
    }
    tx.commit().await.map_err(CatalogError::from)?;
    if !duplicate {
        state.cp.jobs_enqueued.notify_waiters();
    }
    tracing::info!(event_id = %envelope.id, event_type = %envelope.kind, duplicate, "billing event received");
    Ok(Json(serde_json::json!({ "received": true, "duplicate": duplicate })))
}
