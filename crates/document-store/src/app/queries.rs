//! Reading document metadata: one document, a page of them, or a batch by id.

use domain_kit::ids::DocumentId;
use domain_kit::page_token::PageCursor;

use super::Documents;
use crate::domain::{Document, DocumentError, ListQuery, in_request_order, missing_ids};
use crate::store::postgres::{self, StoredDocument};

/// One page of a listing.
pub struct DocumentPage {
    pub documents: Vec<Document>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// What a batch read found, in request order, and which ids it did not.
pub struct DocumentBatch {
    pub documents: Vec<Document>,
    pub missing_ids: Vec<DocumentId>,
}

impl Documents {
    /// An available document of `tenant_id`.
    pub async fn get(&self, tenant_id: &str, id: &DocumentId) -> Result<Document, DocumentError> {
        Ok(self.find(tenant_id, id).await?.document)
    }

    /// An available document of `tenant_id` with where its bytes are.
    pub(super) async fn find(
        &self,
        tenant_id: &str,
        id: &DocumentId,
    ) -> Result<StoredDocument, DocumentError> {
        postgres::find_available_document(&self.pool, tenant_id, id.as_str())
            .await?
            .ok_or_else(|| DocumentError::NotFound { id: id.clone() })
    }

    /// One page of the tenant's available documents, newest first.
    pub async fn list(
        &self,
        tenant_id: &str,
        query: &ListQuery,
    ) -> Result<DocumentPage, DocumentError> {
        let rows = postgres::list_available_documents(
            &self.pool,
            tenant_id,
            query.dispute_id.as_ref().map(|id| id.as_str()),
            query.page.after.as_ref(),
            query.page.fetch_limit(),
        )
        .await?;
        let (documents, next_page_token) = query.page.cut(rows, |last| PageCursor {
            create_time: last.create_time,
            id: last.id.to_string(),
        });
        Ok(DocumentPage {
            documents,
            next_page_token,
        })
    }

    /// The tenant's available documents among `ids` (already deduplicated).
    pub async fn batch_get(
        &self,
        tenant_id: &str,
        ids: &[DocumentId],
    ) -> Result<DocumentBatch, DocumentError> {
        let raw_ids: Vec<&str> = ids.iter().map(DocumentId::as_str).collect();
        let found = postgres::find_available_documents(&self.pool, tenant_id, &raw_ids).await?;
        Ok(DocumentBatch {
            missing_ids: missing_ids(ids, &found),
            documents: in_request_order(ids, found),
        })
    }
}
