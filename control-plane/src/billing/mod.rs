//! Billing webhooks, Stripe-style: signature checking ([`signature`]), the event shapes we read
//! ([`event`]), processing stored events ([`process`]) and building signed test events
//! ([`send`], behind `tenantctl webhook send`).

pub mod event;
pub mod process;
pub mod send;
pub mod signature;
