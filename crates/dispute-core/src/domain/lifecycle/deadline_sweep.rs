//! The sweeper: what happens when a dispute's next deadline passes (M14, I14, H1).

use chrono::{DateTime, Utc};

use super::change::Change;
use super::errors::upper;
use super::outcome::{Decision, DisputeEvent, EvidenceEffect, UnchangedKind, unchanged};
use super::state::LifecycleState;
use super::tenant_actions::action_window;
use crate::domain::enums::{ActionType, Actor, Side, Stage, Status};
use crate::domain::ledger::MoneyPolicy;

/// Issuer actions that answer the network (I6, I9, I10, I12).
const NETWORK_ACTIONS: &[ActionType] = &[
    ActionType::Chargeback,
    ActionType::AcceptRepresentment,
    ActionType::PreArbitration,
    ActionType::Arbitration,
];

pub(super) fn decide_deadline(
    state: &LifecycleState,
    policy: &MoneyPolicy,
    now: DateTime<Utc>,
) -> Decision {
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
            // I14: never auto-decide and take nothing away: record the dates that passed,
            // flag the dispute overdue (`dispute.overdue`) until someone acts. Network actions
            // stay until their own window closes.
            change.record_passed_deadlines(now, true);
            change.event(DisputeEvent::Overdue);
            let open: Vec<String> = NETWORK_ACTIONS
                .iter()
                .filter_map(|&action| match action_window(state, action, now) {
                    Ok(Some(until)) => Some(format!("{} until {until}", upper(action.as_str()))),
                    Ok(None) => Some(upper(action.as_str())),
                    Err(_) => None,
                })
                .collect();
            if open.is_empty() {
                change.explain("overdue: no network action remains; decide with WRITE_OFF or DENY");
            } else {
                change.explain(format!("overdue; still open: {}", open.join(", ")));
            }
        }
    }
    Decision::Apply(Box::new(change.finish(
        Actor::System,
        "system:DEADLINE_PASSED".into(),
        "",
        Vec::new(),
    )))
}
