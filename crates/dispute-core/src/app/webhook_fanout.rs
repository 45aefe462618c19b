//! Webhook deliveries created in the transaction that records an event, so that none is
//! lost and none is made twice.
// TODO(issue 12): webhooks are not built yet; no endpoint exists, nothing is enqueued.

use sqlx::PgConnection;

use crate::domain::DisputeError;

/// Enqueues one delivery of event `event_id` per enabled endpoint of the tenant that takes
/// `event_type`.
pub(super) async fn enqueue_deliveries(
    _tx: &mut PgConnection,
    _tenant_id: &str,
    _event_id: &str,
    _event_type: &str,
) -> Result<(), DisputeError> {
    Ok(())
}
