//! Billing webhooks, Stripe-style: signature checking ([`signature`]), the event shapes we read
//! ([`event`]), processing stored events ([`process`]) and building signed test events
//! ([`send`], behind `tenantctl webhook send`), and what became of received events ([`events`],
//! behind `tenantctl billing events`).

pub(crate) mod event;
pub mod events;
pub(crate) mod process;
pub mod send;
pub mod signature;
