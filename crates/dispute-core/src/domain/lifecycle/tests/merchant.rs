//! Merchant side, one test per row (docs/lifecycle.md, "Merchant side").

use super::*;

#[test]
fn m1_retrieval_request_opens_an_inquiry_without_moving_funds() {
    let due = at("2026-06-20T00:00:00Z");
    let opening = Opening::Network(NetworkEvent {
        due_time: Some(due),
        ..NetworkEvent::new(K::RetrievalRequest)
    });
    let transition =
        open_dispute(merchant(Network::Visa), 10_000, &opening, &policy(), at(T0)).unwrap();
    let state = &transition.state;
    assert_eq!(where_is(state), (Stage::Inquiry, Status::NeedsResponse));
    assert_eq!(state.due_time, Some(due));
    assert!(transition.ledger_entries.is_empty());
    assert_eq!(transition.events, vec![DisputeEvent::Created]);
    assert_eq!(transition.history.actor, Actor::Network);
    assert_eq!(transition.history.what, "network:RETRIEVAL_REQUEST");
    assert_eq!(actions(state, T0), vec![A::SubmitEvidence]);
    assert_eq!(valid_until(state, A::SubmitEvidence, T0), Some(due));
}

#[test]
fn m2_chargeback_notified_moves_to_chargeback_without_withdrawal() {
    let inquiry = tenant_opened(merchant(Network::Mastercard), Stage::Inquiry);
    let transition = apply(
        &inquiry,
        &event(K::ChargebackNotified),
        "2026-06-03T09:00:00Z",
    );
    assert_eq!(
        where_is(&transition.state),
        (Stage::Chargeback, Status::NeedsResponse)
    );
    assert!(transition.ledger_entries.is_empty());
    assert_eq!(transition.events, vec![DisputeEvent::Updated]);
    // Mastercard: 45 calendar days
    assert_eq!(transition.state.due_time, Some(at("2026-07-19T00:00:00Z")));
    // a new case may start with the notification too
    let new_case = open_dispute(
        merchant(Network::Visa),
        10_000,
        &Opening::Network(NetworkEvent::new(K::ChargebackNotified)),
        &policy(),
        at(T0),
    )
    .unwrap();
    assert_eq!(new_case.state.stage, Stage::Chargeback);
    assert!(new_case.ledger_entries.is_empty());
}

#[test]
fn m3_chargeback_withdraws_the_amount_plus_the_fee() {
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    let transition = apply(&inquiry, &event(K::Chargeback), "2026-06-03T09:00:00Z");
    assert_eq!(
        where_is(&transition.state),
        (Stage::Chargeback, Status::NeedsResponse)
    );
    assert_eq!(money(&transition), vec![(B::Withdrawal, -10_000, FEE)]);
    assert_eq!(transition.events, vec![DisputeEvent::FundsWithdrawn]);
    assert_eq!(transition.state.due_time, Some(at("2026-07-04T00:00:00Z"))); // Visa 30
    assert_eq!(transition.history.amount, 10_000);

    // after a notification: the funds land, the due time stays
    let notified = step(
        &inquiry,
        &event(K::ChargebackNotified),
        "2026-06-03T09:00:00Z",
    );
    let landed = apply(&notified, &event(K::Chargeback), "2026-06-05T09:00:00Z");
    assert_eq!(landed.state.due_time, notified.due_time);
    assert_eq!(money(&landed), vec![(B::Withdrawal, -10_000, FEE)]);

    // a new case, with a restated amount (at most the original amount)
    let opening = Opening::Network(NetworkEvent {
        amount: Some(8_000),
        ..NetworkEvent::new(K::Chargeback)
    });
    let new_case =
        open_dispute(merchant(Network::Visa), 10_000, &opening, &policy(), at(T0)).unwrap();
    assert_eq!(new_case.state.amount, 8_000);
    assert_eq!(
        new_case.events,
        vec![DisputeEvent::Created, DisputeEvent::FundsWithdrawn]
    );
    assert_eq!(money(&new_case), vec![(B::Withdrawal, -8_000, FEE)]);

    // the tenant may open a merchant chargeback directly: same money
    let by_tenant = open_dispute(
        merchant(Network::Visa),
        10_000,
        &Opening::Tenant {
            stage: Stage::Chargeback,
            due_time: None,
        },
        &policy(),
        at(T0),
    )
    .unwrap();
    assert_eq!(money(&by_tenant), vec![(B::Withdrawal, -10_000, FEE)]);
}

#[test]
fn m4_evidence_is_staged_only_while_a_response_is_due() {
    let state = merchant_chargeback();
    assert_eq!(
        evidence_editable(&state, at("2026-06-02T00:00:00Z")),
        Ok(())
    );
    let due = state.due_time.unwrap();
    assert!(matches!(
        evidence_editable(&state, due),
        Err(LifecycleError::EvidenceLocked { .. })
    ));
    let submitted = merchant_defended();
    assert!(evidence_editable(&submitted, at("2026-06-03T00:00:00Z")).is_err());
    let lost = step(&state, &action(A::Accept), "2026-06-02T00:00:00Z");
    assert!(evidence_editable(&lost, at("2026-06-03T00:00:00Z")).is_err());
}

#[test]
fn m5_submitting_evidence_on_an_inquiry_waits_in_inquiry() {
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    let transition = apply(&inquiry, &action(A::SubmitEvidence), "2026-06-02T00:00:00Z");
    assert_eq!(
        where_is(&transition.state),
        (Stage::Inquiry, Status::UnderReview)
    );
    assert_eq!(transition.state.submission_count, 1);
    assert_eq!(transition.evidence, EvidenceEffect::Submitted);
    assert_eq!(transition.events, vec![DisputeEvent::EvidenceSubmitted]);
    assert_eq!(transition.state.due_time, None);
    assert!(actions(&transition.state, "2026-06-02T00:00:00Z").is_empty());
}

#[test]
fn m6_submitting_evidence_in_chargeback_and_pre_arbitration() {
    let transition = apply(
        &merchant_chargeback(),
        &action(A::SubmitEvidence),
        "2026-06-02T00:00:00Z",
    );
    assert_eq!(
        where_is(&transition.state),
        (Stage::Chargeback, Status::UnderReview)
    );
    assert_eq!(transition.evidence, EvidenceEffect::Submitted);
    assert!(transition.ledger_entries.is_empty());

    let pre_arbitration = step(
        &transition.state,
        &event(K::PreArbitration),
        "2026-06-20T00:00:00Z",
    );
    let again = apply(
        &pre_arbitration,
        &action(A::SubmitEvidence),
        "2026-06-21T00:00:00Z",
    );
    assert_eq!(
        where_is(&again.state),
        (Stage::PreArbitration, Status::UnderReview)
    );
    assert_eq!(again.state.submission_count, 2);
}

#[test]
fn m7_accepting_loses_with_no_further_money() {
    for accept in [A::Accept, A::Close] {
        let transition = apply(
            &merchant_chargeback(),
            &action(accept),
            "2026-06-02T00:00:00Z",
        );
        assert_eq!(
            where_is(&transition.state),
            (Stage::Chargeback, Status::Lost)
        );
        assert!(
            transition.ledger_entries.is_empty(),
            "funds already withdrawn"
        );
        assert_eq!(
            transition.events,
            vec![DisputeEvent::DefensePeriodEnded, DisputeEvent::Lost]
        );
        assert_eq!(
            (transition.state.amount_won, transition.state.amount_lost),
            (0, 10_000)
        );
        assert_eq!(transition.history.what, upper(accept.as_str()));
    }
    // accepting a notified chargeback takes the funds now
    let notified = opened(
        merchant(Network::Visa),
        Opening::Network(NetworkEvent::new(K::ChargebackNotified)),
    );
    let transition = apply(&notified, &action(A::Accept), "2026-06-02T00:00:00Z");
    assert_eq!(money(&transition), vec![(B::Withdrawal, -10_000, FEE)]);
    // not on an inquiry
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    assert!(matches!(
        refusal(&inquiry, &action(A::Accept), T0),
        LifecycleError::ActionNotAvailable { .. }
    ));
}

#[test]
fn m8_inquiry_closed_ends_the_inquiry() {
    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    for state in [
        inquiry.clone(),
        step(&inquiry, &action(A::SubmitEvidence), "2026-06-02T00:00:00Z"),
    ] {
        let transition = apply(&state, &event(K::InquiryClosed), "2026-06-05T00:00:00Z");
        assert_eq!(
            where_is(&transition.state),
            (Stage::Inquiry, Status::Closed)
        );
        assert!(transition.ledger_entries.is_empty());
        assert_eq!(transition.events, vec![DisputeEvent::Closed]);
    }
}

#[test]
fn m9_reversal_reinstates_and_the_lapse_wins() {
    let reversed = apply(
        &merchant_defended(),
        &event(K::ChargebackReversed),
        "2026-06-10T00:00:00Z",
    );
    assert_eq!(
        where_is(&reversed.state),
        (Stage::Chargeback, Status::UnderReview)
    );
    assert_eq!(money(&reversed), vec![(B::Reinstatement, 10_000, 0)]);
    assert_eq!(reversed.events, vec![DisputeEvent::FundsReinstated]);
    let lapse = at("2026-07-11T00:00:00Z"); // Visa pre-arbitration window, 30 days
    assert_eq!(reversed.state.reversal_lapses_at, Some(lapse));
    assert_eq!(reversed.state.next_deadline(), Some(lapse));

    let won = apply(
        &reversed.state,
        &Trigger::DeadlinePassed,
        "2026-07-11T00:00:00Z",
    );
    assert_eq!(where_is(&won.state), (Stage::Chargeback, Status::Won));
    assert_eq!(won.events, vec![DisputeEvent::Won]);
    assert_eq!(won.history.actor, Actor::System);
    assert!(won.ledger_entries.is_empty(), "already reinstated");
    assert_eq!(won.state.ledger.net(), -FEE);
}

#[test]
fn m10_pre_arbitration_needs_a_response_within_the_network_window() {
    for (network, due) in [
        (Network::Visa, "2026-07-21T00:00:00Z"),
        (Network::Mastercard, "2026-08-05T00:00:00Z"),
        (Network::Amex, "2026-07-11T00:00:00Z"),
    ] {
        let chargeback = opened(
            merchant(network),
            Opening::Network(NetworkEvent::new(K::Chargeback)),
        );
        let defended = step(
            &chargeback,
            &action(A::SubmitEvidence),
            "2026-06-02T00:00:00Z",
        );
        let transition = apply(&defended, &event(K::PreArbitration), "2026-06-20T12:00:00Z");
        assert_eq!(
            where_is(&transition.state),
            (Stage::PreArbitration, Status::NeedsResponse)
        );
        assert_eq!(transition.state.due_time, Some(at(due)), "{network}");
        assert!(transition.ledger_entries.is_empty());
        assert_eq!(
            actions(&transition.state, "2026-06-21T00:00:00Z"),
            vec![A::Accept, A::SubmitEvidence, A::Close]
        );
    }
}

#[test]
fn m11_second_chargeback_withdraws_again_or_loses() {
    let reversed = step(
        &merchant_defended(),
        &event(K::ChargebackReversed),
        "2026-06-10T00:00:00Z",
    );
    let second = apply(
        &reversed,
        &event(K::SecondChargeback),
        "2026-06-15T00:00:00Z",
    );
    assert_eq!(
        where_is(&second.state),
        (Stage::PreArbitration, Status::NeedsResponse)
    );
    assert_eq!(money(&second), vec![(B::Withdrawal, -10_000, 0)]);
    assert_eq!(second.events, vec![DisputeEvent::FundsWithdrawn]);
    assert_eq!(second.state.reversal_lapses_at, None);

    let no_reply = event_with(K::SecondChargeback, |e| e.response_allowed = false);
    let lost = apply(&reversed, &no_reply, "2026-06-15T00:00:00Z");
    assert_eq!(where_is(&lost.state), (Stage::Chargeback, Status::Lost));
    assert_eq!(money(&lost), vec![(B::Withdrawal, -10_000, 0)]);
    assert_eq!(
        lost.events,
        vec![DisputeEvent::FundsWithdrawn, DisputeEvent::Lost]
    );
}

#[test]
fn m12_arbitration_after_pre_arbitration() {
    let pre_arbitration = step(
        &merchant_defended(),
        &event(K::PreArbitration),
        "2026-06-20T00:00:00Z",
    );
    let answered = step(
        &pre_arbitration,
        &action(A::SubmitEvidence),
        "2026-06-21T00:00:00Z",
    );
    let asked = apply(&answered, &event(K::Arbitration), "2026-07-01T00:00:00Z");
    assert_eq!(
        where_is(&asked.state),
        (Stage::Arbitration, Status::NeedsResponse)
    );
    assert_eq!(asked.state.due_time, Some(at("2026-07-12T00:00:00Z"))); // Visa: 10 days
    assert!(actions(&asked.state, "2026-07-02T00:00:00Z").contains(&A::SubmitEvidence));

    let not_asked = event_with(K::Arbitration, |e| e.response_allowed = false);
    let waiting = apply(&answered, &not_asked, "2026-07-01T00:00:00Z");
    assert_eq!(
        where_is(&waiting.state),
        (Stage::Arbitration, Status::UnderReview)
    );
    assert_eq!(waiting.state.next_deadline(), None);
}

#[test]
fn m13_network_outcomes_settle_the_money() {
    let defended = step(
        &step(
            &merchant_defended(),
            &event(K::PreArbitration),
            "2026-06-20T00:00:00Z",
        ),
        &action(A::SubmitEvidence),
        "2026-06-21T00:00:00Z",
    );
    let won = apply(&defended, &event(K::Won), "2026-07-01T00:00:00Z");
    assert_eq!(where_is(&won.state), (Stage::PreArbitration, Status::Won));
    assert_eq!(money(&won), vec![(B::Reinstatement, 10_000, 0)]);
    assert_eq!(
        won.events,
        vec![DisputeEvent::FundsReinstated, DisputeEvent::Won]
    );
    assert_eq!((won.state.amount_won, won.state.amount_lost), (10_000, 0));
    assert_eq!(won.state.ledger.net(), -FEE);

    let refunding = MoneyPolicy {
        refund_fee_on_win: true,
        ..policy()
    };
    let won = apply_with(
        &defended,
        &event(K::Won),
        &refunding,
        "2026-07-01T00:00:00Z",
    );
    assert_eq!(money(&won), vec![(B::Reinstatement, 10_000, -FEE)]);
    assert_eq!(won.state.ledger.net(), 0);

    let lost = apply(&defended, &event(K::Lost), "2026-07-01T00:00:00Z");
    assert_eq!(where_is(&lost.state), (Stage::PreArbitration, Status::Lost));
    assert!(lost.ledger_entries.is_empty());
    assert_eq!(lost.events, vec![DisputeEvent::Lost]);
    assert_eq!(lost.state.ledger.net(), -10_000 - FEE);
}

#[test]
fn m14_unanswered_disputes_auto_lose_and_inquiries_close() {
    let chargeback = merchant_chargeback();
    let due = chargeback.due_time.unwrap();
    assert_eq!(chargeback.next_deadline(), Some(due));
    assert_eq!(
        unchanged_kind(
            &chargeback,
            &Trigger::DeadlinePassed,
            "2026-07-01T23:59:59Z"
        ),
        UnchangedKind::NothingDue
    );
    let lost = apply(
        &chargeback,
        &Trigger::DeadlinePassed,
        "2026-07-02T00:00:00Z",
    );
    assert_eq!(due, at("2026-07-02T00:00:00Z")); // opened 2026-06-01, Visa: 30 days
    assert_eq!(where_is(&lost.state), (Stage::Chargeback, Status::Lost));
    assert_eq!(
        lost.events,
        vec![DisputeEvent::DefensePeriodEnded, DisputeEvent::Lost]
    );
    assert_eq!(lost.evidence, EvidenceEffect::Frozen);
    assert_eq!(lost.history.what, "system:DEADLINE_PASSED");
    // applied once: the next sweep finds nothing
    assert_eq!(
        unchanged_kind(
            &lost.state,
            &Trigger::DeadlinePassed,
            "2026-07-05T00:00:00Z"
        ),
        UnchangedKind::NothingDue
    );

    let inquiry = tenant_opened(merchant(Network::Visa), Stage::Inquiry);
    let closed = apply(&inquiry, &Trigger::DeadlinePassed, "2026-07-02T00:00:00Z");
    assert_eq!(where_is(&closed.state), (Stage::Inquiry, Status::Closed));
    assert_eq!(
        closed.events,
        vec![DisputeEvent::DefensePeriodEnded, DisputeEvent::Closed]
    );
    assert!(closed.ledger_entries.is_empty());
    // past the due time the actions are gone too
    assert!(matches!(
        refusal(
            &chargeback,
            &action(A::SubmitEvidence),
            "2026-07-04T00:00:00Z"
        ),
        LifecycleError::DeadlinePassed { .. }
    ));
}

#[test]
fn m15_only_the_network_reopens_a_won_or_closed_dispute() {
    let won = step(&merchant_defended(), &event(K::Won), "2026-06-20T00:00:00Z");
    // tenant actions never reopen
    assert!(available_actions(&won, at("2026-06-21T00:00:00Z")).is_empty());
    assert!(matches!(
        refusal(&won, &action(A::SubmitEvidence), "2026-06-21T00:00:00Z"),
        LifecycleError::ActionNotAvailable { .. }
    ));
    let reopened = apply(&won, &event(K::SecondChargeback), "2026-06-25T00:00:00Z");
    assert_eq!(
        where_is(&reopened.state),
        (Stage::PreArbitration, Status::NeedsResponse)
    );
    assert_eq!(
        reopened.events,
        vec![DisputeEvent::Reopened, DisputeEvent::FundsWithdrawn]
    );
    assert_eq!(
        (reopened.state.amount_won, reopened.state.amount_lost),
        (0, 0)
    );
    assert_eq!(money(&reopened), vec![(B::Withdrawal, -10_000, 0)]);

    // a closed inquiry reopens with a chargeback
    let closed = step(
        &tenant_opened(merchant(Network::Visa), Stage::Inquiry),
        &event(K::InquiryClosed),
        "2026-06-02T00:00:00Z",
    );
    let charged = apply(&closed, &event(K::Chargeback), "2026-06-10T00:00:00Z");
    assert_eq!(
        where_is(&charged.state),
        (Stage::Chargeback, Status::NeedsResponse)
    );
    assert_eq!(
        charged.events,
        vec![DisputeEvent::Reopened, DisputeEvent::FundsWithdrawn]
    );

    // a lost dispute stays lost
    let lost = step(
        &merchant_chargeback(),
        &action(A::Accept),
        "2026-06-02T00:00:00Z",
    );
    assert_eq!(
        unchanged_kind(&lost, &event(K::SecondChargeback), "2026-06-10T00:00:00Z"),
        UnchangedKind::Stale
    );
    // a late event of the same stage does not reopen
    assert_eq!(
        unchanged_kind(&won, &event(K::ChargebackReversed), "2026-06-21T00:00:00Z"),
        UnchangedKind::Stale
    );
}
