//! `tenantctl webhook send`: builds a realistic Stripe-shaped event, signs it like Stripe does and
//! posts it to the billing webhook (the local equivalent of `stripe trigger`).

use super::signature;
use serde_json::json;

/// What to send.
#[derive(Debug, Clone)]
pub struct TestEvent {
    pub kind: String,
    pub slug: String,
    pub name: Option<String>,
    pub plan: String,
    pub subscription_id: Option<String>,
    pub customer_id: Option<String>,
    pub status: String,
}

fn random_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

impl TestEvent {
    /// A `customer.subscription.created` event for a new subscription of tenant `slug`.
    pub fn subscription_created(slug: &str, plan: &str) -> Self {
        Self {
            kind: "customer.subscription.created".into(),
            slug: slug.into(),
            name: None,
            plan: plan.into(),
            subscription_id: None,
            customer_id: None,
            status: "active".into(),
        }
    }

    /// The event body, shaped as Stripe sends it.
    pub fn body(&self, now: i64) -> serde_json::Value {
        let subscription_id = self.subscription_id.clone().unwrap_or_else(|| random_id("sub"));
        let customer_id = self.customer_id.clone().unwrap_or_else(|| random_id("cus"));
        let mut metadata = json!({ "tenant_slug": self.slug, "plan": self.plan });
        if let Some(name) = &self.name {
            metadata["tenant_name"] = json!(name);
        }
        let object = if self.kind == "checkout.session.completed" {
            json!({
                "id": random_id("cs"), "object": "checkout.session", "mode": "subscription",
                "customer": customer_id, "subscription": subscription_id, "status": "complete",
                "metadata": metadata,
            })
        } else {
            json!({
                "id": subscription_id, "object": "subscription", "customer": customer_id,
                "status": self.status, "created": now, "metadata": metadata,
                "items": { "object": "list", "data": [{
                    "id": random_id("si"), "object": "subscription_item",
                    "price": { "id": random_id("price"), "object": "price", "lookup_key": self.plan }
                }]}
            })
        };
        json!({
            "id": random_id("evt"), "object": "event", "api_version": "2024-06-20",
            "created": now, "livemode": false, "type": self.kind,
            "data": { "object": object },
        })
    }
}

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("could not reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the webhook answered {status}: {body}")]
    Refused { status: u16, body: String },
}

impl tenancy::error::OperationError for SendError {
    /// A 4xx is the webhook refusing the event; anything else may go through later.
    fn kind(&self) -> tenancy::error::ErrorKind {
        match self {
            Self::Refused { status, .. } if (400..500).contains(status) => tenancy::error::ErrorKind::Invalid,
            _ => tenancy::error::ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Refused { status, .. } if (400..500).contains(status) => "refused",
            _ => "unavailable",
        }
    }
}

/// The webhook's answer to a delivered event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub(crate) event_id: String,
    pub(crate) status: u16,
    pub response: serde_json::Value,
}

/// Signs `body` with `secret` and posts it to `url`.
pub async fn send(url: &str, secret: &str, body: &serde_json::Value) -> Result<Delivery, SendError> {
    let raw = serde_json::to_vec(body).unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", signature::sign(secret, now, &raw))
        .body(raw)
        .send()
        .await
        .map_err(|e| SendError::Unreachable { url: url.to_owned(), message: e.to_string() })?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(SendError::Refused { status, body: text });
    }
    Ok(Delivery {
        event_id: body["id"].as_str().unwrap_or_default().to_owned(),
        status,
        response: serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    })
}
