//! Hazards H1–H9 (docs/lifecycle.md, "Hazards").

use super::*;

#[test]
fn h1_a_reversal_is_not_final_until_the_pre_arbitration_window_lapses() {
    let reversed = step(
        &merchant_defended(),
        &event(K::ChargebackReversed),
        "2026-06-10T00:00:00Z",
    );
    assert_eq!(reversed.status, Status::UnderReview);
    // a pre-arbitration inside the window continues the same dispute
    let pre_arbitration = apply(&reversed, &event(K::PreArbitration), "2026-07-01T00:00:00Z");
    assert_eq!(
        where_is(&pre_arbitration.state),
        (Stage::PreArbitration, Status::NeedsResponse)
    );
    assert!(!pre_arbitration.events.contains(&DisputeEvent::Reopened));
    assert_eq!(pre_arbitration.state.reversal_lapses_at, None);
    // after the lapse it is WON, and a later pre-arbitration reopens it (M15)
    let won = step(&reversed, &Trigger::DeadlinePassed, "2026-07-11T00:00:00Z");
    assert_eq!(won.status, Status::Won);
    let reopened = apply(&won, &event(K::PreArbitration), "2026-07-15T00:00:00Z");
    assert_eq!(reopened.events[0], DisputeEvent::Reopened);
    assert_eq!(reopened.state.stage, Stage::PreArbitration);
}

#[test]
fn h2_funds_events_never_change_the_status() {
    // notified, answered, then the chargeback lands: funds move, status stays
    let notified = opened(
        merchant(Network::Visa),
        Opening::Network(NetworkEvent::new(K::ChargebackNotified)),
    );
    let answered = step(
        &notified,
        &action(A::SubmitEvidence),
        "2026-06-02T00:00:00Z",
    );
    let landed = apply(&answered, &event(K::Chargeback), "2026-06-03T00:00:00Z");
    assert_eq!(where_is(&landed.state), where_is(&answered));
    assert_eq!(landed.events, vec![DisputeEvent::FundsWithdrawn]);
    // the reversal brings the funds back, still under review, not won
    let reversed = apply(
        &landed.state,
        &event(K::ChargebackReversed),
        "2026-06-05T00:00:00Z",
    );
    assert_eq!(where_is(&reversed.state), where_is(&answered));
    assert_eq!(reversed.events, vec![DisputeEvent::FundsReinstated]);
    assert!(!reversed.events.contains(&DisputeEvent::Won));
}

#[test]
fn h3_a_chargeback_without_the_right_to_respond_is_lost_at_once() {
    let undefendable = NetworkEvent {
        response_allowed: false,
        ..NetworkEvent::new(K::Chargeback)
    };
    let transition = open_dispute(
        merchant(Network::Visa),
        10_000,
        &Opening::Network(undefendable),
        &policy(),
        at(T0),
    )
    .unwrap();
    assert_eq!(
        where_is(&transition.state),
        (Stage::Chargeback, Status::Lost)
    );
    assert_eq!(
        transition.events,
        vec![
            DisputeEvent::Created,
            DisputeEvent::FundsWithdrawn,
            DisputeEvent::Lost
        ]
    );
    assert_eq!(money(&transition), vec![(B::Withdrawal, -10_000, FEE)]);
    assert_eq!(transition.state.due_time, None);
    assert_eq!(
        transition.state.next_deadline(),
        None,
        "the sweeper never waits"
    );
    // Stripe's due_by = 0: a due time already gone means the same
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    let already_due = event_with(K::Chargeback, |e| e.due_time = Some(at(T0)));
    let lost = apply(&inquiry, &already_due, T0);
    assert_eq!(lost.state.status, Status::Lost);
}

#[test]
fn h4_mapping_is_stage_aware() {
    // the same action and the same outcome keep the stage they happen in
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    let pre_arbitration = step(
        &merchant_defended(),
        &event(K::PreArbitration),
        "2026-06-20T00:00:00Z",
    );
    assert_eq!(
        step(&inquiry, &action(A::SubmitEvidence), "2026-06-02T00:00:00Z").stage,
        Stage::Inquiry
    );
    assert_eq!(
        step(
            &pre_arbitration,
            &action(A::SubmitEvidence),
            "2026-06-21T00:00:00Z"
        )
        .stage,
        Stage::PreArbitration
    );
    assert_eq!(
        step(&pre_arbitration, &event(K::Lost), "2026-06-21T00:00:00Z").stage,
        Stage::PreArbitration
    );
    // actions are offered outside the CHARGEBACK stage too
    assert!(actions(&pre_arbitration, "2026-06-21T00:00:00Z").contains(&A::Accept));
    // an unanswered inquiry closes, an unanswered chargeback is lost
    let due = "2026-07-02T00:00:00Z";
    assert_eq!(
        step(&inquiry, &Trigger::DeadlinePassed, due).status,
        Status::Closed
    );
    assert_eq!(
        step(&merchant_chargeback(), &Trigger::DeadlinePassed, due).status,
        Status::Lost
    );
}

#[test]
fn h5_provisional_credit_in_any_open_issuer_stage_once() {
    let representment = issuer_representment(false);
    assert!(actions(&representment, "2026-06-11T00:00:00Z").contains(&A::ProvisionalCredit));
    let credited = apply(
        &representment,
        &action(A::ProvisionalCredit),
        "2026-06-11T00:00:00Z",
    );
    assert_eq!(credited.state.stage, Stage::Representment);
    assert!(!actions(&credited.state, "2026-06-11T00:00:00Z").contains(&A::ProvisionalCredit));
    // under review too (Reg Z: no credit due date)
    let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
    assert!(actions(&filed, "2026-08-01T00:00:00Z").contains(&A::ProvisionalCredit));
}

#[test]
fn h6_partial_outcomes_carry_their_amounts() {
    let partial = event_with(K::Won, |e| {
        e.amount_won = Some(6_000);
        e.amount_lost = Some(4_000);
    });
    let won = apply(&merchant_defended(), &partial, "2026-06-20T00:00:00Z");
    assert_eq!(
        (won.state.amount_won, won.state.amount_lost),
        (6_000, 4_000)
    );
    assert_eq!(money(&won), vec![(B::Reinstatement, 6_000, 0)]);
    assert_eq!(won.state.ledger.net(), -4_000 - FEE);

    let issuer_credited = step(
        &issuer_representment(true),
        &action(A::PreArbitration),
        "2026-06-16T00:00:00Z",
    );
    let only_lost = event_with(K::Won, |e| e.amount_lost = Some(4_000));
    let won = apply(&issuer_credited, &only_lost, "2026-07-01T00:00:00Z");
    assert_eq!(money(&won), vec![(B::ProvisionalCreditReversal, -4_000, 0)]);
    assert_eq!(won.state.ledger.net(), 6_000);
    assert_eq!(won.state.credit_status, CreditStatus::Final);

    // partial write-off: the rest is decided against the cardholder
    let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let written_off = apply(
        &state,
        &action_for(A::WriteOff, 3_000),
        "2026-06-02T00:00:00Z",
    );
    assert_eq!(
        (written_off.state.amount_won, written_off.state.amount_lost),
        (3_000, 7_000)
    );
    assert_eq!(money(&written_off), vec![(B::WriteOff, 3_000, 0)]);

    let bad = event_with(K::Won, |e| {
        e.amount_won = Some(6_000);
        e.amount_lost = Some(3_000);
    });
    let error = refusal(&merchant_defended(), &bad, "2026-06-20T00:00:00Z");
    assert_eq!(error.invalid_argument_field(), Some("amount_won"));
    let nothing_won = event_with(K::Won, |e| e.amount_won = Some(0));
    assert!(matches!(
        refusal(&merchant_defended(), &nothing_won, "2026-06-20T00:00:00Z"),
        LifecycleError::InvalidAmount { .. }
    ));
}

#[test]
fn h7_several_disputes_of_one_charge_stay_within_the_original_amount() {
    assert!(ledger::check_within_original_amount(Some(20_000), 10_000, 10_000).is_ok());
    let error = LifecycleError::from(
        ledger::check_within_original_amount(Some(20_000), 10_000, 10_001).unwrap_err(),
    );
    assert_eq!(error.reason(), "AMOUNT_EXCEEDS_ORIGINAL");
    // a chargeback may not claim more than the original charge
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    let too_much = event_with(K::Chargeback, |e| e.amount = Some(20_001));
    assert_eq!(
        refusal(&inquiry, &too_much, T0).invalid_argument_field(),
        Some("amount")
    );
    assert!(matches!(
        open_dispute(
            merchant(Network::Visa),
            20_001,
            &Opening::Tenant {
                stage: Stage::Inquiry,
                due_time: None
            },
            &policy(),
            at(T0)
        ),
        Err(LifecycleError::InvalidAmount { .. })
    ));
}

#[test]
fn h8_mastercard_4808_4870_4871_skip_pre_arbitration() {
    for code in ["4808", "4870", "4871"] {
        let case = CaseFacts {
            network_reason_code: Some(code.into()),
            ..merchant(Network::Mastercard)
        };
        let chargeback = opened(case, Opening::Network(NetworkEvent::new(K::Chargeback)));
        let defended = step(
            &chargeback,
            &action(A::SubmitEvidence),
            "2026-06-02T00:00:00Z",
        );
        let arbitration = apply(&defended, &event(K::Arbitration), "2026-06-20T00:00:00Z");
        assert_eq!(arbitration.state.stage, Stage::Arbitration, "{code}");
    }
    for case in [
        CaseFacts {
            network_reason_code: Some("4837".into()),
            ..merchant(Network::Mastercard)
        },
        CaseFacts {
            network_reason_code: Some("4808".into()),
            ..merchant(Network::Visa)
        },
    ] {
        let chargeback = opened(case, Opening::Network(NetworkEvent::new(K::Chargeback)));
        let defended = step(
            &chargeback,
            &action(A::SubmitEvidence),
            "2026-06-02T00:00:00Z",
        );
        let error = refusal(&defended, &event(K::Arbitration), "2026-06-20T00:00:00Z");
        assert!(error.to_string().contains("H8"), "{error}");
    }
}

#[test]
fn h9_late_and_duplicate_events_never_move_a_dispute_back() {
    let chargeback = merchant_chargeback();
    // a second CHARGEBACK (new event id, same chargeback) does not withdraw twice
    assert_eq!(
        unchanged_kind(&chargeback, &event(K::Chargeback), "2026-06-02T00:00:00Z"),
        UnchangedKind::Duplicate
    );
    let pre_arbitration = step(
        &merchant_defended(),
        &event(K::PreArbitration),
        "2026-06-20T00:00:00Z",
    );
    // late events of earlier points are stale
    for late in [
        K::RetrievalRequest,
        K::ChargebackNotified,
        K::Chargeback,
        K::InquiryClosed,
        K::ChargebackReversed,
    ] {
        assert_eq!(
            unchanged_kind(&pre_arbitration, &event(late), "2026-06-21T00:00:00Z"),
            UnchangedKind::Stale,
            "{late}"
        );
    }
    // an event from a point that cannot be reached yet is refused (redeliver later)
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    for early in [K::ChargebackReversed, K::SecondChargeback, K::Arbitration] {
        assert!(matches!(
            refusal(&inquiry, &event(early), T0),
            LifecycleError::EventNotApplicable { .. }
        ));
    }
    // issuer-only events are refused on the merchant side
    assert!(matches!(
        refusal(&inquiry, &event(K::Representment), T0),
        LifecycleError::EventNotApplicable { .. }
    ));
    // outcomes: the same again is a duplicate, the other one a conflict
    let won = step(&pre_arbitration, &event(K::Won), "2026-06-25T00:00:00Z");
    assert_eq!(
        unchanged_kind(&won, &event(K::Won), "2026-06-26T00:00:00Z"),
        UnchangedKind::Duplicate
    );
    assert_eq!(
        refusal(&won, &event(K::Lost), "2026-06-26T00:00:00Z").reason(),
        "CONFLICTING_OUTCOME"
    );
    // issuer side: a late representment after pre-arbitration was filed
    let filed = step(
        &issuer_representment(false),
        &action(A::PreArbitration),
        "2026-06-16T00:00:00Z",
    );
    assert_eq!(
        unchanged_kind(&filed, &event(K::Representment), "2026-06-17T00:00:00Z"),
        UnchangedKind::Stale
    );
    assert_eq!(
        unchanged_kind(&filed, &event(K::PreArbitration), "2026-06-17T00:00:00Z"),
        UnchangedKind::Duplicate
    );
    assert_eq!(
        progress(Side::Merchant, Stage::Chargeback, Status::Lost),
        (1, 2)
    );
}
