//! Pure rules of document-store: no I/O, no tonic, no sqlx, no aws-sdk.

pub mod content;
pub mod error;
pub mod header;

pub use content::{ContentType, Sniff, sniff};
pub use error::DocumentError;
pub use header::{UploadHeader, UploadLimits};

use chrono::{DateTime, Utc};

/// Metadata of a stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub tenant_id: String,
    pub dispute_id: Option<String>,
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

/// A validated byte range of a download: first byte and last byte, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// `bytes=first-last` for an HTTP Range header.
    pub fn http_header(&self) -> String {
        format!("bytes={}-{}", self.first, self.last)
    }
}

/// The range `offset`/`length` (0 = to the end) select in a document of `size` bytes.
pub fn byte_range(offset: i64, length: i64, size: i64) -> Result<ByteRange, DocumentError> {
    let mut violations = Vec::new();
    if offset < 0 {
        violations.push(service_kit::violation::Violation::new(
            "offset",
            "must not be negative",
        ));
    }
    if length < 0 {
        violations.push(service_kit::violation::Violation::new(
            "length",
            "must not be negative",
        ));
    }
    if !violations.is_empty() {
        return Err(DocumentError::Validation(violations));
    }
    if offset >= size {
        return Err(DocumentError::OutOfRange { offset, size });
    }
    let end_exclusive = if length == 0 {
        size
    } else {
        offset.saturating_add(length).min(size)
    };
    Ok(ByteRange {
        first: offset as u64,
        last: (end_exclusive - 1) as u64,
    })
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

    #[test]
    fn ranges_are_clamped_to_the_document() {
        assert_eq!(
            byte_range(0, 0, 10).unwrap(),
            ByteRange { first: 0, last: 9 }
        );
        assert_eq!(
            byte_range(3, 4, 10).unwrap(),
            ByteRange { first: 3, last: 6 }
        );
        assert_eq!(
            byte_range(8, 100, 10).unwrap(),
            ByteRange { first: 8, last: 9 }
        );
        assert_eq!(byte_range(9, 1, 10).unwrap().len(), 1);
        assert_eq!(byte_range(2, i64::MAX, 10).unwrap().last, 9);
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(matches!(
            byte_range(10, 0, 10),
            Err(DocumentError::OutOfRange { .. })
        ));
        assert!(matches!(
            byte_range(-1, -1, 10),
            Err(DocumentError::Validation(v)) if v.len() == 2
        ));
    }
}
