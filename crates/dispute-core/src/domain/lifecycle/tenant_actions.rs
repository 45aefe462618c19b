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
            change.post(vec![LedgerEntry::new(
                BalanceTransactionType::ProvisionalCredit,
                credit,
                "provisional credit to the cardholder",
            )]);
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
