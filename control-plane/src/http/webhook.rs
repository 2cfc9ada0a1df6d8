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

/// A billing event as the webhook reads it (Stripe's event envelope): its id (a repeated id is
/// acknowledged and not processed again), type (`customer.subscription.created`, `.updated`,
/// `.deleted`, `.paused`, `.resumed`, `invoice.payment_failed`, …), creation time (orders
/// out-of-order deliveries) and object.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation of the body only: the handler reads the raw bytes it verified.
pub(crate) struct BillingEvent {
    id: String,
    #[schema(rename = "type")]
    kind: String,
    /// Unix seconds.
    created: i64,
    /// `{"object": {…}}`: the subscription (its `metadata.tenant_slug`, `items`, `status`).
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// The acknowledgement: the event is stored and will be processed (once).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Received {
    received: bool,
    /// The event id was seen before: not processed again.
    duplicate: bool,
}

/// Receive a signed billing event (Stripe's webhook format). Signed with `BILLING_WEBHOOK_SECRET`
/// in the `Stripe-Signature` header (`t=<unix seconds>,v1=<HMAC-SHA256 hex of "t.body">`,
/// at most 5 minutes old); no bearer token. Stored and acknowledged at once, processed in the
/// background.
#[utoipa::path(post, path = "/v1/webhooks/billing", tag = "billing", request_body = BillingEvent,
    security(()),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<signature>")),
    responses((status = 200, body = Received),
              (status = 400, description = "bad signature or event", body = super::api::ErrorBody),
              (status = 503, description = "webhooks not configured, or the catalog unavailable", body = super::api::ErrorBody)))]
pub(super) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Received>, ApiError> {
    let body = body.map_err(|rejection| ApiError::from_bytes_rejection(&rejection))?;
    let result = accept(&state, &headers, &body).await;
    state.cp.metrics.webhook(match &result {
        Ok(Json(received)) if received.duplicate => "duplicate",
        Ok(_) => "accepted",
        Err(_) => "rejected",
    });
    result
}

async fn accept(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Json<Received>, ApiError> {
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
    Ok(Json(Received { received: true, duplicate }))
}
