//! Retention purges: each function deletes one batch of old rows and is meant to run in a
//! short transaction of its own. Rows are picked by age through an index, locked with
//! `for update skip locked` (a row another transaction holds is left for the next run) and
//! deleted by key or `ctid`: no table lock, no long transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// Deletes up to `limit` idempotency keys created before `before`; returns how many.
pub async fn purge_idempotency_keys(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<u64> {
    let deleted = sqlx::query(
        "delete from idempotency_keys
          where ctid = any(array(
                select ctid from idempotency_keys
                 where created_at < $1
                 order by created_at
                 limit $2
                 for update skip locked))",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *conn)
    .await
    .context("purge idempotency keys")?
    .rows_affected();
    Ok(deleted)
}

/// What one batch of a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedRows {
    /// Rows the batch picked (fewer than its limit: nothing older is left).
    pub picked: u64,
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
}

/// Deletes up to `limit` finished (succeeded or failed) webhook deliveries created before
/// `before`, with their attempts.
pub async fn purge_finished_deliveries(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<PurgedRows> {
    let doomed: Vec<(String, String)> = sqlx::query_as(
        "select tenant_id, id from webhook_deliveries
          where status <> 'pending' and created_at < $1
          order by created_at
          limit $2
          for update skip locked",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("pick finished webhook deliveries to purge")?;
    if doomed.is_empty() {
        return Ok(PurgedRows::default());
    }
    let (tenants, ids): (Vec<String>, Vec<String>) = doomed.into_iter().unzip();
    // Attempts first: they reference their delivery.
    let attempts = sqlx::query(
        "delete from webhook_attempts a
          using unnest($1::text[], $2::text[]) as d(tenant_id, id)
          where a.tenant_id = d.tenant_id and a.delivery_id = d.id",
    )
    .bind(&tenants)
    .bind(&ids)
    .execute(&mut *conn)
    .await
    .context("purge webhook attempts")?
    .rows_affected();
    let deliveries = sqlx::query(
        "delete from webhook_deliveries w
          using unnest($1::text[], $2::text[]) as d(tenant_id, id)
          where w.tenant_id = d.tenant_id and w.id = d.id",
    )
    .bind(&tenants)
    .bind(&ids)
    .execute(&mut *conn)
    .await
    .context("purge webhook deliveries")?
    .rows_affected();
    Ok(PurgedRows {
        picked: ids.len() as u64,
        events: 0,
        deliveries,
        attempts,
    })
}

/// Deletes up to `limit` numbered events created before `before`, with the webhook
/// deliveries (and attempts) that carried them, and raises each tenant's
/// `purged_event_positions` to the highest position deleted. An event a delivery still
/// has to send (pending) is kept until the delivery finishes.
pub async fn purge_events(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<PurgedRows> {
    let doomed: Vec<(i64, String, String)> = sqlx::query_as(
        "select e.seq, e.tenant_id, e.id from dispute_events e
          where e.created_at < $1
            and e.position is not null
            and not exists (
                select 1 from webhook_deliveries d
                 where d.tenant_id = e.tenant_id and d.event_id = e.id
                   and d.status = 'pending')
          order by e.created_at
          limit $2
          for update of e skip locked",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("pick events to purge")?;
    if doomed.is_empty() {
        return Ok(PurgedRows::default());
    }
    let mut seqs = Vec::with_capacity(doomed.len());
    let mut tenants = Vec::with_capacity(doomed.len());
    let mut ids = Vec::with_capacity(doomed.len());
    for (seq, tenant_id, id) in doomed {
        seqs.push(seq);
        tenants.push(tenant_id);
        ids.push(id);
    }
    let attempts = sqlx::query(
        "delete from webhook_attempts a
          using webhook_deliveries d, unnest($1::text[], $2::text[]) as e(tenant_id, id)
          where d.tenant_id = e.tenant_id and d.event_id = e.id
            and a.tenant_id = d.tenant_id and a.delivery_id = d.id",
    )
    .bind(&tenants)
    .bind(&ids)
    .execute(&mut *conn)
    .await
    .context("purge attempts of purged events")?
    .rows_affected();
    let deliveries = sqlx::query(
        "delete from webhook_deliveries d
          using unnest($1::text[], $2::text[]) as e(tenant_id, id)
          where d.tenant_id = e.tenant_id and d.event_id = e.id",
    )
    .bind(&tenants)
    .bind(&ids)
    .execute(&mut *conn)
    .await
    .context("purge deliveries of purged events")?
    .rows_affected();
    let events: i64 = sqlx::query_scalar(
        "with deleted as (
             delete from dispute_events where seq = any($1) returning tenant_id, position
         ),
         horizon as (
             select tenant_id, max(position) as purged_through, count(*) as purged
               from deleted group by tenant_id
         ),
         saved as (
             insert into purged_event_positions as p (tenant_id, purged_through)
             select tenant_id, purged_through from horizon
             on conflict (tenant_id) do update
                 set purged_through = greatest(p.purged_through, excluded.purged_through)
         )
         select coalesce(sum(purged), 0)::bigint from horizon",
    )
    .bind(&seqs)
    .fetch_one(&mut *conn)
    .await
    .context("purge events")?;
    Ok(PurgedRows {
        picked: seqs.len() as u64,
        events: u64::try_from(events).unwrap_or(0),
        deliveries,
        attempts,
    })
}

/// The highest position purged of a tenant's events; `None` when none ever was.
pub async fn purged_through(
    conn: &mut PgConnection,
    tenant_id: &str,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar("select purged_through from purged_event_positions where tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await
        .context("read purged event position")
}

/// The id of the tenant's oldest event still kept (numbered); `None` without one.
pub async fn oldest_event_id(
    conn: &mut PgConnection,
    tenant_id: &str,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar(
        "select id from dispute_events
          where tenant_id = $1 and position > 0
          order by position
          limit 1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await
    .context("read oldest event")
}
