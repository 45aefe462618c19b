//! The only mapping between documents.v1 messages and domain values: requests into typed,
//! validated domain values (the rules live in `domain`), domain values into messages.

use disputes_proto::documents_v1 as pb;
use domain_kit::ids::DocumentId;
use service_kit::time::timestamp;

use crate::domain::{Document, DocumentError, ListQuery, UploadHeader, batch_ids};

impl From<Document> for pb::Document {
    fn from(doc: Document) -> Self {
        pb::Document {
            id: doc.id.into_string(),
            tenant_id: doc.tenant_id,
            dispute_id: doc.dispute_id.map(String::from).unwrap_or_default(),
            filename: doc.filename,
            content_type: doc.content_type,
            size_bytes: doc.size_bytes,
            sha256: doc.sha256,
            create_time: Some(timestamp(doc.create_time)),
            lock_time: doc.lock_time.map(timestamp),
        }
    }
}

/// Documents as messages, in the same order.
pub fn documents(documents: Vec<Document>) -> Vec<pb::Document> {
    documents.into_iter().map(Into::into).collect()
}

/// The document a single-document request names in its `id` field.
pub fn requested_id(id: &str) -> Result<DocumentId, DocumentError> {
    Ok(DocumentId::parse("id", id)?)
}

/// The documents a batch request names in its `ids` field.
pub fn requested_ids(ids: &[String]) -> Result<Vec<DocumentId>, DocumentError> {
    batch_ids(ids)
}

/// The `lock_id` of LockDocuments (optional) or UnlockDocuments (required).
pub fn lock_holder(lock_id: &str, required: bool) -> Result<String, DocumentError> {
    crate::domain::query::lock_holder("lock_id", lock_id, required)
}

pub fn list_query(request: &pb::ListDocumentsRequest) -> Result<ListQuery, DocumentError> {
    ListQuery::parse(&request.dispute_id, request.page_size, &request.page_token)
}

pub fn upload_header(header: &pb::DocumentHeader) -> Result<UploadHeader, DocumentError> {
    UploadHeader::parse(
        &header.filename,
        &header.content_type,
        &header.dispute_id,
        &header.expected_sha256,
        header.expected_size_bytes,
    )
}
