//! Checks of the amounts a request or a network event carries, and the split an outcome
//! announces (H6).

use std::ops::RangeInclusive;

use super::errors::LifecycleError;
use super::inputs::NetworkEvent;
use super::state::LifecycleState;
use crate::domain::enums::Status;
use crate::domain::ledger::MAX_AMOUNT;

pub(super) fn check_amount(
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
pub(super) fn check_event_amounts(
    state: &LifecycleState,
    event: &NetworkEvent,
) -> Result<(), LifecycleError> {
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
pub(super) fn outcome_split(
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
