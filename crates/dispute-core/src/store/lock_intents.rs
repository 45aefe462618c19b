//! Document lock intents (`document_lock_intents`): a submission's lock on its documents
//! in document-store, written before the lock is taken and deleted when the submission is
//! recorded; what remains is released (docs/decisions.md, "Locking evidence documents").

use anyhow::Context;
use sqlx::PgConnection;

/// A lock a submission took or is taking.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LockIntent {
    pub tenant_id: String,
    pub lock_id: String,
    pub dispute_id: String,
    pub document_ids: Vec<String>,
}

/// Records that `lock_id` is about to lock `document_ids` for a submission on `dispute_id`.
#[tracing::instrument(skip(conn, document_ids), fields(dispute_id = %dispute_id))]
pub async fn insert_lock_intent(
    conn: &mut PgConnection,
    tenant_id: &str,
    lock_id: &str,
    dispute_id: &str,
    document_ids: &[String],
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into document_lock_intents (tenant_id, lock_id, dispute_id, document_ids)
         values ($1, $2, $3, $4)",
    )
    .bind(tenant_id)
    .bind(lock_id)
    .bind(dispute_id)
    .bind(document_ids)
    .execute(&mut *conn)
    .await
    .context("insert lock intent")?;
    Ok(())
}

/// Deletes the intent inside the submission's transaction: true if it was still there and
/// not being released (the submission may go ahead), false otherwise.
#[tracing::instrument(skip(conn))]
pub async fn consume_lock_intent(
    conn: &mut PgConnection,
    tenant_id: &str,
    lock_id: &str,
) -> anyhow::Result<bool> {
    let deleted = sqlx::query(
        "delete from document_lock_intents
          where tenant_id = $1 and lock_id = $2 and not releasing",
    )
    .bind(tenant_id)
    .bind(lock_id)
    .execute(&mut *conn)
    .await
    .context("consume lock intent")?;
    Ok(deleted.rows_affected() == 1)
}

/// The intent of `lock_id`, if still recorded.
pub async fn find_lock_intent(
    conn: &mut PgConnection,
    tenant_id: &str,
    lock_id: &str,
) -> anyhow::Result<Option<LockIntent>> {
    let found = sqlx::query_as(
        "select tenant_id, lock_id, dispute_id, document_ids from document_lock_intents
          where tenant_id = $1 and lock_id = $2",
    )
    .bind(tenant_id)
    .bind(lock_id)
    .fetch_optional(&mut *conn)
    .await
    .context("find lock intent")?;
    Ok(found)
}

/// Forgets an intent whose lock was released.
pub async fn delete_lock_intent(
    conn: &mut PgConnection,
    tenant_id: &str,
    lock_id: &str,
) -> anyhow::Result<()> {
    sqlx::query("delete from document_lock_intents where tenant_id = $1 and lock_id = $2")
        .bind(tenant_id)
        .bind(lock_id)
        .execute(&mut *conn)
        .await
        .context("delete lock intent")?;
    Ok(())
}

/// Marks up to `limit` intents older than `older_than_secs` as being released and returns
/// them (across tenants); from then on no submission can take them. Intents a submission
/// is taking right now (row locked) are skipped.
pub async fn claim_stale_lock_intents(
    conn: &mut PgConnection,
    older_than_secs: i64,
    limit: i64,
) -> anyhow::Result<Vec<LockIntent>> {
    let claimed = sqlx::query_as(
        "update document_lock_intents set releasing = true
          where (tenant_id, lock_id) in (
                select tenant_id, lock_id from document_lock_intents
                 where created_at < now() - make_interval(secs => $1)
                 order by created_at
                 limit $2
                 for update skip locked)
      returning tenant_id, lock_id, dispute_id, document_ids",
    )
    .bind(older_than_secs as f64)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("claim stale lock intents")?;
    Ok(claimed)
}
