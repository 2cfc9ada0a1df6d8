//! Acting on stored billing events (asynchronously, as a job): each event is processed once and
//! its outcome recorded next to it in `control.billing_events`.

use super::event::{Envelope, SubscriptionChange, SubscriptionFacts};
use crate::catalog::{self, billing_events};
use crate::control_plane::ControlPlane;
use crate::tenants::{self, Announcement, CreateTenantError, LifecycleError, Operation, TenantRequest};
use tenancy::catalog::CatalogError;

/// Why processing an event failed in a way worth retrying (or could not start).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BillingProcessError {
    #[error("billing event job has no event_id")]
    BadJob,
    #[error("billing event {0} is not stored")]
    NotFound(String),
    #[error("catalog unavailable: {0}")]
    Catalog(String),
    #[error("not yet: {0}")]
    NotYet(String),
}

impl tenancy::error::OperationError for BillingProcessError {
    /// An event not stored, or a job without one, will not appear by trying again.
    fn kind(&self) -> tenancy::error::ErrorKind {
        match self {
            Self::BadJob | Self::NotFound(_) => tenancy::error::ErrorKind::Failed,
            Self::Catalog(_) | Self::NotYet(_) => tenancy::error::ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadJob => "invalid_job",
            Self::NotFound(_) => "not_found",
            Self::Catalog(_) => "catalog_unavailable",
            Self::NotYet(_) => "not_yet",
        }
    }
}

/// What processing decided, recorded as the event's outcome.
enum Outcome {
    Applied(String),
    Rejected(String),
    Ignored(String),
}

pub(crate) async fn process_job(
    cp: &ControlPlane,
    payload: &serde_json::Value,
) -> Result<(), BillingProcessError> {
    let event_id =
        payload.get("event_id").and_then(serde_json::Value::as_str).ok_or(BillingProcessError::BadJob)?;
    let catalog_error =
        |e: tokio_postgres::Error| BillingProcessError::Catalog(tenancy::pg::describe_error(&e));
    let client = cp.catalog.get().await.map_err(|e| BillingProcessError::Catalog(e.to_string()))?;
    let (raw, processed) = billing_events::payload(&**client, event_id)
        .await
        .map_err(catalog_error)?
        .ok_or_else(|| BillingProcessError::NotFound(event_id.to_owned()))?;
    if processed {
        return Ok(());
    }
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
    billing_events::record_outcome(&**client, event_id, &outcome_text, error.as_deref())
        .await
        .map_err(catalog_error)
}

/// Stores a received event and queues its processing, in one transaction; `false` when the
/// event was stored already (a redelivery: nothing more is queued).
pub(crate) async fn accept(
    cp: &ControlPlane,
    envelope: &Envelope,
    raw_body: &str,
) -> Result<bool, CatalogError> {
    let mut client = cp.catalog.get().await?;
    let tx = client.transaction().await?;
    let created = chrono::DateTime::from_timestamp(envelope.created, 0);
    let new = billing_events::insert(&*tx, &envelope.id, &envelope.kind, created, raw_body).await?;
    if new {
        let payload = serde_json::json!({ "event_id": envelope.id });
        crate::catalog::jobs::enqueue(&*tx, crate::jobs::JobKind::BillingEvent, None, &payload).await?;
    }
    tx.commit().await?;
    if new {
        cp.jobs_enqueued.notify_waiters();
    }
    Ok(new)
}

async fn decide(cp: &ControlPlane, envelope: &Envelope) -> Result<Outcome, BillingProcessError> {
    match envelope.kind.as_str() {
        "customer.subscription.created" | "checkout.session.completed" => provision(cp, envelope).await,
        "customer.subscription.updated" | "customer.subscription.deleted" => change(cp, envelope).await,
        "invoice.payment_failed" => {
            Ok(Outcome::Ignored("recorded; suspension follows the subscription's status".into()))
        }
        other => Ok(Outcome::Ignored(format!("event type {other} is not acted on"))),
    }
}

/// What a subscription's status means for its tenant.
fn operation_for_status(status: &str, retention: std::time::Duration) -> Option<Operation> {
    match status {
        "past_due" | "unpaid" | "paused" => Some(Operation::Suspend),
        "active" | "trialing" => Some(Operation::Resume),
        "canceled" | "incomplete_expired" => Some(Operation::Deprovision { retention }),
        _ => None,
    }
}

/// `customer.subscription.updated` / `.deleted`: plan and status changes of the subscription's
/// tenant. An event older than the newest one already applied to that tenant changes nothing,
/// so out-of-order delivery never undoes a newer state.
async fn change(cp: &ControlPlane, envelope: &Envelope) -> Result<Outcome, BillingProcessError> {
    let change = match SubscriptionChange::from_object(&envelope.data.object) {
        Ok(change) => change,
        Err(e) => return Ok(Outcome::Rejected(e.to_string())),
    };
    let created = chrono::DateTime::from_timestamp(envelope.created, 0).unwrap_or_default();
    let catalog_error =
        |e: tokio_postgres::Error| BillingProcessError::Catalog(tenancy::pg::describe_error(&e));
    // One subscription's events one at a time (jobs run in parallel): the order check and the
    // changes happen under a lock held by this transaction, released however this ends.
    let mut client = cp.catalog.get().await.map_err(|e| BillingProcessError::Catalog(e.to_string()))?;
    let tx = client.transaction().await.map_err(catalog_error)?;
    billing_events::lock_subscription(&*tx, &change.subscription_id).await.map_err(catalog_error)?;
    let tenant =
        catalog::tenants::live_by_subscription(&*tx, &change.subscription_id).await.map_err(catalog_error)?;
    let Some(tenant) = tenant else {
        // Possibly delivered before the event that creates the tenant: try again later.
        return Err(BillingProcessError::NotYet(format!(
            "no tenant for subscription {} (yet)",
            change.subscription_id
        )));
    };
    if tenant.billing_event_at.is_some_and(|last| last > created) {
        return Ok(Outcome::Ignored("older than the newest event already applied to this tenant".into()));
    }
    if tenant.status == "provisioning" {
        return Err(BillingProcessError::NotYet("the tenant is still being provisioned".into()));
    }
    let slug = tenancy::domain::Slug::parse(&tenant.slug)
        .map_err(|e| BillingProcessError::Catalog(e.to_string()))?;
    let mut operations = Vec::new();
    if envelope.kind == "customer.subscription.deleted" {
        operations.push(Operation::Deprovision { retention: cp.deprovision_retention });
    } else {
        if let Some(plan) = change.plan.as_ref().filter(|plan| plan.as_str() != tenant.plan.as_str()) {
            operations.push(Operation::ChangePlan(plan.clone()));
        }
        operations
            .extend(change.status.as_deref().and_then(|s| operation_for_status(s, cp.deprovision_retention)));
    }
    // The requests go in this transaction: they and the event's mark commit together.
    let mut done = Vec::new();
    let mut announcement = Announcement::default();
    for operation in operations {
        match tenants::request_in(&tx, cp, &slug, &operation, "billing").await {
            Ok(requested) => {
                done.push(format!("{} -> {}", operation.name(), requested.tenant.status));
                announcement = announcement.and(requested.announcement);
            }
            Err(LifecycleError::Catalog(e)) => return Err(BillingProcessError::Catalog(e)),
            Err(e) => done.push(format!("{} refused: {e}", operation.name())),
        }
    }
    catalog::tenants::set_billing_event_at_by_subscription(&*tx, &change.subscription_id, created)
        .await
        .map_err(catalog_error)?;
    tx.commit().await.map_err(catalog_error)?;
    announcement.send(cp).await;
    Ok(Outcome::Applied(format!("tenant {slug}: {}", done.join("; "))))
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
        isolation: None,
        cluster: None,
    };
    let created = chrono::DateTime::from_timestamp(envelope.created, 0);
    let catalog_error =
        |e: tokio_postgres::Error| BillingProcessError::Catalog(tenancy::pg::describe_error(&e));
    // The tenant and the event it was created by are recorded together, in one transaction.
    let mut client = cp.catalog.get().await.map_err(|e| BillingProcessError::Catalog(e.to_string()))?;
    let tx = client.transaction().await.map_err(catalog_error)?;
    match tenants::create_in(&tx, cp, &request, "billing").await {
        Ok(recorded) => {
            let tenant = &recorded.tenant;
            // Later subscription events are compared with this one (out-of-order delivery).
            catalog::tenants::set_billing_event_at(&*tx, tenant.id, created).await.map_err(catalog_error)?;
            tx.commit().await.map_err(catalog_error)?;
            recorded.announcement.send(cp).await;
            Ok(Outcome::Applied(format!("provisioning tenant {} ({})", tenant.slug, tenant.id)))
        }
        // The same subscription delivered under a different event id (e.g. both
        // checkout.session.completed and customer.subscription.created): already handled.
        Err(CreateTenantError::DuplicateSubscription(sub)) => {
            Ok(Outcome::Ignored(format!("subscription {sub} already has a tenant")))
        }
        // The catalog failing is retried; anything else (no cluster has room included) is the
        // event's outcome.
        Err(e @ CreateTenantError::Catalog(_)) => Err(BillingProcessError::Catalog(e.to_string())),
        Err(e) => Ok(Outcome::Rejected(e.to_string())),
    }
}
