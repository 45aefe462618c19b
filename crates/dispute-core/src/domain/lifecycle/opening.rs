//! How a dispute comes to exist: CreateDispute, or the first network event of a new case.

use chrono::{DateTime, Utc};

use super::amounts::{check_amount, check_event_amounts};
use super::change::Change;
use super::errors::{LifecycleError, upper};
use super::inputs::{CaseFacts, NetworkEvent, NetworkEventKind, Opening};
use super::network_events::merchant_network_event;
use super::outcome::{DisputeEvent, Transition};
use super::state::LifecycleState;
use crate::domain::deadlines;
use crate::domain::enums::{Actor, CreditStatus, Side, Stage, Status};
use crate::domain::ledger::{LedgerTotals, MAX_AMOUNT, MoneyPolicy};

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
    let mut case = case;
    if let Opening::Network(NetworkEvent {
        network_reason_code: Some(code),
        ..
    }) = opening
    {
        // the event's reason code is the case's (H8 reads it)
        case.network_reason_code = Some(code.clone());
    }
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
        breaches: Vec::new(),
        close_reason: None,
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
                    let due = event.due_time.unwrap_or(deadlines::merchant_response_due(
                        network,
                        event.window_start(now),
                    ));
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
