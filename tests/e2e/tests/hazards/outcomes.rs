//! Hazards H1, H3 and H4: how a dispute's stage and status move. A reversal is not final
//! (H1); a filing without the right to respond ends LOST at once, with `amount_lost` set (H3);
//! actions are offered by side, stage and status, and outcomes keep the stage (H4).

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use dpb::BalanceTransactionType as Txn;
use dpb::DisputeActionType as Action;
use dpb::DisputeStage as Stage;
use dpb::DisputeStatus as Status;
use dpb::NetworkEventType as Net;
use tonic::Code;

use super::{at, merchant_chargeback, visa};
use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_reversal_is_not_final() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // A: the reversal reinstates the funds but the dispute stays UNDER_REVIEW until the
    // pre-arbitration window (here 1.5 s) lapses; then the sweeper makes it WON.
    let a = merchant_chargeback(&mut disputes, "ch_h1_a", "VISA-H1-A").await;
    submit(&mut disputes, &a.id).await;
    let mut reversal = network_event(
        dpb::CardNetwork::Visa,
        "VISA-H1-A",
        "r1",
        Net::ChargebackReversed,
    );
    reversal.due_by = Some(in_millis(1500));
    let reversed = record(&mut disputes, reversal).await.unwrap();
    assert!(reversed.applied);
    let reversed = reversed.dispute.unwrap();
    assert_eq!(at(&reversed), (Stage::Chargeback, Status::UnderReview));
    assert_eq!((reversed.amount_won, reversed.amount_lost), (0, 0));
    assert_eq!(
        ledger(&reversed),
        vec![(Txn::Withdrawal, -12_500), (Txn::Reinstatement, 12_500)]
    );
    assert_eq!(fee(&reversed), FEE);
    let entry = reversed.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str(), entry.status()),
        (
            dpb::Actor::Network,
            "network:CHARGEBACK_REVERSED",
            Status::UnderReview
        )
    );
    assert_eq!(
        event_types(&stack, &a.id).await.last().map(String::as_str),
        Some("dispute.funds_reinstated"),
        "no dispute.won yet"
    );
    // A repeated reversal (new event id) is a duplicate: no second reinstatement.
    let again = visa(&mut disputes, "VISA-H1-A", "r2", Net::ChargebackReversed).await;
    assert!(!again.applied);
    assert_eq!(ledger(again.dispute.as_ref().unwrap()), ledger(&reversed));

    let won = wait_for_status(&mut disputes, &a.id, Status::Won, Duration::from_secs(5)).await;
    assert_eq!(won.stage(), Stage::Chargeback);
    assert_eq!((won.amount_won, won.amount_lost), (12_500, 0));
    assert_eq!(
        ledger(&won),
        ledger(&reversed),
        "the win moves no more money"
    );
    assert_eq!(net(&won), -FEE);
    let entry = won.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::System, "system:DEADLINE_PASSED")
    );
    assert_eq!(
        event_types(&stack, &a.id).await,
        vec![
            "dispute.created",
            "dispute.funds_withdrawn",
            "dispute.evidence_submitted",
            "dispute.funds_reinstated",
            "dispute.won"
        ]
    );

    // B: with the network's usual window, the network's WON decides; nothing moves again.
    let b = merchant_chargeback(&mut disputes, "ch_h1_b", "VISA-H1-B").await;
    let reversed = visa(&mut disputes, "VISA-H1-B", "r1", Net::ChargebackReversed)
        .await
        .dispute
        .unwrap();
    assert_eq!(
        at(&reversed),
        (Stage::Chargeback, Status::UnderReview),
        "a reversal before we answered is not a win either"
    );
    assert!(available(&reversed).is_empty());
    let won = visa(&mut disputes, "VISA-H1-B", "w1", Net::Won).await;
    assert!(won.applied);
    let won = won.dispute.unwrap();
    assert_eq!(at(&won), (Stage::Chargeback, Status::Won));
    assert_eq!((won.amount_won, won.amount_lost), (12_500, 0));
    assert_eq!(ledger(&won), ledger(&reversed));
    assert_eq!(net(&won), -FEE);
    let types = event_types(&stack, &b.id).await;
    assert_eq!(types.iter().filter(|t| *t == "dispute.won").count(), 1);
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "dispute.funds_reinstated")
            .count(),
        1
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_chargeback_without_right_to_respond_is_lost() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // New case, `response_allowed = false` (Stripe due_by=0, Adyen defendable=false).
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-H3-A", "c1", Net::Chargeback);
    event.response_allowed = Some(false);
    event.new_case = Some(merchant_case(3_000, "ch_h3_a"));
    let opened = record(&mut disputes, event).await.unwrap();
    assert!(opened.created && opened.applied);
    let a = opened.dispute.unwrap();
    assert_eq!(at(&a), (Stage::Chargeback, Status::Lost));
    // (amount_lost of a dispute opened already LOST: see
    // h3_new_case_without_right_to_respond_records_amount_lost)
    assert_eq!(a.amount_won, 0);
    assert_eq!(ledger(&a), vec![(Txn::Withdrawal, -3_000)]);
    assert_eq!(fee(&a), FEE);
    assert!(available(&a).is_empty());
    assert!(a.evidence_details.as_ref().unwrap().due_by.is_none());
    assert_eq!(
        event_types(&stack, &a.id).await,
        vec!["dispute.created", "dispute.funds_withdrawn", "dispute.lost"]
    );

    // A due time already past means the same, here on a retrieval request we were answering.
    let mut rr = network_event(
        dpb::CardNetwork::Visa,
        "VISA-H3-B",
        "r1",
        Net::RetrievalRequest,
    );
    rr.new_case = Some(merchant_case(2_000, "ch_h3_b"));
    record(&mut disputes, rr).await.unwrap();
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-H3-B", "c1", Net::Chargeback);
    event.due_by = Some(in_millis(-60_000));
    let b = record(&mut disputes, event).await.unwrap();
    assert!(b.applied);
    let b = b.dispute.unwrap();
    assert_eq!(at(&b), (Stage::Chargeback, Status::Lost));
    assert_eq!((b.amount_won, b.amount_lost), (0, 2_000));
    assert_eq!(ledger(&b), vec![(Txn::Withdrawal, -2_000)]);
    assert_eq!(fee(&b), FEE);

    // The sweeper never waits on them (there is no due date): no SYSTEM entry appears.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in [&a.id, &b.id] {
        let now = get_dispute(&mut disputes, id).await;
        assert_eq!(now.status(), Status::Lost);
        assert!(
            history(&now)
                .iter()
                .all(|(actor, _)| *actor != dpb::Actor::System),
            "{:?}",
            history(&now)
        );
    }
    // The tenant cannot defend them.
    let status = disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: a.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                customer_name: Some("Jane".into()),
                ..Default::default()
            }),
            submit: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    stack.stop().await;
}

/// The outcome amounts of a dispute that a CHARGEBACK without the right to respond opens
/// already LOST: the ledger withdrew the amount, so `amount_lost` must say so
/// (docs/lifecycle.md, H6 and "Money": a LOST dispute's withdrawn funds equal `amount_lost`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_new_case_without_right_to_respond_records_amount_lost() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-H3-N", "c1", Net::Chargeback);
    event.response_allowed = Some(false);
    event.new_case = Some(merchant_case(3_000, "ch_h3_n"));
    let opened = record(&mut disputes, event).await.unwrap().dispute.unwrap();
    assert_eq!(at(&opened), (Stage::Chargeback, Status::Lost));
    assert_eq!(ledger(&opened), vec![(Txn::Withdrawal, -3_000)]);
    assert_eq!(fee(&opened), FEE);
    assert_eq!((opened.amount_won, opened.amount_lost), (0, 3_000));
    let stored = get_dispute(&mut disputes, &opened.id).await;
    assert_eq!((stored.amount_won, stored.amount_lost), (0, 3_000));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h4_stage_aware_mapping() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // NEEDS_RESPONSE in three stages.
    let mut rr = network_event(
        dpb::CardNetwork::Visa,
        "VISA-H4-I",
        "r1",
        Net::RetrievalRequest,
    );
    rr.new_case = Some(merchant_case(1_000, "ch_h4"));
    let inquiry = record(&mut disputes, rr).await.unwrap().dispute.unwrap();
    let chargeback = merchant_chargeback(&mut disputes, "ch_h4", "VISA-H4-C").await;
    let pre_arb = merchant_chargeback(&mut disputes, "ch_h4", "VISA-H4-P").await;
    submit(&mut disputes, &pre_arb.id).await;
    let pre_arb = visa(&mut disputes, "VISA-H4-P", "p1", Net::PreArbitration)
        .await
        .dispute
        .unwrap();
    assert_eq!(at(&inquiry), (Stage::Inquiry, Status::NeedsResponse));
    assert_eq!(at(&chargeback), (Stage::Chargeback, Status::NeedsResponse));
    assert_eq!(at(&pre_arb), (Stage::PreArbitration, Status::NeedsResponse));

    // What may be done depends on the stage, not only on the status.
    assert_eq!(available(&inquiry), vec![Action::SubmitEvidence]);
    assert_eq!(
        available(&chargeback),
        vec![Action::Accept, Action::SubmitEvidence, Action::Close]
    );
    assert_eq!(
        available(&pre_arb),
        vec![Action::Accept, Action::SubmitEvidence, Action::Close]
    );
    let status = act(&mut disputes, &inquiry.id, Action::Accept)
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "ACTION_NOT_AVAILABLE");

    // Listing by status reports each with its stage; stage + status narrows it.
    let listed = disputes
        .list_disputes(dpb::ListDisputesRequest {
            charge: "ch_h4".into(),
            status: Status::NeedsResponse.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .disputes;
    let mut stages: Vec<_> = listed.iter().map(|d| (d.id.clone(), d.stage())).collect();
    stages.sort();
    let mut expected = vec![
        (inquiry.id.clone(), Stage::Inquiry),
        (chargeback.id.clone(), Stage::Chargeback),
        (pre_arb.id.clone(), Stage::PreArbitration),
    ];
    expected.sort();
    assert_eq!(stages, expected);
    let only = disputes
        .list_disputes(dpb::ListDisputesRequest {
            charge: "ch_h4".into(),
            status: Status::NeedsResponse.into(),
            stage: Stage::PreArbitration.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .disputes;
    assert_eq!(
        only.iter().map(|d| &d.id).collect::<Vec<_>>(),
        vec![&pre_arb.id]
    );

    // The same outcome keeps the stage it ended in, in the dispute, its history and events.
    let lost_cb = act(&mut disputes, &chargeback.id, Action::Accept)
        .await
        .unwrap();
    let lost_pa = act(&mut disputes, &pre_arb.id, Action::Accept)
        .await
        .unwrap();
    assert_eq!(at(&lost_cb), (Stage::Chargeback, Status::Lost));
    assert_eq!(at(&lost_pa), (Stage::PreArbitration, Status::Lost));
    for (dispute, stage) in [
        (&lost_cb, Stage::Chargeback),
        (&lost_pa, Stage::PreArbitration),
    ] {
        let entry = dispute.action_history.last().unwrap();
        assert_eq!((entry.stage(), entry.status()), (stage, Status::Lost));
        let events = event_payloads(&stack, &dispute.id).await;
        let (kind, payload) = events.last().unwrap();
        assert_eq!(kind, "dispute.lost");
        assert_eq!(at(&payload_dispute(payload)), (stage, Status::Lost));
    }

    // A missed deadline ends an inquiry CLOSED, a chargeback LOST (M14).
    let mut rr = network_event(
        dpb::CardNetwork::Visa,
        "VISA-H4-DI",
        "r1",
        Net::RetrievalRequest,
    );
    rr.due_by = Some(in_millis(1200));
    rr.new_case = Some(merchant_case(1_000, "ch_h4_due"));
    let inquiry = record(&mut disputes, rr).await.unwrap().dispute.unwrap();
    let mut cb = merchant_dispute("", "ch_h4_due");
    cb.due_by = Some(in_millis(1200));
    let chargeback = create(&mut disputes, cb).await;
    let closed = wait_for_status(
        &mut disputes,
        &inquiry.id,
        Status::Closed,
        Duration::from_secs(5),
    )
    .await;
    let lost = wait_for_status(
        &mut disputes,
        &chargeback.id,
        Status::Lost,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(closed.stage(), Stage::Inquiry);
    assert!(ledger(&closed).is_empty());
    assert_eq!((closed.amount_won, closed.amount_lost), (0, 0));
    assert_eq!(lost.stage(), Stage::Chargeback);
    assert_eq!(lost.amount_lost, 12_500);
    assert_eq!(
        event_types(&stack, &inquiry.id).await,
        vec![
            "dispute.created",
            "dispute.defense_period_ended",
            "dispute.closed"
        ]
    );
    stack.stop().await;
}
