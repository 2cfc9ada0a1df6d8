//! The parts of Stripe events we read. Unknown fields are ignored, as Stripe adds fields often.

use std::collections::HashMap;

/// The envelope every event has.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct Envelope {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Unix seconds when the event was created (used to order out-of-order deliveries).
    pub(crate) created: i64,
    pub(crate) data: EventData,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct EventData {
    pub(crate) object: serde_json::Value,
}

/// Why an event body was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("event is missing {0}")]
    Missing(&'static str),
    #[error("the event contains a NUL character (\\u0000), which cannot be stored")]
    NulCharacter,
}

impl EventError {
    /// Stable error code for the webhook's answer.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::Missing(_) => "malformed_event",
            Self::NulCharacter => "nul_character",
        }
    }
}

/// Whether a string or key anywhere in `value` holds U+0000 (PostgreSQL's `jsonb` and `text`
/// refuse it).
fn contains_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

impl Envelope {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, EventError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
        if contains_nul(&value) {
            return Err(EventError::NulCharacter);
        }
        let envelope: Self =
            serde_json::from_value(value).map_err(|e| EventError::Malformed(e.to_string()))?;
        if envelope.id.is_empty() || envelope.id.len() > 255 {
            return Err(EventError::Malformed("`id` must be 1 to 255 characters".into()));
        }
        if envelope.kind.is_empty() || envelope.kind.len() > 255 {
            return Err(EventError::Malformed("`type` must be 1 to 255 characters".into()));
        }
        Ok(envelope)
    }
}

/// What a subscription (or completed checkout session) says about the tenant it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionFacts {
    pub(crate) subscription_id: String,
    pub(crate) customer_id: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) slug: String,
    pub(crate) name: Option<String>,
    pub(crate) plan: String,
}

#[derive(Debug, serde::Deserialize)]
struct ObjectFields {
    id: Option<String>,
    object: Option<String>,
    customer: Option<serde_json::Value>,
    subscription: Option<serde_json::Value>,
    status: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    items: Option<Items>,
}

#[derive(Debug, serde::Deserialize)]
struct Items {
    #[serde(default)]
    data: Vec<Item>,
}

#[derive(Debug, serde::Deserialize)]
struct Item {
    price: Option<Price>,
}

#[derive(Debug, serde::Deserialize)]
struct Price {
    lookup_key: Option<String>,
}

impl ObjectFields {
    /// The first item's price `lookup_key`, else `metadata.plan`.
    fn plan(&self) -> Option<String> {
        self.items
            .as_ref()
            .and_then(|items| items.data.first())
            .and_then(|item| item.price.as_ref())
            .and_then(|price| price.lookup_key.clone())
            .or_else(|| self.metadata.get("plan").cloned())
    }
}

/// An id field that Stripe sends either as a string or, when expanded, as an object with `id`.
fn id_of(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(id) => Some(id.clone()),
        serde_json::Value::Object(map) => map.get("id")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl SubscriptionFacts {
    /// Reads a `subscription` or `checkout.session` object: slug and name from metadata
    /// (`tenant_slug`, `tenant_name`), plan from the first item's price `lookup_key`, else
    /// `metadata.plan`.
    pub(crate) fn from_object(object: &serde_json::Value) -> Result<Self, EventError> {
        let fields: ObjectFields =
            serde_json::from_value(object.clone()).map_err(|e| EventError::Malformed(e.to_string()))?;
        let is_checkout = fields.object.as_deref() == Some("checkout.session");
        let subscription_id = if is_checkout {
            id_of(fields.subscription.as_ref()).ok_or(EventError::Missing("data.object.subscription"))?
        } else {
            fields.id.clone().ok_or(EventError::Missing("data.object.id"))?
        };
        let slug =
            fields.metadata.get("tenant_slug").cloned().ok_or(EventError::Missing("metadata.tenant_slug"))?;
        let plan =
            fields.plan().ok_or(EventError::Missing("items.data[0].price.lookup_key or metadata.plan"))?;
        Ok(Self {
            subscription_id,
            customer_id: id_of(fields.customer.as_ref()),
            status: fields.status,
            slug,
            name: fields.metadata.get("tenant_name").cloned(),
            plan,
        })
    }
}

/// What an updated (or deleted) subscription says: its id, status and plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionChange {
    pub(crate) subscription_id: String,
    pub(crate) status: Option<String>,
    pub(crate) plan: Option<String>,
}

impl SubscriptionChange {
    pub(crate) fn from_object(object: &serde_json::Value) -> Result<Self, EventError> {
        let fields: ObjectFields =
            serde_json::from_value(object.clone()).map_err(|e| EventError::Malformed(e.to_string()))?;
        let plan = fields.plan();
        Ok(Self {
            subscription_id: fields.id.ok_or(EventError::Missing("data.object.id"))?,
            status: fields.status,
            plan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_subscription() {
        let object = json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "metadata": {"tenant_slug": "acme", "tenant_name": "Acme Inc", "plan": "starter"},
            "items": {"object": "list", "data": [{"price": {"id": "price_1", "lookup_key": "pro"}}]}
        });
        let facts = SubscriptionFacts::from_object(&object).unwrap();
        assert_eq!(facts.plan, "pro", "lookup_key wins over metadata.plan");
        assert_eq!(facts.slug, "acme");
        assert_eq!(facts.customer_id.as_deref(), Some("cus_1"));
    }

    #[test]
    fn reads_a_checkout_session_and_falls_back_to_metadata_plan() {
        let object = json!({
            "id": "cs_1", "object": "checkout.session", "customer": {"id": "cus_2"},
            "subscription": "sub_2", "metadata": {"tenant_slug": "globex", "plan": "starter"}
        });
        let facts = SubscriptionFacts::from_object(&object).unwrap();
        assert_eq!(facts.subscription_id, "sub_2");
        assert_eq!(facts.plan, "starter");
        assert_eq!(facts.customer_id.as_deref(), Some("cus_2"));
    }

    #[test]
    fn missing_metadata_is_named() {
        let err = SubscriptionFacts::from_object(&json!({"id": "sub_3", "metadata": {}})).unwrap_err();
        assert!(err.to_string().contains("tenant_slug"), "{err}");
        assert!(Envelope::parse(b"{not json").is_err());
        assert!(Envelope::parse(br#"{"id":"","type":"x","created":1,"data":{"object":{}}}"#).is_err());
    }
}
