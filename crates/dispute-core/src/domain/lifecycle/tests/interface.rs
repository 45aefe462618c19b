//! Where the lifecycle meets the rest: openings it refuses, request amounts, refusals as
//! `DisputeError`s, a stored dispute, and the names of events.

use super::*;

#[test]
fn issuer_side_is_not_opened_by_network_events() {
    let error = open_dispute(
        issuer(Regulation::None),
        10_000,
        &Opening::Network(NetworkEvent::new(K::Chargeback)),
        &policy(),
        at(T0),
    )
    .unwrap_err();
    assert_eq!(error.reason(), "CANNOT_OPEN_DISPUTE");
    let error = open_dispute(
        merchant(Network::Visa),
        10_000,
        &Opening::Network(NetworkEvent::new(K::Won)),
        &policy(),
        at(T0),
    )
    .unwrap_err();
    assert_eq!(error.reason(), "CANNOT_OPEN_DISPUTE");
}

#[test]
fn actions_take_an_amount_only_where_it_means_something() {
    let state = merchant_chargeback();
    let error = refusal(&state, &action_for(A::Accept, 10), "2026-06-02T00:00:00Z");
    assert_eq!(error.invalid_argument_field(), Some("amount"));
    assert_eq!(error.reason(), "INVALID_AMOUNT");
    let issuer_state = tenant_opened(issuer(Regulation::None), Stage::Inquiry);
    let error = refusal(
        &issuer_state,
        &action_for(A::ProvisionalCredit, 10_001),
        "2026-06-02T00:00:00Z",
    );
    assert_eq!(error.invalid_argument_field(), Some("amount"));
}

#[test]
fn refusals_map_to_dispute_errors() {
    let invalid = LifecycleError::InvalidAmount {
        field: "amount_won",
        why: "too much".into(),
    };
    match DisputeError::from(invalid) {
        DisputeError::Validation(violations) => {
            assert_eq!(violations.len(), 1);
            assert_eq!(violations[0].field, "amount_won");
        }
        other => panic!("{other:?}"),
    }
    let refused = refusal(
        &merchant_defended(),
        &action(A::Accept),
        "2026-06-03T00:00:00Z",
    );
    match DisputeError::from(refused) {
        DisputeError::FailedPrecondition { reason, message } => {
            assert_eq!(reason, "ACTION_NOT_AVAILABLE");
            assert!(message.starts_with("ACCEPT is not available"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stored_dispute_round_trips_through_the_lifecycle() {
    use crate::domain::dispute::BalanceTransaction;
    let withdrawal = |kind, amount, fee_details| BalanceTransaction {
        id: "txn_1".into(),
        kind,
        amount,
        fee_details,
        currency: "USD".into(),
        create_time: at(T0),
        description: String::new(),
        status: crate::domain::BalanceTransactionStatus::Pending,
        reporting_category: "dispute".into(),
        available_on: at(T0),
    };
    let mut dispute = Dispute {
        marks: LifecycleMarks::default(),
        close_reason: None,
        issuer: IssuerFacts::default(),
        id: "dsp_1".into(),
        tenant_id: "acme".into(),
        create_time: at(T0),
        update_time: at(T0),
        version: 3,
        side: Side::Merchant,
        stage: Stage::Chargeback,
        status: Status::UnderReview,
        amount: 10_000,
        currency: "USD".into(),
        charge: Some("ch_1".into()),
        payment_intent: None,
        transaction_id: None,
        merchant_id: None,
        network: Network::Visa,
        payment_method_type: crate::domain::PaymentMethodType::Card,
        reason: Reason::Fraudulent,
        network_reason_code: Some("10.4".into()),
        network_case_id: Some("case-1".into()),
        memo: None,
        date_customer_reported: None,
        applicable_regulation: Regulation::None,
        credit_status: CreditStatus::None,
        evidence: Default::default(),
        due_time: None,
        has_evidence: true,
        submission_count: 1,
        is_charge_refundable: false,
        metadata: Default::default(),
        livemode: false,
        original_amount: Some(10_000),
        amount_won: 0,
        amount_lost: 0,
        action_history: Vec::new(),
        action_history_count: 0,
        balance_transactions: vec![withdrawal(
            B::Withdrawal,
            -10_000,
            vec![crate::domain::ledger::FeeDetail {
                kind: crate::domain::FeeType::DisputeFee,
                amount: FEE,
                description: "dispute fee".into(),
            }],
        )],
    };
    let state =
        LifecycleState::from_dispute(&dispute, LifecycleMarks::default(), IssuerFacts::default());
    assert_eq!(state.ledger.funds_withdrawn(), 10_000);
    let transition = apply(&state, &event(K::Won), "2026-06-20T00:00:00Z");
    transition.apply_to_dispute(&mut dispute);
    assert_eq!(dispute.status, Status::Won);
    assert_eq!((dispute.amount_won, dispute.amount_lost), (10_000, 0));
    assert_eq!(transition.marks(), LifecycleMarks::default());
    assert_eq!(
        transition
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>(),
        vec!["dispute.funds_reinstated", "dispute.won"]
    );
}

#[test]
fn event_names_and_kinds_round_trip() {
    for kind in NetworkEventKind::ALL {
        assert_eq!(NetworkEventKind::parse(kind.as_str()), Some(*kind));
    }
    assert_eq!(
        DisputeEvent::FundsWithdrawn.as_str(),
        "dispute.funds_withdrawn"
    );
    assert_eq!(
        DisputeEvent::DefensePeriodEnded.to_string(),
        "dispute.defense_period_ended"
    );
}
