//! The single mapping from [`DocumentError`] to a gRPC status: handlers return
//! `DocumentError` and `?` turns it into a `Status` here.

use service_kit::dependency::Dependency;
use service_kit::errors::{
    DEPENDENCY_RETRY_DELAY, dependency_unavailable, failed_precondition, internal_or_unavailable,
    invalid_argument, retryable, status_with_reason,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::DocumentError;

pub const DOMAIN: &str = "documents.v1";

fn invalid_field(field: &str, description: String, reason: &str) -> Status {
    let mut details = ErrorDetails::with_bad_request_violation(field, description.clone());
    details.set_error_info(reason, DOMAIN, []);
    Status::with_error_details(Code::InvalidArgument, description, details)
}

impl From<DocumentError> for Status {
    fn from(error: DocumentError) -> Self {
        match error {
            DocumentError::NotFound { id } => status_with_reason(
                Code::NotFound,
                format!("document {id} not found"),
                "DOCUMENT_NOT_FOUND",
                DOMAIN,
            ),
            DocumentError::Validation(violations) => invalid_argument(DOMAIN, &violations),
            e @ DocumentError::TooLarge { .. } => {
                invalid_field("chunk", e.to_string(), "DOCUMENT_TOO_LARGE")
            }
            e @ DocumentError::ContentTypeMismatch { .. } => invalid_field(
                "header.content_type",
                e.to_string(),
                "CONTENT_TYPE_MISMATCH",
            ),
            e @ DocumentError::UnsupportedContent => {
                invalid_field("chunk", e.to_string(), "UNSUPPORTED_CONTENT")
            }
            e @ DocumentError::TooShortToIdentify => {
                invalid_field("chunk", e.to_string(), "CONTENT_NOT_IDENTIFIABLE")
            }
            e @ DocumentError::Sha256Mismatch { .. } => {
                invalid_field("header.expected_sha256", e.to_string(), "SHA256_MISMATCH")
            }
            e @ (DocumentError::SizeExceeded { .. } | DocumentError::SizeMismatch { .. }) => {
                invalid_field("header.expected_size_bytes", e.to_string(), "SIZE_MISMATCH")
            }
            e @ DocumentError::Locked { .. } => {
                failed_precondition(DOMAIN, "DOCUMENT_LOCKED", "document", e.to_string())
            }
            DocumentError::InUse {
                ref dispute_id,
                ref field,
                ..
            } => {
                let description = format!("staged as evidence.{field}: {error}");
                failed_precondition(DOMAIN, "DOCUMENT_IN_USE", &dispute_id.clone(), description)
            }
            e @ DocumentError::OutOfRange { .. } => status_with_reason(
                Code::OutOfRange,
                e.to_string(),
                "RANGE_NOT_SATISFIABLE",
                DOMAIN,
            ),
            e @ DocumentError::IdleTimeout { .. } => {
                status_with_reason(Code::DeadlineExceeded, e.to_string(), "UPLOAD_IDLE", DOMAIN)
            }
            e @ DocumentError::HeaderTimeout { .. } => status_with_reason(
                Code::DeadlineExceeded,
                e.to_string(),
                "UPLOAD_HEADER_TIMEOUT",
                DOMAIN,
            ),
            e @ DocumentError::UploadDeadline { .. } => status_with_reason(
                Code::DeadlineExceeded,
                e.to_string(),
                "UPLOAD_DEADLINE",
                DOMAIN,
            ),
            e @ DocumentError::UploadCapacity { retry_after, .. } => {
                let mut details = ErrorDetails::with_error_info("UPLOAD_CAPACITY", DOMAIN, []);
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, e.to_string(), details)
            }
            e @ DocumentError::TenantUploadCapacity { retry_after, .. } => retryable(
                Code::ResourceExhausted,
                e.to_string(),
                "TENANT_UPLOAD_CAPACITY",
                DOMAIN,
                retry_after,
            ),
            e @ DocumentError::DownloadCapacity { retry_after, .. } => retryable(
                Code::ResourceExhausted,
                e.to_string(),
                "DOWNLOAD_CAPACITY",
                DOMAIN,
                retry_after,
            ),
            e @ DocumentError::TenantDownloadCapacity { retry_after, .. } => retryable(
                Code::ResourceExhausted,
                e.to_string(),
                "TENANT_DOWNLOAD_CAPACITY",
                DOMAIN,
                retry_after,
            ),
            // The same code as an idle client: the client did not send (or take) data in time.
            e @ DocumentError::UploadTooSlow { .. } => status_with_reason(
                Code::DeadlineExceeded,
                e.to_string(),
                "UPLOAD_TOO_SLOW",
                DOMAIN,
            ),
            e @ DocumentError::DownloadStalled { .. } => status_with_reason(
                Code::DeadlineExceeded,
                e.to_string(),
                "DOWNLOAD_STALLED",
                DOMAIN,
            ),
            e @ DocumentError::Cancelled => {
                status_with_reason(Code::Cancelled, e.to_string(), "UPLOAD_CANCELLED", DOMAIN)
            }
            e @ DocumentError::ShuttingDown => retryable(
                Code::Unavailable,
                e.to_string(),
                "SHUTTING_DOWN",
                DOMAIN,
                DEPENDENCY_RETRY_DELAY,
            ),
            // S3 failing while a download streams its body (the connection dropped or
            // stalled): the object is fine, retry.
            DocumentError::Internal(error)
                if error
                    .downcast_ref::<aws_smithy_types::byte_stream::error::Error>()
                    .is_some() =>
            {
                dependency_unavailable(DOMAIN, Dependency::Storage, &error)
            }
            // The database or S3 down, exhausted or timed out: UNAVAILABLE with RetryInfo.
            DocumentError::Internal(error) => internal_or_unavailable(DOMAIN, &error),
        }
    }
}
