//! Tests of the lifecycle, by what they test; this file holds the shared builders only.

mod event_facts;
mod hazards;
mod interface;
mod issuer;
mod ledger_rules;
mod merchant;
mod money;
mod properties;

use chrono::{DateTime, NaiveDate, Utc};

use self::ledger_rules::check_ledger_consistency;
use super::errors::upper;
use super::network_events::event_progress;
use super::tenant_actions::action_takes_amount;
use super::*;
use crate::domain::deadlines::{self, RegulationEFacts};
use crate::domain::dispute::Dispute;
use crate::domain::enums::{
    ActionType, Actor, BalanceTransactionType, CloseReason, CreditStatus, Network, OverdueDeadline,
    Reason, Regulation, Side, Stage, Status,
};
use crate::domain::error::DisputeError;
use crate::domain::ledger::{self, MoneyPolicy};
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

/// The arbitration fee the tests' policy charges (USD).
const ARBITRATION_FEE: i64 = 50_000;

fn policy() -> MoneyPolicy {
    MoneyPolicy {
        arbitration_fees: "USD=50000".parse().unwrap(),
        ..MoneyPolicy::with_dispute_fee("USD", FEE)
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

/// The entries a transition posts as (type, amount, fee).
fn money(transition: &Transition) -> Vec<(BalanceTransactionType, i64, i64)> {
    transition
        .ledger_entries
        .iter()
        .map(|entry| (entry.kind, entry.amount, entry.fee()))
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
