use service_kit::auth::Scope;
use service_kit::violation::Violation;

/// Everything that can go wrong in dispute-core, mapped to a gRPC status in
/// `grpc/status.rs`.
#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("invalid request")]
    Validation(Vec<Violation>),
    #[error("request_id was already used with a different request")]
    IdempotencyKeyReused,
    /// A lifecycle rule refuses the change; `reason` is an UPPER_SNAKE ErrorInfo reason.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    #[error("version mismatch: expected {expected}, current {current}")]
    VersionConflict { expected: i64, current: i64 },
    #[error("the token lacks scope {scope}, needed to {purpose}")]
    MissingScope { scope: Scope, purpose: &'static str },
    #[error("document-store is unavailable")]
    DocumentsUnavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}
