//! The deadline sweeper's view of disputes: the `next_deadline` column, and the failures
//! that push a dispute's next try back (`deadline_sweep_failures`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// Claims the due dispute with the earliest deadline, locking its row until the transaction
/// ends; other replicas skip it (`for update skip locked`). Disputes whose last sweep failed
/// wait until their retry time, and `skip_ids` (tried already in this run) are left out.
pub async fn claim_next_due_dispute(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    skip_ids: &[String],
) -> anyhow::Result<Option<(String, String)>> {
    let due = sqlx::query_as(
        "select d.tenant_id, d.id from disputes d
          where d.next_deadline <= $1
            and d.id <> all($2)
            and not exists (
                select 1 from deadline_sweep_failures f
                 where f.tenant_id = d.tenant_id and f.dispute_id = d.id and f.retry_at > $1)
          order by d.next_deadline
          limit 1
          for update of d skip locked",
    )
    .bind(now)
    .bind(skip_ids)
    .fetch_optional(&mut *conn)
    .await
    .context("claim due dispute")?;
    Ok(due)
}

/// Moves the sweeper's mark of one dispute.
#[tracing::instrument(skip(conn), fields(dispute_id = %id))]
pub async fn set_next_deadline(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    next_deadline: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    sqlx::query("update disputes set next_deadline = $3 where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(id)
        .bind(next_deadline)
        .execute(&mut *conn)
        .await
        .context("set next deadline")?;
    Ok(())
}

/// Counts a failed sweep of one dispute and sets its next try to `now` plus a backoff that
/// doubles with each attempt, from `first_backoff_secs` up to `max_backoff_secs`. Returns
/// the number of attempts so far.
#[tracing::instrument(skip(conn, error), fields(dispute_id = %id))]
pub async fn record_sweep_failure(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    error: &str,
    now: DateTime<Utc>,
    first_backoff_secs: i64,
    max_backoff_secs: i64,
) -> anyhow::Result<i32> {
    let attempts = sqlx::query_scalar(
        "insert into deadline_sweep_failures as f
                (tenant_id, dispute_id, attempts, last_error, retry_at)
         values ($1, $2, 1, $3, $4 + make_interval(secs => $5))
         on conflict (tenant_id, dispute_id) do update
            set attempts = f.attempts + 1,
                last_error = excluded.last_error,
                retry_at = $4 + make_interval(secs => least(
                    $5 * power(2, least(f.attempts, 30)), $6))
         returning attempts",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(error)
    .bind(now)
    .bind(first_backoff_secs as f64)
    .bind(max_backoff_secs as f64)
    .fetch_one(&mut *conn)
    .await
    .context("record sweep failure")?;
    Ok(attempts)
}

/// Forgets a dispute's past sweep failures (it was swept).
#[tracing::instrument(skip(conn), fields(dispute_id = %id))]
pub async fn clear_sweep_failure(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<()> {
    sqlx::query("delete from deadline_sweep_failures where tenant_id = $1 and dispute_id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("clear sweep failure")?;
    Ok(())
}

/// A dispute's failed sweeps so far and when it is tried next.
pub async fn find_sweep_failure(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<(i32, DateTime<Utc>)>> {
    let found = sqlx::query_as(
        "select attempts, retry_at from deadline_sweep_failures
          where tenant_id = $1 and dispute_id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("find sweep failure")?;
    Ok(found)
}

/// Claims a dispute whose `due_time` lies within `lead_secs` after `now` (not yet past) and
/// whose `dispute.due_soon` was not sent for that `due_time`, locking it like
/// [`claim_next_due_dispute`]. Returns its tenant, id and the `due_time` the last one was
/// sent for.
pub async fn claim_next_due_soon_dispute(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    lead_secs: i64,
    skip_ids: &[String],
) -> anyhow::Result<Option<(String, String, Option<DateTime<Utc>>)>> {
    let due = sqlx::query_as(
        "select d.tenant_id, d.id, d.due_soon_sent_for from disputes d
          where d.due_time > $1
            and d.due_time <= $1 + make_interval(secs => $2)
            and d.due_soon_sent_for is distinct from d.due_time
            and d.id <> all($3)
          order by d.due_time
          limit 1
          for update of d skip locked",
    )
    .bind(now)
    .bind(lead_secs as f64)
    .bind(skip_ids)
    .fetch_optional(&mut *conn)
    .await
    .context("claim due-soon dispute")?;
    Ok(due)
}

/// Records that `dispute.due_soon` was sent for `due_time` (or that none is owed for it).
#[tracing::instrument(skip(conn), fields(dispute_id = %id))]
pub async fn mark_due_soon_sent(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    due_time: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    sqlx::query("update disputes set due_soon_sent_for = $3 where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(id)
        .bind(due_time)
        .execute(&mut *conn)
        .await
        .context("mark due soon sent")?;
    Ok(())
}
