//! Reg E / Reg Z on the issuer side: their dates flag a dispute overdue without taking a
//! network right away (I14), the regulatory due dates are fields of the dispute, and an
//! issuer-side dispute can be closed because the cardholder withdrew it. The `point_2_` /
//! `point_7_` prefixes of test names are issue 11's points 2 and 7.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use dpb::BalanceTransactionType as Txn;
use dpb::DisputeActionType as Action;
use dpb::DisputeStage as Stage;
use dpb::DisputeStatus as Status;
use dpb::NetworkEventType as Net;
use dpb::OverdueDeadline as Deadline;
use tonic::Code;

use crate::fixtures::*;

fn at(dispute: &dpb::Dispute) -> (Stage, Status) {
    (dispute.stage(), dispute.status())
}

/// The UTC day `days` days before today, as "YYYY-MM-DD".
fn days_ago(days: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// An issuer-side Mastercard dispute reported `reported` days ago for a transaction
/// `transacted` days ago (the 120-day chargeback window counts from it).
fn issuer_reported(
    transaction: &str,
    regulation: dpb::ApplicableRegulation,
    reported: i64,
    transacted: i64,
) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        reason: dpb::DisputeReason::Duplicate.into(),
        date_customer_reported: days_ago(reported),
        applicable_regulation: regulation.into(),
        issuer_facts: Some(dpb::IssuerFacts {
            transaction_date: days_ago(transacted),
            ..Default::default()
        }),
        ..issuer_dispute(transaction)
    }
}

/// The flagged deadlines as (which, breach time).
fn overdue_deadlines(dispute: &dpb::Dispute) -> Vec<(Deadline, Option<prost_types::Timestamp>)> {
    dispute
        .overdue_deadlines
        .iter()
        .map(|breach| (breach.deadline(), breach.breach_time))
        .collect()
}

/// Polls GetDispute until the sweeper (every second in tests) has flagged it overdue.
async fn wait_until_overdue(client: &mut harness::DisputesClient, id: &str) -> dpb::Dispute {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let dispute = get_dispute(client, id).await;
        if dispute.overdue {
            return dispute;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} was not flagged overdue: {dispute:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(events: &[String], kind: &str) -> usize {
    events.iter().filter(|event| *event == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_2_a_passed_decision_date_keeps_the_chargeback_window_open() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let case = "MC-P2-1";

    // Reg Z, reported 70 days ago: the decision (two billing cycles) is overdue, but the
    // transaction is 75 days old, so 45 days of the chargeback window remain.
    let created = create(
        &mut disputes,
        issuer_reported(
            "txn_p2_regz",
            dpb::ApplicableRegulation::RegulationZ,
            70,
            75,
        ),
    )
    .await;
    let decision_due = created.decision_due_by;
    assert!(decision_due.is_some() && created.provisional_credit_due_by.is_none());

    let overdue = wait_until_overdue(&mut disputes, &created.id).await;
    assert_eq!(at(&overdue), (Stage::Inquiry, Status::NeedsResponse));
    assert_eq!(
        overdue_deadlines(&overdue),
        vec![(Deadline::DecisionDue, decision_due)]
    );
    // nothing is taken away: CHARGEBACK stays until its own window closes
    assert_eq!(
        available(&overdue),
        vec![
            Action::ProvisionalCredit,
            Action::WriteOff,
            Action::Deny,
            Action::Chargeback,
            Action::Close
        ]
    );
    let chargeback_until = overdue
        .available_actions
        .iter()
        .find(|a| a.action() == Action::Chargeback)
        .and_then(|a| a.valid_until)
        .unwrap();
    assert!(chargeback_until.seconds > chrono::Utc::now().timestamp() + 40 * 86_400);
    let entry = overdue.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::System, "system:DEADLINE_PASSED")
    );
    assert!(
        entry
            .message
            .contains("Regulation Z: the decision was due by")
            && entry.message.contains("still open: CHARGEBACK until"),
        "{}",
        entry.message
    );
    assert_eq!(
        count(&event_types(&stack, &created.id).await, "dispute.overdue"),
        1
    );

    // Acting clears the flag; the breach stays in the history.
    let charged = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            network_case_id: case.to_owned(),
            ..action_request(&created.id, Action::Chargeback)
        },
    )
    .await
    .unwrap();
    assert_eq!(at(&charged), (Stage::Chargeback, Status::UnderReview));
    assert!(!charged.overdue && charged.overdue_deadlines.is_empty());
    assert!(
        charged
            .action_history
            .last()
            .unwrap()
            .message
            .contains("overdue flag is cleared")
    );
    assert!(
        charged
            .action_history
            .iter()
            .any(|entry| entry.what == "system:DEADLINE_PASSED")
    );

    // A later representment: ACCEPT_REPRESENTMENT and PRE_ARBITRATION are offered and work.
    let represented = record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            case,
            "rep-1",
            Net::Representment,
        ),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(
        at(&represented),
        (Stage::Representment, Status::NeedsResponse)
    );
    assert!(available(&represented).contains(&Action::AcceptRepresentment));
    assert!(available(&represented).contains(&Action::PreArbitration));
    let filed = act(&mut disputes, &created.id, Action::PreArbitration)
        .await
        .unwrap();
    assert_eq!(at(&filed), (Stage::PreArbitration, Status::UnderReview));
    // the sweeper records each date once: no second dispute.overdue
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = get_dispute(&mut disputes, &created.id).await;
    assert!(!after.overdue);
    assert_eq!(
        count(&event_types(&stack, &created.id).await, "dispute.overdue"),
        1
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_2_a_late_provisional_credit_is_given_and_marked_late() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // Reg E, reported 30 days ago: the provisional credit (10 business days) and, without
    // it, the decision are overdue; the chargeback window is open.
    let created = create(
        &mut disputes,
        issuer_reported(
            "txn_p2_rege",
            dpb::ApplicableRegulation::RegulationE,
            30,
            32,
        ),
    )
    .await;
    let credit_due = created.provisional_credit_due_by;
    assert!(credit_due.is_some());
    assert_eq!(
        created.decision_due_by, credit_due,
        "no credit: decide by then"
    );

    let overdue = wait_until_overdue(&mut disputes, &created.id).await;
    assert_eq!(
        overdue_deadlines(&overdue),
        vec![
            (Deadline::ProvisionalCreditDue, credit_due),
            (Deadline::DecisionDue, credit_due)
        ]
    );
    assert!(available(&overdue).contains(&Action::Chargeback));
    // the credit stays possible after its due date (the date shows, the action stays)
    let offered = overdue
        .available_actions
        .iter()
        .find(|a| a.action() == Action::ProvisionalCredit)
        .unwrap();
    assert_eq!(offered.valid_until, credit_due);

    let credited = act(&mut disputes, &created.id, Action::ProvisionalCredit)
        .await
        .unwrap();
    assert_eq!(credited.credit_status(), dpb::CreditStatus::Provisional);
    assert_eq!(ledger(&credited), vec![(Txn::ProvisionalCredit, 4_200)]);
    assert!(
        credited.balance_transactions[0]
            .description
            .contains("given late"),
        "{}",
        credited.balance_transactions[0].description
    );
    let entry = credited.action_history.last().unwrap();
    assert_eq!(entry.what, "PROVISIONAL_CREDIT");
    assert!(entry.message.contains("given late"), "{}", entry.message);
    assert!(!credited.overdue);
    // a late credit does not buy the 45-day investigation
    assert_eq!(credited.decision_due_by, credit_due);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_2_only_write_off_and_deny_once_no_network_action_remains() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // Reg Z, a transaction 125 days old: the chargeback window has closed too.
    let created = create(
        &mut disputes,
        issuer_reported(
            "txn_p2_late",
            dpb::ApplicableRegulation::RegulationZ,
            100,
            125,
        ),
    )
    .await;
    let overdue = wait_until_overdue(&mut disputes, &created.id).await;
    let flagged: Vec<Deadline> = overdue_deadlines(&overdue)
        .into_iter()
        .map(|(deadline, _)| deadline)
        .collect();
    assert_eq!(flagged, vec![Deadline::DecisionDue, Deadline::ResponseDue]);
    assert_eq!(
        available(&overdue),
        vec![
            Action::ProvisionalCredit,
            Action::WriteOff,
            Action::Deny,
            Action::Close
        ]
    );
    assert!(
        overdue
            .action_history
            .last()
            .unwrap()
            .message
            .contains("no network action remains")
    );
    let refused = act(&mut disputes, &created.id, Action::Chargeback)
        .await
        .unwrap_err();
    assert_eq!(error_reason(&refused), "DEADLINE_PASSED");
    let denied = act(&mut disputes, &created.id, Action::Deny).await.unwrap();
    assert_eq!(at(&denied), (Stage::Inquiry, Status::Lost));
    assert!(!denied.overdue);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_7_regulatory_due_dates_are_fields_of_the_dispute() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let utc = |text: &str| {
        Some(timestamp(
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&chrono::Utc),
        ))
    };

    // Seed 002: Reg Z, reported 2024-05-28T12:25:00Z; the cycle closes on the 28th, so the
    // decision is due by the end of 2024-07-28.
    let seed = create(
        &mut disputes,
        dpb::CreateDisputeRequest {
            date_customer_reported: "2024-05-28T12:25:00Z".to_owned(),
            applicable_regulation: dpb::ApplicableRegulation::RegulationZ.into(),
            ..issuer_dispute("txn_p7_seed")
        },
    )
    .await;
    assert_eq!(seed.provisional_credit_due_by, None);
    assert_eq!(seed.decision_due_by, utc("2024-07-29T00:00:00Z"));

    // Reg E: the tenth business day after Tuesday 2024-05-28 is Tuesday 2024-06-11; without a
    // provisional credit the decision is due with it.
    let reg_e = create(
        &mut disputes,
        dpb::CreateDisputeRequest {
            date_customer_reported: "2024-05-28".to_owned(),
            ..issuer_dispute("txn_p7_rege")
        },
    )
    .await;
    assert_eq!(reg_e.provisional_credit_due_by, utc("2024-06-12T00:00:00Z"));
    assert_eq!(reg_e.decision_due_by, utc("2024-06-12T00:00:00Z"));
    let read = get_dispute(&mut disputes, &reg_e.id).await;
    assert_eq!(
        read.provisional_credit_due_by,
        reg_e.provisional_credit_due_by
    );

    // Reported today: a credit given on time moves the decision to 45 days after the report.
    let today_report = create(&mut disputes, {
        let mut request = issuer_dispute("txn_p7_today");
        request.date_customer_reported = today();
        request
    })
    .await;
    let credited = act(&mut disputes, &today_report.id, Action::ProvisionalCredit)
        .await
        .unwrap();
    let decision = credited.decision_due_by.unwrap();
    let expected = chrono::Utc::now().date_naive() + chrono::Duration::days(46);
    assert_eq!(
        decision.seconds,
        expected.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
    );
    assert_eq!(
        credited.provisional_credit_due_by,
        today_report.provisional_credit_due_by
    );

    // Neither on the merchant side nor without a regulation.
    let merchant = create(&mut disputes, merchant_dispute("", "ch_p7")).await;
    assert_eq!(
        (merchant.provisional_credit_due_by, merchant.decision_due_by),
        (None, None)
    );
    let unregulated = create(
        &mut disputes,
        dpb::CreateDisputeRequest {
            applicable_regulation: dpb::ApplicableRegulation::None.into(),
            date_customer_reported: today(),
            ..issuer_dispute("txn_p7_none")
        },
    )
    .await;
    assert_eq!(unregulated.decision_due_by, None);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_7_cardholder_withdrawal_closes_with_the_credit_reversed() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = issuer_dispute("txn_p7_withdrawn");
    request.date_customer_reported = today();
    let dispute = create(&mut disputes, request).await;
    assert!(available(&dispute).contains(&Action::Close));
    act(&mut disputes, &dispute.id, Action::ProvisionalCredit)
        .await
        .unwrap();

    // CLOSE on the issuer side says why.
    let missing = act(&mut disputes, &dispute.id, Action::Close)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    assert_eq!(violated_fields(&missing), vec!["close_reason"]);
    let wrong_action = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            close_reason: dpb::CloseReason::CardholderWithdrew.into(),
            ..action_request(&dispute.id, Action::Deny)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&wrong_action), vec!["close_reason"]);

    let closed = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            close_reason: dpb::CloseReason::CardholderWithdrew.into(),
            message: "cardholder called: recognised the charge".into(),
            ..action_request(&dispute.id, Action::Close)
        },
    )
    .await
    .unwrap();
    assert_eq!(at(&closed), (Stage::Inquiry, Status::Closed));
    assert_eq!(closed.close_reason(), dpb::CloseReason::CardholderWithdrew);
    assert_eq!(closed.credit_status(), dpb::CreditStatus::Reversed);
    assert_eq!(
        ledger(&closed),
        vec![
            (Txn::ProvisionalCredit, 4_200),
            (Txn::ProvisionalCreditReversal, -4_200)
        ]
    );
    assert_eq!(net(&closed), 0);
    assert_eq!((closed.amount_won, closed.amount_lost), (0, 0));
    assert!(available(&closed).is_empty());
    let entry = closed.action_history.last().unwrap();
    assert_eq!((entry.what.as_str(), entry.amount), ("CLOSE", 4_200));
    assert!(
        entry.message.contains("cardholder withdrew") && entry.message.contains("honored through"),
        "{}",
        entry.message
    );
    assert_eq!(
        event_types(&stack, &dispute.id)
            .await
            .last()
            .map(String::as_str),
        Some("dispute.closed")
    );
    // final: nothing more, the network cannot reopen an issuer dispute
    let again = act(&mut disputes, &dispute.id, Action::WriteOff)
        .await
        .unwrap_err();
    assert_eq!(error_reason(&again), "ACTION_NOT_AVAILABLE");

    // On the merchant side CLOSE keeps Stripe's meaning and takes no reason.
    let merchant = create(&mut disputes, merchant_dispute("", "ch_p7_close")).await;
    let refused = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            close_reason: dpb::CloseReason::CardholderWithdrew.into(),
            ..action_request(&merchant.id, Action::Close)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&refused), vec!["close_reason"]);
    stack.stop().await;
}
