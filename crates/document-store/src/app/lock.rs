//! Locking documents once they are submitted as evidence (called by dispute-core).

use domain_kit::ids::DocumentId;

use super::Documents;
use crate::domain::{Document, DocumentError, in_request_order, missing_ids};
use crate::store::postgres;

impl Documents {
    /// Locks the tenant's available documents among `ids` (already deduplicated) for
    /// `holder` (empty: never released) and returns them in request order. All or nothing:
    /// an unknown id leaves every document as it was.
    pub async fn lock(
        &self,
        tenant_id: &str,
        ids: &[DocumentId],
        holder: &str,
    ) -> Result<Vec<Document>, DocumentError> {
        let raw_ids: Vec<&str> = ids.iter().map(DocumentId::as_str).collect();
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .map_err(anyhow::Error::from)?;
        let locked = postgres::lock_documents(&mut tx, tenant_id, &raw_ids, holder).await?;
        if let Some(id) = missing_ids(ids, &locked).into_iter().next() {
            return Err(DocumentError::NotFound { id });
        }
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(in_request_order(ids, locked))
    }

    /// Releases the lock `holder` (never empty) has on the tenant's documents among `ids`;
    /// a document stays locked while another holder has it. Idempotent.
    pub async fn unlock(
        &self,
        tenant_id: &str,
        ids: &[DocumentId],
        holder: &str,
    ) -> Result<(), DocumentError> {
        let raw_ids: Vec<&str> = ids.iter().map(DocumentId::as_str).collect();
        let mut conn = self.pool.acquire().await.map_err(anyhow::Error::from)?;
        postgres::unlock_documents(&mut conn, tenant_id, &raw_ids, holder).await?;
        Ok(())
    }
}
