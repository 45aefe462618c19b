//! The dispute lifecycle as a pure state machine: rows M1–M15 (merchant side) and I1–I15
//! (issuer side) of docs/lifecycle.md, with its decisions on the open points
//! (docs/lifecycle.md, "Decisions"). No I/O and no clock: every function takes `now`.
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
//!         persist t.marks();                        // reversal_lapses_at, deadline breaches
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
//! # Decisions on the open points (docs/lifecycle.md, "Decisions")
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
//! - I14: the issuer side never auto-decides. When the Reg E provisional-credit due date,
//!   the Reg E / Z decision date or the window of its last network action passes, the sweeper
//!   records the breach (once per date) and flags the dispute overdue (`dispute.overdue`).
//!   A regulatory date takes nothing away: network actions stay until their own window
//!   closes, and a late provisional credit stays possible (marked late). Only when no network
//!   action remains are WRITE_OFF and DENY (in any stage) the way out. Any tenant action, or
//!   a network event that moves the dispute, clears the flag; the breaches stay recorded.
//!   M14: the merchant side auto-loses (INQUIRY: CLOSED), with `dispute.defense_period_ended`.
//! - Point 7 of issue 11: CLOSE on the issuer side with a close reason (CARDHOLDER_WITHDREW)
//!   ends the dispute CLOSED, reversing a provisional credit (credit REVERSED).
//! - H6: outcomes carry `amount_won` / `amount_lost` (network events may split the amount;
//!   WRITE_OFF may cover part of it), and the ledger follows them exactly.
//! - H8: Mastercard reason codes 4808, 4870 and 4871 may go from CHARGEBACK straight to
//!   ARBITRATION; other disputes must pass through pre-arbitration. A network event carrying
//!   a reason code replaces the case's before it is decided.
//! - Network windows an event opens count from its `occur_time` (never later than `now`),
//!   see [`NetworkEvent::window_start`].
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
//!
//! # Files
//!
//! `inputs` (case facts and triggers) → `state` (the state, its deadlines, H9 progress) →
//! `errors` (refusals) → `outcome` (transitions and decisions) → `amounts` (amount checks,
//! H6) → `change` (the transition builder and its money) → one file per trigger:
//! `tenant_actions`, `network_events`, `deadline_sweep` → `opening` (new disputes). This file
//! holds the entry points [`decide`] and [`available_actions`]. Each file uses only files
//! before it. `tests/` holds the tests, by subject.

mod amounts;
mod change;
mod deadline_sweep;
mod errors;
mod inputs;
mod network_events;
mod opening;
mod outcome;
mod state;
mod tenant_actions;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

pub use errors::LifecycleError;
pub use inputs::{
    CaseFacts, IssuerFacts, NetworkEvent, NetworkEventKind, Opening, TenantAction, Trigger,
};
pub use network_events::skips_pre_arbitration;
pub use opening::open_dispute;
pub use outcome::{
    AvailableAction, Decision, DisputeEvent, EvidenceEffect, HistoryEntry, ReversalNotice,
    Transition, Unchanged, UnchangedKind,
};
pub use state::{
    DeadlineBreach, LifecycleMarks, LifecycleState, RegulatoryDeadlines, progress, stage_rank,
};
pub use tenant_actions::evidence_editable;

use self::deadline_sweep::decide_deadline;
use self::network_events::decide_network_event;
use self::tenant_actions::{action_window, decide_tenant_action};
use crate::domain::enums::ActionType;
use crate::domain::ledger::MoneyPolicy;

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
