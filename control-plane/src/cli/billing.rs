//! `tenantctl webhook` and `tenantctl billing`: test events and the events received.

use super::{CatalogArgs, WaitArgs};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Build a realistic billing event, sign it with BILLING_WEBHOOK_SECRET, post it, and wait
    /// (unless --no-wait) for what the control plane does with it: processed, ignored or failed
    /// (exit code 1), with why. An event about an existing subscription (any type but
    /// customer.subscription.created and checkout.session.completed) needs --tenant (its real
    /// subscription) or --subscription: no subscription id is invented.
    Send(SendArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Event type, e.g. customer.subscription.created, customer.subscription.updated,
    /// checkout.session.completed.
    #[arg(long = "type", default_value = "customer.subscription.created")]
    pub(crate) kind: String,
    /// An existing tenant (slug): the event is about its subscription (its subscription and
    /// customer ids, plan and slug, from the catalog).
    #[arg(long, conflicts_with_all = ["slug", "subscription", "customer"])]
    pub(crate) tenant: Option<String>,
    /// Slug of the tenant a new subscription creates (metadata.tenant_slug).
    #[arg(long)]
    pub(crate) slug: Option<String>,
    /// Plan (the price's lookup_key); default: the tenant's with --tenant, else starter.
    #[arg(long)]
    pub(crate) plan: Option<String>,
    /// Tenant display name (metadata.tenant_name).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Subscription id (default for a new subscription: a new random sub_… id).
    #[arg(long)]
    pub(crate) subscription: Option<String>,
    /// Customer id (default: a new random cus_… id).
    #[arg(long)]
    pub(crate) customer: Option<String>,
    /// Subscription status.
    #[arg(long, default_value = "active")]
    pub(crate) status: String,
    /// Webhook URL.
    #[arg(long, env = "BILLING_WEBHOOK_URL", default_value = "http://127.0.0.1:8080/v1/webhooks/billing")]
    pub(crate) url: String,
    /// Signing secret.
    #[arg(long, env = "BILLING_WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) secret: tenancy::secret::Secret,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BillingCommand {
    /// List received billing events, newest first, with what the control plane did with each:
    /// processed, ignored, failed (and why) or pending (and why, when it is being retried).
    Events(EventsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Only events about these tenants' subscriptions (slugs): repeat the flag, or separate them
    /// with commas.
    #[arg(long = "tenant", value_name = "SLUG", value_delimiter = ',')]
    pub(crate) tenants: Vec<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub(crate) limit: i64,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
}
