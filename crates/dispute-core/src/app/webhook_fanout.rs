//! Webhook deliveries created in the transaction that records an event, so that none is
//! lost and none is made twice.

use sqlx::PgConnection;

use crate::domain::DisputeError;
use crate::store::events;

/// Records the events of `event_types` for a dispute, with one delivery of each per enabled
/// endpoint of the tenant that takes its type (one statement; no delivery when the tenant
/// has no endpoint).
pub(super) async fn record_events(
    tx: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    event_types: &[&str],
    payload: &[u8],
) -> Result<(), DisputeError> {
    events::insert_events_with_deliveries(tx, tenant_id, dispute_id, event_types, payload).await?;
    Ok(())
}
