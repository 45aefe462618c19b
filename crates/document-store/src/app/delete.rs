//! Deleting a document that was never submitted as evidence.

use service_kit::ids::DocumentId;

use super::Documents;
use crate::domain::DocumentError;
use crate::store::postgres::{self, DeleteOutcome};

impl Documents {
    /// Deletes an available, unlocked document of `tenant_id`, row and bytes.
    pub async fn delete(&self, tenant_id: &str, id: &DocumentId) -> Result<(), DocumentError> {
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        match postgres::delete_unlocked_document(&mut tx, tenant_id, id.as_str()).await? {
            DeleteOutcome::NotFound => return Err(DocumentError::NotFound { id: id.clone() }),
            DeleteOutcome::Locked => return Err(DocumentError::Locked { id: id.clone() }),
            DeleteOutcome::Deleted { object_key } => {
                // The row goes only if the bytes went: a failed delete keeps both.
                self.objects.delete_object(&object_key).await?;
            }
        }
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(())
    }
}
