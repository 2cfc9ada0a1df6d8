//! `POST /v1/webhooks/billing`: verify the signature, store the event (unique id, raw payload)
//! and its processing job in one transaction, acknowledge. Processing is asynchronous; a repeated
//! event id is acknowledged and not processed again.

use super::{ApiError, AppState};
use crate::billing::event::Envelope;
use crate::billing::signature;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

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

    // The body parsed as JSON above, so it is UTF-8 and PostgreSQL reads the same document.
    let duplicate =
        !crate::billing::process::accept(&state.cp, &envelope, &String::from_utf8_lossy(body)).await?;
    tracing::info!(event_id = %envelope.id, event_type = %envelope.kind, duplicate, "billing event received");
    Ok(Json(serde_json::json!({ "received": true, "duplicate": duplicate })))
}
