//! What the lifecycle decides: a transition to write, or why nothing changes; and the actions
//! the tenant may take.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};

use super::state::{LifecycleMarks, LifecycleState};
use crate::domain::enums::{ActionType, Actor};
use crate::domain::ledger::LedgerEntry;

/// An action the tenant may take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailableAction {
    pub action: ActionType,
    /// Network actions: the instant the window closes (the action disappears then).
    /// PROVISIONAL_CREDIT under Reg E: its due date; WRITE_OFF and DENY: the Reg E / Z
    /// decision date. Those regulatory dates are shown only: the actions stay available after
    /// them (I14; a late provisional credit is still owed and marked late).
    pub valid_until: Option<DateTime<Utc>>,
}

/// Event names to record with a transition (docs/api.md, "Events").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisputeEvent {
    Created,
    Updated,
    FundsWithdrawn,
    FundsReinstated,
    EvidenceSubmitted,
    Won,
    Lost,
    Closed,
    DefensePeriodEnded,
    Reopened,
    Overdue,
    /// The response is due within the configured lead time (recorded by the deadline
    /// sweeper, once per `due_by`; no history entry causes it).
    DueSoon,
}

impl DisputeEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeEvent::Created => "dispute.created",
            DisputeEvent::Updated => "dispute.updated",
            DisputeEvent::FundsWithdrawn => "dispute.funds_withdrawn",
            DisputeEvent::FundsReinstated => "dispute.funds_reinstated",
            DisputeEvent::EvidenceSubmitted => "dispute.evidence_submitted",
            DisputeEvent::Won => "dispute.won",
            DisputeEvent::Lost => "dispute.lost",
            DisputeEvent::Closed => "dispute.closed",
            DisputeEvent::DefensePeriodEnded => "dispute.defense_period_ended",
            DisputeEvent::Reopened => "dispute.reopened",
            DisputeEvent::Overdue => "dispute.overdue",
            DisputeEvent::DueSoon => "dispute.due_soon",
        }
    }

    /// Every event type, in the order docs/api.md lists them.
    pub const ALL: [DisputeEvent; 12] = [
        DisputeEvent::Created,
        DisputeEvent::Updated,
        DisputeEvent::FundsWithdrawn,
        DisputeEvent::FundsReinstated,
        DisputeEvent::EvidenceSubmitted,
        DisputeEvent::Won,
        DisputeEvent::Lost,
        DisputeEvent::Closed,
        DisputeEvent::DefensePeriodEnded,
        DisputeEvent::Reopened,
        DisputeEvent::Overdue,
        DisputeEvent::DueSoon,
    ];

    /// The event type named `name` (`dispute.won`), if there is one.
    pub fn from_name(name: &str) -> Option<DisputeEvent> {
        DisputeEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl fmt::Display for DisputeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceEffect {
    Unchanged,
    /// Submitted now: lock the referenced documents and record the submitted set (with the
    /// documents' SHA-256) in the history entry (M5, M6).
    Submitted,
    /// The defense period ended without a submission (accept, auto-loss): nothing more can be
    /// staged. Nothing to lock.
    Frozen,
}

/// The action-history entry to append; its stage and status are the transition's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub actor: Actor,
    /// `created`, an action name (`SUBMIT_EVIDENCE`), `network:<KIND>` or
    /// `system:DEADLINE_PASSED`.
    pub what: String,
    /// The caller's message, followed by what the lifecycle did and why.
    pub message: String,
    /// The amount the entry concerns (moved, credited or decided), 0 when none.
    pub amount: i64,
    pub document_ids: Vec<String>,
}

/// Reg E 1005.11(d)(2): a provisional credit reversed now stays honored for checks and
/// preauthorized transfers through `honored_until` (I5). The application sends the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReversalNotice {
    pub amount: i64,
    pub debited_on: NaiveDate,
    pub honored_until: NaiveDate,
}

/// Everything one change writes, in one transaction. `Transition::apply_to_dispute` (like
/// `LifecycleState::from_dispute`) is in `domain/dispute.rs`: the lifecycle does not depend
/// on the stored dispute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The dispute after the change.
    pub state: LifecycleState,
    /// Balance transactions to append, in order (already counted in `state.ledger`).
    pub ledger_entries: Vec<LedgerEntry>,
    /// Events to record, in order; never empty (`dispute.updated` when nothing else fits).
    pub events: Vec<DisputeEvent>,
    pub evidence: EvidenceEffect,
    pub history: HistoryEntry,
    pub provisional_credit_reversal: Option<ReversalNotice>,
}

impl Transition {
    pub fn marks(&self) -> LifecycleMarks {
        self.state.marks()
    }
}

/// Why a trigger changed nothing (not an error: answer OK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnchangedKind {
    /// The event leads where the dispute already is (H9).
    Duplicate,
    /// The event belongs to a point the dispute has passed (H9).
    Stale,
    /// The sweeper ran but no deadline has passed.
    NothingDue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    pub kind: UnchangedKind,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Apply(Box<Transition>),
    Unchanged(Unchanged),
}

impl Decision {
    pub fn transition(self) -> Option<Transition> {
        match self {
            Decision::Apply(transition) => Some(*transition),
            Decision::Unchanged(_) => None,
        }
    }
}

/// A decision to change nothing, and why.
pub(super) fn unchanged(kind: UnchangedKind, why: String) -> Decision {
    Decision::Unchanged(Unchanged { kind, why })
}
