//! Network events on an existing dispute: what each one does on either side, when it reopens
//! a final dispute (M15), and when it is stale, a duplicate or refused (H9).

use chrono::{DateTime, Utc};

use super::amounts::{check_event_amounts, outcome_split};
use super::change::{Change, FinalCredit};
use super::errors::{LifecycleError, upper};
use super::inputs::{CaseFacts, NetworkEvent, NetworkEventKind};
use super::outcome::{Decision, DisputeEvent, UnchangedKind, unchanged};
use super::state::{LifecycleState, progress, stage_rank};
use crate::domain::deadlines;
use crate::domain::enums::{Actor, Network, Side, Stage, Status};
use crate::domain::ledger::MoneyPolicy;

pub(super) fn decide_network_event(
    state: &LifecycleState,
    event: &NetworkEvent,
    policy: &MoneyPolicy,
    now: DateTime<Utc>,
) -> Result<Decision, LifecycleError> {
    // The event's reason code replaces the dispute's and already counts for this event (H8).
    let recoded;
    let state = match &event.network_reason_code {
        Some(code) if state.case.network_reason_code.as_ref() != Some(code) => {
            let mut updated = state.clone();
            updated.case.network_reason_code = Some(code.clone());
            recoded = updated;
            &recoded
        }
        _ => state,
    };
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

/// The point an event leads to on a side, for H9; `None` when the side never receives it.
pub(super) fn event_progress(side: Side, kind: NetworkEventKind, stage: Stage) -> Option<(u8, u8)> {
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
pub(super) fn merchant_network_event(
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
    // the windows the event opens count from when it occurred
    let from = event.window_start(now);
    let mut change = Change::from(state);
    match event.kind {
        K::ChargebackNotified if stage == Stage::Inquiry => {
            // M2: no withdrawal yet
            let due = event
                .due_time
                .unwrap_or(deadlines::merchant_response_due(network, from));
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
                        Some(due.unwrap_or(deadlines::merchant_response_due(network, from))),
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
                .unwrap_or(deadlines::merchant_pre_arbitration_due(network, from));
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
                    .unwrap_or(deadlines::merchant_pre_arbitration_due(network, from));
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
                    .unwrap_or(deadlines::merchant_pre_arbitration_due(network, from));
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
                    .unwrap_or(deadlines::merchant_arbitration_due(network, from));
                change.needs_response(Stage::Arbitration, Some(due));
            } else {
                change.wait(Stage::Arbitration);
            }
            change.charge_arbitration_fee(policy);
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
            if status == Status::Won {
                change.refund_arbitration_fee();
            }
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
    let from = event.window_start(now);
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
                .unwrap_or(deadlines::issuer_pre_arbitration_due(from));
            change.needs_response(Stage::Representment, Some(due));
        }
        K::PreArbitrationResponse
            if stage == Stage::PreArbitration && status == Status::UnderReview =>
        {
            // I11
            let due = event
                .due_time
                .unwrap_or(deadlines::issuer_arbitration_due(from));
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
            if status == Status::Won {
                change.refund_arbitration_fee();
            }
        }
        _ => return Ok(None),
    }
    Ok(Some(change))
}

/// Mastercard reason codes that go from chargeback straight to arbitration (H8).
pub fn skips_pre_arbitration(case: &CaseFacts) -> bool {
    case.network == Network::Mastercard
        && matches!(
            case.network_reason_code.as_deref(),
            Some("4808" | "4870" | "4871")
        )
}
