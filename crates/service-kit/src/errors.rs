//! google.rpc rich error details (AIP-193) shared by both services.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

pub use crate::violation::Violation;

/// INVALID_ARGUMENT with one BadRequest field violation per bad field and an ErrorInfo.
pub fn invalid_argument(domain: &str, violations: &[Violation]) -> Status {
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    let message = format!("invalid request: {}", fields.join(", "));
    let mut details = ErrorDetails::with_bad_request(
        violations
            .iter()
            .map(|v| FieldViolation::new(v.field.clone(), v.description.clone()))
            .collect::<Vec<_>>(),
    );
    details.set_error_info("INVALID_ARGUMENT", domain, []);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// A status with an ErrorInfo reason (UPPER_SNAKE) in `domain`.
pub fn status_with_reason(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    domain: &str,
) -> Status {
    let details = ErrorDetails::with_error_info(reason, domain, []);
    Status::with_error_details(code, message, details)
}

/// FAILED_PRECONDITION with a PreconditionFailure violation and an ErrorInfo reason.
pub fn failed_precondition(
    domain: &str,
    reason: &str,
    subject: &str,
    description: impl Into<String>,
) -> Status {
    let description = description.into();
    let mut details =
        ErrorDetails::with_precondition_failure_violation(reason, subject, description.clone());
    details.set_error_info(reason, domain, []);
    Status::with_error_details(Code::FailedPrecondition, description, details)
}

/// INTERNAL without internals: the cause is logged (with the trace id of the current span)
/// and never sent.
pub fn internal(domain: &str, error: &anyhow::Error) -> Status {
    tracing::error!(error = ?error, "internal error");
    status_with_reason(Code::Internal, "internal error", "INTERNAL", domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field() {
        let status = invalid_argument(
            "disputes.v1",
            &[
                Violation::new("amount", "must be greater than 0"),
                Violation::new("currency", "must be an ISO 4217 code"),
            ],
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<String> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(fields, vec!["amount", "currency"]);
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("INVALID_ARGUMENT")
        );
    }

    #[test]
    fn internal_hides_the_cause() {
        let status = internal("disputes.v1", &anyhow::anyhow!("password=hunter2 leaked"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }
}
