use domain_kit::violation::Violation;

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
    /// A cap on what a tenant may hold is reached (e.g. webhook endpoints): retrying does not
    /// help until it holds less. `reason` is an UPPER_SNAKE ErrorInfo reason.
    #[error("{message}")]
    LimitReached {
        reason: &'static str,
        message: String,
        limit: u64,
    },
    /// A feed position (page token or resume point) whose events the retention purge
    /// removed: going on from it would skip events. `oldest_event_id` is the oldest still
    /// kept (`None` when none is).
    #[error("{}", events_purged_message(.oldest_event_id.as_deref()))]
    EventsPurged { oldest_event_id: Option<String> },
    #[error("version mismatch: expected {expected}, current {current}")]
    VersionConflict { expected: i64, current: i64 },
    #[error("the token lacks scope {scope}, needed to {purpose}")]
    MissingScope {
        /// The scope's name, e.g. `documents:write`.
        scope: &'static str,
        purpose: &'static str,
    },
    #[error("document-store is unavailable")]
    DocumentsUnavailable,
    /// A retry of a request refused before: the refusal as first answered.
    #[error("{}", .0.message)]
    Remembered(RememberedRefusal),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn events_purged_message(oldest_event_id: Option<&str>) -> String {
    let start = "events after this position were removed by retention";
    match oldest_event_id {
        Some(id) => format!(
            "{start}; the oldest available event is {id}: list or stream from the beginning \
             to go on from it"
        ),
        None => format!("{start}; no older event is available: list or stream from the beginning"),
    }
}

impl DisputeError {
    /// A refusal by a business rule, which idempotency remembers like a success: the dispute
    /// (or another object) does not exist, or a lifecycle rule refuses the change. Validation
    /// errors, version conflicts, unavailable dependencies and internal errors are not
    /// remembered: a retry is decided afresh.
    pub fn is_remembered_refusal(&self) -> bool {
        matches!(
            self,
            DisputeError::NotFound { .. } | DisputeError::FailedPrecondition { .. }
        )
    }
}

/// A refusal stored under an idempotency key: the status as first answered (its gRPC code,
/// message and encoded details), replayed unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedRefusal {
    pub code: i32,
    pub message: String,
    pub details: Vec<u8>,
}
