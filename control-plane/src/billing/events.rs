//! What became of received billing events, as `tenantctl billing events` lists them and
//! `tenantctl webhook send` reports them: processed, ignored, failed (and why), or pending
//! (queued, or retrying after a transient failure, with its reason).

use crate::control_plane::ControlPlane;
use std::time::Duration;

/// One received event and what the control plane did with it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EventStatus {
    pub(crate) event_id: String,
    /// The event's type, e.g. `customer.subscription.created`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) received_at: chrono::DateTime<chrono::Utc>,
    /// The subscription the event is about, as it names it.
    pub(crate) subscription: Option<String>,
    /// The live tenant of that subscription, if any.
    pub(crate) tenant: Option<String>,
    /// `processed`, `ignored`, `failed` or `pending`.
    pub state: String,
    /// What was done, why it was ignored or failed, or why it is being retried.
    pub detail: Option<String>,
    /// Processing attempts so far.
    pub(crate) attempts: i32,
}

pub(crate) use crate::catalog::billing_events::EventFilter;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("catalog unavailable: {0}")]
    Catalog(String),
    #[error("event {0} is not stored")]
    NotFound(String),
    #[error("event {} is still pending{}", .0.event_id, .0.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    StillPending(Box<EventStatus>),
}

impl tenancy::error::OperationError for EventsError {
    fn kind(&self) -> tenancy::error::ErrorKind {
        use tenancy::error::ErrorKind;
        match self {
            Self::Catalog(_) => ErrorKind::Unavailable,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::StillPending(_) => ErrorKind::TimedOut,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Catalog(_) => "catalog_unavailable",
            Self::NotFound(_) => "not_found",
            Self::StillPending(_) => "timeout",
        }
    }
}

/// The events of `filter`, newest first. The processing job is read only for events not
/// processed yet (a failed or retried one says why there).
pub async fn list(cp: &ControlPlane, filter: &EventFilter) -> Result<Vec<EventStatus>, EventsError> {
    let client = cp.catalog.get().await.map_err(|e| EventsError::Catalog(e.to_string()))?;
    let rows = crate::catalog::billing_events::list(&**client, filter)
        .await
        .map_err(|e| EventsError::Catalog(tenancy::pg::describe_error(&e)))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (state, detail) = if row.processed {
                settled(row.outcome.as_deref().unwrap_or_default(), row.error)
            } else if row.job_state.as_deref() == Some("failed") {
                ("failed", row.last_error)
            } else {
                ("pending", row.last_error.map(|e| format!("retrying: {e}")))
            };
            EventStatus {
                event_id: row.event_id,
                kind: row.kind,
                received_at: row.received_at,
                subscription: row.subscription,
                tenant: row.tenant,
                state: state.to_owned(),
                detail,
                attempts: if row.processed { row.attempts.max(1) } else { row.attempts },
            }
        })
        .collect())
}

/// A processed event's state and detail, from the outcome processing recorded
/// (`applied: …`, `ignored: …`, or `rejected` with an error).
fn settled(outcome: &str, error: Option<String>) -> (&'static str, Option<String>) {
    if let Some(done) = outcome.strip_prefix("applied: ") {
        ("processed", Some(done.to_owned()))
    } else if let Some(reason) = outcome.strip_prefix("ignored: ") {
        ("ignored", Some(reason.to_owned()))
    } else {
        ("failed", error.or_else(|| Some(outcome.to_owned())))
    }
}

/// How often [`wait`] looks.
const POLL: Duration = Duration::from_millis(100);

/// Waits (at most `timeout`) until the event is processed or failed for good.
///
/// # Errors
/// [`EventsError::StillPending`] with its status at the timeout; the catalog; an event not
/// stored (yet) at the timeout.
pub(crate) async fn wait(
    cp: &ControlPlane,
    event_id: &str,
    timeout: Duration,
) -> Result<EventStatus, EventsError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let filter = EventFilter { event_id: Some(event_id.to_owned()), limit: 1, ..Default::default() };
    loop {
        let status = list(cp, &filter).await?.pop();
        let timed_out = tokio::time::Instant::now() >= deadline;
        match status {
            Some(status) if status.state != "pending" => return Ok(status),
            Some(status) if timed_out => return Err(EventsError::StillPending(Box::new(status))),
            None if timed_out => return Err(EventsError::NotFound(event_id.to_owned())),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::settled;

    #[test]
    fn outcomes_read_as_states() {
        assert_eq!(
            settled("applied: tenant acme: suspend -> suspended", None),
            ("processed", Some("tenant acme: suspend -> suspended".into()))
        );
        assert_eq!(
            settled("ignored: event type x is not acted on", None),
            ("ignored", Some("event type x is not acted on".into()))
        );
        assert_eq!(
            settled("rejected", Some("slug is reserved".into())),
            ("failed", Some("slug is reserved".into()))
        );
    }
}
