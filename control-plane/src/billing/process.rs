//! Acting on stored billing events (asynchronously, as a job): each event is processed once and
//! its outcome recorded next to it in `control.billing_events`.

use super::event::{Envelope, SubscriptionFacts};
use crate::context::ControlPlane;
use crate::provisioning::{request_tenant, CreateTenantError, TenantRequest};

/// Why processing an event failed in a way worth retrying (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum BillingProcessError {
    #[error("billing event job has no event_id")]
    BadJob,
    #[error("billing event {0} is not stored")]
    NotFound(String),
    #[error("catalog unavailable: {0}")]
    Catalog(String),
}

impl BillingProcessError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Catalog(_))
    }
}

/// What processing decided, recorded as the event's outcome.
enum Outcome {
    Applied(String),
    Rejected(String),
    Ignored(String),
}

pub async fn process_job(cp: &ControlPlane, payload: &serde_json::Value) -> Result<(), BillingProcessError> {
    let event_id =
        payload.get("event_id").and_then(serde_json::Value::as_str).ok_or(BillingProcessError::BadJob)?;
    let catalog_error =
        |e: tokio_postgres::Error| BillingProcessError::Catalog(tenancy::pg::describe_error(&e));
    let client = cp.catalog.get().await.map_err(|e| BillingProcessError::Catalog(e.to_string()))?;
    let row = client
        .query_opt(
            "SELECT payload, processed_at IS NOT NULL FROM control.billing_events WHERE event_id = $1",
            &[&event_id],
        )
        .await
        .map_err(catalog_error)?
        .ok_or_else(|| BillingProcessError::NotFound(event_id.to_owned()))?;
    if row.get::<_, bool>(1) {
        return Ok(());
    }
    let raw: serde_json::Value = row.get(0);
    // Deciding may take other catalog connections (creating a tenant): do not hold this one.
    drop(client);
    let outcome = match serde_json::from_value::<Envelope>(raw) {
        Ok(envelope) => decide(cp, &envelope).await?,
        Err(e) => Outcome::Rejected(format!("malformed event: {e}")),
    };
    let (outcome_text, error) = match outcome {
        Outcome::Applied(text) => (format!("applied: {text}"), None),
        Outcome::Rejected(reason) => ("rejected".to_owned(), Some(reason)),
        Outcome::Ignored(reason) => (format!("ignored: {reason}"), None),
    };
    if let Some(reason) = &error {
        tracing::warn!(event_id, reason = %reason, "billing event rejected");
    }
    let client = cp.catalog.get().await.map_err(|e| BillingProcessError::Catalog(e.to_string()))?;
    client
        .execute(
            "UPDATE control.billing_events SET processed_at = now(), outcome = $2, error = $3 WHERE event_id = $1",
            &[&event_id, &outcome_text, &error],
        )
        .await
        .map_err(catalog_error)?;
    Ok(())
}

async fn decide(cp: &ControlPlane, envelope: &Envelope) -> Result<Outcome, BillingProcessError> {
    match envelope.kind.as_str() {
        "customer.subscription.created" | "checkout.session.completed" => provision(cp, envelope).await,
        other => Ok(Outcome::Ignored(format!("event type {other} is not acted on yet"))),
    }
}

async fn provision(cp: &ControlPlane, envelope: &Envelope) -> Result<Outcome, BillingProcessError> {
    let facts = match SubscriptionFacts::from_object(&envelope.data.object) {
        Ok(facts) => facts,
        Err(e) => return Ok(Outcome::Rejected(e.to_string())),
    };
    let request = TenantRequest {
        slug: facts.slug.clone(),
        display_name: facts.name.clone(),
        plan: facts.plan.clone(),
        billing_customer_id: facts.customer_id.clone(),
        billing_subscription_id: Some(facts.subscription_id.clone()),
    };
    match request_tenant(cp, &request, "billing").await {
        Ok(tenant) => Ok(Outcome::Applied(format!("provisioning tenant {} ({})", tenant.slug, tenant.id))),
        // The same subscription delivered under a different event id (e.g. both
        // checkout.session.completed and customer.subscription.created): already handled.
        Err(CreateTenantError::DuplicateSubscription(sub)) => {
            Ok(Outcome::Ignored(format!("subscription {sub} already has a tenant")))
        }
        Err(e) if e.is_transient() => Err(BillingProcessError::Catalog(e.to_string())),
        Err(e) => Ok(Outcome::Rejected(e.to_string())),
    }
}
