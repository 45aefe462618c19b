//! Document metadata in PostgreSQL. Every query filters by tenant.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use domain_kit::ids::{DisputeId, DocumentId};
use domain_kit::page_token::PageCursor;
use sqlx::{PgConnection, PgPool};

use crate::domain::Document;

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: String,
    tenant_id: String,
    dispute_id: Option<String>,
    filename: String,
    content_type: Option<String>,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    created_at: DateTime<Utc>,
    lock_time: Option<DateTime<Utc>>,
}

impl From<DocumentRow> for Document {
    fn from(row: DocumentRow) -> Self {
        Document {
            id: DocumentId::from_stored(row.id),
            tenant_id: row.tenant_id,
            dispute_id: row.dispute_id.map(DisputeId::from_stored),
            filename: row.filename,
            content_type: row.content_type.unwrap_or_default(),
            size_bytes: row.size_bytes.unwrap_or_default(),
            sha256: row.sha256.unwrap_or_default(),
            create_time: row.created_at,
            lock_time: row.lock_time,
        }
    }
}

const DOCUMENT_COLUMNS: &str =
    "id, tenant_id, dispute_id, filename, content_type, size_bytes, sha256, created_at, lock_time";

/// A new upload about to stream in.
pub struct PendingDocument<'a> {
    pub tenant_id: &'a str,
    pub id: &'a str,
    pub dispute_id: Option<&'a str>,
    pub filename: &'a str,
    pub declared_content_type: &'a str,
    pub object_key: &'a str,
}

#[tracing::instrument(skip(pool, doc), fields(document_id = %doc.id))]
pub async fn insert_pending_document(
    pool: &PgPool,
    doc: &PendingDocument<'_>,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into documents (tenant_id, id, dispute_id, filename, declared_content_type, state, object_key)
         values ($1, $2, $3, $4, $5, 'pending', $6)",
    )
    .bind(doc.tenant_id)
    .bind(doc.id)
    .bind(doc.dispute_id)
    .bind(doc.filename)
    .bind(doc.declared_content_type)
    .bind(doc.object_key)
    .execute(pool)
    .await?;
    Ok(())
}

/// Remembers the open multipart upload so a sweeper can abort it after a crash.
pub async fn record_multipart_upload_id(
    pool: &PgPool,
    tenant_id: &str,
    id: &str,
    upload_id: &str,
) -> anyhow::Result<()> {
    sqlx::query("update documents set upload_id = $3 where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(id)
        .bind(upload_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// What the stream turned out to be.
pub struct StoredContent<'a> {
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
}

#[tracing::instrument(skip(pool, content))]
pub async fn mark_document_available(
    pool: &PgPool,
    tenant_id: &str,
    id: &str,
    content: &StoredContent<'_>,
) -> anyhow::Result<Document> {
    let row: DocumentRow = sqlx::query_as(&format!(
        "update documents
            set state = 'available', content_type = $3, size_bytes = $4, sha256 = $5, upload_id = null
          where tenant_id = $1 and id = $2 and state = 'pending'
      returning {DOCUMENT_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(content.content_type)
    .bind(content.size_bytes)
    .bind(content.sha256)
    .fetch_one(pool)
    .await?;
    Ok(row.into())
}

#[tracing::instrument(skip(pool))]
pub async fn delete_pending_document(
    pool: &PgPool,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<()> {
    sqlx::query("delete from documents where tenant_id = $1 and id = $2 and state = 'pending'")
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The state of a document row (`pending`, `available`), `None` if there is no such row.
#[tracing::instrument(skip(pool))]
pub async fn document_state(
    pool: &PgPool,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<String>> {
    let state = sqlx::query_scalar("select state from documents where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(state)
}

/// A stored document with where its bytes are.
pub struct StoredDocument {
    pub document: Document,
    pub object_key: String,
}

#[tracing::instrument(skip(pool))]
pub async fn find_available_document(
    pool: &PgPool,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<StoredDocument>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        document: DocumentRow,
        object_key: String,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {DOCUMENT_COLUMNS}, object_key from documents
          where tenant_id = $1 and id = $2 and state = 'available'"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| StoredDocument {
        document: r.document.into(),
        object_key: r.object_key,
    }))
}

/// ListDocuments' statement, exposed so that a test can check its plans. Parameters: tenant,
/// dispute id (`null`: any), the cursor's create time and id (`null`: from the newest),
/// limit.
pub static LIST_AVAILABLE_DOCUMENTS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select {DOCUMENT_COLUMNS} from documents
          where tenant_id = $1 and state = 'available'
            and ($2::text is null or dispute_id = $2)
            and ($3::timestamptz is null or (created_at, id) < ($3, $4))
          order by created_at desc, id desc
          limit $5"
    )
});

/// One page of available documents, newest first; fetches one extra row to know whether
/// another page follows.
#[tracing::instrument(skip(pool))]
pub async fn list_available_documents(
    pool: &PgPool,
    tenant_id: &str,
    dispute_id: Option<&str>,
    after: Option<&PageCursor>,
    limit: i64,
) -> anyhow::Result<Vec<Document>> {
    let rows: Vec<DocumentRow> = sqlx::query_as(&LIST_AVAILABLE_DOCUMENTS_SQL)
        .bind(tenant_id)
        .bind(dispute_id)
        .bind(after.map(|c| c.create_time))
        .bind(after.map(|c| c.id.as_str()))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Outcome of trying to delete a document's row.
pub enum DeleteOutcome {
    /// The row is gone (in the open transaction); its bytes are at this key.
    Deleted {
        object_key: String,
    },
    Locked,
    /// Not locked, but held by staged evidence: the first such holder
    /// (`staged.<dispute_id>.<field>.<nonce>`).
    Staged {
        holder: String,
    },
    NotFound,
}

/// Holders starting with this are staged holds: they keep a document from being deleted
/// without locking it (no `lock_time`).
pub const STAGED_HOLD_PREFIX: &str = "staged.";

/// Deletes the row inside `conn`'s transaction unless the document is locked.
#[tracing::instrument(skip(conn))]
pub async fn delete_unlocked_document(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<DeleteOutcome> {
    let row: Option<(String, Option<DateTime<Utc>>, Vec<String>)> = sqlx::query_as(
        "select object_key, lock_time, lock_holders from documents
          where tenant_id = $1 and id = $2 and state = 'available'
          for update",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(DeleteOutcome::NotFound),
        Some((_, Some(_), _)) => Ok(DeleteOutcome::Locked),
        Some((_, None, holders)) if !holders.is_empty() => {
            let holder = holders
                .into_iter()
                .find(|h| h.starts_with(STAGED_HOLD_PREFIX));
            Ok(match holder {
                Some(holder) => DeleteOutcome::Staged { holder },
                None => DeleteOutcome::Locked,
            })
        }
        Some((object_key, None, _)) => {
            sqlx::query("delete from documents where tenant_id = $1 and id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(DeleteOutcome::Deleted { object_key })
        }
    }
}

/// A pending upload nobody finished (the process died mid-upload).
pub struct AbandonedUpload {
    pub tenant_id: String,
    pub id: String,
    pub object_key: String,
    pub upload_id: Option<String>,
}

/// Claims up to `limit` pending uploads older than `older_than_secs` and deletes their rows
/// inside `conn`'s transaction; replicas skip rows another one has claimed.
pub async fn claim_abandoned_uploads(
    conn: &mut PgConnection,
    older_than_secs: i64,
    limit: i64,
) -> anyhow::Result<Vec<AbandonedUpload>> {
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "delete from documents where (tenant_id, id) in (
            select tenant_id, id from documents
             where state = 'pending' and created_at < now() - make_interval(secs => $1)
             order by created_at
             limit $2
             for update skip locked)
         returning tenant_id, id, object_key, upload_id",
    )
    .bind(older_than_secs as f64)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, id, object_key, upload_id)| AbandonedUpload {
            tenant_id,
            id,
            object_key,
            upload_id,
        })
        .collect())
}

/// The caller's available documents among `ids`.
#[tracing::instrument(skip(pool))]
pub async fn find_available_documents(
    pool: &PgPool,
    tenant_id: &str,
    ids: &[&str],
) -> anyhow::Result<Vec<Document>> {
    let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
        "select {DOCUMENT_COLUMNS} from documents
          where tenant_id = $1 and id = any($2) and state = 'available'"
    ))
    .bind(tenant_id)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Locks the caller's available documents among `ids` for `holder` (keeping an earlier lock
/// time) and returns them; inside `conn`'s transaction so the caller can check all were
/// found. The empty holder is a lock that is never released. A staged hold
/// ([`STAGED_HOLD_PREFIX`]) keeps the document from being deleted without locking it.
#[tracing::instrument(skip(conn))]
pub async fn lock_documents(
    conn: &mut PgConnection,
    tenant_id: &str,
    ids: &[&str],
    holder: &str,
) -> anyhow::Result<Vec<Document>> {
    let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
        "update documents
            set lock_time = case when starts_with($3, 'staged.') then lock_time
                                 else coalesce(lock_time, now()) end,
                lock_holders = case when $3 = any(lock_holders) then lock_holders
                                    else array_append(lock_holders, $3) end
          where tenant_id = $1 and id = any($2) and state = 'available'
      returning {DOCUMENT_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(ids)
    .bind(holder)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Claims the oldest pending upload older than `older_than_secs`, leaving out `skip_ids`
/// (tried already in this run), and locks its row until the transaction ends; replicas
/// skip rows another one has claimed. The row stays until the cleaner has removed what
/// the upload left in the object store ([`delete_abandoned_upload`]).
pub async fn claim_next_abandoned_upload(
    conn: &mut PgConnection,
    older_than_secs: i64,
    skip_ids: &[String],
) -> anyhow::Result<Option<AbandonedUpload>> {
    let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
        "select tenant_id, id, object_key, upload_id from documents
          where state = 'pending' and created_at < now() - make_interval(secs => $1)
            and id <> all($2)
          order by created_at
          limit 1
          for update skip locked",
    )
    .bind(older_than_secs as f64)
    .bind(skip_ids)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(
        row.map(|(tenant_id, id, object_key, upload_id)| AbandonedUpload {
            tenant_id,
            id,
            object_key,
            upload_id,
        }),
    )
}

/// Deletes the row of an abandoned upload the cleaner claimed (still pending).
#[tracing::instrument(skip(conn), fields(document_id = %id))]
pub async fn delete_abandoned_upload(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<()> {
    sqlx::query("delete from documents where tenant_id = $1 and id = $2 and state = 'pending'")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Releases `holder`'s lock on the caller's documents among `ids`; a document whose last
/// lock (not staged hold) that was becomes unlocked. Documents `holder` does not hold are left as they are.
/// Returns how many documents it released.
#[tracing::instrument(skip(conn))]
pub async fn unlock_documents(
    conn: &mut PgConnection,
    tenant_id: &str,
    ids: &[&str],
    holder: &str,
) -> anyhow::Result<u64> {
    let released = sqlx::query(
        "update documents
            set lock_holders = array_remove(lock_holders, $3),
                lock_time = case when exists (
                                     select 1 from unnest(array_remove(lock_holders, $3)) h
                                      where not starts_with(h, 'staged.'))
                                 then lock_time else null end
          where tenant_id = $1 and id = any($2) and $3 = any(lock_holders)",
    )
    .bind(tenant_id)
    .bind(ids)
    .bind(holder)
    .execute(&mut *conn)
    .await?;
    Ok(released.rows_affected())
}
