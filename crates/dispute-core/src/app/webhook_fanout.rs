//! Webhook deliveries created in the transaction that records an event, so that none is
//! lost and none is made twice.

use sqlx::PgConnection;

use crate::domain::DisputeError;
use crate::store::webhooks;

/// Enqueues one delivery of event `event_id` per enabled endpoint of the tenant that takes
/// `event_type` (one INSERT ... SELECT; nothing when the tenant has no endpoint).
pub(super) async fn enqueue_deliveries(
    tx: &mut PgConnection,
    tenant_id: &str,
    event_id: &str,
    event_type: &str,
) -> Result<(), DisputeError> {
    webhooks::enqueue_deliveries(tx, tenant_id, event_id, event_type).await?;
    Ok(())
}
