//! Why the lifecycle refuses a change, and how a refusal becomes a [`DisputeError`].

use chrono::{DateTime, Utc};
use domain_kit::violation::Violation;

use super::inputs::NetworkEventKind;
use crate::domain::enums::{ActionType, Status};
use crate::domain::error::DisputeError;
use crate::domain::ledger::ExceedsOriginalAmount;

/// Why the lifecycle refuses; nothing changes. The application maps it to a gRPC status:
/// INVALID_ARGUMENT with a field violation when [`LifecycleError::invalid_argument_field`] is
/// `Some`, otherwise FAILED_PRECONDITION with a `PreconditionFailure`; [`LifecycleError::reason`]
/// is the `ErrorInfo` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("{} is not available: {why}", upper(.action.as_str()))]
    ActionNotAvailable { action: ActionType, why: String },
    #[error("{} was possible until {valid_until}", upper(.action.as_str()))]
    DeadlinePassed {
        action: ActionType,
        valid_until: DateTime<Utc>,
    },
    #[error("evidence cannot change: {why}")]
    EvidenceLocked { why: String },
    #[error("network event {event} cannot be applied: {why}")]
    EventNotApplicable {
        event: NetworkEventKind,
        why: String,
    },
    #[error("network event {event} contradicts the dispute's final status {}", upper(.status.as_str()))]
    ConflictingOutcome {
        event: NetworkEventKind,
        status: Status,
    },
    #[error("{field}: {why}")]
    InvalidAmount { field: &'static str, why: String },
    /// A request field other than an amount that does not fit the dispute (INVALID_ARGUMENT).
    #[error("{field}: {why}")]
    InvalidField { field: &'static str, why: String },
    #[error(
        "disputing {amount} more would exceed the original amount {original_amount} \
         ({already_disputed} already disputed)"
    )]
    ExceedsOriginalAmount {
        original_amount: i64,
        already_disputed: i64,
        amount: i64,
    },
    #[error("cannot open the dispute: {why}")]
    CannotOpen { why: String },
}

impl LifecycleError {
    /// The `ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            LifecycleError::ActionNotAvailable { .. } => "ACTION_NOT_AVAILABLE",
            LifecycleError::DeadlinePassed { .. } => "DEADLINE_PASSED",
            LifecycleError::EvidenceLocked { .. } => "EVIDENCE_CLOSED",
            LifecycleError::EventNotApplicable { .. } => "NETWORK_EVENT_NOT_APPLICABLE",
            LifecycleError::ConflictingOutcome { .. } => "CONFLICTING_OUTCOME",
            LifecycleError::InvalidAmount { .. } => "INVALID_AMOUNT",
            LifecycleError::InvalidField { .. } => "INVALID_FIELD",
            LifecycleError::ExceedsOriginalAmount { .. } => "AMOUNT_EXCEEDS_ORIGINAL",
            LifecycleError::CannotOpen { .. } => "CANNOT_OPEN_DISPUTE",
        }
    }

    /// The request field at fault when the request itself is invalid (INVALID_ARGUMENT);
    /// `None` for refusals caused by the dispute's state (FAILED_PRECONDITION).
    pub fn invalid_argument_field(&self) -> Option<&'static str> {
        match self {
            LifecycleError::InvalidAmount { field, .. }
            | LifecycleError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// INVALID_ARGUMENT with a field violation for bad amounts, FAILED_PRECONDITION with the
/// ErrorInfo reason for everything else.
impl From<LifecycleError> for DisputeError {
    fn from(error: LifecycleError) -> DisputeError {
        match error {
            LifecycleError::InvalidAmount { field, why }
            | LifecycleError::InvalidField { field, why } => {
                DisputeError::Validation(vec![Violation::new(field, why)])
            }
            other => DisputeError::FailedPrecondition {
                reason: other.reason(),
                message: other.to_string(),
            },
        }
    }
}

/// H7, checked by the ledger before a dispute is opened or its amount grows.
impl From<ExceedsOriginalAmount> for LifecycleError {
    fn from(refusal: ExceedsOriginalAmount) -> LifecycleError {
        let ExceedsOriginalAmount {
            original_amount,
            already_disputed,
            amount,
        } = refusal;
        LifecycleError::ExceedsOriginalAmount {
            original_amount,
            already_disputed,
            amount,
        }
    }
}

impl From<ExceedsOriginalAmount> for DisputeError {
    fn from(refusal: ExceedsOriginalAmount) -> DisputeError {
        LifecycleError::from(refusal).into()
    }
}

/// An enum's name as written in messages (`ACCEPT`, `UNDER_REVIEW`).
pub(super) fn upper(name: &str) -> String {
    name.to_ascii_uppercase()
}
