//! Tenant actions (CreateAction, and UpdateDispute with submit = true): which are available
//! when, and what each one does.

use chrono::{DateTime, Utc};

use super::amounts::check_amount;
use super::change::{Change, FinalCredit};
use super::errors::{LifecycleError, upper};
use super::inputs::TenantAction;
use super::outcome::{DisputeEvent, EvidenceEffect, Transition};
use super::state::LifecycleState;
use crate::domain::enums::{
    ActionType, Actor, BalanceTransactionType, CreditStatus, Reason, Side, Stage, Status,
};
use crate::domain::ledger::{LedgerEntry, MoneyPolicy};

pub(super) fn action_takes_amount(action: ActionType) -> bool {
    matches!(
        action,
        ActionType::ProvisionalCredit | ActionType::WriteOff | ActionType::Chargeback
    )
}

pub(super) fn decide_tenant_action(
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
    match (state.case.side, action, request.close_reason) {
        (Side::Issuer, ActionType::Close, None) => {
            return Err(LifecycleError::InvalidField {
                field: "close_reason",
                why: "is required to close an issuer-side dispute (CARDHOLDER_WITHDREW)".into(),
            });
        }
        (Side::Issuer, ActionType::Close, Some(_)) | (_, _, None) => {}
        (side, action, Some(_)) => {
            return Err(LifecycleError::InvalidField {
                field: "close_reason",
                why: format!(
                    "only CLOSE on an issuer-side dispute takes a close reason, not {} on the \
                     {side} side",
                    upper(action.as_str())
                ),
            });
        }
    }
    action_window(state, action, now)?;
    let amount = state.amount;
    let mut change = Change::from(state);
    // I14: deadlines that passed before the sweeper saw them are recorded now, answered by
    // this action (not flagged)
    change.record_passed_deadlines(now, false);
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
            // I3, H5: once, any open stage, status unchanged; after its Reg E due date it is
            // still owed and given, marked late (I14)
            let credit = check_amount("amount", request.amount.unwrap_or(amount), 1..=amount)?;
            let late = state
                .regulatory_deadlines()
                .provisional_credit_due
                .filter(|&due| due <= now);
            let description = match late {
                Some(due) => format!(
                    "provisional credit to the cardholder, given late (Regulation E: due by {due})"
                ),
                None => "provisional credit to the cardholder".into(),
            };
            change.post(vec![LedgerEntry::new(
                BalanceTransactionType::ProvisionalCredit,
                credit,
                description,
            )]);
            change.after.credit_status = CreditStatus::Provisional;
            change.history_amount = Some(credit);
            match late {
                Some(due) => change.explain(format!(
                    "provisional credit of {credit} given late: Regulation E required it by \
                     {due}; the decision date is not extended"
                )),
                None => change.explain(format!("provisional credit of {credit} given")),
            }
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
        (Side::Issuer, ActionType::Close) => {
            // the cardholder withdrew the dispute: it ends CLOSED without a decision; a
            // provisional credit is reversed (Reg E honoring date as I5), nothing is won
            change.issuer_outcome(Status::Closed, 0, 0, FinalCredit::IssuerFunded, now);
            change.after.close_reason = request.close_reason;
            let reversed = -change.after.ledger.provisional_credit_reversal;
            change.history_amount = Some(reversed);
            change.explain("closed: the cardholder withdrew the dispute");
        }
        (Side::Issuer, ActionType::Deny) => {
            // I5, and once no network action remains (I14)
            change.issuer_loses(now);
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
            change.issuer_loses(now);
            change.explain("representment accepted: the dispute is lost");
        }
        (Side::Issuer, ActionType::PreArbitration) => {
            change.wait(Stage::PreArbitration); // I10
            change.explain("pre-arbitration filed");
        }
        (Side::Issuer, ActionType::Arbitration) => {
            change.wait(Stage::Arbitration); // I12
            change.charge_arbitration_fee(policy);
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
pub(super) fn action_window(
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
            if matches!(action, ActionType::SubmitEvidence | ActionType::Accept) {
                return refuse("a merchant-side action; this dispute is issuer-side".into());
            }
            let regulatory = state.regulatory_deadlines();
            // I14: once the window of the last network action closed, only WRITE_OFF and DENY
            // decide the dispute (a regulatory date passing takes nothing away)
            let no_network_action_left = needs_response && state.is_past_due(now);
            match action {
                ActionType::ProvisionalCredit if state.ledger.provisional_credit_given() => {
                    refuse("a provisional credit was already given; it is given once (H5)".into())
                }
                // Reg E: still owed after its due date, given late (I14): the date shows only
                ActionType::ProvisionalCredit => Ok(regulatory.provisional_credit_due),
                // the decision date shows, but passing it does not remove them (I14)
                ActionType::WriteOff => Ok(regulatory.resolution_due),
                ActionType::Deny
                    if no_network_action_left || (stage == Stage::Inquiry && needs_response) =>
                {
                    Ok(regulatory.resolution_due)
                }
                ActionType::Deny => refuse(format!(
                    "{at}: DENY decides an inquiry (I5), or any stage once no network action \
                     remains (I14)"
                )),
                // the cardholder may withdraw at any time while the dispute is open; like the
                // decisions, it shows the decision date, which does not remove it
                ActionType::Close => Ok(regulatory.resolution_due),
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
