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

/// Declares [`DisputeEvent`] from one list: each variant with its wire name, in the order
/// docs/api.md lists them. [`DisputeEvent::ALL`], [`DisputeEvent::as_str`] and
/// [`DisputeEvent::from_name`] follow from it, and so does every other list of event types
/// (the webhook endpoints' and the feed's filters check names against it).
macro_rules! dispute_events {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)+) => {
        /// Event names to record with a transition (docs/api.md, "Events").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DisputeEvent {
            $($(#[doc = $doc])* $variant,)+
        }

        impl DisputeEvent {
            /// Every event type, in the order docs/api.md lists them.
            pub const ALL: &[DisputeEvent] = &[$(DisputeEvent::$variant,)+];

            /// The wire name (`dispute.won`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DisputeEvent::$variant => $name,)+
                }
            }
        }
    };
}

dispute_events! {
    Created = "dispute.created",
    Updated = "dispute.updated",
    FundsWithdrawn = "dispute.funds_withdrawn",
    FundsReinstated = "dispute.funds_reinstated",
    EvidenceSubmitted = "dispute.evidence_submitted",
    Won = "dispute.won",
    Lost = "dispute.lost",
    Closed = "dispute.closed",
    DefensePeriodEnded = "dispute.defense_period_ended",
    Reopened = "dispute.reopened",
    Overdue = "dispute.overdue",
    /// The response is due within the configured lead time (recorded by the deadline
    /// sweeper, once per `due_by`; no history entry causes it).
    DueSoon = "dispute.due_soon",
}

impl DisputeEvent {
    /// The event type named `name` (`dispute.won`), if there is one.
    pub fn from_name(name: &str) -> Option<DisputeEvent> {
        DisputeEvent::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == name)
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
