//! The events of disputes (`dispute_events`), read by subscribers.

use anyhow::Context;
use chrono::{DateTime, Utc};
use service_kit::ids::EventId;
use sqlx::PgConnection;
use sqlx::postgres::PgListener;

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

/// The channel `pg_notify` wakes StreamEvents readers on (payload: the tenant id); the
/// insert trigger sends it, so it arrives when the event's transaction commits.
pub const EVENTS_CHANNEL: &str = "dispute_events";

/// A stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    pub dispute_id: String,
    #[sqlx(rename = "type")]
    pub event_type: String,
    /// The dispute after the change, encoded as `disputes.v1.Dispute`.
    pub payload: Vec<u8>,
    #[sqlx(rename = "created_at")]
    pub create_time: DateTime<Utc>,
    /// Per-tenant position in commit order (dense: 1, 2, 3, ...).
    pub position: i64,
}

const EVENT_COLUMNS: &str = "id, dispute_id, type, payload, created_at, position";

/// What ListEvents filters on, as the store reads it.
#[derive(Debug, Clone, Default)]
pub struct EventQuery<'a> {
    /// Empty: every type.
    pub types: &'a [String],
    pub dispute_id: Option<&'a str>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Events of a tenant after `after_id` (from the first when `None`), in commit order.
#[tracing::instrument(skip(conn, query))]
pub async fn list_events(
    conn: &mut PgConnection,
    tenant_id: &str,
    query: &EventQuery<'_>,
    after_id: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<EventRow>> {
    let rows = sqlx::query_as(&format!(
        "select {EVENT_COLUMNS} from dispute_events
          where tenant_id = $1
            and position > coalesce(
                (select position from dispute_events where tenant_id = $1 and id = $2), 0)
            and (cardinality($3::text[]) = 0 or type = any($3))
            and ($4::text is null or dispute_id = $4)
            and ($5::timestamptz is null or created_at >= $5)
            and ($6::timestamptz is null or created_at < $6)
          order by position
          limit $7"
    ))
    .bind(tenant_id)
    .bind(after_id)
    .bind(query.types)
    .bind(query.dispute_id)
    .bind(query.created_after)
    .bind(query.created_before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("list events")?;
    Ok(rows)
}

/// Events of a tenant with a position above `after_position`, in commit order (what a
/// stream reads on each wake-up).
#[tracing::instrument(skip(conn))]
pub async fn events_after_position(
    conn: &mut PgConnection,
    tenant_id: &str,
    after_position: i64,
    limit: i64,
) -> anyhow::Result<Vec<EventRow>> {
    let rows = sqlx::query_as(&format!(
        "select {EVENT_COLUMNS} from dispute_events
          where tenant_id = $1 and position > $2
          order by position
          limit $3"
    ))
    .bind(tenant_id)
    .bind(after_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("read events after position")?;
    Ok(rows)
}

/// One event of a tenant.
#[tracing::instrument(skip(conn), fields(event_id = %id))]
pub async fn find_event(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<EventRow>> {
    let row = sqlx::query_as(&format!(
        "select {EVENT_COLUMNS} from dispute_events where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("find event")?;
    Ok(row)
}

/// The position of the newest committed event of a tenant (0 without events).
#[tracing::instrument(skip(conn))]
pub async fn last_event_position(conn: &mut PgConnection, tenant_id: &str) -> anyhow::Result<i64> {
    let position = sqlx::query_scalar(
        "select coalesce(max(position), 0)::bigint from dispute_events where tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await
    .context("last event position")?;
    Ok(position)
}

/// A connection listening on [`EVENTS_CHANNEL`]; it reconnects by itself when the
/// connection drops (notifications sent meanwhile are lost: readers re-read on a timer).
pub async fn listen_for_events(pool: &sqlx::PgPool) -> anyhow::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .context("connect event listener")?;
    listener
        .listen(EVENTS_CHANNEL)
        .await
        .context("listen for events")?;
    Ok(listener)
}
