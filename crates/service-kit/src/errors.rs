//! google.rpc rich error details (AIP-193) shared by both services.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::dependency::{Dependency, unavailable_dependency};
pub use domain_kit::violation::Violation;
use domain_kit::violation::{
    MAX_DESCRIPTION_BYTES, MAX_FIELD_BYTES, MAX_MESSAGE_FIELDS, MAX_REPORTED_VIOLATIONS, truncated,
};

/// RetryInfo delay sent with UNAVAILABLE when a dependency fails.
pub const DEPENDENCY_RETRY_DELAY: Duration = Duration::from_secs(1);

/// INVALID_ARGUMENT with one BadRequest field violation per bad field and an ErrorInfo.
/// At most [`MAX_REPORTED_VIOLATIONS`] violations are sent, each cut to
/// [`MAX_FIELD_BYTES`] / [`MAX_DESCRIPTION_BYTES`]; the message names the first
/// [`MAX_MESSAGE_FIELDS`] and counts the rest ("invalid request: a, b, c, d, e and 495
/// more"), and ErrorInfo's `violations` holds the total. So the details stay a few KiB
/// whatever the request.
pub fn invalid_argument(domain: &str, violations: &[Violation]) -> Status {
    let reported = &violations[..violations.len().min(MAX_REPORTED_VIOLATIONS)];
    let fields: Vec<String> = reported
        .iter()
        .map(|v| truncated(&v.field, MAX_FIELD_BYTES))
        .collect();
    let named = &fields[..fields.len().min(MAX_MESSAGE_FIELDS)];
    let mut message = format!("invalid request: {}", named.join(", "));
    let rest = violations.len() - named.len();
    if rest > 0 {
        message.push_str(&format!(" and {rest} more"));
    }
    let mut details = ErrorDetails::with_bad_request(
        reported
            .iter()
            .zip(fields)
            .map(|(v, field)| {
                FieldViolation::new(field, truncated(&v.description, MAX_DESCRIPTION_BYTES))
            })
            .collect::<Vec<_>>(),
    );
    details.set_error_info(
        "INVALID_ARGUMENT",
        domain,
        [("violations".to_owned(), violations.len().to_string())],
    );
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

/// A retryable status (UNAVAILABLE, RESOURCE_EXHAUSTED): ErrorInfo `reason` plus a
/// RetryInfo telling the client how long to back off.
pub fn retryable(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    domain: &str,
    retry_delay: Duration,
) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry_delay));
    details.set_error_info(reason, domain, []);
    Status::with_error_details(code, message, details)
}

/// UNAVAILABLE with RetryInfo when `error` comes from a dependency that is down, timed out
/// or exhausted (see [`crate::dependency`]); otherwise [`internal`]. The cause is logged,
/// never sent.
pub fn internal_or_unavailable(domain: &str, error: &anyhow::Error) -> Status {
    match unavailable_dependency(error) {
        Some(dependency) => dependency_unavailable(domain, dependency, error),
        None => internal(domain, error),
    }
}

/// UNAVAILABLE with RetryInfo and ErrorInfo `DATABASE_UNAVAILABLE` / `STORAGE_UNAVAILABLE`;
/// `cause` is logged, never sent.
pub fn dependency_unavailable(
    domain: &str,
    dependency: Dependency,
    cause: &anyhow::Error,
) -> Status {
    tracing::warn!(error = ?cause, %dependency, "dependency unavailable");
    if cause.chain().any(|c| {
        matches!(
            c.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut)
        )
    }) {
        crate::metrics::pool_acquire_timed_out();
    }
    retryable(
        Code::Unavailable,
        dependency.message(),
        dependency.reason(),
        domain,
        DEPENDENCY_RETRY_DELAY,
    )
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
    fn a_database_timeout_is_unavailable_with_retry_info() {
        let error = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("password=hunter2");
        let status = internal_or_unavailable("disputes.v1", &error);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("hunter2"));
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("DATABASE_UNAVAILABLE")
        );
        assert_eq!(
            details.retry_info().and_then(|r| r.retry_delay),
            Some(DEPENDENCY_RETRY_DELAY)
        );
    }

    #[test]
    fn a_bug_stays_internal() {
        let status = internal_or_unavailable("disputes.v1", &anyhow::anyhow!("bug"));
        assert_eq!(status.code(), Code::Internal);
    }

    #[test]
    fn internal_hides_the_cause() {
        let status = internal("disputes.v1", &anyhow::anyhow!("password=hunter2 leaked"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn invalid_argument_reports_a_bounded_number_of_short_violations() {
        // Four bytes a character: cut by bytes, not characters.
        let violations: Vec<Violation> = (0..500)
            .map(|i| Violation::new(format!("{}{i}", "😀".repeat(10_000)), "😀".repeat(10_000)))
            .collect();
        let status = invalid_argument("disputes.v1", &violations);
        assert!(status.message().ends_with(" and 495 more"));
        let details = status.get_error_details();
        let reported = &details.bad_request().unwrap().field_violations;
        assert_eq!(reported.len(), MAX_REPORTED_VIOLATIONS);
        assert!(reported.iter().all(|v| v.field.len() <= MAX_FIELD_BYTES));
        assert!(
            reported
                .iter()
                .all(|v| v.description.len() <= MAX_DESCRIPTION_BYTES)
        );
        assert_eq!(
            details.error_info().unwrap().metadata.get("violations"),
            Some(&"500".to_owned())
        );
        let size = status.details().len() + status.message().len();
        assert!(size < 6 * 1024, "{size} bytes");
    }
}
