//! The deadline sweeper's view of disputes: the `next_deadline` column.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// Claims up to `limit` disputes whose next deadline has passed, locking their rows until
/// the transaction ends; other replicas skip them (`for update skip locked`).
pub async fn claim_due_disputes(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<(String, String)>> {
    let due = sqlx::query_as(
        "select tenant_id, id from disputes
          where next_deadline <= $1
          order by next_deadline
          limit $2
          for update skip locked",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("claim due disputes")?;
    Ok(due)
}

/// Moves the sweeper's mark of one dispute.
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
