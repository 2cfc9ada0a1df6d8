//! The billing side of `tenantctl webhook send`: which event to build (an existing tenant's
//! real subscription, never an invented one for an event about an existing subscription), and
//! how the billing events' errors become exit codes.

use super::deadline::Deadline;
use super::{find, CliError};
use crate::billing::events::EventsError;
use crate::billing::send::TestEvent;
use crate::cli::SendArgs;
use crate::control_plane::ControlPlane;
use tenancy::catalog::CatalogError;

/// Event types that create a subscription (and its tenant); every other one is about an
/// existing subscription.
const CREATING: &[&str] = &["customer.subscription.created", "checkout.session.completed"];

/// The event `args` describe. With `--tenant`: its subscription, customer, plan and slug.
pub(super) async fn test_event(cp: &ControlPlane, args: &SendArgs) -> Result<TestEvent, CliError> {
    let mut event = TestEvent {
        kind: args.kind.clone(),
        slug: args.slug.clone().unwrap_or_default(),
        name: args.name.clone(),
        plan: args.plan.clone().unwrap_or_else(|| "starter".to_owned()),
        subscription_id: args.subscription.clone(),
        customer_id: args.customer.clone(),
        status: args.status.clone(),
    };
    if let Some(slug) = &args.tenant {
        let tenant = find(cp, slug).await?;
        let client = cp.catalog.get().await.map_err(CatalogError::from)?;
        let (subscription, customer) =
            crate::catalog::tenants::billing_ids(&**client, tenant.id).await.map_err(CatalogError::from)?;
        event.subscription_id = Some(subscription.ok_or_else(|| {
            CliError::invalid(
                "no_subscription",
                format!("tenant {slug} has no billing subscription (it was not created by a billing event)"),
            )
        })?);
        event.customer_id = customer;
        event.slug = tenant.slug.to_string();
        event.plan = args.plan.clone().unwrap_or_else(|| tenant.plan.to_string());
    } else if !CREATING.contains(&args.kind.as_str()) && args.subscription.is_none() {
        return Err(CliError::invalid(
            "no_subscription",
            format!(
                "a {} event is about an existing subscription: give --tenant <slug> (its real subscription) \
                 or --subscription <id>",
                args.kind
            ),
        ));
    } else if event.slug.is_empty() && CREATING.contains(&args.kind.as_str()) {
        return Err(CliError::invalid("missing_slug", format!("a {} event needs --slug", args.kind)));
    }
    Ok(event)
}

pub(super) fn events_error(e: EventsError, deadline: &Deadline) -> CliError {
    match e {
        EventsError::StillPending(..) => deadline.expired(&e.to_string()),
        EventsError::NotFound(_) | EventsError::Catalog(_) => e.into(),
    }
}
