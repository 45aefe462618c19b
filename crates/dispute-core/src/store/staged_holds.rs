//! Staged evidence holds (`staged_document_holds`): which holder keeps the document of each
//! staged evidence field from being deleted in document-store (docs/decisions.md, "Staged
//! evidence holds").

use anyhow::Context;
use sqlx::PgConnection;

/// The hold on one evidence field's document.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StagedHold {
    pub field: String,
    pub document_id: String,
    pub holder: String,
}

/// The hold of `field` on the dispute, if any.
pub async fn find_staged_hold(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    field: &str,
) -> anyhow::Result<Option<StagedHold>> {
    sqlx::query_as(
        "select field, document_id, holder from staged_document_holds
          where tenant_id = $1 and dispute_id = $2 and field = $3",
    )
    .bind(tenant_id)
    .bind(dispute_id)
    .bind(field)
    .fetch_optional(&mut *conn)
    .await
    .context("select staged hold")
}

/// Records (or replaces) the hold of `hold.field`.
pub async fn put_staged_hold(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    hold: &StagedHold,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into staged_document_holds (tenant_id, dispute_id, field, document_id, holder)
         values ($1, $2, $3, $4, $5)
         on conflict (tenant_id, dispute_id, field)
         do update set document_id = excluded.document_id, holder = excluded.holder,
                       created_at = now()",
    )
    .bind(tenant_id)
    .bind(dispute_id)
    .bind(&hold.field)
    .bind(&hold.document_id)
    .bind(&hold.holder)
    .execute(&mut *conn)
    .await
    .context("upsert staged hold")?;
    Ok(())
}

/// Forgets the hold of `field`.
pub async fn delete_staged_hold(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    field: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "delete from staged_document_holds
          where tenant_id = $1 and dispute_id = $2 and field = $3",
    )
    .bind(tenant_id)
    .bind(dispute_id)
    .bind(field)
    .execute(&mut *conn)
    .await
    .context("delete staged hold")?;
    Ok(())
}
