//! Deleting a document that was never submitted as evidence.

use domain_kit::ids::DocumentId;

use super::Documents;
use crate::domain::DocumentError;
use crate::store::postgres::{self, DeleteOutcome};

impl Documents {
    /// Deletes an available document of `tenant_id` that is neither locked nor held by staged
    /// evidence, row and bytes.
    pub async fn delete(&self, tenant_id: &str, id: &DocumentId) -> Result<(), DocumentError> {
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .map_err(anyhow::Error::from)?;
        match postgres::delete_unlocked_document(&mut tx, tenant_id, id.as_str()).await? {
            DeleteOutcome::NotFound => return Err(DocumentError::NotFound { id: id.clone() }),
            DeleteOutcome::Locked => return Err(DocumentError::Locked { id: id.clone() }),
            DeleteOutcome::Staged { holder } => {
                // `staged.<dispute_id>.<field>.<nonce>`, as dispute-core names its holds.
                let mut parts = holder.split('.').skip(1);
                let dispute_id = parts.next().unwrap_or_default().to_owned();
                let field = parts.next().unwrap_or_default().to_owned();
                return Err(DocumentError::InUse {
                    id: id.clone(),
                    dispute_id,
                    field,
                });
            }
            DeleteOutcome::Deleted { object_key } => {
                // The row goes only if the bytes went: a failed delete keeps both.
                self.objects.delete_object(&object_key).await?;
            }
        }
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(())
    }
}
