//! The dispute lifecycle as a pure state machine: rows M1–M15 (merchant side) and I1–I14
//! (issuer side) of `reference/lifecycle.md`, with SPEC §3's decisions on its open points.
//! No I/O and no clock: every function takes `now`.
//!
//! # How the application uses it
//!
//! Inside one database transaction, with the dispute row locked:
//!
//! ```text
//! let state = LifecycleState::from_dispute(&dispute, marks, issuer_facts);
//! match lifecycle::decide(&state, &Trigger::Tenant(action), &policy, now) {
//!     Err(refusal) => return Err(DisputeError::from(refusal)): FAILED_PRECONDITION with its
//!                     ErrorInfo reason, or INVALID_ARGUMENT for a bad amount; change nothing,
//!     Ok(Decision::Unchanged(why)) => (network events, sweeper) remember the event id, answer OK,
//!     Ok(Decision::Apply(t)) => {
//!         t.apply_to_dispute(&mut dispute);        // stage, status, credit, due, amounts
//!         persist t.marks();                        // reversal_lapses_at, overdue
//!         insert t.ledger_entries (txn_ ids);       // balance_transactions, in order
//!         insert t.history with t.state's stage/status (act_ id, actor, what, message, amount)
//!         if t.evidence == EvidenceEffect::Submitted { lock the evidence documents and record
//!                                                      their SHA-256 in the history entry }
//!         record t.events (each holds the dispute after the change);
//!         store t.state.next_deadline() for the sweeper (index it);
//!         if t.state.amount != state.amount { check_within_original_amount again (H7) }
//!     }
//! }
//! ```
//!
//! New disputes come from [`open_dispute`] (CreateDispute, I1; or RecordNetworkEvent for a new
//! case, M1–M3). `available_actions(&state, now)` fills `Dispute.available_actions`; the
//! sweeper calls `decide(.., &Trigger::DeadlinePassed, ..)` for disputes whose
//! `next_deadline()` has passed (M14, I14 and the lapse of H1), which is a no-op when nothing
//! is due, so running it twice never applies a deadline twice.
//!
//! # Decisions on the open points (SPEC §3)
//!
//! - H2: funds movements are ledger entries and `dispute.funds_*` events, never a status
//!   change. A chargeback that lands after the merchant already answered keeps UNDER_REVIEW.
//! - H1, option (a): CHARGEBACK_REVERSED reinstates the funds and keeps UNDER_REVIEW; the
//!   dispute becomes WON on the network's WON, or when the pre-arbitration window lapses
//!   (`reversal_lapses_at`, applied by the sweeper).
//! - M15: only network events reopen a final merchant-side dispute, and only a WON or CLOSED
//!   one, and only with an event that moves it to a later stage (a chargeback after a closed
//!   inquiry; a second chargeback, pre-arbitration or arbitration after a win). The
//!   transition records `dispute.reopened`. Tenant actions never reopen; issuer-side
//!   disputes never reopen.
//! - H3: a chargeback (or second chargeback, or pre-arbitration) without the right to respond
//!   (`response_allowed = false`, or a due time already past) goes straight to LOST.
//! - H5: PROVISIONAL_CREDIT is available once, in any open issuer-side stage; under Reg E only
//!   until its due date.
//! - I5: DENY (and any loss that reverses a provisional credit) records Reg E's 5-business-day
//!   honoring date in the ledger description, the history and [`ReversalNotice`].
//! - I7: NETWORK_REJECTED returns an issuer chargeback to INQUIRY / NEEDS_RESPONSE: the one
//!   move to an earlier stage.
//! - I14: the issuer side never auto-decides. When the window of its last network action
//!   closes, or the Reg E / Reg Z decision date passes, the sweeper marks it overdue once
//!   (`dispute.overdue`) and only WRITE_OFF and DENY stay available. M14: the merchant side
//!   auto-loses (INQUIRY: CLOSED), with `dispute.defense_period_ended`.
//! - H6: outcomes carry `amount_won` / `amount_lost` (network events may split the amount;
//!   WRITE_OFF may cover part of it), and the ledger follows them exactly.
//! - H8: Mastercard reason codes 4808, 4870 and 4871 may go from CHARGEBACK straight to
//!   ARBITRATION; other disputes must pass through pre-arbitration.
//! - H9: see [`progress`]. A network event that cannot apply is *stale* (it belongs to an
//!   earlier point: ignored), a *duplicate* (it leads where the dispute already is: ignored),
//!   or *refused* (it belongs to a later point that cannot be reached from here, i.e. an earlier
//!   event is missing: FAILED_PRECONDITION, so the feeder redelivers it later). An outcome that
//!   contradicts a final status is refused too; the same outcome again is a duplicate.
//!
//! Where the tables leave a gap, this module fills it so that no open state is a dead end:
//! CLOSE is Stripe's name for ACCEPT (merchant side only); a merchant asked to respond in
//! ARBITRATION (M12) may SUBMIT_EVIDENCE or ACCEPT as in M6/M7; a network CHARGEBACK on an
//! issuer inquiry records a chargeback filed outside the API (I6). Money signs and the
//! ledger rules are in [`super::ledger`]; deadline arithmetic in [`super::deadlines`].

use std::fmt;
use std::ops::RangeInclusive;

use chrono::{DateTime, NaiveDate, Utc};
use service_kit::violation::Violation;

use super::DisputeError;
use super::deadlines::{self, RegulationEFacts};
use super::dispute::{Dispute, MAX_AMOUNT};
use super::enums::{
    ActionType, Actor, BalanceTransactionType, CreditStatus, Network, Reason, Regulation, Side,
    Stage, Status,
};
use super::ledger::{self, LedgerEntry, LedgerTotals, MoneyPolicy};

// =============================================================================================
// Inputs

/// What a network (or the PSP or processor in front of it) can tell us about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkEventKind {
    RetrievalRequest,
    ChargebackNotified,
    Chargeback,
    InquiryClosed,
    ChargebackReversed,
    SecondChargeback,
    Representment,
    PreArbitration,
    PreArbitrationResponse,
    Arbitration,
    NetworkRejected,
    Won,
    Lost,
}

impl NetworkEventKind {
    pub const ALL: &'static [NetworkEventKind] = &[
        NetworkEventKind::RetrievalRequest,
        NetworkEventKind::ChargebackNotified,
        NetworkEventKind::Chargeback,
        NetworkEventKind::InquiryClosed,
        NetworkEventKind::ChargebackReversed,
        NetworkEventKind::SecondChargeback,
        NetworkEventKind::Representment,
        NetworkEventKind::PreArbitration,
        NetworkEventKind::PreArbitrationResponse,
        NetworkEventKind::Arbitration,
        NetworkEventKind::NetworkRejected,
        NetworkEventKind::Won,
        NetworkEventKind::Lost,
    ];

    /// SPEC's upper-case name, also used in history entries (`network:CHARGEBACK`).
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkEventKind::RetrievalRequest => "RETRIEVAL_REQUEST",
            NetworkEventKind::ChargebackNotified => "CHARGEBACK_NOTIFIED",
            NetworkEventKind::Chargeback => "CHARGEBACK",
            NetworkEventKind::InquiryClosed => "INQUIRY_CLOSED",
            NetworkEventKind::ChargebackReversed => "CHARGEBACK_REVERSED",
            NetworkEventKind::SecondChargeback => "SECOND_CHARGEBACK",
            NetworkEventKind::Representment => "REPRESENTMENT",
            NetworkEventKind::PreArbitration => "PRE_ARBITRATION",
            NetworkEventKind::PreArbitrationResponse => "PRE_ARBITRATION_RESPONSE",
            NetworkEventKind::Arbitration => "ARBITRATION",
            NetworkEventKind::NetworkRejected => "NETWORK_REJECTED",
            NetworkEventKind::Won => "WON",
            NetworkEventKind::Lost => "LOST",
        }
    }

    pub fn parse(text: &str) -> Option<NetworkEventKind> {
        NetworkEventKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
    }

    /// The final status an outcome event announces.
    fn outcome(self) -> Option<Status> {
        match self {
            NetworkEventKind::Won => Some(Status::Won),
            NetworkEventKind::Lost => Some(Status::Lost),
            _ => None,
        }
    }
}

impl fmt::Display for NetworkEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One network event, already deduplicated on (network, case id, event id) by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEvent {
    pub kind: NetworkEventKind,
    /// When the network wants our answer; `None` means the network's usual window.
    pub due_time: Option<DateTime<Utc>>,
    /// Merchant-side CHARGEBACK: the amount charged back, when it differs from the dispute's
    /// (it becomes the disputed amount; at most `original_amount`).
    pub amount: Option<i64>,
    /// False when the event arrives with no right to respond (Stripe `due_by = 0`, Adyen
    /// `defendable = false`): H3. A `due_time` already past means the same.
    pub response_allowed: bool,
    /// WON / LOST: the split of the amount (H6). One of them is enough; neither means all of
    /// it went the announced way.
    pub amount_won: Option<i64>,
    pub amount_lost: Option<i64>,
    pub message: String,
    /// Documents that came with the event (e.g. the merchant's representment, I8).
    pub document_ids: Vec<String>,
}

impl NetworkEvent {
    pub fn new(kind: NetworkEventKind) -> NetworkEvent {
        NetworkEvent {
            kind,
            due_time: None,
            amount: None,
            response_allowed: true,
            amount_won: None,
            amount_lost: None,
            message: String::new(),
            document_ids: Vec::new(),
        }
    }
}

/// A `CreateAction` (or `UpdateDispute(submit = true)`, which is SUBMIT_EVIDENCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantAction {
    pub action: ActionType,
    /// PROVISIONAL_CREDIT, WRITE_OFF and CHARGEBACK may cover part of the amount (H6, I6);
    /// other actions take none.
    pub amount: Option<i64>,
    pub message: String,
    pub document_ids: Vec<String>,
}

impl TenantAction {
    pub fn new(action: ActionType) -> TenantAction {
        TenantAction {
            action,
            amount: None,
            message: String::new(),
            document_ids: Vec::new(),
        }
    }
}

/// What asks the lifecycle to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Tenant(TenantAction),
    Network(NetworkEvent),
    /// The sweeper, once `LifecycleState::next_deadline` has passed (M14, I14, H1).
    DeadlinePassed,
}

impl Trigger {
    pub fn actor(&self) -> Actor {
        match self {
            Trigger::Tenant(_) => Actor::Tenant,
            Trigger::Network(_) => Actor::Network,
            Trigger::DeadlinePassed => Actor::System,
        }
    }
}

/// How a dispute comes to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// CreateDispute: merchant side in INQUIRY or CHARGEBACK, issuer side in INQUIRY (I1).
    /// `due_time` overrides the computed first deadline.
    Tenant {
        stage: Stage,
        due_time: Option<DateTime<Utc>>,
    },
    /// RecordNetworkEvent for a case we do not know yet (M1, M2, M3; merchant side only).
    Network(NetworkEvent),
}

/// Issuer-side facts that decide deadlines and chargeback rights. `Dispute` does not hold
/// them (yet); the defaults are the common case: a posted transaction of an established
/// account, no 3-D Secure, no wallet token, a billing cycle closing on the report's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerFacts {
    /// Start of the 120-day chargeback window; the report date when unknown.
    pub transaction_date: Option<NaiveDate>,
    pub regulation_e: RegulationEFacts,
    /// Reg Z: day of month the billing cycle closes (see `deadlines::regulation_z_deadlines`).
    pub billing_cycle_closing_day: Option<u32>,
    /// Fraud chargeback rights end with 3-D Secure or a wallet token (I2).
    pub three_ds_authenticated: bool,
    pub digital_wallet_token: bool,
    /// A transaction that has not posted cannot be charged back yet (I2).
    pub transaction_posted: bool,
}

impl Default for IssuerFacts {
    fn default() -> Self {
        IssuerFacts {
            transaction_date: None,
            regulation_e: RegulationEFacts::default(),
            billing_cycle_closing_day: None,
            three_ds_authenticated: false,
            digital_wallet_token: false,
            transaction_posted: true,
        }
    }
}

/// What the lifecycle reads about a dispute and never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    pub side: Side,
    pub network: Network,
    pub reason: Reason,
    pub network_reason_code: Option<String>,
    /// ISO 4217, upper case.
    pub currency: String,
    pub original_amount: Option<i64>,
    pub applicable_regulation: Regulation,
    pub date_customer_reported: Option<NaiveDate>,
    pub issuer: IssuerFacts,
}

// =============================================================================================
// State

/// The part of a dispute the lifecycle decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleState {
    pub case: CaseFacts,
    pub stage: Stage,
    pub status: Status,
    pub credit_status: CreditStatus,
    /// Disputed amount in minor units; a chargeback may narrow or restate it (I6, M3).
    pub amount: i64,
    /// When the response of the side we serve is due; set only while NEEDS_RESPONSE.
    pub due_time: Option<DateTime<Utc>>,
    pub amount_won: i64,
    pub amount_lost: i64,
    pub submission_count: i32,
    pub ledger: LedgerTotals,
    /// Merchant side, after CHARGEBACK_REVERSED: when the pre-arbitration window lapses and
    /// the dispute becomes WON (H1 option a). Not on `Dispute` yet: persist it.
    pub reversal_lapses_at: Option<DateTime<Utc>>,
    /// Issuer side: the overdue mark was set (I14, once). Not on `Dispute` yet: persist it.
    pub overdue: bool,
}

/// The lifecycle fields `Dispute` does not carry; the store keeps them next to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleMarks {
    pub reversal_lapses_at: Option<DateTime<Utc>>,
    pub overdue: bool,
}

/// Regulation E / Z due instants of an issuer-side dispute (none on the merchant side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegulatoryDeadlines {
    /// Reg E: provisional credit must be given before this instant.
    pub provisional_credit_due: Option<DateTime<Utc>>,
    /// Reg E or Z: the issuer's decision is due before this instant.
    pub resolution_due: Option<DateTime<Utc>>,
}

impl LifecycleState {
    pub fn from_dispute(
        dispute: &Dispute,
        marks: LifecycleMarks,
        issuer: IssuerFacts,
    ) -> LifecycleState {
        LifecycleState {
            case: CaseFacts {
                side: dispute.side,
                network: dispute.network,
                reason: dispute.reason,
                network_reason_code: dispute.network_reason_code.clone(),
                currency: dispute.currency.clone(),
                original_amount: dispute.original_amount,
                applicable_regulation: dispute.applicable_regulation,
                date_customer_reported: dispute.date_customer_reported,
                issuer,
            },
            stage: dispute.stage,
            status: dispute.status,
            credit_status: dispute.credit_status,
            amount: dispute.amount,
            due_time: dispute.due_time,
            amount_won: dispute.amount_won,
            amount_lost: dispute.amount_lost,
            submission_count: dispute.submission_count,
            ledger: LedgerTotals::from_balance_transactions(&dispute.balance_transactions),
            reversal_lapses_at: marks.reversal_lapses_at,
            overdue: marks.overdue,
        }
    }

    pub fn marks(&self) -> LifecycleMarks {
        LifecycleMarks {
            reversal_lapses_at: self.reversal_lapses_at,
            overdue: self.overdue,
        }
    }

    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    pub fn is_past_due(&self, now: DateTime<Utc>) -> bool {
        self.due_time.is_some_and(|due| due <= now)
    }

    pub fn regulatory_deadlines(&self) -> RegulatoryDeadlines {
        let Some(reported) = self.case.date_customer_reported else {
            return RegulatoryDeadlines::default();
        };
        match self.case.applicable_regulation {
            Regulation::RegulationE => {
                let due =
                    deadlines::regulation_e_deadlines(reported, self.case.issuer.regulation_e);
                RegulatoryDeadlines {
                    provisional_credit_due: Some(deadlines::end_of_day(due.provisional_credit_due)),
                    resolution_due: Some(deadlines::end_of_day(
                        due.resolution_due(self.ledger.provisional_credit_given()),
                    )),
                }
            }
            Regulation::RegulationZ => {
                let due = deadlines::regulation_z_deadlines(
                    reported,
                    self.case.issuer.billing_cycle_closing_day,
                );
                RegulatoryDeadlines {
                    provisional_credit_due: None,
                    resolution_due: Some(deadlines::end_of_day(due.resolution_due)),
                }
            }
            Regulation::None => RegulatoryDeadlines::default(),
        }
    }

    /// Issuer side: the end of the chargeback filing window (I1).
    pub fn chargeback_filing_due(&self) -> Option<DateTime<Utc>> {
        self.case
            .issuer
            .transaction_date
            .or(self.case.date_customer_reported)
            .map(deadlines::issuer_chargeback_filing_due)
    }

    /// When the sweeper must call `decide(.., Trigger::DeadlinePassed, ..)`; `None` when no
    /// deadline can act on the dispute (final, or issuer side already overdue, or a dispute
    /// with no right to respond, H3).
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        if self.is_final() {
            return None;
        }
        match self.case.side {
            Side::Merchant => match self.status {
                Status::NeedsResponse => self.due_time,
                _ => self.reversal_lapses_at,
            },
            Side::Issuer if self.overdue => None,
            Side::Issuer => {
                let network_window = (self.status == Status::NeedsResponse)
                    .then_some(self.due_time)
                    .flatten();
                let regulatory = self.regulatory_deadlines().resolution_due;
                network_window.into_iter().chain(regulatory).min()
            }
        }
    }

    /// Where the dispute is in the process (H9), see [`progress`].
    pub fn progress(&self) -> (u8, u8) {
        progress(self.case.side, self.stage, self.status)
    }
}

/// Rank of a stage in the process: INQUIRY 0 … ARBITRATION 4.
pub fn stage_rank(stage: Stage) -> u8 {
    match stage {
        Stage::Inquiry => 0,
        Stage::Chargeback => 1,
        Stage::Representment => 2,
        Stage::PreArbitration => 3,
        Stage::Arbitration => 4,
    }
}

/// H9: the order in which a dispute passes its (stage, status) points, as (stage rank, status
/// rank). Within a stage the side that must act first comes first: the merchant answers
/// (NEEDS_RESPONSE 0) then waits (UNDER_REVIEW 1); on the issuer side pre-arbitration is filed
/// (UNDER_REVIEW 0) and then answered (NEEDS_RESPONSE 1). A final status ranks 2 in its stage.
/// Network events never move a dispute to a lower point, except NETWORK_REJECTED (I7).
pub fn progress(side: Side, stage: Stage, status: Status) -> (u8, u8) {
    let status_rank = match (side, stage, status) {
        (_, _, status) if status.is_final() => 2,
        (Side::Issuer, Stage::PreArbitration, Status::UnderReview) => 0,
        (Side::Issuer, Stage::PreArbitration, _) => 1,
        (_, _, Status::NeedsResponse) => 0,
        _ => 1,
    };
    (stage_rank(stage), status_rank)
}

// =============================================================================================
// Outputs

/// An action the tenant may take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailableAction {
    pub action: ActionType,
    /// Network actions: the instant the window closes (the action disappears then).
    /// PROVISIONAL_CREDIT under Reg E: its due date (it disappears then too). WRITE_OFF and
    /// DENY: the Reg E / Z decision date; they stay available after it (I14).
    pub valid_until: Option<DateTime<Utc>>,
}

/// Event names to record with a transition (SPEC §4).
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
        }
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

/// Everything one change writes, in one transaction.
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
    /// Copies the decided fields onto the stored dispute (ledger rows and history entries
    /// need ids and times, so the application appends them itself).
    pub fn apply_to_dispute(&self, dispute: &mut Dispute) {
        let state = &self.state;
        dispute.stage = state.stage;
        dispute.status = state.status;
        dispute.credit_status = state.credit_status;
        dispute.amount = state.amount;
        dispute.due_time = state.due_time;
        dispute.amount_won = state.amount_won;
        dispute.amount_lost = state.amount_lost;
        dispute.submission_count = state.submission_count;
    }

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
            LifecycleError::ExceedsOriginalAmount { .. } => "AMOUNT_EXCEEDS_ORIGINAL",
            LifecycleError::CannotOpen { .. } => "CANNOT_OPEN_DISPUTE",
        }
    }

    /// The request field at fault when the request itself is invalid (INVALID_ARGUMENT);
    /// `None` for refusals caused by the dispute's state (FAILED_PRECONDITION).
    pub fn invalid_argument_field(&self) -> Option<&'static str> {
        match self {
            LifecycleError::InvalidAmount { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// INVALID_ARGUMENT with a field violation for bad amounts, FAILED_PRECONDITION with the
/// ErrorInfo reason for everything else.
impl From<LifecycleError> for DisputeError {
    fn from(error: LifecycleError) -> DisputeError {
        match error {
            LifecycleError::InvalidAmount { field, why } => {
                DisputeError::Validation(vec![Violation::new(field, why)])
            }
            other => DisputeError::FailedPrecondition {
                reason: other.reason(),
                message: other.to_string(),
            },
        }
    }
}

fn upper(name: &str) -> String {
    name.to_ascii_uppercase()
}

// =============================================================================================
// Public functions

/// Opens a dispute: CreateDispute (merchant INQUIRY or CHARGEBACK, issuer INQUIRY: I1) or the
/// first network event of a new case (M1 RETRIEVAL_REQUEST, M2 CHARGEBACK_NOTIFIED,
/// M3 CHARGEBACK). The transition's events start with `dispute.created`.
pub fn open_dispute(
    case: CaseFacts,
    amount: i64,
    opening: &Opening,
    policy: &MoneyPolicy,
    now: DateTime<Utc>,
) -> Result<Transition, LifecycleError> {
    check_amount("amount", amount, 1..=MAX_AMOUNT)?;
    if let Some(original) = case.original_amount {
        check_amount("amount", amount, 1..=original)?;
    }
    let side = case.side;
    let network = case.network;
    let blank = LifecycleState {
        case,
        stage: Stage::Inquiry,
        status: Status::NeedsResponse,
        credit_status: CreditStatus::None,
        amount,
        due_time: None,
        amount_won: 0,
        amount_lost: 0,
        submission_count: 0,
        ledger: LedgerTotals::default(),
        reversal_lapses_at: None,
        overdue: false,
    };
    let mut change = Change::from(&blank);
    let (actor, what, message, documents) = match (side, opening) {
        (Side::Merchant, Opening::Tenant { stage, due_time }) => {
            let due = due_time.unwrap_or(deadlines::merchant_response_due(network, now));
            match stage {
                Stage::Inquiry => change.needs_response(Stage::Inquiry, Some(due)),
                Stage::Chargeback => {
                    // M3 opened by the tenant: the chargeback has landed, funds go now
                    change.needs_response(Stage::Chargeback, Some(due));
                    change.withdraw_chargeback(policy);
                }
                other => {
                    return Err(LifecycleError::CannotOpen {
                        why: format!(
                            "a merchant-side dispute opens in INQUIRY or CHARGEBACK, not {}",
                            upper(other.as_str())
                        ),
                    });
                }
            }
            (
                Actor::Tenant,
                "created".to_owned(),
                String::new(),
                Vec::new(),
            )
        }
        (Side::Issuer, Opening::Tenant { stage, due_time }) => {
            if *stage != Stage::Inquiry {
                return Err(LifecycleError::CannotOpen {
                    why: "an issuer-side dispute opens in INQUIRY (I1)".into(),
                });
            }
            // I1: the first network action is the chargeback, due by the filing window
            let due = due_time.or(blank.chargeback_filing_due());
            change.needs_response(Stage::Inquiry, due);
            let regulatory = blank.regulatory_deadlines();
            if let Some(credit_due) = regulatory.provisional_credit_due {
                change.explain(format!(
                    "Regulation E provisional credit due by {credit_due}"
                ));
            }
            if let Some(resolution_due) = regulatory.resolution_due {
                change.explain(format!("decision due by {resolution_due}"));
            }
            (
                Actor::Tenant,
                "created".to_owned(),
                String::new(),
                Vec::new(),
            )
        }
        (Side::Merchant, Opening::Network(event)) => {
            check_event_amounts(&blank, event)?;
            match event.kind {
                NetworkEventKind::RetrievalRequest => {
                    // M1: no funds move
                    let due = event
                        .due_time
                        .unwrap_or(deadlines::merchant_response_due(network, now));
                    change.needs_response(Stage::Inquiry, Some(due));
                    change.explain("retrieval request: information requested, no funds move (M1)");
                }
                NetworkEventKind::ChargebackNotified | NetworkEventKind::Chargeback => {
                    change =
                        merchant_network_event(&blank, event, policy, now)?.ok_or_else(|| {
                            LifecycleError::CannotOpen {
                                why: format!("{} cannot open a dispute", event.kind),
                            }
                        })?;
                }
                other => {
                    return Err(LifecycleError::CannotOpen {
                        why: format!(
                            "a new case opens with RETRIEVAL_REQUEST, CHARGEBACK_NOTIFIED or \
                             CHARGEBACK, not {other}"
                        ),
                    });
                }
            }
            (
                Actor::Network,
                format!("network:{}", event.kind),
                event.message.clone(),
                event.document_ids.clone(),
            )
        }
        (Side::Issuer, Opening::Network(_)) => {
            return Err(LifecycleError::CannotOpen {
                why: "issuer-side disputes are opened by the tenant with CreateDispute (I1)".into(),
            });
        }
    };
    change.events.insert(0, DisputeEvent::Created);
    Ok(change.finish(actor, what, &message, documents))
}

/// Decides what a trigger does to a dispute. `Err` refuses it (nothing changes);
/// `Ok(Decision::Unchanged)` accepts it without change (stale or duplicate network events,
/// a sweep with nothing due); `Ok(Decision::Apply)` lists everything to write.
pub fn decide(
    state: &LifecycleState,
    trigger: &Trigger,
    policy: &MoneyPolicy,
    now: DateTime<Utc>,
) -> Result<Decision, LifecycleError> {
    match trigger {
        Trigger::Tenant(action) => decide_tenant_action(state, action, policy, now)
            .map(|transition| Decision::Apply(Box::new(transition))),
        Trigger::Network(event) => decide_network_event(state, event, policy, now),
        Trigger::DeadlinePassed => Ok(decide_deadline(state, policy, now)),
    }
}

/// The actions the tenant may take now, each with its `valid_until`. Computed from the
/// state, side, network, reason (code) and deadlines; `decide` accepts exactly these.
pub fn available_actions(state: &LifecycleState, now: DateTime<Utc>) -> Vec<AvailableAction> {
    ActionType::ALL
        .iter()
        .filter_map(|&action| {
            action_window(state, action, now)
                .ok()
                .map(|valid_until| AvailableAction {
                    action,
                    valid_until,
                })
        })
        .collect()
}

/// M4: evidence may be staged (UpdateDispute with submit = false) only while the side we
/// serve must respond and the due time has not passed.
pub fn evidence_editable(state: &LifecycleState, now: DateTime<Utc>) -> Result<(), LifecycleError> {
    let why = if state.is_final() {
        format!("the dispute is {}", upper(state.status.as_str()))
    } else if state.status != Status::NeedsResponse {
        "the dispute is under review: evidence was submitted or nothing is asked of us".into()
    } else if let Some(due) = state.due_time.filter(|due| *due <= now) {
        format!("the response was due at {due}")
    } else {
        return Ok(());
    };
    Err(LifecycleError::EvidenceLocked { why })
}

/// Mastercard reason codes that go from chargeback straight to arbitration (H8).
pub fn skips_pre_arbitration(case: &CaseFacts) -> bool {
    case.network == Network::Mastercard
        && matches!(
            case.network_reason_code.as_deref(),
            Some("4808" | "4870" | "4871")
        )
}

// =============================================================================================
// Building a transition

/// A transition under construction.
struct Change {
    after: LifecycleState,
    entries: Vec<LedgerEntry>,
    events: Vec<DisputeEvent>,
    evidence: EvidenceEffect,
    notice: Option<ReversalNotice>,
    explanation: Vec<String>,
    history_amount: Option<i64>,
}

impl Change {
    fn from(state: &LifecycleState) -> Change {
        Change {
            after: state.clone(),
            entries: Vec::new(),
            events: Vec::new(),
            evidence: EvidenceEffect::Unchanged,
            notice: None,
            explanation: Vec::new(),
            history_amount: None,
        }
    }

    /// Moves to a point where the other party acts: nothing is due from us.
    fn wait(&mut self, stage: Stage) {
        self.after.stage = stage;
        self.after.status = Status::UnderReview;
        self.after.due_time = None;
    }

    fn needs_response(&mut self, stage: Stage, due: Option<DateTime<Utc>>) {
        self.after.stage = stage;
        self.after.status = Status::NeedsResponse;
        self.after.due_time = due;
    }

    fn event(&mut self, event: DisputeEvent) {
        if !self.events.contains(&event) {
            self.events.push(event);
        }
    }

    fn explain(&mut self, text: impl Into<String>) {
        self.explanation.push(text.into());
    }

    fn post(&mut self, entries: Vec<LedgerEntry>) {
        for entry in entries {
            self.after.ledger.add(entry.kind, entry.amount);
            self.entries.push(entry);
        }
    }

    /// Merchant side: brings withdrawn funds and fee to the targets, with their events (H2).
    fn settle_merchant(&mut self, withdrawn: i64, fee: i64, withdrawal: &str, reinstatement: &str) {
        let entries = ledger::merchant_settlement(
            &self.after.ledger,
            withdrawn,
            fee,
            withdrawal,
            reinstatement,
        );
        for entry in &entries {
            match entry.kind {
                BalanceTransactionType::Withdrawal => self.event(DisputeEvent::FundsWithdrawn),
                BalanceTransactionType::Reinstatement => self.event(DisputeEvent::FundsReinstated),
                _ => {}
            }
        }
        self.post(entries);
    }

    /// M3: the chargeback lands: withdraw the amount plus the dispute fee.
    fn withdraw_chargeback(&mut self, policy: &MoneyPolicy) {
        let fee = fee_to_charge(&self.after.ledger, policy);
        self.settle_merchant(self.after.amount, fee, "chargeback withdrawal", "");
        self.history_amount.get_or_insert(self.after.amount);
    }

    /// Merchant side: a final status with its money (M7, M8, M13, M14, H1, H3, H6).
    fn merchant_outcome(&mut self, status: Status, won: i64, lost: i64, policy: &MoneyPolicy) {
        let totals = self.after.ledger;
        let (withdrawn, fee) = match status {
            Status::Won if policy.refund_fee_on_win => (lost, 0),
            Status::Won => (lost, totals.fee_charged()),
            Status::Lost => (lost, fee_to_charge(&totals, policy)),
            _ => (0, 0),
        };
        self.settle_merchant(
            withdrawn,
            fee,
            "chargeback withdrawal: dispute lost",
            "funds reinstated: dispute won",
        );
        self.finalize(status, won, lost);
    }

    /// Issuer side: a final status; the cardholder ends up holding `won` (I4, I5, I9, I13).
    fn issuer_outcome(
        &mut self,
        status: Status,
        won: i64,
        lost: i64,
        final_credit: FinalCredit,
        now: DateTime<Utc>,
    ) {
        let credit_was_given = self.after.ledger.provisional_credit_given();
        let (kind, description) = final_credit.entry();
        let mut entries = ledger::issuer_settlement(&self.after.ledger, won, kind, description);
        for entry in &mut entries {
            if entry.kind == BalanceTransactionType::ProvisionalCreditReversal {
                self.note_reversal(entry, now);
            }
        }
        self.post(entries);
        self.after.credit_status = if won > 0 {
            CreditStatus::Final
        } else if credit_was_given {
            CreditStatus::Reversed
        } else {
            CreditStatus::None
        };
        self.finalize(status, won, lost);
    }

    /// I5: a reversed provisional credit under Reg E carries its honoring date.
    fn note_reversal(&mut self, entry: &mut LedgerEntry, now: DateTime<Utc>) {
        let amount = -entry.amount;
        if self.after.case.applicable_regulation != Regulation::RegulationE {
            self.explain(format!("provisional credit of {amount} reversed"));
            return;
        }
        let debited_on = now.date_naive();
        let honored_until = deadlines::regulation_e_reversal_honored_until(debited_on);
        entry.description = format!(
            "provisional credit reversed; checks and preauthorized transfers honored through \
             {honored_until} (Regulation E 1005.11(d)(2))"
        );
        self.explain(format!(
            "provisional credit of {amount} reversed on {debited_on}; Regulation E: checks and \
             preauthorized transfers honored through {honored_until}"
        ));
        self.notice = Some(ReversalNotice {
            amount,
            debited_on,
            honored_until,
        });
    }

    fn finalize(&mut self, status: Status, won: i64, lost: i64) {
        self.after.status = status;
        self.after.due_time = None;
        self.after.amount_won = won;
        self.after.amount_lost = lost;
        self.after.reversal_lapses_at = None;
        self.history_amount = Some(if status == Status::Won { won } else { lost });
        self.event(match status {
            Status::Won => DisputeEvent::Won,
            Status::Lost => DisputeEvent::Lost,
            _ => DisputeEvent::Closed,
        });
    }

    fn finish(
        mut self,
        actor: Actor,
        what: String,
        caller_message: &str,
        document_ids: Vec<String>,
    ) -> Transition {
        if self.events.is_empty() {
            self.events.push(DisputeEvent::Updated);
        }
        let explanation = self.explanation.join("; ");
        let message = match (caller_message.trim(), explanation.is_empty()) {
            ("", _) => explanation,
            (caller, true) => caller.to_owned(),
            (caller, false) => format!("{caller} ({explanation})"),
        };
        Transition {
            history: HistoryEntry {
                actor,
                what,
                message,
                amount: self.history_amount.unwrap_or(0),
                document_ids,
            },
            state: self.after,
            ledger_entries: self.entries,
            events: self.events,
            evidence: self.evidence,
            provisional_credit_reversal: self.notice,
        }
    }
}

/// Issuer side: who funds credit the cardholder gets beyond an outstanding provisional credit.
#[derive(Clone, Copy)]
enum FinalCredit {
    /// WRITE_OFF: the issuer absorbs it (I4).
    IssuerFunded,
    /// REINSTATEMENT: recovered from the merchant through the network (I13).
    RecoveredThroughNetwork,
}

impl FinalCredit {
    fn entry(self) -> (BalanceTransactionType, &'static str) {
        match self {
            FinalCredit::IssuerFunded => (
                BalanceTransactionType::WriteOff,
                "written off: final credit funded by the issuer",
            ),
            FinalCredit::RecoveredThroughNetwork => (
                BalanceTransactionType::Reinstatement,
                "final credit: funds recovered through the network",
            ),
        }
    }
}

/// The fee a withdrawal or loss carries: the one already charged, else the policy's.
fn fee_to_charge(totals: &LedgerTotals, policy: &MoneyPolicy) -> i64 {
    match totals.fee_charged() {
        0 => policy.dispute_fee,
        charged => charged,
    }
}

fn check_amount(
    field: &'static str,
    amount: i64,
    range: RangeInclusive<i64>,
) -> Result<i64, LifecycleError> {
    if range.contains(&amount) {
        Ok(amount)
    } else {
        Err(LifecycleError::InvalidAmount {
            field,
            why: format!(
                "must be between {} and {} (minor units), got {amount}",
                range.start(),
                range.end()
            ),
        })
    }
}

/// Checks the amounts a network event carries against the dispute.
fn check_event_amounts(state: &LifecycleState, event: &NetworkEvent) -> Result<(), LifecycleError> {
    if let Some(amount) = event.amount {
        let max = state.case.original_amount.unwrap_or(MAX_AMOUNT);
        check_amount("amount", amount, 1..=max)?;
    }
    for (field, value) in [
        ("amount_won", event.amount_won),
        ("amount_lost", event.amount_lost),
    ] {
        if let Some(value) = value {
            check_amount(field, value, 0..=state.amount)?;
        }
    }
    Ok(())
}

/// H6: the (won, lost) split an outcome event announces.
fn outcome_split(
    state: &LifecycleState,
    event: &NetworkEvent,
    status: Status,
) -> Result<(i64, i64), LifecycleError> {
    let amount = state.amount;
    let (won, lost) = match (event.amount_won, event.amount_lost) {
        (Some(won), Some(lost)) if won + lost != amount => {
            return Err(LifecycleError::InvalidAmount {
                field: "amount_won",
                why: format!(
                    "amount_won {won} + amount_lost {lost} must equal the disputed amount {amount}"
                ),
            });
        }
        (Some(won), Some(lost)) => (won, lost),
        (Some(won), None) => (won, amount - won),
        (None, Some(lost)) => (amount - lost, lost),
        (None, None) if status == Status::Won => (amount, 0),
        (None, None) => (0, amount),
    };
    match status {
        Status::Won if won == 0 => Err(LifecycleError::InvalidAmount {
            field: "amount_won",
            why: "a WON outcome wins a positive amount".into(),
        }),
        Status::Lost if lost == 0 => Err(LifecycleError::InvalidAmount {
            field: "amount_lost",
            why: "a LOST outcome loses a positive amount".into(),
        }),
        _ => Ok((won, lost)),
    }
}

// =============================================================================================
// Tenant actions

fn action_takes_amount(action: ActionType) -> bool {
    matches!(
        action,
        ActionType::ProvisionalCredit | ActionType::WriteOff | ActionType::Chargeback
    )
}

fn decide_tenant_action(
    state: &LifecycleState,
    request: &TenantAction,
    policy: &MoneyPolicy,
    now: DateTime<Utc>,
) -> Result<Transition, LifecycleError> {
    let action = request.action;
    if request.amount.is_some() && !action_takes_amount(action) {
        return Err(LifecycleError::InvalidAmount {
            field: "amount",
            why: format!("{} takes no amount", upper(action.as_str())),
        });
    }
    action_window(state, action, now)?;
    let amount = state.amount;
    let mut change = Change::from(state);
    match (state.case.side, action) {
        (Side::Merchant, ActionType::SubmitEvidence) => {
            // M5 (INQUIRY), M6 (CHARGEBACK, PRE_ARBITRATION), and ARBITRATION when asked (M12)
            change.wait(state.stage);
            change.after.submission_count += 1;
            change.evidence = EvidenceEffect::Submitted;
            change.event(DisputeEvent::EvidenceSubmitted);
            change.explain("evidence submitted; waiting on the network");
        }
        (Side::Merchant, ActionType::Accept | ActionType::Close) => {
            // M7; Adyen also ends the defense period on accept
            change.evidence = EvidenceEffect::Frozen;
            change.event(DisputeEvent::DefensePeriodEnded);
            change.merchant_outcome(Status::Lost, 0, amount, policy);
            change.explain("accepted: the dispute is lost");
        }
        (Side::Issuer, ActionType::ProvisionalCredit) => {
            // I3, H5: once, any open stage, status unchanged
            let credit = check_amount("amount", request.amount.unwrap_or(amount), 1..=amount)?;
            change.post(vec![LedgerEntry {
                kind: BalanceTransactionType::ProvisionalCredit,
                amount: credit,
                description: "provisional credit to the cardholder".into(),
            }]);
            change.after.credit_status = CreditStatus::Provisional;
            change.history_amount = Some(credit);
            change.explain(format!("provisional credit of {credit} given"));
        }
        (Side::Issuer, ActionType::WriteOff) => {
            // I4: the issuer absorbs (part of) the amount; the cardholder's credit is final
            let won = check_amount("amount", request.amount.unwrap_or(amount), 1..=amount)?;
            change.issuer_outcome(
                Status::Won,
                won,
                amount - won,
                FinalCredit::IssuerFunded,
                now,
            );
            change.explain(format!("written off {won}: the issuer absorbs it"));
        }
        (Side::Issuer, ActionType::Deny) => {
            // I5 (and I14 once overdue)
            change.issuer_outcome(
                Status::Lost,
                0,
                amount,
                FinalCredit::IssuerFunded, // nothing is won: no final credit
                now,
            );
            change.explain("denied: decided against the cardholder");
        }
        (Side::Issuer, ActionType::Chargeback) => {
            // I6: may be partial, never below a provisional credit already given
            let floor = state.ledger.provisional_credit_outstanding().max(1);
            let charged_back =
                check_amount("amount", request.amount.unwrap_or(amount), floor..=amount)?;
            change.after.amount = charged_back;
            change.wait(Stage::Chargeback);
            change.history_amount = Some(charged_back);
            change.explain(format!("chargeback filed for {charged_back}"));
        }
        (Side::Issuer, ActionType::AcceptRepresentment) => {
            // I9
            change.issuer_outcome(
                Status::Lost,
                0,
                amount,
                FinalCredit::IssuerFunded, // nothing is won: no final credit
                now,
            );
            change.explain("representment accepted: the dispute is lost");
        }
        (Side::Issuer, ActionType::PreArbitration) => {
            change.wait(Stage::PreArbitration); // I10
            change.explain("pre-arbitration filed");
        }
        (Side::Issuer, ActionType::Arbitration) => {
            change.wait(Stage::Arbitration); // I12
            change.explain("arbitration filed");
        }
        (side, action) => {
            // action_window already refuses these; kept so a new ActionType cannot slip by
            return Err(LifecycleError::ActionNotAvailable {
                action,
                why: format!("not an action of the {side} side"),
            });
        }
    }
    Ok(change.finish(
        Actor::Tenant,
        upper(action.as_str()),
        &request.message,
        request.document_ids.clone(),
    ))
}

/// Whether the tenant may take `action` now; `Ok` carries its `valid_until`.
fn action_window(
    state: &LifecycleState,
    action: ActionType,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, LifecycleError> {
    let refuse = |why: String| Err(LifecycleError::ActionNotAvailable { action, why });
    let until = |valid_until: Option<DateTime<Utc>>| match valid_until {
        Some(valid_until) if now >= valid_until => Err(LifecycleError::DeadlinePassed {
            action,
            valid_until,
        }),
        other => Ok(other),
    };
    let (stage, status) = (state.stage, state.status);
    let at = format!(
        "the dispute is {} / {}",
        upper(stage.as_str()),
        upper(status.as_str())
    );
    if state.is_final() {
        return refuse(format!(
            "the dispute is {} (final); only the network can reopen it",
            upper(status.as_str())
        ));
    }
    let needs_response = status == Status::NeedsResponse;
    match state.case.side {
        Side::Merchant => match action {
            ActionType::SubmitEvidence if needs_response => until(state.due_time),
            ActionType::SubmitEvidence => refuse(format!(
                "{at}: evidence was already submitted or nothing is asked of us"
            )),
            ActionType::Accept | ActionType::Close if stage == Stage::Inquiry => refuse(
                "an inquiry is not a chargeback: submit evidence or let it close (M7)".into(),
            ),
            ActionType::Accept | ActionType::Close if needs_response => until(state.due_time),
            ActionType::Accept | ActionType::Close => {
                refuse(format!("{at}: nothing is asked of us to accept"))
            }
            _ => refuse("an issuer-side action; this dispute is merchant-side".into()),
        },
        Side::Issuer => {
            if matches!(
                action,
                ActionType::SubmitEvidence | ActionType::Accept | ActionType::Close
            ) {
                return refuse("a merchant-side action; this dispute is issuer-side".into());
            }
            let regulatory = state.regulatory_deadlines();
            if state.overdue && !matches!(action, ActionType::WriteOff | ActionType::Deny) {
                return refuse(
                    "the dispute is overdue: only WRITE_OFF and DENY remain (I14)".into(),
                );
            }
            match action {
                ActionType::ProvisionalCredit if state.ledger.provisional_credit_given() => {
                    refuse("a provisional credit was already given; it is given once (H5)".into())
                }
                ActionType::ProvisionalCredit => until(regulatory.provisional_credit_due),
                // the decision date shows, but passing it does not remove them (I14)
                ActionType::WriteOff => Ok(regulatory.resolution_due),
                ActionType::Deny
                    if state.overdue || (stage == Stage::Inquiry && needs_response) =>
                {
                    Ok(regulatory.resolution_due)
                }
                ActionType::Deny => refuse(format!(
                    "{at}: DENY decides an inquiry (I5), or any stage once overdue (I14)"
                )),
                ActionType::Chargeback if stage == Stage::Inquiry && needs_response => {
                    match chargeback_ineligibility(state) {
                        Some(why) => refuse(why),
                        None => until(state.due_time),
                    }
                }
                ActionType::AcceptRepresentment | ActionType::PreArbitration
                    if stage == Stage::Representment && needs_response =>
                {
                    until(state.due_time)
                }
                ActionType::Arbitration if stage == Stage::PreArbitration && needs_response => {
                    until(state.due_time)
                }
                _ => refuse(format!(
                    "{at}; {} is not possible at this point",
                    upper(action.as_str())
                )),
            }
        }
    }
}

/// I2: why the cardholder's bank has no chargeback right, if it has none.
fn chargeback_ineligibility(state: &LifecycleState) -> Option<String> {
    let facts = &state.case.issuer;
    if state.case.currency == "USD" && state.amount < 2500 {
        return Some("no chargeback rights under $25.00 (I2)".into());
    }
    let fraud = matches!(state.case.reason, Reason::Fraudulent | Reason::Unrecognized);
    if fraud && (facts.three_ds_authenticated || facts.digital_wallet_token) {
        return Some(
            "no fraud chargeback rights on a 3-D Secure or wallet-token transaction (I2)".into(),
        );
    }
    if !facts.transaction_posted {
        return Some("the transaction has not posted yet (I2)".into());
    }
    None
}

// =============================================================================================
// Network events

fn decide_network_event(
    state: &LifecycleState,
    event: &NetworkEvent,
    policy: &MoneyPolicy,
    now: DateTime<Utc>,
) -> Result<Decision, LifecycleError> {
    check_event_amounts(state, event)?;
    let change = if state.is_final() {
        if let Some(outcome) = event.kind.outcome() {
            return if outcome == state.status {
                Ok(unchanged(
                    UnchangedKind::Duplicate,
                    format!("the dispute is already {}", upper(outcome.as_str())),
                ))
            } else {
                Err(LifecycleError::ConflictingOutcome {
                    event: event.kind,
                    status: state.status,
                })
            };
        }
        if !reopens(state, event.kind) {
            return Ok(unchanged(
                UnchangedKind::Stale,
                format!(
                    "the dispute is {} (final) and {} does not reopen it",
                    upper(state.status.as_str()),
                    event.kind
                ),
            ));
        }
        // M15: decide as if the dispute were still waiting in the stage where it ended
        let waiting = LifecycleState {
            status: Status::UnderReview,
            amount_won: 0,
            amount_lost: 0,
            due_time: None,
            reversal_lapses_at: None,
            ..state.clone()
        };
        match merchant_network_event(&waiting, event, policy, now)? {
            Some(mut change) => {
                change.events.insert(0, DisputeEvent::Reopened);
                change.explanation.insert(
                    0,
                    format!(
                        "reopened by the network after {} (M15)",
                        upper(state.status.as_str())
                    ),
                );
                change
            }
            None => return classify(&waiting, event),
        }
    } else {
        let change = match state.case.side {
            Side::Merchant => merchant_network_event(state, event, policy, now)?,
            Side::Issuer => issuer_network_event(state, event, now)?,
        };
        match change {
            Some(change) => change,
            None => return classify(state, event),
        }
    };
    Ok(Decision::Apply(Box::new(change.finish(
        Actor::Network,
        format!("network:{}", event.kind),
        &event.message,
        event.document_ids.clone(),
    ))))
}

/// M15: a WON or CLOSED merchant dispute reopens with a network event that leads to a later
/// stage than the one it ended in.
fn reopens(state: &LifecycleState, kind: NetworkEventKind) -> bool {
    let target = match kind {
        NetworkEventKind::ChargebackNotified | NetworkEventKind::Chargeback => Stage::Chargeback,
        NetworkEventKind::SecondChargeback | NetworkEventKind::PreArbitration => {
            Stage::PreArbitration
        }
        NetworkEventKind::Arbitration => Stage::Arbitration,
        _ => return false,
    };
    state.case.side == Side::Merchant
        && matches!(state.status, Status::Won | Status::Closed)
        && stage_rank(target) > stage_rank(state.stage)
}

fn unchanged(kind: UnchangedKind, why: String) -> Decision {
    Decision::Unchanged(Unchanged { kind, why })
}

/// The point an event leads to on a side, for H9; `None` when the side never receives it.
fn event_progress(side: Side, kind: NetworkEventKind, stage: Stage) -> Option<(u8, u8)> {
    use NetworkEventKind as K;
    let point = |stage, status| Some(progress(side, stage, status));
    match (side, kind) {
        (_, K::Won | K::Lost) => point(stage, Status::Won),
        (Side::Merchant, K::RetrievalRequest) => point(Stage::Inquiry, Status::NeedsResponse),
        (Side::Merchant, K::ChargebackNotified | K::Chargeback) => {
            point(Stage::Chargeback, Status::NeedsResponse)
        }
        (Side::Merchant, K::InquiryClosed) => point(Stage::Inquiry, Status::Closed),
        (Side::Merchant, K::ChargebackReversed) => point(Stage::Chargeback, Status::UnderReview),
        (Side::Merchant, K::SecondChargeback | K::PreArbitration) => {
            point(Stage::PreArbitration, Status::NeedsResponse)
        }
        (Side::Merchant, K::Arbitration) => point(Stage::Arbitration, Status::NeedsResponse),
        (Side::Issuer, K::Chargeback) => point(Stage::Chargeback, Status::UnderReview),
        (Side::Issuer, K::NetworkRejected) => point(Stage::Inquiry, Status::NeedsResponse),
        (Side::Issuer, K::Representment) => point(Stage::Representment, Status::NeedsResponse),
        (Side::Issuer, K::PreArbitration) => point(Stage::PreArbitration, Status::UnderReview),
        (Side::Issuer, K::PreArbitrationResponse) => {
            point(Stage::PreArbitration, Status::NeedsResponse)
        }
        (Side::Issuer, K::Arbitration) => point(Stage::Arbitration, Status::UnderReview),
        _ => None,
    }
}

/// H9: an event that does not apply is stale, a duplicate, or refused (see the module doc).
fn classify(state: &LifecycleState, event: &NetworkEvent) -> Result<Decision, LifecycleError> {
    let side = state.case.side;
    let Some(target) = event_progress(side, event.kind, state.stage) else {
        let other = match side {
            Side::Merchant => "issuer",
            Side::Issuer => "merchant",
        };
        return Err(LifecycleError::EventNotApplicable {
            event: event.kind,
            why: format!("an {other}-side event; this dispute is {side}-side"),
        });
    };
    let at = format!(
        "{} / {}",
        upper(state.stage.as_str()),
        upper(state.status.as_str())
    );
    match target.cmp(&state.progress()) {
        std::cmp::Ordering::Less => Ok(unchanged(
            UnchangedKind::Stale,
            format!("the dispute has moved past it to {at}"),
        )),
        std::cmp::Ordering::Equal => Ok(unchanged(
            UnchangedKind::Duplicate,
            format!("the dispute is already at {at}"),
        )),
        std::cmp::Ordering::Greater => {
            let why = match (side, event.kind) {
                (
                    Side::Issuer,
                    NetworkEventKind::PreArbitration | NetworkEventKind::Arbitration,
                ) => {
                    format!(
                        "the dispute is at {at}; the issuer files {} with CreateAction and the \
                         network's event only confirms it",
                        event.kind
                    )
                }
                _ => format!(
                    "the dispute is at {at}; an earlier step is missing: record it first, \
                     then redeliver this event"
                ),
            };
            Err(LifecycleError::EventNotApplicable {
                event: event.kind,
                why,
            })
        }
    }
}

/// Merchant-side network events on an open dispute; `None` when the event does not apply
/// here (the caller classifies it).
fn merchant_network_event(
    state: &LifecycleState,
    event: &NetworkEvent,
    policy: &MoneyPolicy,
    now: DateTime<Utc>,
) -> Result<Option<Change>, LifecycleError> {
    use NetworkEventKind as K;
    let (stage, status) = (state.stage, state.status);
    let network = state.case.network;
    // H3: no right to respond, or a due time already gone
    let may_respond = event.response_allowed && event.due_time.is_none_or(|due| due > now);
    let mut change = Change::from(state);
    match event.kind {
        K::ChargebackNotified if stage == Stage::Inquiry => {
            // M2: no withdrawal yet
            let due = event
                .due_time
                .unwrap_or(deadlines::merchant_response_due(network, now));
            change.needs_response(Stage::Chargeback, Some(due));
            change.explain("chargeback notified; funds move when it lands");
        }
        K::Chargeback
            if stage == Stage::Inquiry
                || (stage == Stage::Chargeback
                    && !state.ledger.has_withdrawal()
                    && state.reversal_lapses_at.is_none()) =>
        {
            // M3 (from nothing, an inquiry, or a notified chargeback)
            if let Some(amount) = event.amount {
                change.after.amount = amount;
            }
            if !may_respond {
                change.after.stage = Stage::Chargeback;
                change.merchant_outcome(Status::Lost, 0, change.after.amount, policy);
                change.explain("the chargeback arrived with no right to respond (H3)");
            } else {
                if stage == Stage::Inquiry || status == Status::NeedsResponse {
                    let due = event
                        .due_time
                        .or(state.due_time.filter(|_| stage == Stage::Chargeback));
                    change.needs_response(
                        Stage::Chargeback,
                        Some(due.unwrap_or(deadlines::merchant_response_due(network, now))),
                    );
                } else {
                    // already answered after the notification: the funds move, the status
                    // stays (H2)
                    change.explain("funds withdrawn; the status stays (H2)");
                }
                change.withdraw_chargeback(policy);
            }
        }
        K::InquiryClosed if stage == Stage::Inquiry => {
            change.merchant_outcome(Status::Closed, 0, 0, policy); // M8
            change.explain("the inquiry closed without a chargeback");
        }
        K::ChargebackReversed
            if stage == Stage::Chargeback && state.reversal_lapses_at.is_none() =>
        {
            // M9 with H1 (a): funds back, not yet won
            change.wait(Stage::Chargeback);
            let fee = state.ledger.fee_charged();
            change.settle_merchant(0, fee, "", "funds reinstated: chargeback reversed");
            let lapses_at = event
                .due_time
                .unwrap_or(deadlines::merchant_pre_arbitration_due(network, now));
            change.after.reversal_lapses_at = Some(lapses_at);
            change.history_amount = Some(state.ledger.funds_withdrawn());
            change.explain(format!(
                "chargeback reversed; WON once the pre-arbitration window lapses at {lapses_at} (H1)"
            ));
        }
        K::SecondChargeback if stage == Stage::Chargeback && status == Status::UnderReview => {
            // M11: withdraw again if the funds came back
            change.after.reversal_lapses_at = None;
            if may_respond {
                let due = event
                    .due_time
                    .unwrap_or(deadlines::merchant_pre_arbitration_due(network, now));
                change.needs_response(Stage::PreArbitration, Some(due));
                change.withdraw_chargeback(policy);
            } else {
                change.merchant_outcome(Status::Lost, 0, state.amount, policy);
                change.explain("second chargeback with no right to respond");
            }
        }
        K::PreArbitration if stage == Stage::Chargeback && status == Status::UnderReview => {
            // M10
            change.after.reversal_lapses_at = None;
            if may_respond {
                let due = event
                    .due_time
                    .unwrap_or(deadlines::merchant_pre_arbitration_due(network, now));
                change.needs_response(Stage::PreArbitration, Some(due));
            } else {
                change.after.stage = Stage::PreArbitration;
                change.merchant_outcome(Status::Lost, 0, state.amount, policy);
                change.explain("pre-arbitration with no right to respond (H3)");
            }
        }
        K::Arbitration
            if status == Status::UnderReview
                && (stage == Stage::PreArbitration
                    || (stage == Stage::Chargeback && skips_pre_arbitration(&state.case))) =>
        {
            // M12 (H8 for the Mastercard codes that skip pre-arbitration)
            change.after.reversal_lapses_at = None;
            if may_respond {
                let due = event
                    .due_time
                    .unwrap_or(deadlines::merchant_arbitration_due(network, now));
                change.needs_response(Stage::Arbitration, Some(due));
            } else {
                change.wait(Stage::Arbitration);
            }
        }
        K::Arbitration if status == Status::UnderReview && stage == Stage::Chargeback => {
            return Err(LifecycleError::EventNotApplicable {
                event: event.kind,
                why: "only Mastercard reason codes 4808, 4870 and 4871 go from chargeback \
                      straight to arbitration (H8); record the pre-arbitration first"
                    .into(),
            });
        }
        K::Won | K::Lost => {
            // M13
            let status = if event.kind == K::Won {
                Status::Won
            } else {
                Status::Lost
            };
            let (won, lost) = outcome_split(state, event, status)?;
            change.merchant_outcome(status, won, lost, policy);
        }
        _ => return Ok(None),
    }
    Ok(Some(change))
}

/// Issuer-side network events on an open dispute; `None` when the event does not apply here.
fn issuer_network_event(
    state: &LifecycleState,
    event: &NetworkEvent,
    now: DateTime<Utc>,
) -> Result<Option<Change>, LifecycleError> {
    use NetworkEventKind as K;
    let (stage, status) = (state.stage, state.status);
    let mut change = Change::from(state);
    match event.kind {
        K::Chargeback if stage == Stage::Inquiry => {
            // I6 filed outside this API (e.g. the processor's console); the network confirms
            change.wait(Stage::Chargeback);
            change.explain("chargeback filed with the network");
        }
        K::NetworkRejected if stage == Stage::Chargeback => {
            // I7: back to INQUIRY, refile while the filing window allows
            change.needs_response(Stage::Inquiry, state.chargeback_filing_due());
            change.explain(
                "the network rejected the chargeback: fix and refile, or write off or deny",
            );
        }
        K::Representment if stage == Stage::Chargeback => {
            // I8: the merchant's documents arrive with the event
            let due = event
                .due_time
                .unwrap_or(deadlines::issuer_pre_arbitration_due(now));
            change.needs_response(Stage::Representment, Some(due));
        }
        K::PreArbitrationResponse
            if stage == Stage::PreArbitration && status == Status::UnderReview =>
        {
            // I11
            let due = event
                .due_time
                .unwrap_or(deadlines::issuer_arbitration_due(now));
            change.needs_response(Stage::PreArbitration, Some(due));
        }
        K::Won | K::Lost => {
            // I13: the cardholder keeps amount_won; recovered funds not yet credited are
            // credited now
            let status = if event.kind == K::Won {
                Status::Won
            } else {
                Status::Lost
            };
            let (won, lost) = outcome_split(state, event, status)?;
            change.issuer_outcome(status, won, lost, FinalCredit::RecoveredThroughNetwork, now);
        }
        _ => return Ok(None),
    }
    Ok(Some(change))
}

// =============================================================================================
// Deadlines (the sweeper)

fn decide_deadline(state: &LifecycleState, policy: &MoneyPolicy, now: DateTime<Utc>) -> Decision {
    let Some(deadline) = state.next_deadline() else {
        return unchanged(UnchangedKind::NothingDue, "no deadline applies".into());
    };
    if now < deadline {
        return unchanged(
            UnchangedKind::NothingDue,
            format!("the next deadline is {deadline}"),
        );
    }
    let mut change = Change::from(state);
    match (state.case.side, state.status) {
        (Side::Merchant, Status::NeedsResponse) => {
            // M14: the merchant side auto-loses; an unanswered inquiry just closes
            change.evidence = EvidenceEffect::Frozen;
            change.event(DisputeEvent::DefensePeriodEnded);
            if state.stage == Stage::Inquiry {
                change.merchant_outcome(Status::Closed, 0, 0, policy);
            } else {
                change.merchant_outcome(Status::Lost, 0, state.amount, policy);
            }
            change.explain(format!("no response by {deadline}"));
        }
        (Side::Merchant, _) => {
            // H1 (a): the pre-arbitration window after a reversal lapsed
            change.merchant_outcome(Status::Won, state.amount, 0, policy);
            change.explain(format!(
                "no pre-arbitration by {deadline} after the reversal"
            ));
        }
        (Side::Issuer, _) => {
            // I14: never auto-decide; flag it once, keep WRITE_OFF and DENY
            change.after.overdue = true;
            change.event(DisputeEvent::Overdue);
            if state.status == Status::NeedsResponse && state.due_time.is_some_and(|due| due <= now)
            {
                change.explain(format!(
                    "the network action window closed at {}",
                    state.due_time.unwrap_or(deadline)
                ));
            }
            if let Some(resolution) = state.regulatory_deadlines().resolution_due
                && resolution <= now
            {
                change.explain(format!("the regulatory decision was due at {resolution}"));
            }
            change.explain("overdue: decide with WRITE_OFF or DENY");
        }
    }
    Decision::Apply(Box::new(change.finish(
        Actor::System,
        "system:DEADLINE_PASSED".into(),
        "",
        Vec::new(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::check_ledger_consistency;
    use ActionType as A;
    use BalanceTransactionType as B;
    use NetworkEventKind as K;

    const FEE: i64 = 1500;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn policy() -> MoneyPolicy {
        MoneyPolicy {
            dispute_fee: FEE,
            refund_fee_on_win: false,
        }
    }

    fn merchant(network: Network) -> CaseFacts {
        CaseFacts {
            side: Side::Merchant,
            network,
            reason: Reason::ProductNotReceived,
            network_reason_code: None,
            currency: "USD".into(),
            original_amount: Some(20_000),
            applicable_regulation: Regulation::None,
            date_customer_reported: None,
            issuer: IssuerFacts::default(),
        }
    }

    fn issuer(regulation: Regulation) -> CaseFacts {
        CaseFacts {
            side: Side::Issuer,
            network: Network::Mastercard,
            reason: Reason::Duplicate,
            network_reason_code: None,
            currency: "USD".into(),
            original_amount: Some(20_000),
            applicable_regulation: regulation,
            date_customer_reported: Some(day("2026-05-28")),
            issuer: IssuerFacts {
                transaction_date: Some(day("2026-05-20")),
                ..IssuerFacts::default()
            },
        }
    }

    const T0: &str = "2026-06-01T10:00:00Z";

    fn opened(case: CaseFacts, opening: Opening) -> LifecycleState {
        open_dispute(case, 10_000, &opening, &policy(), at(T0))
            .unwrap()
            .state
    }

    fn tenant_opened(case: CaseFacts, stage: Stage) -> LifecycleState {
        opened(
            case,
            Opening::Tenant {
                stage,
                due_time: None,
            },
        )
    }

    fn event(kind: NetworkEventKind) -> Trigger {
        Trigger::Network(NetworkEvent::new(kind))
    }

    fn event_with(kind: NetworkEventKind, edit: impl FnOnce(&mut NetworkEvent)) -> Trigger {
        let mut event = NetworkEvent::new(kind);
        edit(&mut event);
        Trigger::Network(event)
    }

    fn action(action: ActionType) -> Trigger {
        Trigger::Tenant(TenantAction::new(action))
    }

    fn action_for(action: ActionType, amount: i64) -> Trigger {
        Trigger::Tenant(TenantAction {
            amount: Some(amount),
            ..TenantAction::new(action)
        })
    }

    fn apply_with(
        state: &LifecycleState,
        trigger: &Trigger,
        policy: &MoneyPolicy,
        now: &str,
    ) -> Transition {
        match decide(state, trigger, policy, at(now)) {
            Ok(Decision::Apply(transition)) => {
                check_ledger_consistency(&transition.state, policy).unwrap();
                *transition
            }
            other => panic!("{trigger:?} on {state:?}: expected a transition, got {other:?}"),
        }
    }

    fn apply(state: &LifecycleState, trigger: &Trigger, now: &str) -> Transition {
        apply_with(state, trigger, &policy(), now)
    }

    fn step(state: &LifecycleState, trigger: &Trigger, now: &str) -> LifecycleState {
        apply(state, trigger, now).state
    }

    fn unchanged_kind(state: &LifecycleState, trigger: &Trigger, now: &str) -> UnchangedKind {
        match decide(state, trigger, &policy(), at(now)) {
            Ok(Decision::Unchanged(unchanged)) => unchanged.kind,
            other => panic!("{trigger:?}: expected no change, got {other:?}"),
        }
    }

    fn refusal(state: &LifecycleState, trigger: &Trigger, now: &str) -> LifecycleError {
        match decide(state, trigger, &policy(), at(now)) {
            Err(error) => error,
            other => panic!("{trigger:?}: expected a refusal, got {other:?}"),
        }
    }

    fn actions(state: &LifecycleState, now: &str) -> Vec<ActionType> {
        available_actions(state, at(now))
            .into_iter()
            .map(|available| available.action)
            .collect()
    }

    fn valid_until(state: &LifecycleState, action: ActionType, now: &str) -> Option<DateTime<Utc>> {
        available_actions(state, at(now))
            .into_iter()
            .find(|available| available.action == action)
            .unwrap()
            .valid_until
    }

    fn money(transition: &Transition) -> Vec<(BalanceTransactionType, i64)> {
        transition
            .ledger_entries
            .iter()
            .map(|entry| (entry.kind, entry.amount))
            .collect()
    }

    fn where_is(state: &LifecycleState) -> (Stage, Status) {
        (state.stage, state.status)
    }

    /// Merchant CHARGEBACK / NEEDS_RESPONSE with the funds withdrawn (Visa).
    fn merchant_chargeback() -> LifecycleState {
        opened(
            merchant(Network::Visa),
            Opening::Network(NetworkEvent::new(K::Chargeback)),
        )
    }

    /// Merchant CHARGEBACK / UNDER_REVIEW: evidence submitted.
    fn merchant_defended() -> LifecycleState {
        step(
            &merchant_chargeback(),
            &action(A::SubmitEvidence),
            "2026-06-02T00:00:00Z",
        )
    }

    /// Issuer dispute in REPRESENTMENT / NEEDS_RESPONSE, with or without a provisional credit.
    fn issuer_representment(credit: bool) -> LifecycleState {
        let mut state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
        if credit {
            state = step(
                &state,
                &action(A::ProvisionalCredit),
                "2026-06-01T11:00:00Z",
            );
        }
        state = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
        step(&state, &event(K::Representment), "2026-06-10T00:00:00Z")
    }

    // -----------------------------------------------------------------------------------------
    // Merchant side, one test per row

    #[test]
    fn m1_retrieval_request_opens_an_inquiry_without_moving_funds() {
        let due = at("2026-06-20T00:00:00Z");
        let opening = Opening::Network(NetworkEvent {
            due_time: Some(due),
            ..NetworkEvent::new(K::RetrievalRequest)
        });
        let transition =
            open_dispute(merchant(Network::Visa), 10_000, &opening, &policy(), at(T0)).unwrap();
        let state = &transition.state;
        assert_eq!(where_is(state), (Stage::Inquiry, Status::NeedsResponse));
        assert_eq!(state.due_time, Some(due));
        assert!(transition.ledger_entries.is_empty());
        assert_eq!(transition.events, vec![DisputeEvent::Created]);
        assert_eq!(transition.history.actor, Actor::Network);
        assert_eq!(transition.history.what, "network:RETRIEVAL_REQUEST");
        assert_eq!(actions(state, T0), vec![A::SubmitEvidence]);
        assert_eq!(valid_until(state, A::SubmitEvidence, T0), Some(due));
    }

    #[test]
    fn m2_chargeback_notified_moves_to_chargeback_without_withdrawal() {
        let inquiry = tenant_opened(merchant(Network::Mastercard), Stage::Inquiry);
        let transition = apply(
            &inquiry,
            &event(K::ChargebackNotified),
            "2026-06-03T09:00:00Z",
        );
        assert_eq!(
            where_is(&transition.state),
            (Stage::Chargeback, Status::NeedsResponse)
        );
        assert!(transition.ledger_entries.is_empty());
        assert_eq!(transition.events, vec![DisputeEvent::Updated]);
        // Mastercard: 45 calendar days
        assert_eq!(transition.state.due_time, Some(at("2026-07-19T00:00:00Z")));
        // a new case may start with the notification too
        let new_case = open_dispute(
            merchant(Network::Visa),
            10_000,
            &Opening::Network(NetworkEvent::new(K::ChargebackNotified)),
            &policy(),
            at(T0),
        )
        .unwrap();
        assert_eq!(new_case.state.stage, Stage::Chargeback);
        assert!(new_case.ledger_entries.is_empty());
    }

    #[test]
    fn m3_chargeback_withdraws_the_amount_plus_the_fee() {
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        let transition = apply(&inquiry, &event(K::Chargeback), "2026-06-03T09:00:00Z");
        assert_eq!(
            where_is(&transition.state),
            (Stage::Chargeback, Status::NeedsResponse)
        );
        assert_eq!(
            money(&transition),
            vec![(B::Withdrawal, -10_000), (B::DisputeFee, -FEE)]
        );
        assert_eq!(transition.events, vec![DisputeEvent::FundsWithdrawn]);
        assert_eq!(transition.state.due_time, Some(at("2026-07-04T00:00:00Z"))); // Visa 30
        assert_eq!(transition.history.amount, 10_000);

        // after a notification: the funds land, the due time stays
        let notified = step(
            &inquiry,
            &event(K::ChargebackNotified),
            "2026-06-03T09:00:00Z",
        );
        let landed = apply(&notified, &event(K::Chargeback), "2026-06-05T09:00:00Z");
        assert_eq!(landed.state.due_time, notified.due_time);
        assert_eq!(landed.ledger_entries.len(), 2);

        // a new case, with a restated amount (at most the original amount)
        let opening = Opening::Network(NetworkEvent {
            amount: Some(8_000),
            ..NetworkEvent::new(K::Chargeback)
        });
        let new_case =
            open_dispute(merchant(Network::Visa), 10_000, &opening, &policy(), at(T0)).unwrap();
        assert_eq!(new_case.state.amount, 8_000);
        assert_eq!(
            new_case.events,
            vec![DisputeEvent::Created, DisputeEvent::FundsWithdrawn]
        );
        assert_eq!(
            money(&new_case),
            vec![(B::Withdrawal, -8_000), (B::DisputeFee, -FEE)]
        );

        // the tenant may open a merchant chargeback directly: same money
        let by_tenant = open_dispute(
            merchant(Network::Visa),
            10_000,
            &Opening::Tenant {
                stage: Stage::Chargeback,
                due_time: None,
            },
            &policy(),
            at(T0),
        )
        .unwrap();
        assert_eq!(
            money(&by_tenant),
            vec![(B::Withdrawal, -10_000), (B::DisputeFee, -FEE)]
        );
    }

    #[test]
    fn m4_evidence_is_staged_only_while_a_response_is_due() {
        let state = merchant_chargeback();
        assert_eq!(
            evidence_editable(&state, at("2026-06-02T00:00:00Z")),
            Ok(())
        );
        let due = state.due_time.unwrap();
        assert!(matches!(
            evidence_editable(&state, due),
            Err(LifecycleError::EvidenceLocked { .. })
        ));
        let submitted = merchant_defended();
        assert!(evidence_editable(&submitted, at("2026-06-03T00:00:00Z")).is_err());
        let lost = step(&state, &action(A::Accept), "2026-06-02T00:00:00Z");
        assert!(evidence_editable(&lost, at("2026-06-03T00:00:00Z")).is_err());
    }

    #[test]
    fn m5_submitting_evidence_on_an_inquiry_waits_in_inquiry() {
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        let transition = apply(&inquiry, &action(A::SubmitEvidence), "2026-06-02T00:00:00Z");
        assert_eq!(
            where_is(&transition.state),
            (Stage::Inquiry, Status::UnderReview)
        );
        assert_eq!(transition.state.submission_count, 1);
        assert_eq!(transition.evidence, EvidenceEffect::Submitted);
        assert_eq!(transition.events, vec![DisputeEvent::EvidenceSubmitted]);
        assert_eq!(transition.state.due_time, None);
        assert!(actions(&transition.state, "2026-06-02T00:00:00Z").is_empty());
    }

    #[test]
    fn m6_submitting_evidence_in_chargeback_and_pre_arbitration() {
        let transition = apply(
            &merchant_chargeback(),
            &action(A::SubmitEvidence),
            "2026-06-02T00:00:00Z",
        );
        assert_eq!(
            where_is(&transition.state),
            (Stage::Chargeback, Status::UnderReview)
        );
        assert_eq!(transition.evidence, EvidenceEffect::Submitted);
        assert!(transition.ledger_entries.is_empty());

        let pre_arbitration = step(
            &transition.state,
            &event(K::PreArbitration),
            "2026-06-20T00:00:00Z",
        );
        let again = apply(
            &pre_arbitration,
            &action(A::SubmitEvidence),
            "2026-06-21T00:00:00Z",
        );
        assert_eq!(
            where_is(&again.state),
            (Stage::PreArbitration, Status::UnderReview)
        );
        assert_eq!(again.state.submission_count, 2);
    }

    #[test]
    fn m7_accepting_loses_with_no_further_money() {
        for accept in [A::Accept, A::Close] {
            let transition = apply(
                &merchant_chargeback(),
                &action(accept),
                "2026-06-02T00:00:00Z",
            );
            assert_eq!(
                where_is(&transition.state),
                (Stage::Chargeback, Status::Lost)
            );
            assert!(
                transition.ledger_entries.is_empty(),
                "funds already withdrawn"
            );
            assert_eq!(
                transition.events,
                vec![DisputeEvent::DefensePeriodEnded, DisputeEvent::Lost]
            );
            assert_eq!(
                (transition.state.amount_won, transition.state.amount_lost),
                (0, 10_000)
            );
            assert_eq!(transition.history.what, upper(accept.as_str()));
        }
        // accepting a notified chargeback takes the funds now
        let notified = opened(
            merchant(Network::Visa),
            Opening::Network(NetworkEvent::new(K::ChargebackNotified)),
        );
        let transition = apply(&notified, &action(A::Accept), "2026-06-02T00:00:00Z");
        assert_eq!(
            money(&transition),
            vec![(B::Withdrawal, -10_000), (B::DisputeFee, -FEE)]
        );
        // not on an inquiry
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        assert!(matches!(
            refusal(&inquiry, &action(A::Accept), T0),
            LifecycleError::ActionNotAvailable { .. }
        ));
    }

    #[test]
    fn m8_inquiry_closed_ends_the_inquiry() {
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        for state in [
            inquiry.clone(),
            step(&inquiry, &action(A::SubmitEvidence), "2026-06-02T00:00:00Z"),
        ] {
            let transition = apply(&state, &event(K::InquiryClosed), "2026-06-05T00:00:00Z");
            assert_eq!(
                where_is(&transition.state),
                (Stage::Inquiry, Status::Closed)
            );
            assert!(transition.ledger_entries.is_empty());
            assert_eq!(transition.events, vec![DisputeEvent::Closed]);
        }
    }

    #[test]
    fn m9_reversal_reinstates_and_the_lapse_wins() {
        let reversed = apply(
            &merchant_defended(),
            &event(K::ChargebackReversed),
            "2026-06-10T00:00:00Z",
        );
        assert_eq!(
            where_is(&reversed.state),
            (Stage::Chargeback, Status::UnderReview)
        );
        assert_eq!(money(&reversed), vec![(B::Reinstatement, 10_000)]);
        assert_eq!(reversed.events, vec![DisputeEvent::FundsReinstated]);
        let lapse = at("2026-07-11T00:00:00Z"); // Visa pre-arbitration window, 30 days
        assert_eq!(reversed.state.reversal_lapses_at, Some(lapse));
        assert_eq!(reversed.state.next_deadline(), Some(lapse));

        let won = apply(
            &reversed.state,
            &Trigger::DeadlinePassed,
            "2026-07-11T00:00:00Z",
        );
        assert_eq!(where_is(&won.state), (Stage::Chargeback, Status::Won));
        assert_eq!(won.events, vec![DisputeEvent::Won]);
        assert_eq!(won.history.actor, Actor::System);
        assert!(won.ledger_entries.is_empty(), "already reinstated");
        assert_eq!(won.state.ledger.net(), -FEE);
    }

    #[test]
    fn m10_pre_arbitration_needs_a_response_within_the_network_window() {
        for (network, due) in [
            (Network::Visa, "2026-07-21T00:00:00Z"),
            (Network::Mastercard, "2026-08-05T00:00:00Z"),
            (Network::Amex, "2026-07-11T00:00:00Z"),
        ] {
            let chargeback = opened(
                merchant(network),
                Opening::Network(NetworkEvent::new(K::Chargeback)),
            );
            let defended = step(
                &chargeback,
                &action(A::SubmitEvidence),
                "2026-06-02T00:00:00Z",
            );
            let transition = apply(&defended, &event(K::PreArbitration), "2026-06-20T12:00:00Z");
            assert_eq!(
                where_is(&transition.state),
                (Stage::PreArbitration, Status::NeedsResponse)
            );
            assert_eq!(transition.state.due_time, Some(at(due)), "{network}");
            assert!(transition.ledger_entries.is_empty());
            assert_eq!(
                actions(&transition.state, "2026-06-21T00:00:00Z"),
                vec![A::Accept, A::SubmitEvidence, A::Close]
            );
        }
    }

    #[test]
    fn m11_second_chargeback_withdraws_again_or_loses() {
        let reversed = step(
            &merchant_defended(),
            &event(K::ChargebackReversed),
            "2026-06-10T00:00:00Z",
        );
        let second = apply(
            &reversed,
            &event(K::SecondChargeback),
            "2026-06-15T00:00:00Z",
        );
        assert_eq!(
            where_is(&second.state),
            (Stage::PreArbitration, Status::NeedsResponse)
        );
        assert_eq!(money(&second), vec![(B::Withdrawal, -10_000)]);
        assert_eq!(second.events, vec![DisputeEvent::FundsWithdrawn]);
        assert_eq!(second.state.reversal_lapses_at, None);

        let no_reply = event_with(K::SecondChargeback, |e| e.response_allowed = false);
        let lost = apply(&reversed, &no_reply, "2026-06-15T00:00:00Z");
        assert_eq!(where_is(&lost.state), (Stage::Chargeback, Status::Lost));
        assert_eq!(money(&lost), vec![(B::Withdrawal, -10_000)]);
        assert_eq!(
            lost.events,
            vec![DisputeEvent::FundsWithdrawn, DisputeEvent::Lost]
        );
    }

    #[test]
    fn m12_arbitration_after_pre_arbitration() {
        let pre_arbitration = step(
            &merchant_defended(),
            &event(K::PreArbitration),
            "2026-06-20T00:00:00Z",
        );
        let answered = step(
            &pre_arbitration,
            &action(A::SubmitEvidence),
            "2026-06-21T00:00:00Z",
        );
        let asked = apply(&answered, &event(K::Arbitration), "2026-07-01T00:00:00Z");
        assert_eq!(
            where_is(&asked.state),
            (Stage::Arbitration, Status::NeedsResponse)
        );
        assert_eq!(asked.state.due_time, Some(at("2026-07-12T00:00:00Z"))); // Visa: 10 days
        assert!(actions(&asked.state, "2026-07-02T00:00:00Z").contains(&A::SubmitEvidence));

        let not_asked = event_with(K::Arbitration, |e| e.response_allowed = false);
        let waiting = apply(&answered, &not_asked, "2026-07-01T00:00:00Z");
        assert_eq!(
            where_is(&waiting.state),
            (Stage::Arbitration, Status::UnderReview)
        );
        assert_eq!(waiting.state.next_deadline(), None);
    }

    #[test]
    fn m13_network_outcomes_settle_the_money() {
        let defended = step(
            &step(
                &merchant_defended(),
                &event(K::PreArbitration),
                "2026-06-20T00:00:00Z",
            ),
            &action(A::SubmitEvidence),
            "2026-06-21T00:00:00Z",
        );
        let won = apply(&defended, &event(K::Won), "2026-07-01T00:00:00Z");
        assert_eq!(where_is(&won.state), (Stage::PreArbitration, Status::Won));
        assert_eq!(money(&won), vec![(B::Reinstatement, 10_000)]);
        assert_eq!(
            won.events,
            vec![DisputeEvent::FundsReinstated, DisputeEvent::Won]
        );
        assert_eq!((won.state.amount_won, won.state.amount_lost), (10_000, 0));
        assert_eq!(won.state.ledger.net(), -FEE);

        let refunding = MoneyPolicy {
            refund_fee_on_win: true,
            ..policy()
        };
        let won = apply_with(
            &defended,
            &event(K::Won),
            &refunding,
            "2026-07-01T00:00:00Z",
        );
        assert_eq!(
            money(&won),
            vec![(B::Reinstatement, 10_000), (B::DisputeFee, FEE)]
        );
        assert_eq!(won.state.ledger.net(), 0);

        let lost = apply(&defended, &event(K::Lost), "2026-07-01T00:00:00Z");
        assert_eq!(where_is(&lost.state), (Stage::PreArbitration, Status::Lost));
        assert!(lost.ledger_entries.is_empty());
        assert_eq!(lost.events, vec![DisputeEvent::Lost]);
        assert_eq!(lost.state.ledger.net(), -10_000 - FEE);
    }

    #[test]
    fn m14_unanswered_disputes_auto_lose_and_inquiries_close() {
        let chargeback = merchant_chargeback();
        let due = chargeback.due_time.unwrap();
        assert_eq!(chargeback.next_deadline(), Some(due));
        assert_eq!(
            unchanged_kind(
                &chargeback,
                &Trigger::DeadlinePassed,
                "2026-07-01T23:59:59Z"
            ),
            UnchangedKind::NothingDue
        );
        let lost = apply(
            &chargeback,
            &Trigger::DeadlinePassed,
            "2026-07-02T00:00:00Z",
        );
        assert_eq!(due, at("2026-07-02T00:00:00Z")); // opened 2026-06-01, Visa: 30 days
        assert_eq!(where_is(&lost.state), (Stage::Chargeback, Status::Lost));
        assert_eq!(
            lost.events,
            vec![DisputeEvent::DefensePeriodEnded, DisputeEvent::Lost]
        );
        assert_eq!(lost.evidence, EvidenceEffect::Frozen);
        assert_eq!(lost.history.what, "system:DEADLINE_PASSED");
        // applied once: the next sweep finds nothing
        assert_eq!(
            unchanged_kind(
                &lost.state,
                &Trigger::DeadlinePassed,
                "2026-07-05T00:00:00Z"
            ),
            UnchangedKind::NothingDue
        );

        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        let closed = apply(&inquiry, &Trigger::DeadlinePassed, "2026-07-02T00:00:00Z");
        assert_eq!(where_is(&closed.state), (Stage::Inquiry, Status::Closed));
        assert_eq!(
            closed.events,
            vec![DisputeEvent::DefensePeriodEnded, DisputeEvent::Closed]
        );
        assert!(closed.ledger_entries.is_empty());
        // past the due time the actions are gone too
        assert!(matches!(
            refusal(
                &chargeback,
                &action(A::SubmitEvidence),
                "2026-07-04T00:00:00Z"
            ),
            LifecycleError::DeadlinePassed { .. }
        ));
    }

    #[test]
    fn m15_only_the_network_reopens_a_won_or_closed_dispute() {
        let won = step(&merchant_defended(), &event(K::Won), "2026-06-20T00:00:00Z");
        // tenant actions never reopen
        assert!(available_actions(&won, at("2026-06-21T00:00:00Z")).is_empty());
        assert!(matches!(
            refusal(&won, &action(A::SubmitEvidence), "2026-06-21T00:00:00Z"),
            LifecycleError::ActionNotAvailable { .. }
        ));
        let reopened = apply(&won, &event(K::SecondChargeback), "2026-06-25T00:00:00Z");
        assert_eq!(
            where_is(&reopened.state),
            (Stage::PreArbitration, Status::NeedsResponse)
        );
        assert_eq!(
            reopened.events,
            vec![DisputeEvent::Reopened, DisputeEvent::FundsWithdrawn]
        );
        assert_eq!(
            (reopened.state.amount_won, reopened.state.amount_lost),
            (0, 0)
        );
        assert_eq!(money(&reopened), vec![(B::Withdrawal, -10_000)]);

        // a closed inquiry reopens with a chargeback
        let closed = step(
            &tenant_opened(merchant(Network::Visa), Stage::Inquiry),
            &event(K::InquiryClosed),
            "2026-06-02T00:00:00Z",
        );
        let charged = apply(&closed, &event(K::Chargeback), "2026-06-10T00:00:00Z");
        assert_eq!(
            where_is(&charged.state),
            (Stage::Chargeback, Status::NeedsResponse)
        );
        assert_eq!(
            charged.events,
            vec![DisputeEvent::Reopened, DisputeEvent::FundsWithdrawn]
        );

        // a lost dispute stays lost
        let lost = step(
            &merchant_chargeback(),
            &action(A::Accept),
            "2026-06-02T00:00:00Z",
        );
        assert_eq!(
            unchanged_kind(&lost, &event(K::SecondChargeback), "2026-06-10T00:00:00Z"),
            UnchangedKind::Stale
        );
        // a late event of the same stage does not reopen
        assert_eq!(
            unchanged_kind(&won, &event(K::ChargebackReversed), "2026-06-21T00:00:00Z"),
            UnchangedKind::Stale
        );
    }

    // -----------------------------------------------------------------------------------------
    // Issuer side, one test per row

    #[test]
    fn i1_issuer_dispute_opens_with_regulatory_and_network_deadlines() {
        let transition = open_dispute(
            issuer(Regulation::RegulationE),
            10_000,
            &Opening::Tenant {
                stage: Stage::Inquiry,
                due_time: None,
            },
            &policy(),
            at(T0),
        )
        .unwrap();
        let state = &transition.state;
        assert_eq!(where_is(state), (Stage::Inquiry, Status::NeedsResponse));
        assert_eq!(state.credit_status, CreditStatus::None);
        assert_eq!(transition.events, vec![DisputeEvent::Created]);
        // chargeback: transaction 2026-05-20 + 120 days
        let filing = at("2026-09-18T00:00:00Z");
        assert_eq!(state.due_time, Some(filing));
        // Reg E: reported Thursday 2026-05-28; the tenth business day is Thursday 2026-06-11
        let credit_due = at("2026-06-12T00:00:00Z");
        assert_eq!(
            available_actions(state, at(T0)),
            vec![
                AvailableAction {
                    action: A::ProvisionalCredit,
                    valid_until: Some(credit_due)
                },
                AvailableAction {
                    action: A::WriteOff,
                    valid_until: Some(credit_due)
                },
                AvailableAction {
                    action: A::Deny,
                    valid_until: Some(credit_due)
                },
                AvailableAction {
                    action: A::Chargeback,
                    valid_until: Some(filing)
                },
            ]
        );
        // with a provisional credit the decision may wait 45 calendar days
        let credited = step(state, &action(A::ProvisionalCredit), "2026-06-02T00:00:00Z");
        assert_eq!(
            valid_until(&credited, A::WriteOff, "2026-06-02T00:00:00Z"),
            Some(at("2026-07-13T00:00:00Z"))
        );
        // Reg Z: two billing cycles closing on the 28th
        let reg_z = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
        assert_eq!(
            valid_until(&reg_z, A::WriteOff, T0),
            Some(at("2026-07-29T00:00:00Z"))
        );
        assert_eq!(valid_until(&reg_z, A::ProvisionalCredit, T0), None);
        assert!(
            transition
                .history
                .message
                .contains("provisional credit due")
        );
    }

    #[test]
    fn i2_no_chargeback_action_without_chargeback_rights() {
        let small = open_dispute(
            issuer(Regulation::RegulationZ),
            2_499,
            &Opening::Tenant {
                stage: Stage::Inquiry,
                due_time: None,
            },
            &policy(),
            at(T0),
        )
        .unwrap()
        .state;
        assert_eq!(
            actions(&small, T0),
            vec![A::ProvisionalCredit, A::WriteOff, A::Deny]
        );
        let three_ds = CaseFacts {
            reason: Reason::Fraudulent,
            issuer: IssuerFacts {
                three_ds_authenticated: true,
                ..issuer(Regulation::RegulationZ).issuer
            },
            ..issuer(Regulation::RegulationZ)
        };
        let state = tenant_opened(three_ds.clone(), Stage::Inquiry);
        assert!(!actions(&state, T0).contains(&A::Chargeback));
        // 3-D Secure only removes fraud rights
        let not_fraud = CaseFacts {
            reason: Reason::Duplicate,
            ..three_ds
        };
        assert!(actions(&tenant_opened(not_fraud, Stage::Inquiry), T0).contains(&A::Chargeback));
        let unposted = CaseFacts {
            issuer: IssuerFacts {
                transaction_posted: false,
                ..IssuerFacts::default()
            },
            ..issuer(Regulation::None)
        };
        let state = tenant_opened(unposted, Stage::Inquiry);
        assert!(matches!(
            refusal(&state, &action(A::Chargeback), T0),
            LifecycleError::ActionNotAvailable { .. }
        ));
        assert!(actions(&state, T0).contains(&A::WriteOff));
        // out of window
        let state = tenant_opened(issuer(Regulation::None), Stage::Inquiry);
        assert!(matches!(
            refusal(&state, &action(A::Chargeback), "2026-09-18T00:00:00Z"),
            LifecycleError::DeadlinePassed { .. }
        ));
    }

    #[test]
    fn i3_provisional_credit_once_without_a_status_change() {
        let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
        let transition = apply(
            &state,
            &action(A::ProvisionalCredit),
            "2026-06-02T00:00:00Z",
        );
        assert_eq!(where_is(&transition.state), where_is(&state));
        assert_eq!(transition.state.credit_status, CreditStatus::Provisional);
        assert_eq!(money(&transition), vec![(B::ProvisionalCredit, 10_000)]);
        assert_eq!(transition.events, vec![DisputeEvent::Updated]);
        assert!(matches!(
            refusal(
                &transition.state,
                &action(A::ProvisionalCredit),
                "2026-06-03T00:00:00Z"
            ),
            LifecycleError::ActionNotAvailable { .. }
        ));
        // Reg E: not after its due date
        assert!(matches!(
            refusal(
                &state,
                &action(A::ProvisionalCredit),
                "2026-06-12T00:00:00Z"
            ),
            LifecycleError::DeadlinePassed { .. }
        ));
    }

    #[test]
    fn i4_write_off_wins_with_a_final_credit() {
        let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
        let written_off = apply(&state, &action(A::WriteOff), "2026-06-02T00:00:00Z");
        assert_eq!(where_is(&written_off.state), (Stage::Inquiry, Status::Won));
        assert_eq!(written_off.state.credit_status, CreditStatus::Final);
        assert_eq!(money(&written_off), vec![(B::WriteOff, 10_000)]);
        assert_eq!(written_off.events, vec![DisputeEvent::Won]);

        // with a provisional credit outstanding, the credit just becomes final
        let credited = step(
            &state,
            &action(A::ProvisionalCredit),
            "2026-06-02T00:00:00Z",
        );
        let written_off = apply(&credited, &action(A::WriteOff), "2026-06-03T00:00:00Z");
        assert!(written_off.ledger_entries.is_empty());
        assert_eq!(written_off.state.credit_status, CreditStatus::Final);
        assert_eq!(written_off.state.ledger.net(), 10_000);

        // available in any open stage
        let representment = issuer_representment(false);
        assert!(actions(&representment, "2026-06-11T00:00:00Z").contains(&A::WriteOff));
    }

    #[test]
    fn i5_deny_reverses_the_credit_with_the_reg_e_honoring_date() {
        let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
        let credited = step(
            &state,
            &action(A::ProvisionalCredit),
            "2026-06-02T00:00:00Z",
        );
        let denied = apply(&credited, &action(A::Deny), "2026-06-16T15:00:00Z");
        assert_eq!(where_is(&denied.state), (Stage::Inquiry, Status::Lost));
        assert_eq!(denied.state.credit_status, CreditStatus::Reversed);
        assert_eq!(
            money(&denied),
            vec![(B::ProvisionalCreditReversal, -10_000)]
        );
        // debited Tuesday 2026-06-16; Juneteenth (Friday) does not count
        let notice = denied.provisional_credit_reversal.unwrap();
        assert_eq!(
            notice,
            ReversalNotice {
                amount: 10_000,
                debited_on: day("2026-06-16"),
                honored_until: day("2026-06-24"),
            }
        );
        assert!(denied.ledger_entries[0].description.contains("2026-06-24"));
        assert!(
            denied
                .history
                .message
                .contains("honored through 2026-06-24")
        );
        assert_eq!(
            (denied.state.amount_won, denied.state.amount_lost),
            (0, 10_000)
        );

        // without a credit nothing moves and the credit status stays NONE
        let denied = apply(&state, &action(A::Deny), "2026-06-02T00:00:00Z");
        assert!(denied.ledger_entries.is_empty());
        assert_eq!(denied.state.credit_status, CreditStatus::None);
        assert_eq!(denied.provisional_credit_reversal, None);
    }

    #[test]
    fn i6_chargeback_waits_on_the_network_and_may_be_partial() {
        let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
        let filed = apply(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
        assert_eq!(
            where_is(&filed.state),
            (Stage::Chargeback, Status::UnderReview)
        );
        assert_eq!(filed.state.due_time, None);
        assert!(filed.ledger_entries.is_empty());
        assert_eq!(
            actions(&filed.state, "2026-06-03T00:00:00Z"),
            vec![A::ProvisionalCredit, A::WriteOff]
        );

        let partial = apply(
            &state,
            &action_for(A::Chargeback, 6_000),
            "2026-06-02T00:00:00Z",
        );
        assert_eq!(partial.state.amount, 6_000);
        assert_eq!(partial.history.amount, 6_000);
        // not below a provisional credit already given
        let credited = step(
            &state,
            &action(A::ProvisionalCredit),
            "2026-06-02T00:00:00Z",
        );
        let error = refusal(
            &credited,
            &action_for(A::Chargeback, 6_000),
            "2026-06-03T00:00:00Z",
        );
        assert_eq!(error.invalid_argument_field(), Some("amount"));
    }

    #[test]
    fn i7_network_rejection_returns_to_inquiry() {
        let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
        let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
        let rejected = apply(&filed, &event(K::NetworkRejected), "2026-06-05T00:00:00Z");
        assert_eq!(
            where_is(&rejected.state),
            (Stage::Inquiry, Status::NeedsResponse)
        );
        assert_eq!(
            rejected.state.due_time, state.due_time,
            "refile within the window"
        );
        assert!(actions(&rejected.state, "2026-06-06T00:00:00Z").contains(&A::Chargeback));
        // a second rejection of the same chargeback changes nothing
        assert_eq!(
            unchanged_kind(
                &rejected.state,
                &event(K::NetworkRejected),
                "2026-06-06T00:00:00Z"
            ),
            UnchangedKind::Duplicate
        );
    }

    #[test]
    fn i8_representment_asks_the_issuer_within_45_days() {
        let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
        let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
        let representment = event_with(K::Representment, |e| {
            e.document_ids = vec!["doc_merchant".into()];
        });
        let transition = apply(&filed, &representment, "2026-06-10T08:00:00Z");
        assert_eq!(
            where_is(&transition.state),
            (Stage::Representment, Status::NeedsResponse)
        );
        let due = at("2026-07-26T00:00:00Z");
        assert_eq!(transition.state.due_time, Some(due));
        assert_eq!(transition.history.document_ids, vec!["doc_merchant"]);
        assert_eq!(
            valid_until(&transition.state, A::PreArbitration, "2026-06-11T00:00:00Z"),
            Some(due)
        );
        assert_eq!(
            actions(&transition.state, "2026-06-11T00:00:00Z"),
            vec![
                A::ProvisionalCredit,
                A::WriteOff,
                A::AcceptRepresentment,
                A::PreArbitration
            ]
        );
    }

    #[test]
    fn i9_accepting_the_representment_loses_and_reverses_the_credit() {
        let state = issuer_representment(true);
        let transition = apply(
            &state,
            &action(A::AcceptRepresentment),
            "2026-06-16T00:00:00Z",
        );
        assert_eq!(
            where_is(&transition.state),
            (Stage::Representment, Status::Lost)
        );
        assert_eq!(transition.state.credit_status, CreditStatus::Reversed);
        assert_eq!(
            money(&transition),
            vec![(B::ProvisionalCreditReversal, -10_000)]
        );
        assert!(transition.provisional_credit_reversal.is_some());
    }

    #[test]
    fn i10_issuer_files_pre_arbitration() {
        let transition = apply(
            &issuer_representment(false),
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        );
        assert_eq!(
            where_is(&transition.state),
            (Stage::PreArbitration, Status::UnderReview)
        );
        assert_eq!(transition.state.due_time, None);
    }

    #[test]
    fn i11_pre_arbitration_response_opens_the_arbitration_window() {
        let filed = step(
            &issuer_representment(false),
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        );
        let transition = apply(
            &filed,
            &event(K::PreArbitrationResponse),
            "2026-07-01T09:00:00Z",
        );
        assert_eq!(
            where_is(&transition.state),
            (Stage::PreArbitration, Status::NeedsResponse)
        );
        let due = at("2026-09-15T00:00:00Z"); // + 75 days
        assert_eq!(transition.state.due_time, Some(due));
        assert_eq!(
            valid_until(&transition.state, A::Arbitration, "2026-07-02T00:00:00Z"),
            Some(due)
        );
    }

    #[test]
    fn i12_issuer_files_arbitration() {
        let answered = step(
            &step(
                &issuer_representment(false),
                &action(A::PreArbitration),
                "2026-06-16T00:00:00Z",
            ),
            &event(K::PreArbitrationResponse),
            "2026-07-01T00:00:00Z",
        );
        let transition = apply(&answered, &action(A::Arbitration), "2026-07-02T00:00:00Z");
        assert_eq!(
            where_is(&transition.state),
            (Stage::Arbitration, Status::UnderReview)
        );
    }

    #[test]
    fn i13_network_outcomes_decide_the_credit() {
        let credited = issuer_representment(true);
        let filed = step(
            &credited,
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        );
        let won = apply(&filed, &event(K::Won), "2026-07-01T00:00:00Z");
        assert_eq!(won.state.credit_status, CreditStatus::Final);
        assert!(won.ledger_entries.is_empty());
        assert_eq!(won.events, vec![DisputeEvent::Won]);

        let lost = apply(&filed, &event(K::Lost), "2026-07-01T00:00:00Z");
        assert_eq!(lost.state.credit_status, CreditStatus::Reversed);
        assert_eq!(money(&lost), vec![(B::ProvisionalCreditReversal, -10_000)]);

        // won without an earlier credit: the recovered funds are credited now
        let uncredited = step(
            &issuer_representment(false),
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        );
        let won = apply(&uncredited, &event(K::Won), "2026-07-01T00:00:00Z");
        assert_eq!(money(&won), vec![(B::Reinstatement, 10_000)]);
        assert_eq!(won.state.credit_status, CreditStatus::Final);
        let lost = apply(&uncredited, &event(K::Lost), "2026-07-01T00:00:00Z");
        assert_eq!(lost.state.credit_status, CreditStatus::None);
    }

    #[test]
    fn i14_issuer_deadlines_flag_overdue_and_never_decide() {
        // Reg E without provisional credit: the decision is due with the credit (10 business
        // days), long before the chargeback window closes
        let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
        let due = at("2026-06-12T00:00:00Z");
        assert_eq!(state.next_deadline(), Some(due));
        assert_eq!(
            unchanged_kind(&state, &Trigger::DeadlinePassed, "2026-06-11T23:00:00Z"),
            UnchangedKind::NothingDue
        );
        let overdue = apply(&state, &Trigger::DeadlinePassed, "2026-06-12T00:00:00Z");
        assert_eq!(
            where_is(&overdue.state),
            (Stage::Inquiry, Status::NeedsResponse)
        );
        assert!(overdue.state.overdue);
        assert_eq!(overdue.events, vec![DisputeEvent::Overdue]);
        assert!(overdue.ledger_entries.is_empty());
        assert_eq!(
            actions(&overdue.state, "2026-06-12T00:00:00Z"),
            vec![A::WriteOff, A::Deny]
        );
        assert_eq!(overdue.state.next_deadline(), None);
        assert_eq!(
            unchanged_kind(
                &overdue.state,
                &Trigger::DeadlinePassed,
                "2026-06-13T00:00:00Z"
            ),
            UnchangedKind::NothingDue
        );

        // the window of the last network action closes: overdue, DENY now in any stage
        let representment = issuer_representment(true);
        let window_closed = representment.due_time.unwrap();
        let overdue = apply(
            &representment,
            &Trigger::DeadlinePassed,
            "2026-07-26T00:00:00Z",
        );
        assert!(window_closed <= at("2026-07-26T00:00:00Z"));
        assert_eq!(
            actions(&overdue.state, "2026-07-26T00:00:00Z"),
            vec![A::WriteOff, A::Deny]
        );
        assert!(
            overdue
                .history
                .message
                .contains("network action window closed")
        );
        let denied = apply(&overdue.state, &action(A::Deny), "2026-07-27T00:00:00Z");
        assert_eq!(denied.state.status, Status::Lost);
    }

    // -----------------------------------------------------------------------------------------
    // Hazards

    #[test]
    fn h1_a_reversal_is_not_final_until_the_pre_arbitration_window_lapses() {
        let reversed = step(
            &merchant_defended(),
            &event(K::ChargebackReversed),
            "2026-06-10T00:00:00Z",
        );
        assert_eq!(reversed.status, Status::UnderReview);
        // a pre-arbitration inside the window continues the same dispute
        let pre_arbitration = apply(&reversed, &event(K::PreArbitration), "2026-07-01T00:00:00Z");
        assert_eq!(
            where_is(&pre_arbitration.state),
            (Stage::PreArbitration, Status::NeedsResponse)
        );
        assert!(!pre_arbitration.events.contains(&DisputeEvent::Reopened));
        assert_eq!(pre_arbitration.state.reversal_lapses_at, None);
        // after the lapse it is WON, and a later pre-arbitration reopens it (M15)
        let won = step(&reversed, &Trigger::DeadlinePassed, "2026-07-11T00:00:00Z");
        assert_eq!(won.status, Status::Won);
        let reopened = apply(&won, &event(K::PreArbitration), "2026-07-15T00:00:00Z");
        assert_eq!(reopened.events[0], DisputeEvent::Reopened);
        assert_eq!(reopened.state.stage, Stage::PreArbitration);
    }

    #[test]
    fn h2_funds_events_never_change_the_status() {
        // notified, answered, then the chargeback lands: funds move, status stays
        let notified = opened(
            merchant(Network::Visa),
            Opening::Network(NetworkEvent::new(K::ChargebackNotified)),
        );
        let answered = step(
            &notified,
            &action(A::SubmitEvidence),
            "2026-06-02T00:00:00Z",
        );
        let landed = apply(&answered, &event(K::Chargeback), "2026-06-03T00:00:00Z");
        assert_eq!(where_is(&landed.state), where_is(&answered));
        assert_eq!(landed.events, vec![DisputeEvent::FundsWithdrawn]);
        // the reversal brings the funds back, still under review, not won
        let reversed = apply(
            &landed.state,
            &event(K::ChargebackReversed),
            "2026-06-05T00:00:00Z",
        );
        assert_eq!(where_is(&reversed.state), where_is(&answered));
        assert_eq!(reversed.events, vec![DisputeEvent::FundsReinstated]);
        assert!(!reversed.events.contains(&DisputeEvent::Won));
    }

    #[test]
    fn h3_a_chargeback_without_the_right_to_respond_is_lost_at_once() {
        let undefendable = NetworkEvent {
            response_allowed: false,
            ..NetworkEvent::new(K::Chargeback)
        };
        let transition = open_dispute(
            merchant(Network::Visa),
            10_000,
            &Opening::Network(undefendable),
            &policy(),
            at(T0),
        )
        .unwrap();
        assert_eq!(
            where_is(&transition.state),
            (Stage::Chargeback, Status::Lost)
        );
        assert_eq!(
            transition.events,
            vec![
                DisputeEvent::Created,
                DisputeEvent::FundsWithdrawn,
                DisputeEvent::Lost
            ]
        );
        assert_eq!(
            money(&transition),
            vec![(B::Withdrawal, -10_000), (B::DisputeFee, -FEE)]
        );
        assert_eq!(transition.state.due_time, None);
        assert_eq!(
            transition.state.next_deadline(),
            None,
            "the sweeper never waits"
        );
        // Stripe's due_by = 0: a due time already gone means the same
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        let already_due = event_with(K::Chargeback, |e| e.due_time = Some(at(T0)));
        let lost = apply(&inquiry, &already_due, T0);
        assert_eq!(lost.state.status, Status::Lost);
    }

    #[test]
    fn h4_mapping_is_stage_aware() {
        // the same action and the same outcome keep the stage they happen in
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        let pre_arbitration = step(
            &merchant_defended(),
            &event(K::PreArbitration),
            "2026-06-20T00:00:00Z",
        );
        assert_eq!(
            step(&inquiry, &action(A::SubmitEvidence), "2026-06-02T00:00:00Z").stage,
            Stage::Inquiry
        );
        assert_eq!(
            step(
                &pre_arbitration,
                &action(A::SubmitEvidence),
                "2026-06-21T00:00:00Z"
            )
            .stage,
            Stage::PreArbitration
        );
        assert_eq!(
            step(&pre_arbitration, &event(K::Lost), "2026-06-21T00:00:00Z").stage,
            Stage::PreArbitration
        );
        // actions are offered outside the CHARGEBACK stage too
        assert!(actions(&pre_arbitration, "2026-06-21T00:00:00Z").contains(&A::Accept));
        // an unanswered inquiry closes, an unanswered chargeback is lost
        let due = "2026-07-02T00:00:00Z";
        assert_eq!(
            step(&inquiry, &Trigger::DeadlinePassed, due).status,
            Status::Closed
        );
        assert_eq!(
            step(&merchant_chargeback(), &Trigger::DeadlinePassed, due).status,
            Status::Lost
        );
    }

    #[test]
    fn h5_provisional_credit_in_any_open_issuer_stage_once() {
        let representment = issuer_representment(false);
        assert!(actions(&representment, "2026-06-11T00:00:00Z").contains(&A::ProvisionalCredit));
        let credited = apply(
            &representment,
            &action(A::ProvisionalCredit),
            "2026-06-11T00:00:00Z",
        );
        assert_eq!(credited.state.stage, Stage::Representment);
        assert!(!actions(&credited.state, "2026-06-11T00:00:00Z").contains(&A::ProvisionalCredit));
        // under review too (Reg Z: no credit due date)
        let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
        let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
        assert!(actions(&filed, "2026-08-01T00:00:00Z").contains(&A::ProvisionalCredit));
    }

    #[test]
    fn h6_partial_outcomes_carry_their_amounts() {
        let partial = event_with(K::Won, |e| {
            e.amount_won = Some(6_000);
            e.amount_lost = Some(4_000);
        });
        let won = apply(&merchant_defended(), &partial, "2026-06-20T00:00:00Z");
        assert_eq!(
            (won.state.amount_won, won.state.amount_lost),
            (6_000, 4_000)
        );
        assert_eq!(money(&won), vec![(B::Reinstatement, 6_000)]);
        assert_eq!(won.state.ledger.net(), -4_000 - FEE);

        let issuer_credited = step(
            &issuer_representment(true),
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        );
        let only_lost = event_with(K::Won, |e| e.amount_lost = Some(4_000));
        let won = apply(&issuer_credited, &only_lost, "2026-07-01T00:00:00Z");
        assert_eq!(money(&won), vec![(B::ProvisionalCreditReversal, -4_000)]);
        assert_eq!(won.state.ledger.net(), 6_000);
        assert_eq!(won.state.credit_status, CreditStatus::Final);

        // partial write-off: the rest is decided against the cardholder
        let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
        let written_off = apply(
            &state,
            &action_for(A::WriteOff, 3_000),
            "2026-06-02T00:00:00Z",
        );
        assert_eq!(
            (written_off.state.amount_won, written_off.state.amount_lost),
            (3_000, 7_000)
        );
        assert_eq!(money(&written_off), vec![(B::WriteOff, 3_000)]);

        let bad = event_with(K::Won, |e| {
            e.amount_won = Some(6_000);
            e.amount_lost = Some(3_000);
        });
        let error = refusal(&merchant_defended(), &bad, "2026-06-20T00:00:00Z");
        assert_eq!(error.invalid_argument_field(), Some("amount_won"));
        let nothing_won = event_with(K::Won, |e| e.amount_won = Some(0));
        assert!(matches!(
            refusal(&merchant_defended(), &nothing_won, "2026-06-20T00:00:00Z"),
            LifecycleError::InvalidAmount { .. }
        ));
    }

    #[test]
    fn h7_several_disputes_of_one_charge_stay_within_the_original_amount() {
        assert!(ledger::check_within_original_amount(Some(20_000), 10_000, 10_000).is_ok());
        let error = ledger::check_within_original_amount(Some(20_000), 10_000, 10_001).unwrap_err();
        assert_eq!(error.reason(), "AMOUNT_EXCEEDS_ORIGINAL");
        // a chargeback may not claim more than the original charge
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        let too_much = event_with(K::Chargeback, |e| e.amount = Some(20_001));
        assert_eq!(
            refusal(&inquiry, &too_much, T0).invalid_argument_field(),
            Some("amount")
        );
        assert!(matches!(
            open_dispute(
                merchant(Network::Visa),
                20_001,
                &Opening::Tenant {
                    stage: Stage::Inquiry,
                    due_time: None
                },
                &policy(),
                at(T0)
            ),
            Err(LifecycleError::InvalidAmount { .. })
        ));
    }

    #[test]
    fn h8_mastercard_4808_4870_4871_skip_pre_arbitration() {
        for code in ["4808", "4870", "4871"] {
            let case = CaseFacts {
                network_reason_code: Some(code.into()),
                ..merchant(Network::Mastercard)
            };
            let chargeback = opened(case, Opening::Network(NetworkEvent::new(K::Chargeback)));
            let defended = step(
                &chargeback,
                &action(A::SubmitEvidence),
                "2026-06-02T00:00:00Z",
            );
            let arbitration = apply(&defended, &event(K::Arbitration), "2026-06-20T00:00:00Z");
            assert_eq!(arbitration.state.stage, Stage::Arbitration, "{code}");
        }
        for case in [
            CaseFacts {
                network_reason_code: Some("4837".into()),
                ..merchant(Network::Mastercard)
            },
            CaseFacts {
                network_reason_code: Some("4808".into()),
                ..merchant(Network::Visa)
            },
        ] {
            let chargeback = opened(case, Opening::Network(NetworkEvent::new(K::Chargeback)));
            let defended = step(
                &chargeback,
                &action(A::SubmitEvidence),
                "2026-06-02T00:00:00Z",
            );
            let error = refusal(&defended, &event(K::Arbitration), "2026-06-20T00:00:00Z");
            assert!(error.to_string().contains("H8"), "{error}");
        }
    }

    #[test]
    fn h9_late_and_duplicate_events_never_move_a_dispute_back() {
        let chargeback = merchant_chargeback();
        // a second CHARGEBACK (new event id, same chargeback) does not withdraw twice
        assert_eq!(
            unchanged_kind(&chargeback, &event(K::Chargeback), "2026-06-02T00:00:00Z"),
            UnchangedKind::Duplicate
        );
        let pre_arbitration = step(
            &merchant_defended(),
            &event(K::PreArbitration),
            "2026-06-20T00:00:00Z",
        );
        // late events of earlier points are stale
        for late in [
            K::RetrievalRequest,
            K::ChargebackNotified,
            K::Chargeback,
            K::InquiryClosed,
            K::ChargebackReversed,
        ] {
            assert_eq!(
                unchanged_kind(&pre_arbitration, &event(late), "2026-06-21T00:00:00Z"),
                UnchangedKind::Stale,
                "{late}"
            );
        }
        // an event from a point that cannot be reached yet is refused (redeliver later)
        let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
        for early in [K::ChargebackReversed, K::SecondChargeback, K::Arbitration] {
            assert!(matches!(
                refusal(&inquiry, &event(early), T0),
                LifecycleError::EventNotApplicable { .. }
            ));
        }
        // issuer-only events are refused on the merchant side
        assert!(matches!(
            refusal(&inquiry, &event(K::Representment), T0),
            LifecycleError::EventNotApplicable { .. }
        ));
        // outcomes: the same again is a duplicate, the other one a conflict
        let won = step(&pre_arbitration, &event(K::Won), "2026-06-25T00:00:00Z");
        assert_eq!(
            unchanged_kind(&won, &event(K::Won), "2026-06-26T00:00:00Z"),
            UnchangedKind::Duplicate
        );
        assert_eq!(
            refusal(&won, &event(K::Lost), "2026-06-26T00:00:00Z").reason(),
            "CONFLICTING_OUTCOME"
        );
        // issuer side: a late representment after pre-arbitration was filed
        let filed = step(
            &issuer_representment(false),
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        );
        assert_eq!(
            unchanged_kind(&filed, &event(K::Representment), "2026-06-17T00:00:00Z"),
            UnchangedKind::Stale
        );
        assert_eq!(
            unchanged_kind(&filed, &event(K::PreArbitration), "2026-06-17T00:00:00Z"),
            UnchangedKind::Duplicate
        );
        assert_eq!(
            progress(Side::Merchant, Stage::Chargeback, Status::Lost),
            (1, 2)
        );
    }

    #[test]
    fn issuer_side_is_not_opened_by_network_events() {
        let error = open_dispute(
            issuer(Regulation::None),
            10_000,
            &Opening::Network(NetworkEvent::new(K::Chargeback)),
            &policy(),
            at(T0),
        )
        .unwrap_err();
        assert_eq!(error.reason(), "CANNOT_OPEN_DISPUTE");
        let error = open_dispute(
            merchant(Network::Visa),
            10_000,
            &Opening::Network(NetworkEvent::new(K::Won)),
            &policy(),
            at(T0),
        )
        .unwrap_err();
        assert_eq!(error.reason(), "CANNOT_OPEN_DISPUTE");
    }

    #[test]
    fn actions_take_an_amount_only_where_it_means_something() {
        let state = merchant_chargeback();
        let error = refusal(&state, &action_for(A::Accept, 10), "2026-06-02T00:00:00Z");
        assert_eq!(error.invalid_argument_field(), Some("amount"));
        assert_eq!(error.reason(), "INVALID_AMOUNT");
        let issuer_state = tenant_opened(issuer(Regulation::None), Stage::Inquiry);
        let error = refusal(
            &issuer_state,
            &action_for(A::ProvisionalCredit, 10_001),
            "2026-06-02T00:00:00Z",
        );
        assert_eq!(error.invalid_argument_field(), Some("amount"));
    }

    #[test]
    fn refusals_map_to_dispute_errors() {
        let invalid = LifecycleError::InvalidAmount {
            field: "amount_won",
            why: "too much".into(),
        };
        match DisputeError::from(invalid) {
            DisputeError::Validation(violations) => {
                assert_eq!(violations.len(), 1);
                assert_eq!(violations[0].field, "amount_won");
            }
            other => panic!("{other:?}"),
        }
        let refused = refusal(
            &merchant_defended(),
            &action(A::Accept),
            "2026-06-03T00:00:00Z",
        );
        match DisputeError::from(refused) {
            DisputeError::FailedPrecondition { reason, message } => {
                assert_eq!(reason, "ACTION_NOT_AVAILABLE");
                assert!(message.starts_with("ACCEPT is not available"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stored_dispute_round_trips_through_the_lifecycle() {
        use crate::domain::dispute::BalanceTransaction;
        let withdrawal = |kind, amount| BalanceTransaction {
            id: "txn_1".into(),
            kind,
            amount,
            currency: "USD".into(),
            create_time: at(T0),
            description: String::new(),
        };
        let mut dispute = Dispute {
            marks: LifecycleMarks::default(),
            issuer: IssuerFacts::default(),
            id: "dsp_1".into(),
            tenant_id: "acme".into(),
            create_time: at(T0),
            update_time: at(T0),
            version: 3,
            side: Side::Merchant,
            stage: Stage::Chargeback,
            status: Status::UnderReview,
            amount: 10_000,
            currency: "USD".into(),
            charge: Some("ch_1".into()),
            payment_intent: None,
            transaction_id: None,
            merchant_id: None,
            network: Network::Visa,
            payment_method_type: crate::domain::PaymentMethodType::Card,
            reason: Reason::Fraudulent,
            network_reason_code: Some("10.4".into()),
            network_case_id: Some("case-1".into()),
            memo: None,
            date_customer_reported: None,
            applicable_regulation: Regulation::None,
            credit_status: CreditStatus::None,
            evidence: Default::default(),
            due_time: None,
            has_evidence: true,
            submission_count: 1,
            is_charge_refundable: false,
            metadata: Default::default(),
            livemode: false,
            original_amount: Some(10_000),
            amount_won: 0,
            amount_lost: 0,
            action_history: Vec::new(),
            balance_transactions: vec![
                withdrawal(B::Withdrawal, -10_000),
                withdrawal(B::DisputeFee, -FEE),
            ],
        };
        let state = LifecycleState::from_dispute(
            &dispute,
            LifecycleMarks::default(),
            IssuerFacts::default(),
        );
        assert_eq!(state.ledger.funds_withdrawn(), 10_000);
        let transition = apply(&state, &event(K::Won), "2026-06-20T00:00:00Z");
        transition.apply_to_dispute(&mut dispute);
        assert_eq!(dispute.status, Status::Won);
        assert_eq!((dispute.amount_won, dispute.amount_lost), (10_000, 0));
        assert_eq!(transition.marks(), LifecycleMarks::default());
        assert_eq!(
            transition
                .events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
            vec!["dispute.funds_reinstated", "dispute.won"]
        );
    }

    #[test]
    fn event_names_and_kinds_round_trip() {
        for kind in NetworkEventKind::ALL {
            assert_eq!(NetworkEventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(
            DisputeEvent::FundsWithdrawn.as_str(),
            "dispute.funds_withdrawn"
        );
        assert_eq!(
            DisputeEvent::DefensePeriodEnded.to_string(),
            "dispute.defense_period_ended"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Properties over random sequences

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn any_network() -> impl Strategy<Value = Network> {
            prop::sample::select(vec![
                Network::Visa,
                Network::Mastercard,
                Network::Amex,
                Network::Discover,
                Network::Other,
            ])
        }

        fn any_case() -> impl Strategy<Value = CaseFacts> {
            (
                any::<bool>(),
                any_network(),
                prop::sample::select(vec![None, Some("4808"), Some("4837"), Some("10.4")]),
                prop::sample::select(vec![
                    Regulation::None,
                    Regulation::RegulationE,
                    Regulation::RegulationZ,
                ]),
                any::<(bool, bool, bool, bool)>(),
            )
                .prop_map(|(merchant_side, network, code, regulation, flags)| {
                    let (new_account, pos, three_ds, fraud) = flags;
                    CaseFacts {
                        side: if merchant_side {
                            Side::Merchant
                        } else {
                            Side::Issuer
                        },
                        network,
                        reason: if fraud {
                            Reason::Fraudulent
                        } else {
                            Reason::ProductUnacceptable
                        },
                        network_reason_code: code.map(str::to_owned),
                        currency: "USD".into(),
                        original_amount: Some(10_000),
                        applicable_regulation: if merchant_side {
                            Regulation::None
                        } else {
                            regulation
                        },
                        date_customer_reported: Some(day("2026-05-28")),
                        issuer: IssuerFacts {
                            transaction_date: Some(day("2026-05-01")),
                            regulation_e: RegulationEFacts {
                                new_account,
                                pos_or_foreign: pos,
                            },
                            three_ds_authenticated: three_ds,
                            ..IssuerFacts::default()
                        },
                    }
                })
        }

        fn any_event() -> impl Strategy<Value = NetworkEvent> {
            (
                prop::sample::select(NetworkEventKind::ALL.to_vec()),
                prop::option::weighted(0.2, 0..60u64),
                prop::option::weighted(0.2, 1..=10_000i64),
                prop::bool::weighted(0.8),
                prop::option::weighted(0.3, 0..=100i64),
            )
                .prop_map(|(kind, due_days, amount, response_allowed, won_percent)| {
                    NetworkEvent {
                        due_time: due_days.map(|days| deadlines::calendar_deadline(at(T0), days)),
                        amount,
                        response_allowed,
                        // a share of a 10 000 amount; other amounts make it invalid, also fine
                        amount_won: won_percent.map(|percent| percent * 100),
                        ..NetworkEvent::new(kind)
                    }
                })
        }

        fn any_trigger() -> impl Strategy<Value = Trigger> {
            prop_oneof![
                3 => (
                    prop::sample::select(ActionType::ALL.to_vec()),
                    prop::option::weighted(0.2, 1..=10_000i64),
                )
                    .prop_map(|(action, amount)| Trigger::Tenant(TenantAction {
                        amount: amount.filter(|_| action_takes_amount(action)),
                        ..TenantAction::new(action)
                    })),
                4 => any_event().prop_map(Trigger::Network),
                1 => Just(Trigger::DeadlinePassed),
            ]
        }

        /// A step of a random walk: any trigger, or one of the actions offered at that moment
        /// (so that walks get deep into the stages).
        #[derive(Debug, Clone)]
        enum Step {
            Any(Trigger),
            Offered(usize),
            /// A network event that leads further than where the dispute is (applies or is
            /// refused as out of order).
            Forward(usize, bool),
        }

        impl Step {
            fn trigger(&self, state: &LifecycleState, now: DateTime<Utc>) -> Option<Trigger> {
                match self {
                    Step::Any(trigger) => Some(trigger.clone()),
                    Step::Offered(index) => {
                        let offered = available_actions(state, now);
                        let chosen = offered.get(index % offered.len().max(1))?;
                        Some(Trigger::Tenant(TenantAction::new(chosen.action)))
                    }
                    Step::Forward(index, response_allowed) => {
                        let forward: Vec<NetworkEventKind> = NetworkEventKind::ALL
                            .iter()
                            .copied()
                            .filter(|kind| kind.outcome().is_none())
                            .filter(|kind| {
                                event_progress(state.case.side, *kind, state.stage)
                                    .is_some_and(|target| target > state.progress())
                            })
                            .collect();
                        let kind = forward.get(index % forward.len().max(1))?;
                        Some(Trigger::Network(NetworkEvent {
                            response_allowed: *response_allowed,
                            ..NetworkEvent::new(*kind)
                        }))
                    }
                }
            }
        }

        fn any_step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => any_trigger().prop_map(Step::Any),
                2 => any::<usize>().prop_map(Step::Offered),
                2 => (any::<usize>(), prop::bool::weighted(0.9))
                    .prop_map(|(index, allowed)| Step::Forward(index, allowed)),
            ]
        }

        fn any_opening() -> impl Strategy<Value = Opening> {
            prop_oneof![
                prop::sample::select(vec![Stage::Inquiry, Stage::Chargeback]).prop_map(|stage| {
                    Opening::Tenant {
                        stage,
                        due_time: None,
                    }
                }),
                prop::sample::select(vec![
                    K::RetrievalRequest,
                    K::ChargebackNotified,
                    K::Chargeback
                ])
                .prop_map(|kind| Opening::Network(NetworkEvent::new(kind))),
            ]
        }

        fn any_policy() -> impl Strategy<Value = MoneyPolicy> {
            (prop::sample::select(vec![0, FEE]), any::<bool>()).prop_map(|(fee, refund)| {
                MoneyPolicy {
                    dispute_fee: fee,
                    refund_fee_on_win: refund,
                }
            })
        }

        /// Opens a dispute the case's side allows.
        fn open(case: CaseFacts, opening: Opening, policy: &MoneyPolicy) -> Transition {
            let opening = match (case.side, opening) {
                (Side::Issuer, _) => Opening::Tenant {
                    stage: Stage::Inquiry,
                    due_time: None,
                },
                (_, opening) => opening,
            };
            open_dispute(case, 10_000, &opening, policy, at(T0)).unwrap()
        }

        fn is_reopen(transition: &Transition) -> bool {
            transition.events.first() == Some(&DisputeEvent::Reopened)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            #[test]
            fn random_sequences_keep_every_invariant(
                case in any_case(),
                opening in any_opening(),
                policy in any_policy(),
                steps in prop::collection::vec((any_step(), 0..12u64), 1..40),
            ) {
                let opened = open(case, opening, &policy);
                check_ledger_consistency(&opened.state, &policy)
                    .map_err(TestCaseError::fail)?;
                let mut state = opened.state;
                let mut now = at(T0);
                for (next, days) in steps {
                    now += chrono::Duration::days(days as i64);
                    let Some(trigger) = next.trigger(&state, now) else {
                        continue;
                    };
                    // available_actions is exactly what decide accepts
                    let offered = available_actions(&state, now);
                    for action in ActionType::ALL {
                        let decided = decide(&state, &Trigger::Tenant(TenantAction::new(*action)), &policy, now);
                        let is_offered = offered.iter().any(|a| a.action == *action);
                        prop_assert_eq!(
                            decided.is_ok(), is_offered,
                            "{:?} offered {} but decided {:?} at {:?}", action, is_offered, decided, state
                        );
                    }
                    let Ok(Decision::Apply(transition)) = decide(&state, &trigger, &policy, now) else {
                        continue;
                    };
                    let after = &transition.state;

                    // no move out of a final status except a network reopen (M15)
                    if state.is_final() {
                        prop_assert!(matches!(trigger, Trigger::Network(_)), "{:?} moved a final dispute", trigger);
                        prop_assert!(is_reopen(&transition), "{:?} left {:?} without reopening", trigger, state.status);
                        prop_assert_eq!(state.case.side, Side::Merchant);
                        prop_assert!(matches!(state.status, Status::Won | Status::Closed));
                    } else {
                        prop_assert!(!is_reopen(&transition));
                    }
                    // stages never go backwards, except NETWORK_REJECTED (I7)
                    let rejected = matches!(&trigger, Trigger::Network(e) if e.kind == K::NetworkRejected);
                    prop_assert!(
                        stage_rank(after.stage) >= stage_rank(state.stage) || rejected,
                        "{:?} moved {:?} back to {:?}", trigger, state.stage, after.stage
                    );
                    // network events never lower the progress of an open dispute (H9)
                    if let Trigger::Network(_) = trigger && !rejected && !state.is_final() {
                        prop_assert!(after.progress() >= state.progress() || after.is_final(),
                            "{:?}: {:?} -> {:?}", trigger, state.progress(), after.progress());
                    }
                    // the entries are what the totals moved by
                    let mut totals = state.ledger;
                    for entry in &transition.ledger_entries {
                        prop_assert!(entry.amount != 0);
                        totals.add(entry.kind, entry.amount);
                    }
                    prop_assert_eq!(totals, after.ledger);
                    // the ledger matches the status, in every state reached
                    check_ledger_consistency(after, &policy).map_err(TestCaseError::fail)?;
                    prop_assert!(!transition.events.is_empty());
                    prop_assert_eq!(after.due_time.is_some() && after.status != Status::NeedsResponse, false);
                    // a duplicate changes nothing: the same trigger again does not apply
                    let again = decide(after, &trigger, &policy, now);
                    prop_assert!(
                        !matches!(again, Ok(Decision::Apply(_))),
                        "{:?} applied twice: {:?}", trigger, again
                    );
                    state = transition.state;
                }
            }

            #[test]
            fn the_sweeper_applies_each_deadline_once(
                case in any_case(),
                opening in any_opening(),
                policy in any_policy(),
                days in 0..200u64,
            ) {
                let state = open(case, opening, &policy).state;
                let now = at(T0) + chrono::Duration::days(days as i64);
                match decide(&state, &Trigger::DeadlinePassed, &policy, now).unwrap() {
                    Decision::Apply(transition) => {
                        prop_assert!(state.next_deadline().is_some_and(|due| due <= now));
                        let second = decide(&transition.state, &Trigger::DeadlinePassed, &policy, now).unwrap();
                        let nothing_due = matches!(
                            second,
                            Decision::Unchanged(Unchanged { kind: UnchangedKind::NothingDue, .. })
                        );
                        prop_assert!(nothing_due, "applied twice: {:?}", second);
                        // the issuer side never decides on a deadline (I14)
                        if state.case.side == Side::Issuer {
                            prop_assert_eq!(transition.state.status, state.status);
                            prop_assert!(transition.ledger_entries.is_empty());
                        }
                    }
                    Decision::Unchanged(_) => {
                        prop_assert!(state.next_deadline().is_none_or(|due| due > now));
                    }
                }
            }
        }
    }
}
