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
        vec![A::ProvisionalCredit, A::WriteOff, A::Deny]
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
    // Reg E: not after its due date
    assert!(matches!(
        refusal(
            &state,
            &action(A::ProvisionalCredit),
            "2026-06-12T00:00:00Z"
        ),
        LifecycleError::DeadlinePassed { .. }
    ));
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
        vec![A::ProvisionalCredit, A::WriteOff]
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
            A::PreArbitration
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
fn i14_issuer_deadlines_flag_overdue_and_never_decide() {
    // Reg E without provisional credit: the decision is due with the credit (10 business
    // days), long before the chargeback window closes
    let state = tenant_opened(issuer(Regulation::RegulationE), Stage::Inquiry);
    let due = at("2026-06-12T00:00:00Z");
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
    assert!(overdue.state.overdue);
    assert_eq!(overdue.events, vec![DisputeEvent::Overdue]);
    assert!(overdue.ledger_entries.is_empty());
    assert_eq!(
        actions(&overdue.state, "2026-06-12T00:00:00Z"),
        vec![A::WriteOff, A::Deny]
    );
    assert_eq!(overdue.state.next_deadline(), None);
    assert_eq!(
        unchanged_kind(
            &overdue.state,
            &Trigger::DeadlinePassed,
            "2026-06-13T00:00:00Z"
        ),
        UnchangedKind::NothingDue
    );

    // the window of the last network action closes: overdue, DENY now in any stage
    let representment = issuer_representment(true);
    let window_closed = representment.due_time.unwrap();
    let overdue = apply(
        &representment,
        &Trigger::DeadlinePassed,
        "2026-07-26T00:00:00Z",
    );
    assert!(window_closed <= at("2026-07-26T00:00:00Z"));
    assert_eq!(
        actions(&overdue.state, "2026-07-26T00:00:00Z"),
        vec![A::WriteOff, A::Deny]
    );
    assert!(
        overdue
            .history
            .message
            .contains("network action window closed")
    );
    let denied = apply(&overdue.state, &action(A::Deny), "2026-07-27T00:00:00Z");
    assert_eq!(denied.state.status, Status::Lost);
}
