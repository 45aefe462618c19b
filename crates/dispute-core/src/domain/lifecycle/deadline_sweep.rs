//! The sweeper: what happens when a dispute's next deadline passes (M14, I14, H1).

use chrono::{DateTime, Utc};

use super::change::Change;
use super::outcome::{Decision, DisputeEvent, EvidenceEffect, UnchangedKind, unchanged};
use super::state::LifecycleState;
use crate::domain::enums::{Actor, Side, Stage, Status};
use crate::domain::ledger::MoneyPolicy;

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
