//! A stored document's metadata and where its bytes live.

use chrono::{DateTime, Utc};
use domain_kit::ids::{DisputeId, DocumentId};

/// Metadata of a stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: DocumentId,
    pub tenant_id: String,
    pub dispute_id: Option<DisputeId>,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub create_time: DateTime<Utc>,
    pub lock_time: Option<DateTime<Utc>>,
}

/// Object key for a document: built from tenant and document ids only, never from
/// user-supplied names.
pub fn object_key(tenant_id: &str, document_id: &str) -> String {
    format!("tenants/{tenant_id}/documents/{document_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_use_ids_only() {
        assert_eq!(
            object_key("acme", "doc_01jd3s9v8m6q0n2c5x7r4t1k9e"),
            "tenants/acme/documents/doc_01jd3s9v8m6q0n2c5x7r4t1k9e"
        );
    }
}
