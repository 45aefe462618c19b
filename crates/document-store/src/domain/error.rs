use domain_kit::ids::DocumentId;
use domain_kit::violation::Violation;

/// Everything that can go wrong in document-store, mapped to a gRPC status in
/// `grpc/status.rs`.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document {id} not found")]
    NotFound { id: DocumentId },
    #[error("invalid request")]
    Validation(Vec<Violation>),
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("declared content type {declared} but the bytes are {detected}")]
    ContentTypeMismatch {
        declared: &'static str,
        detected: &'static str,
    },
    #[error("the bytes are not a PDF, JPEG, PNG or TIFF file")]
    UnsupportedContent,
    #[error("the upload is empty or too short to identify its type")]
    TooShortToIdentify,
    #[error("the upload sent more than the declared {declared} bytes")]
    SizeExceeded { declared: u64 },
    #[error("the upload sent {received} bytes, declared {declared}")]
    SizeMismatch { declared: u64, received: u64 },
    #[error("sha256 of the bytes is {actual}, expected {expected}")]
    Sha256Mismatch { expected: String, actual: String },
    #[error("document {id} was submitted as evidence and cannot be deleted")]
    Locked { id: DocumentId },
    #[error(
        "document {id} is staged as evidence.{field} of dispute {dispute_id}; clear that field first"
    )]
    InUse {
        id: DocumentId,
        dispute_id: String,
        field: String,
    },
    #[error("offset {offset} is beyond the document's {size} bytes")]
    OutOfRange { offset: i64, size: i64 },
    #[error("no chunk received for {secs} seconds")]
    IdleTimeout { secs: u64 },
    #[error("no upload header received within {secs} seconds")]
    HeaderTimeout { secs: u64 },
    #[error("the upload did not finish within {secs} seconds")]
    UploadDeadline { secs: u64 },
    #[error("this replica already runs {limit} uploads; retry later")]
    UploadCapacity {
        limit: usize,
        /// How long the client should wait before retrying.
        retry_after: std::time::Duration,
    },
    #[error("this tenant already runs {limit} uploads on this replica; retry later")]
    TenantUploadCapacity {
        limit: usize,
        retry_after: std::time::Duration,
    },
    #[error(
        "the upload sent {measured_bytes_per_sec} bytes/s over the last {window:?}, below the required {required_bytes_per_sec} bytes/s"
    )]
    UploadTooSlow {
        measured_bytes_per_sec: u64,
        required_bytes_per_sec: u64,
        window: std::time::Duration,
    },
    #[error("this replica already serves {limit} downloads; retry later")]
    DownloadCapacity {
        limit: usize,
        retry_after: std::time::Duration,
    },
    #[error("this tenant already has {limit} downloads open on this replica; retry later")]
    TenantDownloadCapacity {
        limit: usize,
        retry_after: std::time::Duration,
    },
    #[error("the client took no data of the download for {timeout:?}")]
    DownloadStalled { timeout: std::time::Duration },
    #[error("the client cancelled the upload")]
    Cancelled,
    #[error("document-store is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl DocumentError {
    /// Why an upload was refused, as the `reason` of the upload rejection metric.
    pub fn upload_rejection_reason(&self) -> &'static str {
        match self {
            DocumentError::NotFound { .. } => "not_found",
            DocumentError::Validation(_) => "invalid_argument",
            DocumentError::TooLarge { .. } => "too_large",
            DocumentError::ContentTypeMismatch { .. } => "content_type_mismatch",
            DocumentError::UnsupportedContent => "unsupported_content",
            DocumentError::TooShortToIdentify => "too_short",
            DocumentError::SizeExceeded { .. } => "size_exceeded",
            DocumentError::SizeMismatch { .. } => "size_mismatch",
            DocumentError::Sha256Mismatch { .. } => "sha256_mismatch",
            DocumentError::Locked { .. } | DocumentError::InUse { .. } => "conflict",
            DocumentError::OutOfRange { .. } => "out_of_range",
            DocumentError::IdleTimeout { .. } => "idle_timeout",
            DocumentError::HeaderTimeout { .. } => "header_timeout",
            DocumentError::UploadDeadline { .. } => "deadline",
            DocumentError::UploadCapacity { .. } => "capacity",
            DocumentError::TenantUploadCapacity { .. } => "tenant_capacity",
            DocumentError::UploadTooSlow { .. } => "too_slow",
            DocumentError::DownloadCapacity { .. } => "download_capacity",
            DocumentError::TenantDownloadCapacity { .. } => "tenant_download_capacity",
            DocumentError::DownloadStalled { .. } => "download_stalled",
            DocumentError::Cancelled => "cancelled",
            DocumentError::ShuttingDown => "shutting_down",
            DocumentError::Internal(_) => "internal",
        }
    }
}

impl From<crate::domain::TooSlow> for DocumentError {
    fn from(slow: crate::domain::TooSlow) -> Self {
        DocumentError::UploadTooSlow {
            measured_bytes_per_sec: slow.measured_bytes_per_sec,
            required_bytes_per_sec: slow.required_bytes_per_sec,
            window: slow.window,
        }
    }
}

impl From<Violation> for DocumentError {
    fn from(violation: Violation) -> Self {
        DocumentError::Validation(vec![violation])
    }
}

#[cfg(test)]
impl DocumentError {
    /// The fields a validation error names; panics on any other error.
    pub(crate) fn violated_fields(self) -> Vec<String> {
        match self {
            DocumentError::Validation(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }
}
