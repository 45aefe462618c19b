//! The single mapping from [`DisputeError`] to a gRPC status.

use service_kit::auth::missing_scope_status;
use service_kit::errors::{
    DEPENDENCY_RETRY_DELAY, internal_or_unavailable, invalid_argument, retryable,
    status_with_reason,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::DisputeError;
use crate::domain::error::RememberedRefusal;

pub const DOMAIN: &str = "disputes.v1";

/// The PreconditionFailure subject of a FAILED_PRECONDITION: what the condition is about.
/// Webhook refusals name the endpoint or the delivery; the rest are about a dispute.
fn precondition_subject(reason: &str) -> &'static str {
    match reason {
        crate::domain::webhooks::SECRET_NO_LONGER_AVAILABLE => "webhook_endpoint",
        "RETRY_ALREADY_PENDING" | "RETRY_LIMIT_REACHED" => "webhook_delivery",
        _ => "dispute",
    }
}

impl From<DisputeError> for Status {
    fn from(error: DisputeError) -> Self {
        status_of(&error)
    }
}

/// How a remembered refusal is stored: the status answered for it, code, message and
/// encoded details (given to the app as its `RefusalEncoder`).
pub fn encode_refusal(error: &DisputeError) -> RememberedRefusal {
    let status = status_of(error);
    RememberedRefusal {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: status.details().to_vec(),
    }
}

/// The status answered for `error`.
pub fn status_of(error: &DisputeError) -> Status {
    match error {
        DisputeError::NotFound { kind, id } => status_with_reason(
            Code::NotFound,
            format!("{kind} {id} not found"),
            &format!("{}_NOT_FOUND", kind.to_uppercase()),
            DOMAIN,
        ),
        e @ DisputeError::AlreadyExists { .. } => {
            status_with_reason(Code::AlreadyExists, e.to_string(), "ALREADY_EXISTS", DOMAIN)
        }
        DisputeError::Validation(violations) => invalid_argument(DOMAIN, violations),
        e @ DisputeError::IdempotencyKeyReused => {
            let mut details = ErrorDetails::with_precondition_failure_violation(
                "IDEMPOTENCY_KEY_REUSED",
                "request_id",
                e.to_string(),
            );
            details.set_error_info("IDEMPOTENCY_KEY_REUSED", DOMAIN, []);
            Status::with_error_details(Code::FailedPrecondition, e.to_string(), details)
        }
        DisputeError::FailedPrecondition { reason, message } => {
            service_kit::errors::failed_precondition(
                DOMAIN,
                reason,
                precondition_subject(reason),
                message.clone(),
            )
        }
        // No RetryInfo: a retry fails the same way until the tenant holds less.
        DisputeError::LimitReached {
            reason,
            message,
            limit,
        } => {
            let details = ErrorDetails::with_error_info(
                *reason,
                DOMAIN,
                [("limit".to_owned(), limit.to_string())],
            );
            Status::with_error_details(Code::ResourceExhausted, message.clone(), details)
        }
        // OUT_OF_RANGE, not FAILED_PRECONDITION: the position lies before the range the
        // feed still holds, and no change of state makes it valid again; the caller must
        // start over from the oldest event (named in the metadata and the message).
        e @ DisputeError::EventsPurged { oldest_event_id } => {
            let details = ErrorDetails::with_error_info(
                "EVENTS_PURGED",
                DOMAIN,
                [(
                    "oldest_event_id".to_owned(),
                    oldest_event_id.clone().unwrap_or_default(),
                )],
            );
            Status::with_error_details(Code::OutOfRange, e.to_string(), details)
        }
        e @ DisputeError::VersionConflict { .. } => {
            status_with_reason(Code::Aborted, e.to_string(), "VERSION_CONFLICT", DOMAIN)
        }
        e @ DisputeError::MissingScope { scope, .. } => {
            missing_scope_status(scope, DOMAIN, e.to_string())
        }
        e @ DisputeError::DocumentsUnavailable => retryable(
            Code::Unavailable,
            e.to_string(),
            "DOCUMENTS_UNAVAILABLE",
            DOMAIN,
            DEPENDENCY_RETRY_DELAY,
        ),
        // A database that is down, exhausted or timed out: UNAVAILABLE with RetryInfo.
        DisputeError::Internal(error) => internal_or_unavailable(DOMAIN, error),
        // Exactly the status first answered, details included.
        DisputeError::Remembered(refusal) => Status::with_details(
            Code::from_i32(refusal.code),
            refusal.message.clone(),
            refusal.details.clone().into(),
        ),
    }
}
