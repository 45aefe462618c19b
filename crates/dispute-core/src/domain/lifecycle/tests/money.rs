//! Money as seed 004 shows it (issue 11 point 6): fees ride on the entries, per currency,
//! and the arbitration fee (M12, I12).

use super::*;
use crate::domain::FeeType;

fn in_currency(currency: &str) -> CaseFacts {
    CaseFacts {
        currency: currency.into(),
        ..merchant(Network::Visa)
    }
}

/// The fee details of a transition's entries as (type, amount, description).
fn fees(transition: &Transition) -> Vec<(FeeType, i64, String)> {
    transition
        .ledger_entries
        .iter()
        .flat_map(|entry| &entry.fee_details)
        .map(|detail| (detail.kind, detail.amount, detail.description.clone()))
        .collect()
}

#[test]
fn m3_the_withdrawal_carries_the_dispute_fee() {
    let opening = Opening::Network(NetworkEvent::new(K::Chargeback));
    let landed = open_dispute(merchant(Network::Visa), 50, &opening, &policy(), at(T0)).unwrap();
    let withdrawal = &landed.ledger_entries[0];
    assert_eq!(landed.ledger_entries.len(), 1);
    assert_eq!(
        (
            withdrawal.kind,
            withdrawal.amount,
            withdrawal.fee(),
            withdrawal.net()
        ),
        (B::Withdrawal, -50, 1_500, -1_550)
    );
    assert_eq!(
        fees(&landed),
        vec![(FeeType::DisputeFee, 1_500, "dispute fee (USD 15.00)".into())]
    );
    check_ledger_consistency(&landed.state, &policy()).unwrap();
}

#[test]
fn m13_a_refunded_fee_rides_on_the_reinstatement_or_stands_alone() {
    let refunding = MoneyPolicy {
        refund_fee_on_win: true,
        ..policy()
    };
    let won = apply_with(
        &merchant_defended(),
        &event(K::Won),
        &refunding,
        "2026-06-20T00:00:00Z",
    );
    assert_eq!(money(&won), vec![(B::Reinstatement, 10_000, -FEE)]);
    assert_eq!(won.ledger_entries[0].net(), 10_000 + FEE);
    assert_eq!(won.state.ledger.net(), 0);

    // H1: the funds came back with the reversal; the lapse refunds the fee alone
    let reversed = step(
        &merchant_defended(),
        &event(K::ChargebackReversed),
        "2026-06-10T00:00:00Z",
    );
    let lapsed = apply_with(
        &reversed,
        &Trigger::DeadlinePassed,
        &refunding,
        "2026-07-11T00:00:00Z",
    );
    assert_eq!(money(&lapsed), vec![(B::DisputeFee, 0, -FEE)]);
    assert_eq!(
        fees(&lapsed),
        vec![(
            FeeType::DisputeFee,
            -FEE,
            "dispute fee refunded (USD 15.00)".into()
        )]
    );
    assert_eq!(lapsed.state.ledger.net(), 0);
}

#[test]
fn fees_are_per_currency_and_jpy_has_no_decimals() {
    let policy = MoneyPolicy::default();
    let opening = Opening::Tenant {
        stage: Stage::Chargeback,
        due_time: None,
    };
    let yen = open_dispute(in_currency("JPY"), 3_000, &opening, &policy, at(T0)).unwrap();
    assert_eq!(money(&yen), vec![(B::Withdrawal, -3_000, 2_000)]);
    assert_eq!(
        fees(&yen),
        vec![(FeeType::DisputeFee, 2_000, "dispute fee (JPY 2000)".into())]
    );
    let euro = open_dispute(in_currency("EUR"), 3_000, &opening, &policy, at(T0)).unwrap();
    assert_eq!(money(&euro), vec![(B::Withdrawal, -3_000, 1_500)]);

    // no fee configured for CHF: none charged, and the history says so; a loss charges none
    let franc = open_dispute(in_currency("CHF"), 3_000, &opening, &policy, at(T0)).unwrap();
    assert_eq!(money(&franc), vec![(B::Withdrawal, -3_000, 0)]);
    assert!(
        franc
            .history
            .message
            .contains("no dispute fee is configured for CHF"),
        "{}",
        franc.history.message
    );
    let lost = apply_with(
        &franc.state,
        &action(A::Accept),
        &policy,
        "2026-06-02T00:00:00Z",
    );
    assert!(lost.ledger_entries.is_empty());
    check_ledger_consistency(&lost.state, &policy).unwrap();
}

#[test]
fn m12_arbitration_charges_the_fee_once_and_a_win_refunds_it() {
    let defended = step(
        &step(
            &merchant_defended(),
            &event(K::PreArbitration),
            "2026-06-20T00:00:00Z",
        ),
        &action(A::SubmitEvidence),
        "2026-06-21T00:00:00Z",
    );
    let arbitration = apply(&defended, &event(K::Arbitration), "2026-07-01T00:00:00Z");
    assert_eq!(
        money(&arbitration),
        vec![(B::ArbitrationFee, 0, ARBITRATION_FEE)]
    );
    assert_eq!(
        fees(&arbitration),
        vec![(
            FeeType::ArbitrationFee,
            ARBITRATION_FEE,
            "arbitration fee (USD 500.00)".into()
        )]
    );
    assert!(
        arbitration
            .history
            .message
            .contains("arbitration fee (USD 500.00)")
    );
    // not asked to respond: charged all the same
    let not_asked = event_with(K::Arbitration, |e| e.response_allowed = false);
    let waiting = apply(&defended, &not_asked, "2026-07-01T00:00:00Z");
    assert_eq!(
        money(&waiting),
        vec![(B::ArbitrationFee, 0, ARBITRATION_FEE)]
    );

    let won = apply(&arbitration.state, &event(K::Won), "2026-07-20T00:00:00Z");
    assert_eq!(
        money(&won),
        vec![
            (B::Reinstatement, 10_000, 0),
            (B::ArbitrationFee, 0, -ARBITRATION_FEE)
        ]
    );
    assert_eq!(won.state.ledger.net(), -FEE);
    let lost = apply(&arbitration.state, &event(K::Lost), "2026-07-20T00:00:00Z");
    assert!(lost.ledger_entries.is_empty(), "the loser bears the fee");
    assert_eq!(lost.state.ledger.net(), -10_000 - FEE - ARBITRATION_FEE);

    // no arbitration fee configured for the currency: none, and the history says so
    let without = MoneyPolicy::with_dispute_fee("USD", FEE);
    let free = apply_with(
        &defended,
        &event(K::Arbitration),
        &without,
        "2026-07-01T00:00:00Z",
    );
    assert!(free.ledger_entries.is_empty());
    assert!(
        free.history
            .message
            .contains("no arbitration fee is configured for USD")
    );
}

#[test]
fn i12_filing_arbitration_costs_the_issuer_not_the_cardholder() {
    let answered = step(
        &step(
            &issuer_representment(true),
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        ),
        &event(K::PreArbitrationResponse),
        "2026-07-01T00:00:00Z",
    );
    let filed = apply(&answered, &action(A::Arbitration), "2026-07-02T00:00:00Z");
    assert_eq!(money(&filed), vec![(B::ArbitrationFee, 0, ARBITRATION_FEE)]);
    assert_eq!(
        filed.state.ledger.cardholder_holds(),
        10_000,
        "still the credit"
    );
    assert_eq!(filed.state.credit_status, CreditStatus::Provisional);

    let won = apply(&filed.state, &event(K::Won), "2026-08-01T00:00:00Z");
    assert_eq!(money(&won), vec![(B::ArbitrationFee, 0, -ARBITRATION_FEE)]);
    assert_eq!(won.state.ledger.arbitration_fee_charged(), 0);
    let lost = apply(&filed.state, &event(K::Lost), "2026-08-01T00:00:00Z");
    assert_eq!(
        money(&lost),
        vec![(B::ProvisionalCreditReversal, -10_000, 0)]
    );
    assert_eq!(lost.state.ledger.arbitration_fee_charged(), ARBITRATION_FEE);
    // a write-off gives up the arbitration: the fee stays
    let written_off = apply(&filed.state, &action(A::WriteOff), "2026-07-03T00:00:00Z");
    assert!(written_off.ledger_entries.is_empty());
    assert_eq!(
        written_off.state.ledger.arbitration_fee_charged(),
        ARBITRATION_FEE
    );
}
