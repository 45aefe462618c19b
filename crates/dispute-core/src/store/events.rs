//! The events of disputes (`dispute_events`), read by subscribers.

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain_kit::ids::EventId;
use sqlx::PgConnection;
use sqlx::postgres::PgListener;

use super::evidence_texts::{self, AsStoredPayload};
use super::round_notice::RoundNotice;

/// Records events of `event_types` (in that order) holding the dispute as it is after the
/// change (`payload`, stored without its large evidence texts, which are saved once in
/// `evidence_texts`), and one webhook delivery of each per enabled endpoint of the tenant
/// that takes its type, in one statement (the deliveries commit with their events, or
/// neither does); returns the events' `evt_` ids.
pub async fn insert_events_with_deliveries(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    event_types: &[&str],
    payload: &(impl AsStoredPayload + ?Sized),
) -> anyhow::Result<Vec<String>> {
    if event_types.is_empty() {
        return Ok(Vec::new());
    }
    let payload = payload.as_stored();
    evidence_texts::save_texts(conn, tenant_id, dispute_id, &payload).await?;
    let ids: Vec<String> = event_types
        .iter()
        .map(|_| EventId::generate().as_str().to_owned())
        .collect();
    sqlx::query(
        "with recorded as (
             insert into dispute_events (tenant_id, id, dispute_id, type, payload,
                 payload_texts, payload_text_offsets)
             select $1, e.id, $2, e.type, $5, $6, $7
               from unnest($3::text[], $4::text[]) with ordinality as e(id, type, n)
              order by e.n
             returning id, type)
         insert into webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type,
             next_attempt_at)
         select w.tenant_id, new_prefixed_id('whd'), w.id, recorded.id, recorded.type, now()
           from recorded
           join webhook_endpoints w
             on w.tenant_id = $1 and w.enabled and w.deleted_at is null
            and (cardinality(w.event_types) = 0 or recorded.type = any(w.event_types))",
    )
    .bind(tenant_id)
    .bind(dispute_id)
    .bind(&ids)
    .bind(event_types)
    .bind(&payload.bytes)
    .bind(payload.digests_column())
    .bind(payload.offsets_column())
    .execute(&mut *conn)
    .await
    .context("insert events and their webhook deliveries")?;
    Ok(ids)
}

/// [`insert_events_with_deliveries`] for one event; returns its `evt_` id.
pub async fn insert_event(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    event_type: &str,
    payload: &(impl AsStoredPayload + ?Sized),
) -> anyhow::Result<String> {
    let ids =
        insert_events_with_deliveries(conn, tenant_id, dispute_id, &[event_type], payload).await?;
    ids.into_iter()
        .next()
        .context("an event was inserted without an id")
}

/// The channel of the sequencer's announcements: one notification per round that numbered
/// events ([`RoundNotice`]: the tenants, and whether webhook deliveries were made), delivered
/// when the round commits. StreamEvents readers and webhook workers of every replica listen
/// to it. Writers never notify: a transaction that notifies takes a lock held through its
/// commit that every other notifying transaction of the cluster waits for.
pub const EVENTS_CHANNEL: &str = "dispute_events";

/// The advisory lock that lets one sequencer at a time number events (any 64-bit key
/// unique in this database).
const SEQUENCER_LOCK_KEY: i64 = 0x6576_745f_7365_7131; // "evt_seq1"

/// A stored event.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub dispute_id: String,
    pub event_type: String,
    /// The dispute after the change, encoded as `disputes.v1.Dispute` (whole: its evidence
    /// texts are spliced back in when it is read).
    pub payload: Vec<u8>,
    pub create_time: DateTime<Utc>,
    /// Per-tenant position (dense: 1, 2, 3, ...); 0 while the sequencer has not numbered
    /// the event yet (a few milliseconds after its commit). Readers that page or stream
    /// read only numbered events.
    pub position: i64,
}

/// An event row as selected: its payload still without its evidence texts.
#[derive(sqlx::FromRow)]
struct SelectedEvent {
    id: String,
    dispute_id: String,
    #[sqlx(rename = "type")]
    event_type: String,
    payload: Vec<u8>,
    payload_text_offsets: Option<Vec<i32>>,
    payload_text_bodies: Option<Vec<Vec<u8>>>,
    created_at: DateTime<Utc>,
    position: i64,
}

impl TryFrom<SelectedEvent> for EventRow {
    type Error = anyhow::Error;

    fn try_from(row: SelectedEvent) -> anyhow::Result<EventRow> {
        let payload = evidence_texts::join_payload(
            row.payload,
            row.payload_text_offsets.as_deref(),
            row.payload_text_bodies,
        )
        .with_context(|| format!("read the payload of event {}", row.id))?;
        Ok(EventRow {
            id: row.id,
            dispute_id: row.dispute_id,
            event_type: row.event_type,
            payload,
            create_time: row.created_at,
            position: row.position,
        })
    }
}

fn whole_events(rows: Vec<SelectedEvent>) -> anyhow::Result<Vec<EventRow>> {
    rows.into_iter().map(EventRow::try_from).collect()
}

/// The columns of [`SelectedEvent`], with the evidence texts its payload references.
static EVENT_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "id, dispute_id, type, payload, payload_text_offsets, {} as payload_text_bodies,
         created_at, coalesce(position, 0) as position",
        evidence_texts::texts_of("dispute_events", "dispute_id", "payload_texts")
    )
});

/// What ListEvents filters on, as the store reads it.
#[derive(Debug, Clone, Default)]
pub struct EventQuery<'a> {
    /// Empty: every type.
    pub types: &'a [String],
    pub dispute_id: Option<&'a str>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// ListEvents' statement, exposed so that a test can check its plans. Parameters: tenant,
/// the position to continue after (0: from the first), types (empty: all), dispute id,
/// created after, created before (`null`: no such filter), limit.
pub static LIST_EVENTS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select {} from dispute_events
          where tenant_id = $1
            and position > $2
            and (cardinality($3::text[]) = 0 or type = any($3))
            and ($4::text is null or dispute_id = $4)
            and ($5::timestamptz is null or created_at >= $5)
            and ($6::timestamptz is null or created_at < $6)
          order by position
          limit $7",
        *EVENT_COLUMNS
    )
});

/// Events of a tenant with a position above `after_position` (0: from the first) that
/// match `query`, in commit order. The caller resolves a page token's event to its
/// position first ([`event_position`]), so a purged one is told apart from the beginning.
#[tracing::instrument(skip(conn, query))]
pub async fn list_events(
    conn: &mut PgConnection,
    tenant_id: &str,
    query: &EventQuery<'_>,
    after_position: i64,
    limit: i64,
) -> anyhow::Result<Vec<EventRow>> {
    // Never prepared as a named statement: each call is planned for its values. After five
    // runs PostgreSQL may switch a prepared statement to its generic plan, which for this
    // one (filters written `$n is null or …`) costs about the same as an unfiltered custom
    // plan but can use no filter index, so a filtered page would read the tenant's whole
    // feed (docs/performance.md, "Indexes").
    let rows: Vec<SelectedEvent> = sqlx::query_as(&LIST_EVENTS_SQL)
        .persistent(false)
        .bind(tenant_id)
        .bind(after_position)
        .bind(query.types)
        .bind(query.dispute_id)
        .bind(query.created_after)
        .bind(query.created_before)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("list events")?;
    whole_events(rows)
}

/// The position of one event of a tenant: `None` when the tenant has no such event (never
/// had, or it was purged), 0 while it is not numbered yet.
#[tracing::instrument(skip(conn))]
pub async fn event_position(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "select coalesce(position, 0) from dispute_events where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("event position")
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
    let rows: Vec<SelectedEvent> = sqlx::query_as(&format!(
        "select {} from dispute_events
          where tenant_id = $1 and position > $2
          order by position
          limit $3",
        *EVENT_COLUMNS
    ))
    .bind(tenant_id)
    .bind(after_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("read events after position")?;
    whole_events(rows)
}

/// One event of a tenant.
#[tracing::instrument(skip(conn), fields(event_id = %id))]
pub async fn find_event(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<EventRow>> {
    let row: Option<SelectedEvent> = sqlx::query_as(&format!(
        "select {} from dispute_events where tenant_id = $1 and id = $2",
        *EVENT_COLUMNS
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("find event")?;
    row.map(EventRow::try_from).transpose()
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

/// One round of the sequencer: numbers up to `batch` committed events that have no position
/// yet, in `seq` order per tenant after the tenant's last position, and announces them in
/// one notification on [`EVENTS_CHANNEL`] (the tenants, and whether any of the events has
/// webhook deliveries). Only one round runs at a time in the whole database (an
/// advisory lock held until the transaction ends): `None` when another one holds it. The
/// caller commits; returns how many events were numbered.
pub async fn number_committed_events(
    conn: &mut PgConnection,
    batch: i64,
) -> anyhow::Result<Option<u64>> {
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(SEQUENCER_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await
        .context("take sequencer lock")?;
    if !locked {
        return Ok(None);
    }
    // A statement that starts after the lock: it sees every earlier round's numbers.
    let tenants: Vec<(String, i64, bool)> = sqlx::query_as(
        "with pending as (
             select seq, tenant_id from dispute_events
              where position is null
              order by seq
              limit $1
              for update
         ),
         numbered as (
             select seq, tenant_id,
                    row_number() over (partition by tenant_id order by seq) as n
               from pending
         ),
         added as (
             select tenant_id, count(*) as added from pending group by tenant_id
         ),
         counters as (
             insert into event_positions as p (tenant_id, last_position)
             select tenant_id, added from added
             on conflict (tenant_id) do update
                 set last_position = p.last_position + excluded.last_position,
                     updated_at = now()
             returning tenant_id, last_position
         ),
         updated as (
             update dispute_events e
                set position = c.last_position - a.added + n.n
               from numbered n
               join added a using (tenant_id)
               join counters c using (tenant_id)
              where e.seq = n.seq
             returning e.tenant_id, e.id
         )
         select u.tenant_id, count(*)::bigint,
                bool_or(exists (select 1 from webhook_deliveries d
                                 where d.tenant_id = u.tenant_id and d.event_id = u.id))
           from updated u
          group by u.tenant_id",
    )
    .bind(batch)
    .fetch_all(&mut *conn)
    .await
    .context("number committed events")?;
    if !tenants.is_empty() {
        let notice = RoundNotice {
            tenants: Some(tenants.iter().map(|(tenant, ..)| tenant.clone()).collect()),
            deliveries: tenants.iter().any(|(.., deliveries)| *deliveries),
        };
        sqlx::query("select pg_notify($1, $2)")
            .bind(EVENTS_CHANNEL)
            .bind(notice.encode())
            .execute(&mut *conn)
            .await
            .context("announce numbered events")?;
    }
    let numbered = tenants.iter().map(|(_, count, _)| *count).sum::<i64>();
    Ok(Some(u64::try_from(numbered).unwrap_or(0)))
}

/// Whether committed events wait for a position: the sequencer's poll for events committed
/// by other replicas (one probe of the partial index `dispute_events_unnumbered`).
pub async fn has_unnumbered_events(conn: &mut PgConnection) -> anyhow::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from dispute_events where position is null)")
        .fetch_one(&mut *conn)
        .await
        .context("look for unnumbered events")
}

/// A connection of `pool`'s database listening on [`EVENTS_CHANNEL`]; it reconnects by
/// itself when the connection drops (notifications sent meanwhile are lost: readers
/// re-read on a timer).
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
