//! Issuer side, one test per row (docs/lifecycle.md, "Issuer side").

use super::*;

#[test]
fn i1_issuer_dispute_opens_with_regulatory_and_network_deadlines() {
    let transition = open_dispute(
        issuer(Regulation::RegulationE),
        10_000,
        &Opening::Tenant {
            stage: Stage::Inquiry,
            due_time: None,
        },
        &policy(),
        at(T0),
    )
    .unwrap();
    let state = &transition.state;
    assert_eq!(where_is(state), (Stage::Inquiry, Status::NeedsResponse));
    assert_eq!(state.credit_status, CreditStatus::None);
    assert_eq!(transition.events, vec![DisputeEvent::Created]);
    // chargeback: transaction 2026-05-20 + 120 days
    let filing = at("2026-09-18T00:00:00Z");
    assert_eq!(state.due_time, Some(filing));
    // Reg E: reported Thursday 2026-05-28; the tenth business day is Thursday 2026-06-11
    let credit_due = at("2026-06-12T00:00:00Z");
    assert_eq!(
        available_actions(state, at(T0)),
        vec![
            AvailableAction {
                action: A::ProvisionalCredit,
                valid_until: Some(credit_due)
            },
            AvailableAction {
                action: A::WriteOff,
                valid_until: Some(credit_due)
            },
            AvailableAction {
                action: A::Deny,
                valid_until: Some(credit_due)
            },
            AvailableAction {
                action: A::Chargeback,
                valid_until: Some(filing)
            },
            AvailableAction {
                action: A::Close,
                valid_until: Some(credit_due)
            },
        ]
    );
    // with a provisional credit the decision may wait 45 calendar days
    let credited = step(state, &action(A::ProvisionalCredit), "2026-06-02T00:00:00Z");
    assert_eq!(
        valid_until(&credited, A::WriteOff, "2026-06-02T00:00:00Z"),
        Some(at("2026-07-13T00:00:00Z"))
    );
    // Reg Z: two billing cycles closing on the 28th
    let reg_z = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    assert_eq!(
        valid_until(&reg_z, A::WriteOff, T0),
        Some(at("2026-07-29T00:00:00Z"))
    );
    assert_eq!(valid_until(&reg_z, A::ProvisionalCredit, T0), None);
    assert!(
        transition
            .history
            .message
            .contains("provisional credit due")
    );
}

#[test]
fn i2_no_chargeback_action_without_chargeback_rights() {
    let small = open_dispute(
        issuer(Regulation::RegulationZ),
        2_499,
        &Opening::Tenant {
            stage: Stage::Inquiry,
            due_time: None,
        },
        &policy(),
        at(T0),
    )
    .unwrap()
    .state;
    assert_eq!(
        actions(&small, T0),
        vec![A::ProvisionalCredit, A::WriteOff, A::Deny, A::Close]
    );
    let three_ds = CaseFacts {
        reason: Reason::Fraudulent,
        issuer: IssuerFacts {
            three_ds_authenticated: true,
            ..issuer(Regulation::RegulationZ).issuer
        },
        ..issuer(Regulation::RegulationZ)
    };
    let state = tenant_opened(three_ds.clone(), Stage::Inquiry);
    assert!(!actions(&state, T0).contains(&A::Chargeback));
    // 3-D Secure only removes fraud rights
    let not_fraud = CaseFacts {
        reason: Reason::Duplicate,
        ..three_ds
    };
    assert!(actions(&tenant_opened(not_fraud, Stage::Inquiry), T0).contains(&A::Chargeback));
    let unposted = CaseFacts {
        issuer: IssuerFacts {
            transaction_posted: false,
            ..IssuerFacts::default()
        },
        ..issuer(Regulation::None)
    };
    let state = tenant_opened(unposted, Stage::Inquiry);
    assert!(matches!(
        refusal(&state, &action(A::Chargeback), T0),
        LifecycleError::ActionNotAvailable { .. }
    ));
    assert!(actions(&state, T0).contains(&A::WriteOff));
    // out of window
    let state = tenant_opened(issuer(Regulation::None), Stage::Inquiry);
    assert!(matches!(
        refusal(&state, &action(A::Chargeback), "2026-09-18T00:00:00Z"),
        LifecycleError::DeadlinePassed { .. }
    ));
}

#[test]
fn i3_provisional_credit_once_without_a_status_change() {
    let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
    let transition = apply(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-02T00:00:00Z",
    );
    assert_eq!(where_is(&transition.state), where_is(&state));
    assert_eq!(transition.state.credit_status, CreditStatus::Provisional);
    assert_eq!(money(&transition), vec![(B::ProvisionalCredit, 10_000, 0)]);
    assert_eq!(transition.events, vec![DisputeEvent::Updated]);
    assert!(matches!(
        refusal(
            &transition.state,
            &action(A::ProvisionalCredit),
            "2026-06-03T00:00:00Z"
        ),
        LifecycleError::ActionNotAvailable { .. }
    ));
    assert!(!transition.state.provisional_credit_late());
    assert!(
        transition.ledger_entries[0]
            .description
            .ends_with("cardholder")
    );
    // Reg E: still owed after its due date, given late (I14)
    let late = apply(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-12T00:00:00Z",
    );
    assert_eq!(late.state.credit_status, CreditStatus::Provisional);
    assert!(late.state.provisional_credit_late());
    assert!(late.ledger_entries[0].description.contains("given late"));
}

#[test]
fn i4_write_off_wins_with_a_final_credit() {
    let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let written_off = apply(&state, &action(A::WriteOff), "2026-06-02T00:00:00Z");
    assert_eq!(where_is(&written_off.state), (Stage::Inquiry, Status::Won));
    assert_eq!(written_off.state.credit_status, CreditStatus::Final);
    assert_eq!(money(&written_off), vec![(B::WriteOff, 10_000, 0)]);
    assert_eq!(written_off.events, vec![DisputeEvent::Won]);

    // with a provisional credit outstanding, the credit just becomes final
    let credited = step(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-02T00:00:00Z",
    );
    let written_off = apply(&credited, &action(A::WriteOff), "2026-06-03T00:00:00Z");
    assert!(written_off.ledger_entries.is_empty());
    assert_eq!(written_off.state.credit_status, CreditStatus::Final);
    assert_eq!(written_off.state.ledger.net(), 10_000);

    // available in any open stage
    let representment = issuer_representment(false);
    assert!(actions(&representment, "2026-06-11T00:00:00Z").contains(&A::WriteOff));
}

#[test]
fn i5_deny_reverses_the_credit_with_the_reg_e_honoring_date() {
    let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
    let credited = step(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-02T00:00:00Z",
    );
    let denied = apply(&credited, &action(A::Deny), "2026-06-16T15:00:00Z");
    assert_eq!(where_is(&denied.state), (Stage::Inquiry, Status::Lost));
    assert_eq!(denied.state.credit_status, CreditStatus::Reversed);
    assert_eq!(
        money(&denied),
        vec![(B::ProvisionalCreditReversal, -10_000, 0)]
    );
    // debited Tuesday 2026-06-16; Juneteenth (Friday) does not count
    let notice = denied.provisional_credit_reversal.unwrap();
    assert_eq!(
        notice,
        ReversalNotice {
            amount: 10_000,
            debited_on: day("2026-06-16"),
            honored_until: day("2026-06-24"),
        }
    );
    assert!(denied.ledger_entries[0].description.contains("2026-06-24"));
    assert!(
        denied
            .history
            .message
            .contains("honored through 2026-06-24")
    );
    assert_eq!(
        (denied.state.amount_won, denied.state.amount_lost),
        (0, 10_000)
    );

    // without a credit nothing moves and the credit status stays NONE
    let denied = apply(&state, &action(A::Deny), "2026-06-02T00:00:00Z");
    assert!(denied.ledger_entries.is_empty());
    assert_eq!(denied.state.credit_status, CreditStatus::None);
    assert_eq!(denied.provisional_credit_reversal, None);
}

#[test]
fn i6_chargeback_waits_on_the_network_and_may_be_partial() {
    let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let filed = apply(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
    assert_eq!(
        where_is(&filed.state),
        (Stage::Chargeback, Status::UnderReview)
    );
    assert_eq!(filed.state.due_time, None);
    assert!(filed.ledger_entries.is_empty());
    assert_eq!(
        actions(&filed.state, "2026-06-03T00:00:00Z"),
        vec![A::ProvisionalCredit, A::WriteOff, A::Close]
    );

    let partial = apply(
        &state,
        &action_for(A::Chargeback, 6_000),
        "2026-06-02T00:00:00Z",
    );
    assert_eq!(partial.state.amount, 6_000);
    assert_eq!(partial.history.amount, 6_000);
    // not below a provisional credit already given
    let credited = step(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-02T00:00:00Z",
    );
    let error = refusal(
        &credited,
        &action_for(A::Chargeback, 6_000),
        "2026-06-03T00:00:00Z",
    );
    assert_eq!(error.invalid_argument_field(), Some("amount"));
}

#[test]
fn i7_network_rejection_returns_to_inquiry() {
    let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
    let rejected = apply(&filed, &event(K::NetworkRejected), "2026-06-05T00:00:00Z");
    assert_eq!(
        where_is(&rejected.state),
        (Stage::Inquiry, Status::NeedsResponse)
    );
    assert_eq!(
        rejected.state.due_time, state.due_time,
        "refile within the window"
    );
    assert!(actions(&rejected.state, "2026-06-06T00:00:00Z").contains(&A::Chargeback));
    // a second rejection of the same chargeback changes nothing
    assert_eq!(
        unchanged_kind(
            &rejected.state,
            &event(K::NetworkRejected),
            "2026-06-06T00:00:00Z"
        ),
        UnchangedKind::Duplicate
    );
}

#[test]
fn i8_representment_asks_the_issuer_within_45_days() {
    let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
    let representment = event_with(K::Representment, |e| {
        e.document_ids = vec!["doc_merchant".into()];
    });
    let transition = apply(&filed, &representment, "2026-06-10T08:00:00Z");
    assert_eq!(
        where_is(&transition.state),
        (Stage::Representment, Status::NeedsResponse)
    );
    let due = at("2026-07-26T00:00:00Z");
    assert_eq!(transition.state.due_time, Some(due));
    assert_eq!(transition.history.document_ids, vec!["doc_merchant"]);
    assert_eq!(
        valid_until(&transition.state, A::PreArbitration, "2026-06-11T00:00:00Z"),
        Some(due)
    );
    assert_eq!(
        actions(&transition.state, "2026-06-11T00:00:00Z"),
        vec![
            A::ProvisionalCredit,
            A::WriteOff,
            A::AcceptRepresentment,
            A::PreArbitration,
            A::Close
        ]
    );
}

#[test]
fn i9_accepting_the_representment_loses_and_reverses_the_credit() {
    let state = issuer_representment(true);
    let transition = apply(
        &state,
        &action(A::AcceptRepresentment),
        "2026-06-16T00:00:00Z",
    );
    assert_eq!(
        where_is(&transition.state),
        (Stage::Representment, Status::Lost)
    );
    assert_eq!(transition.state.credit_status, CreditStatus::Reversed);
    assert_eq!(
        money(&transition),
        vec![(B::ProvisionalCreditReversal, -10_000, 0)]
    );
    assert!(transition.provisional_credit_reversal.is_some());
}

#[test]
fn i10_issuer_files_pre_arbitration() {
    let transition = apply(
        &issuer_representment(false),
        &action(A::PreArbitration),
        "2026-06-16T00:00:00Z",
    );
    assert_eq!(
        where_is(&transition.state),
        (Stage::PreArbitration, Status::UnderReview)
    );
    assert_eq!(transition.state.due_time, None);
}

#[test]
fn i11_pre_arbitration_response_opens_the_arbitration_window() {
    let filed = step(
        &issuer_representment(false),
        &action(A::PreArbitration),
        "2026-06-16T00:00:00Z",
    );
    let transition = apply(
        &filed,
        &event(K::PreArbitrationResponse),
        "2026-07-01T09:00:00Z",
    );
    assert_eq!(
        where_is(&transition.state),
        (Stage::PreArbitration, Status::NeedsResponse)
    );
    let due = at("2026-09-15T00:00:00Z"); // + 75 days
    assert_eq!(transition.state.due_time, Some(due));
    assert_eq!(
        valid_until(&transition.state, A::Arbitration, "2026-07-02T00:00:00Z"),
        Some(due)
    );
}

#[test]
fn i12_issuer_files_arbitration() {
    let answered = step(
        &step(
            &issuer_representment(false),
            &action(A::PreArbitration),
            "2026-06-16T00:00:00Z",
        ),
        &event(K::PreArbitrationResponse),
        "2026-07-01T00:00:00Z",
    );
    let transition = apply(&answered, &action(A::Arbitration), "2026-07-02T00:00:00Z");
    assert_eq!(
        where_is(&transition.state),
        (Stage::Arbitration, Status::UnderReview)
    );
}

#[test]
fn i13_network_outcomes_decide_the_credit() {
    let credited = issuer_representment(true);
    let filed = step(
        &credited,
        &action(A::PreArbitration),
        "2026-06-16T00:00:00Z",
    );
    let won = apply(&filed, &event(K::Won), "2026-07-01T00:00:00Z");
    assert_eq!(won.state.credit_status, CreditStatus::Final);
    assert!(won.ledger_entries.is_empty());
    assert_eq!(won.events, vec![DisputeEvent::Won]);

    let lost = apply(&filed, &event(K::Lost), "2026-07-01T00:00:00Z");
    assert_eq!(lost.state.credit_status, CreditStatus::Reversed);
    assert_eq!(
        money(&lost),
        vec![(B::ProvisionalCreditReversal, -10_000, 0)]
    );

    // won without an earlier credit: the recovered funds are credited now
    let uncredited = step(
        &issuer_representment(false),
        &action(A::PreArbitration),
        "2026-06-16T00:00:00Z",
    );
    let won = apply(&uncredited, &event(K::Won), "2026-07-01T00:00:00Z");
    assert_eq!(money(&won), vec![(B::Reinstatement, 10_000, 0)]);
    assert_eq!(won.state.credit_status, CreditStatus::Final);
    let lost = apply(&uncredited, &event(K::Lost), "2026-07-01T00:00:00Z");
    assert_eq!(lost.state.credit_status, CreditStatus::None);
}

#[test]
fn i14_regulatory_dates_flag_overdue_and_take_nothing_away() {
    // Reg E without provisional credit: the credit and the decision are due by the tenth
    // business day, long before the chargeback window closes
    let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
    let due = at("2026-06-12T00:00:00Z");
    let filing = at("2026-09-18T00:00:00Z");
    assert_eq!(state.next_deadline(), Some(due));
    assert_eq!(
        unchanged_kind(&state, &Trigger::DeadlinePassed, "2026-06-11T23:00:00Z"),
        UnchangedKind::NothingDue
    );
    let overdue = apply(&state, &Trigger::DeadlinePassed, "2026-06-12T00:00:00Z");
    assert_eq!(
        where_is(&overdue.state),
        (Stage::Inquiry, Status::NeedsResponse)
    );
    assert!(overdue.state.overdue());
    assert_eq!(
        overdue
            .state
            .flagged_breaches()
            .map(|breach| (breach.deadline, breach.due))
            .collect::<Vec<_>>(),
        vec![
            (OverdueDeadline::ProvisionalCreditDue, due),
            (OverdueDeadline::DecisionDue, due)
        ]
    );
    assert_eq!(overdue.events, vec![DisputeEvent::Overdue]);
    assert_eq!(overdue.history.actor, Actor::System);
    assert!(overdue.ledger_entries.is_empty());
    // nothing is taken away: the chargeback window is still open, a late credit still owed
    assert_eq!(
        actions(&overdue.state, "2026-06-12T00:00:00Z"),
        vec![
            A::ProvisionalCredit,
            A::WriteOff,
            A::Deny,
            A::Chargeback,
            A::Close
        ]
    );
    assert_eq!(
        valid_until(&overdue.state, A::Chargeback, "2026-06-12T00:00:00Z"),
        Some(filing)
    );
    let message = &overdue.history.message;
    assert!(
        message.contains("provisional credit was due by 2026-06-12 00:00:00 UTC")
            && message.contains("decision was due by")
            && message.contains("still open: CHARGEBACK until 2026-09-18"),
        "{message}"
    );
    // each date is recorded once; the sweeper looks again when the filing window closes
    assert_eq!(overdue.state.next_deadline(), Some(filing));
    assert_eq!(
        unchanged_kind(
            &overdue.state,
            &Trigger::DeadlinePassed,
            "2026-06-13T00:00:00Z"
        ),
        UnchangedKind::NothingDue
    );

    // acting clears the flag and keeps the breaches; the network process goes on
    let filed = apply(
        &overdue.state,
        &action(A::Chargeback),
        "2026-06-15T00:00:00Z",
    );
    assert!(!filed.state.overdue());
    assert_eq!(filed.state.breaches.len(), 2);
    assert!(filed.history.message.contains("overdue flag is cleared"));
    let represented = step(
        &filed.state,
        &event(K::Representment),
        "2026-06-20T00:00:00Z",
    );
    assert!(actions(&represented, "2026-06-21T00:00:00Z").contains(&A::AcceptRepresentment));
    let pre_arbitration = apply(
        &represented,
        &action(A::PreArbitration),
        "2026-06-21T00:00:00Z",
    );
    assert_eq!(
        where_is(&pre_arbitration.state),
        (Stage::PreArbitration, Status::UnderReview)
    );

    // Reg Z: only the decision date, two billing cycles after the report
    let reg_z = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let overdue = apply(&reg_z, &Trigger::DeadlinePassed, "2026-07-29T00:00:00Z");
    assert_eq!(
        overdue
            .state
            .flagged_breaches()
            .map(|breach| (breach.deadline, breach.due))
            .collect::<Vec<_>>(),
        vec![(OverdueDeadline::DecisionDue, at("2026-07-29T00:00:00Z"))]
    );
    assert!(actions(&overdue.state, "2026-07-29T00:00:00Z").contains(&A::Chargeback));
}

#[test]
fn i14_network_events_that_move_the_dispute_clear_the_flag() {
    let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
    let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
    let overdue = step(&filed, &Trigger::DeadlinePassed, "2026-06-12T00:00:00Z");
    assert!(overdue.overdue());
    // waiting on the network: nothing of ours closes, DENY stays out of reach
    assert_eq!(
        actions(&overdue, "2026-06-12T00:00:00Z"),
        vec![A::ProvisionalCredit, A::WriteOff, A::Close]
    );
    let represented = apply(&overdue, &event(K::Representment), "2026-06-20T00:00:00Z");
    assert!(!represented.state.overdue());
    assert_eq!(represented.state.breaches.len(), 2);
    // ACCEPT_REPRESENTMENT works after a breach (and reverses nothing that was not given)
    let accepted = apply(
        &represented.state,
        &action(A::AcceptRepresentment),
        "2026-06-21T00:00:00Z",
    );
    assert_eq!(accepted.state.status, Status::Lost);
}

#[test]
fn i14_a_late_provisional_credit_is_given_and_marked_late() {
    let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
    let credit_due = at("2026-06-12T00:00:00Z");
    // flagged by the sweeper first
    let overdue = step(&state, &Trigger::DeadlinePassed, "2026-06-12T00:00:00Z");
    assert_eq!(
        valid_until(&overdue, A::ProvisionalCredit, "2026-06-15T00:00:00Z"),
        Some(credit_due),
        "the due date shows, the action stays"
    );
    let late = apply(
        &overdue,
        &action(A::ProvisionalCredit),
        "2026-06-15T00:00:00Z",
    );
    assert_eq!(money(&late), vec![(B::ProvisionalCredit, 10_000, 0)]);
    assert!(late.state.provisional_credit_late());
    assert!(!late.state.overdue());
    assert!(
        late.ledger_entries[0]
            .description
            .contains("given late (Regulation E: due by 2026-06-12 00:00:00 UTC)")
    );
    assert!(
        late.history.message.contains("given late"),
        "{}",
        late.history.message
    );
    // a late credit does not extend the decision date to 45 days
    assert_eq!(
        late.state.regulatory_deadlines().resolution_due,
        Some(credit_due)
    );
    assert_eq!(late.state.next_deadline(), Some(at("2026-09-18T00:00:00Z")));

    // given late before the sweeper saw the date: the breaches are recorded with it, unflagged
    let late = apply(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-13T09:00:00Z",
    );
    assert!(late.state.provisional_credit_late());
    assert!(!late.state.overdue());
    assert_eq!(
        late.state
            .breaches
            .iter()
            .map(|breach| breach.deadline)
            .collect::<Vec<_>>(),
        vec![
            OverdueDeadline::ProvisionalCreditDue,
            OverdueDeadline::DecisionDue
        ]
    );
    assert!(
        late.history
            .message
            .contains("provisional credit was due by")
    );

    // on time: the decision may wait 45 calendar days; that date is the next one to watch
    let on_time = step(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-02T00:00:00Z",
    );
    assert!(!on_time.provisional_credit_late());
    assert_eq!(on_time.next_deadline(), Some(at("2026-07-13T00:00:00Z")));
}

#[test]
fn i14_only_write_off_and_deny_once_no_network_action_remains() {
    // credit given on time: the decision is due 2026-07-13, the representment window closes
    // 2026-07-26
    let representment = issuer_representment(true);
    assert_eq!(representment.due_time, Some(at("2026-07-26T00:00:00Z")));
    let decision_passed = apply(
        &representment,
        &Trigger::DeadlinePassed,
        "2026-07-13T00:00:00Z",
    );
    assert!(decision_passed.state.overdue());
    assert_eq!(
        actions(&decision_passed.state, "2026-07-13T00:00:00Z"),
        vec![
            A::WriteOff,
            A::AcceptRepresentment,
            A::PreArbitration,
            A::Close
        ]
    );
    // ACCEPT_REPRESENTMENT after the breach
    let accepted = apply(
        &decision_passed.state,
        &action(A::AcceptRepresentment),
        "2026-07-14T00:00:00Z",
    );
    assert_eq!(accepted.state.status, Status::Lost);
    assert!(!accepted.state.overdue());

    // the representment window closes too: only WRITE_OFF and DENY (and CLOSE) are left
    let window_closed = apply(
        &decision_passed.state,
        &Trigger::DeadlinePassed,
        "2026-07-26T00:00:00Z",
    );
    assert_eq!(
        window_closed
            .state
            .flagged_breaches()
            .map(|breach| breach.deadline)
            .collect::<Vec<_>>(),
        vec![OverdueDeadline::DecisionDue, OverdueDeadline::ResponseDue]
    );
    assert_eq!(
        actions(&window_closed.state, "2026-07-26T00:00:00Z"),
        vec![A::WriteOff, A::Deny, A::Close]
    );
    let message = &window_closed.history.message;
    assert!(
        message.contains("network action window closed")
            && message.contains("no network action remains"),
        "{message}"
    );
    assert_eq!(window_closed.state.next_deadline(), None);
    let denied = apply(
        &window_closed.state,
        &action(A::Deny),
        "2026-07-27T00:00:00Z",
    );
    assert_eq!(denied.state.status, Status::Lost);
    assert_eq!(denied.state.credit_status, CreditStatus::Reversed);
}

#[test]
fn i15_a_withdrawn_dispute_closes_and_reverses_the_credit() {
    let withdraw = Trigger::Tenant(TenantAction {
        close_reason: Some(CloseReason::CardholderWithdrew),
        ..TenantAction::new(A::Close)
    });
    let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
    let credited = step(
        &state,
        &action(A::ProvisionalCredit),
        "2026-06-02T00:00:00Z",
    );
    let closed = apply(&credited, &withdraw, "2026-06-16T15:00:00Z");
    assert_eq!(where_is(&closed.state), (Stage::Inquiry, Status::Closed));
    assert_eq!(closed.state.credit_status, CreditStatus::Reversed);
    assert_eq!(
        closed.state.close_reason,
        Some(CloseReason::CardholderWithdrew)
    );
    assert_eq!(
        money(&closed),
        vec![(B::ProvisionalCreditReversal, -10_000, 0)]
    );
    assert_eq!(closed.events, vec![DisputeEvent::Closed]);
    assert_eq!((closed.state.amount_won, closed.state.amount_lost), (0, 0));
    assert_eq!(closed.history.amount, 10_000);
    assert!(closed.history.message.contains("cardholder withdrew"));
    // Reg E: the reversal is honored as for a denial (I5)
    assert_eq!(
        closed.provisional_credit_reversal.map(|n| n.honored_until),
        Some(day("2026-06-24"))
    );
    assert!(actions(&closed.state, "2026-06-17T00:00:00Z").is_empty());

    // without a credit nothing moves; possible while waiting on the network too
    let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
    let closed = apply(&filed, &withdraw, "2026-06-03T00:00:00Z");
    assert_eq!(where_is(&closed.state), (Stage::Chargeback, Status::Closed));
    assert!(closed.ledger_entries.is_empty());
    assert_eq!(closed.state.credit_status, CreditStatus::None);

    // the reason is required on the issuer side and refused anywhere else
    let error = refusal(&state, &action(A::Close), "2026-06-03T00:00:00Z");
    assert_eq!(error.invalid_argument_field(), Some("close_reason"));
    let merchant = merchant_chargeback();
    let error = refusal(&merchant, &withdraw, "2026-06-03T00:00:00Z");
    assert_eq!(error.invalid_argument_field(), Some("close_reason"));
    let deny_with_reason = Trigger::Tenant(TenantAction {
        close_reason: Some(CloseReason::CardholderWithdrew),
        ..TenantAction::new(A::Deny)
    });
    let error = refusal(&state, &deny_with_reason, "2026-06-03T00:00:00Z");
    assert_eq!(error.invalid_argument_field(), Some("close_reason"));
}
