//! The consistency rules of the ledger (see the module doc of `domain::ledger`), checked
//! against a lifecycle state after every transition the tests make.

use super::super::state::LifecycleState;
use crate::domain::enums::{CreditStatus, Side, Stage, Status};
use crate::domain::ledger::{LedgerTotals, MoneyPolicy};

/// Checks the ledger rules of `ledger`'s module doc against a state; the error says which
/// rule broke. The tests call it after every transition.
pub(super) fn check_ledger_consistency(
    state: &LifecycleState,
    policy: &MoneyPolicy,
) -> Result<(), String> {
    let totals = &state.ledger;
    let (won, lost, amount) = (state.amount_won, state.amount_lost, state.amount);
    match state.status {
        Status::Won | Status::Lost => {
            if won + lost != amount || won < 0 || lost < 0 {
                return Err(format!(
                    "amount_won {won} + amount_lost {lost} must split the amount {amount}"
                ));
            }
            if state.status == Status::Won && won == 0 {
                return Err("a WON dispute has a positive amount_won".into());
            }
            if state.status == Status::Lost && lost == 0 {
                return Err("a LOST dispute has a positive amount_lost".into());
            }
        }
        _ if won != 0 || lost != 0 => {
            return Err(format!(
                "{} disputes carry no outcome amounts (won {won}, lost {lost})",
                state.status
            ));
        }
        _ => {}
    }
    check_arbitration_fee(state, totals, policy)?;
    match state.case.side {
        Side::Merchant => check_merchant_ledger(state, totals, policy),
        Side::Issuer => check_issuer_ledger(state, totals),
    }
}

/// Both sides: the arbitration fee is 0 or the configured one, and charged only in
/// ARBITRATION; a merchant dispute LOST in arbitration bears it, one WON there does not.
fn check_arbitration_fee(
    state: &LifecycleState,
    totals: &LedgerTotals,
    policy: &MoneyPolicy,
) -> Result<(), String> {
    let charged = totals.arbitration_fee_charged();
    let configured = policy
        .arbitration_fees
        .fee(&state.case.currency)
        .unwrap_or(0);
    if charged != 0 && charged != configured {
        return Err(format!(
            "arbitration fee {charged} charged, the configured one is {configured}"
        ));
    }
    if charged != 0 && state.stage != Stage::Arbitration {
        return Err(format!(
            "arbitration fee charged in {}, not in ARBITRATION",
            state.stage
        ));
    }
    if state.case.side == Side::Merchant && state.stage == Stage::Arbitration {
        let expected = match state.status {
            Status::Won => 0,
            _ => configured,
        };
        if charged != expected {
            return Err(format!(
                "a merchant dispute {} in ARBITRATION carries arbitration fee {charged}, \
                 expected {expected}",
                state.status
            ));
        }
    }
    Ok(())
}

fn check_merchant_ledger(
    state: &LifecycleState,
    totals: &LedgerTotals,
    policy: &MoneyPolicy,
) -> Result<(), String> {
    if totals.provisional_credit != 0
        || totals.provisional_credit_reversal != 0
        || totals.write_off != 0
    {
        return Err("merchant-side ledgers hold no provisional credit or write-off".into());
    }
    let withdrawn = totals.funds_withdrawn();
    let fee = totals.fee_charged();
    if fee < 0 {
        return Err(format!("more fee refunded than charged ({fee})"));
    }
    match state.status {
        Status::NeedsResponse | Status::UnderReview => {
            if !(0..=state.amount).contains(&withdrawn) {
                return Err(format!(
                    "open dispute holds {withdrawn} withdrawn of an amount of {}",
                    state.amount
                ));
            }
        }
        Status::Won | Status::Lost => {
            if withdrawn != state.amount_lost {
                return Err(format!(
                    "{} dispute holds {withdrawn} withdrawn, expected amount_lost {}",
                    state.status, state.amount_lost
                ));
            }
            let configured = policy.dispute_fees.fee(&state.case.currency).unwrap_or(0);
            if state.status == Status::Lost && configured > 0 && fee == 0 {
                return Err("a LOST dispute carries the dispute fee".into());
            }
            if state.status == Status::Won && policy.refund_fee_on_win && fee != 0 {
                return Err(format!(
                    "a WON dispute gets its fee back, {fee} still charged"
                ));
            }
            let arbitration = totals.arbitration_fee_charged();
            if totals.net() != -state.amount_lost - fee - arbitration {
                return Err(format!(
                    "{} dispute nets {}, expected -amount_lost - fee - arbitration fee = {}",
                    state.status,
                    totals.net(),
                    -state.amount_lost - fee - arbitration
                ));
            }
        }
        Status::Closed => {
            if totals.net() != 0 {
                return Err(format!(
                    "a CLOSED dispute moves no money, net is {}",
                    totals.net()
                ));
            }
        }
    }
    Ok(())
}

fn check_issuer_ledger(state: &LifecycleState, totals: &LedgerTotals) -> Result<(), String> {
    if totals.withdrawal != 0 || totals.dispute_fee != 0 {
        return Err("issuer-side ledgers hold no withdrawal or dispute fee".into());
    }
    let held = totals.cardholder_holds();
    let pc = totals.provisional_credit_outstanding();
    if totals.provisional_credits > 1 {
        return Err("a provisional credit is given once (H5)".into());
    }
    if !(0..=totals.provisional_credit).contains(&pc) {
        return Err(format!("provisional credit outstanding {pc} out of range"));
    }
    match state.status {
        Status::NeedsResponse | Status::UnderReview => {
            if totals.final_credit() != 0 || held != pc {
                return Err(format!(
                    "an open dispute holds only its provisional credit ({pc}), not {held}"
                ));
            }
            let expected = if pc > 0 {
                CreditStatus::Provisional
            } else {
                CreditStatus::None
            };
            if state.credit_status != expected {
                return Err(format!(
                    "open dispute with credit {pc} has credit status {}, expected {expected}",
                    state.credit_status
                ));
            }
            if pc > state.amount {
                return Err(format!("credit {pc} exceeds the amount {}", state.amount));
            }
        }
        Status::Won | Status::Lost => {
            if held != state.amount_won {
                return Err(format!(
                    "{} dispute credits the cardholder {held}, expected amount_won {}",
                    state.status, state.amount_won
                ));
            }
            let expected = if state.amount_won > 0 {
                CreditStatus::Final
            } else if totals.provisional_credit_given() {
                CreditStatus::Reversed
            } else {
                CreditStatus::None
            };
            if state.credit_status != expected {
                return Err(format!(
                    "{} dispute has credit status {}, expected {expected}",
                    state.status, state.credit_status
                ));
            }
        }
        Status::Closed => {
            // CLOSE (the cardholder withdrew): nothing is won, a provisional credit reversed
            if held != 0 || totals.final_credit() != 0 {
                return Err(format!(
                    "a CLOSED issuer dispute credits nothing, not {held}"
                ));
            }
            let expected = if totals.provisional_credit_given() {
                CreditStatus::Reversed
            } else {
                CreditStatus::None
            };
            if state.credit_status != expected {
                return Err(format!(
                    "CLOSED dispute has credit status {}, expected {expected}",
                    state.credit_status
                ));
            }
        }
    }
    Ok(())
}
