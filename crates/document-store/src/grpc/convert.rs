//! The only mapping between documents.v1 messages and domain values.

use disputes_proto::documents_v1 as pb;
use prost_types::Timestamp;

use crate::domain::Document;

pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

impl From<Document> for pb::Document {
    fn from(doc: Document) -> Self {
        pb::Document {
            id: doc.id,
            tenant_id: doc.tenant_id,
            dispute_id: doc.dispute_id.unwrap_or_default(),
            filename: doc.filename,
            content_type: doc.content_type,
            size_bytes: doc.size_bytes,
            sha256: doc.sha256,
            create_time: Some(timestamp(doc.create_time)),
            lock_time: doc.lock_time.map(timestamp),
        }
    }
}
