//! The events of disputes (`dispute_events`), read by subscribers.

use anyhow::Context;
use service_kit::ids::EventId;
use sqlx::PgConnection;

/// Records an event holding the dispute as it is after the change; returns its `evt_` id.
pub async fn insert_event(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    event_type: &str,
    payload: &[u8],
) -> anyhow::Result<String> {
    let id = EventId::generate();
    sqlx::query(
        "insert into dispute_events (tenant_id, id, dispute_id, type, payload)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(id.as_str())
    .bind(dispute_id)
    .bind(event_type)
    .bind(payload)
    .execute(&mut *conn)
    .await
    .context("insert event")?;
    Ok(id.as_str().to_owned())
}
