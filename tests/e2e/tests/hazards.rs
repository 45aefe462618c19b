//! The hazards of docs/lifecycle.md ("Hazards", H1–H9), one test each, end to end over gRPC.
//! Other rule ids (M…, I…) are those of docs/lifecycle.md too.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use dpb::BalanceTransactionType as Txn;
use dpb::DisputeActionType as Action;
use dpb::DisputeStage as Stage;
use dpb::DisputeStatus as Status;
use dpb::NetworkEventType as Net;
use tonic::Code;

use crate::fixtures::*;

fn at(dispute: &dpb::Dispute) -> (Stage, Status) {
    (dispute.stage(), dispute.status())
}

/// A merchant-side Visa chargeback opened by CreateDispute with a network case id.
async fn merchant_chargeback(
    client: &mut harness::DisputesClient,
    charge: &str,
    case: &str,
) -> dpb::Dispute {
    let mut request = merchant_dispute("", charge);
    request.network_case_id = case.to_owned();
    create(client, request).await
}

async fn visa(
    client: &mut harness::DisputesClient,
    case: &str,
    event_id: &str,
    kind: Net,
) -> dpb::RecordNetworkEventResponse {
    record(
        client,
        network_event(dpb::CardNetwork::Visa, case, event_id, kind),
    )
    .await
    .unwrap()
}

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
async fn h2_funds_events_never_change_status() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let case = "VISA-H2";

    // Notified: no funds yet (M2).
    let mut notified = network_event(dpb::CardNetwork::Visa, case, "n1", Net::ChargebackNotified);
    notified.new_case = Some(merchant_case(9_000, "ch_h2"));
    let dispute = record(&mut disputes, notified)
        .await
        .unwrap()
        .dispute
        .unwrap();
    assert_eq!(at(&dispute), (Stage::Chargeback, Status::NeedsResponse));
    assert!(ledger(&dispute).is_empty());
    // The merchant answers before the funds move.
    let answered = submit(&mut disputes, &dispute.id).await;
    assert_eq!(at(&answered), (Stage::Chargeback, Status::UnderReview));

    // The chargeback lands: a withdrawal, not a loss; still UNDER_REVIEW.
    let landed = visa(&mut disputes, case, "c1", Net::Chargeback).await;
    assert!(landed.applied);
    let landed = landed.dispute.unwrap();
    assert_eq!(at(&landed), (Stage::Chargeback, Status::UnderReview));
    assert_eq!(ledger(&landed), vec![(Txn::Withdrawal, -9_000)]);
    assert_eq!(fee(&landed), FEE);
    assert_eq!((landed.amount_won, landed.amount_lost), (0, 0));
    assert_eq!(landed.action_history.last().unwrap().amount, 9_000);

    // The funds come back: a reinstatement, not a win; still UNDER_REVIEW.
    let back = visa(&mut disputes, case, "r1", Net::ChargebackReversed)
        .await
        .dispute
        .unwrap();
    assert_eq!(at(&back), (Stage::Chargeback, Status::UnderReview));
    assert_eq!(
        ledger(&back),
        vec![(Txn::Withdrawal, -9_000), (Txn::Reinstatement, 9_000)]
    );
    assert_eq!(fee(&back), FEE);
    assert_eq!((back.amount_won, back.amount_lost), (0, 0));
    assert_eq!(
        event_types(&stack, &dispute.id).await,
        vec![
            "dispute.created",
            "dispute.evidence_submitted",
            "dispute.funds_withdrawn",
            "dispute.funds_reinstated"
        ],
        "funds events only: no dispute.won or dispute.lost"
    );
    // Every history entry of the funds movements kept the status.
    for entry in &back.action_history[2..] {
        assert_eq!(entry.status(), Status::UnderReview, "{}", entry.what);
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h5_provisional_credit_once_in_any_open_issuer_stage() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = issuer_dispute("txn_h5");
    request.date_customer_reported = today();
    request.network_case_id = "MC-H5".into();
    let dispute = create(&mut disputes, request).await;
    assert!(available(&dispute).contains(&Action::ProvisionalCredit));

    // Still available after the chargeback is filed (CHARGEBACK / UNDER_REVIEW) …
    let charged = act(&mut disputes, &dispute.id, Action::Chargeback)
        .await
        .unwrap();
    assert_eq!(at(&charged), (Stage::Chargeback, Status::UnderReview));
    assert!(available(&charged).contains(&Action::ProvisionalCredit));
    // … and in REPRESENTMENT (seed 002), where it is taken.
    let represented = record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            "MC-H5",
            "rep",
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
    assert!(available(&represented).contains(&Action::ProvisionalCredit));
    let credited = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            amount: 4_000,
            ..action_request(&dispute.id, Action::ProvisionalCredit)
        },
    )
    .await
    .unwrap();
    assert_eq!(at(&credited), (Stage::Representment, Status::NeedsResponse));
    assert_eq!(credited.credit_status(), dpb::CreditStatus::Provisional);
    assert_eq!(ledger(&credited), vec![(Txn::ProvisionalCredit, 4_000)]);
    let entry = credited.action_history.last().unwrap();
    assert_eq!(
        (entry.what.as_str(), entry.amount, entry.stage()),
        ("PROVISIONAL_CREDIT", 4_000, Stage::Representment)
    );

    // Once.
    assert!(!available(&credited).contains(&Action::ProvisionalCredit));
    let status = act(&mut disputes, &dispute.id, Action::ProvisionalCredit)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "ACTION_NOT_AVAILABLE");
    assert_eq!(
        get_dispute(&mut disputes, &dispute.id).await.version,
        credited.version
    );

    // Pre-arbitration keeps it (UNDER_REVIEW, credit still provisional) and a final
    // outcome ends it.
    let filed = act(&mut disputes, &dispute.id, Action::PreArbitration)
        .await
        .unwrap();
    assert_eq!(at(&filed), (Stage::PreArbitration, Status::UnderReview));
    assert_eq!(filed.credit_status(), dpb::CreditStatus::Provisional);
    let won = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Mastercard, "MC-H5", "won", Net::Won),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(at(&won), (Stage::PreArbitration, Status::Won));
    assert_eq!(won.credit_status(), dpb::CreditStatus::Final);
    assert_eq!((won.amount_won, won.amount_lost), (4_200, 0));
    assert_eq!(
        ledger(&won),
        vec![(Txn::ProvisionalCredit, 4_000), (Txn::Reinstatement, 200)],
        "the provisional 4000 becomes final; the 200 not yet credited is credited now"
    );
    assert_eq!(net(&won), 4_200);
    assert!(available(&won).is_empty());

    // Never on the merchant side.
    let merchant = create(&mut disputes, merchant_dispute("", "ch_h5")).await;
    assert!(!available(&merchant).contains(&Action::ProvisionalCredit));
    let status = act(&mut disputes, &merchant.id, Action::ProvisionalCredit)
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "ACTION_NOT_AVAILABLE");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h6_partial_outcome_amounts_are_exact() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // Merchant WON in part: 8000 of 12500 back.
    let a = merchant_chargeback(&mut disputes, "ch_h6_a", "VISA-H6-A").await;
    submit(&mut disputes, &a.id).await;
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-H6-A", "w1", Net::Won);
    event.amount_won = 8_000;
    let won = record(&mut disputes, event).await.unwrap().dispute.unwrap();
    assert_eq!(at(&won), (Stage::Chargeback, Status::Won));
    assert_eq!((won.amount_won, won.amount_lost), (8_000, 4_500));
    assert_eq!(
        ledger(&won),
        vec![(Txn::Withdrawal, -12_500), (Txn::Reinstatement, 8_000)]
    );
    assert_eq!(fee(&won), FEE);
    assert_eq!(net(&won), -4_500 - FEE);
    assert_eq!(won.action_history.last().unwrap().amount, 8_000);

    // Merchant LOST in part: 3000 of 12500 back, both amounts given.
    let b = merchant_chargeback(&mut disputes, "ch_h6_b", "VISA-H6-B").await;
    submit(&mut disputes, &b.id).await;
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-H6-B", "l1", Net::Lost);
    event.amount_won = 3_000;
    event.amount_lost = 9_500;
    let lost = record(&mut disputes, event).await.unwrap().dispute.unwrap();
    assert_eq!(at(&lost), (Stage::Chargeback, Status::Lost));
    assert_eq!((lost.amount_won, lost.amount_lost), (3_000, 9_500));
    assert_eq!(
        ledger(&lost),
        vec![(Txn::Withdrawal, -12_500), (Txn::Reinstatement, 3_000)]
    );
    assert_eq!(fee(&lost), FEE);
    assert_eq!(net(&lost), -9_500 - FEE);
    assert_eq!(lost.action_history.last().unwrap().amount, 9_500);

    // Issuer partial write-off after a full provisional credit: the cardholder keeps 1000.
    let mut request = issuer_dispute("txn_h6");
    request.date_customer_reported = today();
    let c = create(&mut disputes, request).await;
    act(&mut disputes, &c.id, Action::ProvisionalCredit)
        .await
        .unwrap();
    let written_off = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            amount: 1_000,
            ..action_request(&c.id, Action::WriteOff)
        },
    )
    .await
    .unwrap();
    assert_eq!(at(&written_off), (Stage::Inquiry, Status::Won));
    assert_eq!(
        (written_off.amount_won, written_off.amount_lost),
        (1_000, 3_200)
    );
    assert_eq!(written_off.credit_status(), dpb::CreditStatus::Final);
    assert_eq!(
        ledger(&written_off),
        vec![
            (Txn::ProvisionalCredit, 4_200),
            (Txn::ProvisionalCreditReversal, -3_200)
        ]
    );
    assert_eq!(net(&written_off), 1_000);

    // Issuer partial write-off with no provisional credit: the issuer funds exactly 1500.
    let mut request = issuer_dispute("txn_h6_b");
    request.date_customer_reported = today();
    let d = create(&mut disputes, request).await;
    let status = disputes
        .create_action(dpb::CreateActionRequest {
            amount: 4_201,
            ..action_request(&d.id, Action::WriteOff)
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["amount"]);
    let written_off = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            amount: 1_500,
            ..action_request(&d.id, Action::WriteOff)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (written_off.amount_won, written_off.amount_lost),
        (1_500, 2_700)
    );
    assert_eq!(ledger(&written_off), vec![(Txn::WriteOff, 1_500)]);

    // Amounts that do not add up, or exceed the dispute, are refused and change nothing.
    let e = merchant_chargeback(&mut disputes, "ch_h6_e", "VISA-H6-E").await;
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-H6-E", "w1", Net::Won);
    event.amount_won = 8_000;
    event.amount_lost = 8_000;
    let status = record(&mut disputes, event).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["amount_won"]);
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-H6-E", "w1", Net::Lost);
    event.amount_lost = 12_501;
    let status = record(&mut disputes, event).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["amount_lost"]);
    assert_eq!(get_dispute(&mut disputes, &e.id).await.version, e.version);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h7_several_disputes_per_charge() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let soon = chrono::Utc::now() + chrono::Duration::days(2);
    let later = chrono::Utc::now() + chrono::Duration::days(20);

    let mut first = merchant_dispute("", "ch_h7");
    first.amount = 12_000;
    first.original_amount = 20_000;
    first.due_by = Some(timestamp(soon));
    let first = create(&mut disputes, first).await;
    let mut second = merchant_dispute("", "ch_h7");
    second.amount = 8_000;
    second.original_amount = 20_000;
    second.due_by = Some(timestamp(later));
    let second = create(&mut disputes, second).await;
    // A third one would claim more than the charge.
    let mut third = merchant_dispute("", "ch_h7");
    third.amount = 1;
    let status = disputes.create_dispute(third).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "AMOUNT_EXCEEDS_ORIGINAL");

    let list = |due: chrono::DateTime<chrono::Utc>| dpb::ListDisputesRequest {
        charge: "ch_h7".into(),
        due_before: Some(timestamp(due)),
        ..Default::default()
    };
    let both = disputes
        .list_disputes(list(later + chrono::Duration::hours(1)))
        .await
        .unwrap()
        .into_inner()
        .disputes;
    assert_eq!(
        both.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec![second.id.as_str(), first.id.as_str()],
        "both, newest first"
    );
    assert!(both.iter().map(|d| d.amount).sum::<i64>() <= 20_000);
    let due_first = disputes
        .list_disputes(list(soon + chrono::Duration::hours(1)))
        .await
        .unwrap()
        .into_inner()
        .disputes;
    assert_eq!(
        due_first.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec![first.id.as_str()],
        "the one due first shows on its own"
    );
    // Each has its own deadline and its own money.
    for (dispute, amount) in [(&first, 12_000), (&second, 8_000)] {
        assert_eq!(ledger(dispute), vec![(Txn::Withdrawal, -amount)]);
        assert_eq!(fee(dispute), FEE);
    }
    // Deciding one leaves the other open and due.
    act(&mut disputes, &first.id, Action::Accept).await.unwrap();
    let still_due = disputes
        .list_disputes(list(later + chrono::Duration::hours(1)))
        .await
        .unwrap()
        .into_inner()
        .disputes;
    assert_eq!(
        still_due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec![second.id.as_str()]
    );
    // A lost dispute still counts against the charge.
    let mut fourth = merchant_dispute("", "ch_h7");
    fourth.amount = 1;
    let status = disputes.create_dispute(fourth).await.unwrap_err();
    assert_eq!(error_reason(&status), "AMOUNT_EXCEEDS_ORIGINAL");

    // A network CHARGEBACK may restate the amount (M3), but never past what the charge's
    // other disputes leave: 15000 fits the charge alone, not next to another 8000.
    let mut rr = network_event(
        dpb::CardNetwork::Visa,
        "VISA-H7-R",
        "r1",
        Net::RetrievalRequest,
    );
    rr.new_case = Some(dpb::CreateDisputeRequest {
        original_amount: 20_000,
        ..merchant_case(12_000, "ch_h7_r")
    });
    let restated = record(&mut disputes, rr).await.unwrap().dispute.unwrap();
    let mut other = merchant_dispute("", "ch_h7_r");
    other.amount = 8_000;
    create(&mut disputes, other).await;
    let mut chargeback = network_event(dpb::CardNetwork::Visa, "VISA-H7-R", "c1", Net::Chargeback);
    chargeback.amount = 15_000;
    let status = record(&mut disputes, chargeback.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "AMOUNT_EXCEEDS_ORIGINAL");
    let unchanged = get_dispute(&mut disputes, &restated.id).await;
    assert_eq!(unchanged.version, restated.version);
    assert_eq!(
        (unchanged.amount, unchanged.stage()),
        (12_000, Stage::Inquiry)
    );
    // The refusal is not remembered: the corrected event (same id) applies.
    chargeback.amount = 7_000;
    let charged = record(&mut disputes, chargeback).await.unwrap();
    assert!(charged.applied);
    let charged = charged.dispute.unwrap();
    assert_eq!(charged.amount, 7_000);
    assert_eq!(ledger(&charged), vec![(Txn::Withdrawal, -7_000)]);
    assert_eq!(fee(&charged), FEE);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h8_mastercard_codes_skip_pre_arbitration() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // 4808, 4870, 4871: CHARGEBACK / UNDER_REVIEW → ARBITRATION directly.
    for code in ["4808", "4870", "4871"] {
        let case = format!("MC-H8-{code}");
        let mut request = merchant_dispute("", &format!("ch_h8_{code}"));
        request.network = dpb::CardNetwork::Mastercard.into();
        request.network_reason_code = code.into();
        request.network_case_id = case.clone();
        let dispute = create(&mut disputes, request).await;
        submit(&mut disputes, &dispute.id).await;
        let arbitration = record(
            &mut disputes,
            network_event(dpb::CardNetwork::Mastercard, &case, "arb", Net::Arbitration),
        )
        .await
        .unwrap();
        assert!(arbitration.applied, "{code}");
        let arbitration = arbitration.dispute.unwrap();
        assert_eq!(
            at(&arbitration),
            (Stage::Arbitration, Status::NeedsResponse),
            "{code}"
        );
        assert!(
            arbitration
                .evidence_details
                .as_ref()
                .unwrap()
                .due_by
                .is_some()
        );
        assert_eq!(
            available(&arbitration),
            vec![Action::Accept, Action::SubmitEvidence, Action::Close],
            "{code}"
        );
        assert_eq!(
            arbitration.action_history.last().unwrap().what,
            "network:ARBITRATION"
        );
    }

    // Other codes (and 4808 on another network) must pass through pre-arbitration.
    for (network, code) in [
        (dpb::CardNetwork::Mastercard, "4837"),
        (dpb::CardNetwork::Mastercard, "4853"),
        (dpb::CardNetwork::Visa, "4808"),
    ] {
        let case = format!("H8-{network:?}-{code}");
        let mut request = merchant_dispute("", &format!("ch_h8_{code}"));
        request.network = network.into();
        request.network_reason_code = code.into();
        request.network_case_id = case.clone();
        let dispute = create(&mut disputes, request).await;
        let submitted = submit(&mut disputes, &dispute.id).await;
        let status = record(
            &mut disputes,
            network_event(network, &case, "arb", Net::Arbitration),
        )
        .await
        .unwrap_err();
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{code}: {status:?}"
        );
        assert_eq!(error_reason(&status), "NETWORK_EVENT_NOT_APPLICABLE");
        let unchanged = get_dispute(&mut disputes, &dispute.id).await;
        assert_eq!(unchanged.version, submitted.version);
        assert_eq!(at(&unchanged), (Stage::Chargeback, Status::UnderReview));
        // Once pre-arbitration is recorded and answered, the refused event (same id) applies:
        // a refusal is not remembered.
        record(
            &mut disputes,
            network_event(network, &case, "pre", Net::PreArbitration),
        )
        .await
        .unwrap();
        submit(&mut disputes, &dispute.id).await;
        let arbitration = record(
            &mut disputes,
            network_event(network, &case, "arb", Net::Arbitration),
        )
        .await
        .unwrap();
        assert!(arbitration.applied);
        assert_eq!(
            at(arbitration.dispute.as_ref().unwrap()),
            (Stage::Arbitration, Status::NeedsResponse)
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h9_out_of_order_and_duplicate_events() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let case = "VISA-H9";

    let mut rr = network_event(dpb::CardNetwork::Visa, case, "e1-rr", Net::RetrievalRequest);
    rr.new_case = Some(merchant_case(6_000, "ch_h9"));
    let opened = record(&mut disputes, rr.clone()).await.unwrap();
    assert!(opened.created);
    let id = opened.dispute.unwrap().id;

    // The same event delivered twice: the second is not applied and changes nothing.
    let cb = network_event(dpb::CardNetwork::Visa, case, "e2-cb", Net::Chargeback);
    let first = record(&mut disputes, cb.clone()).await.unwrap();
    assert!(first.applied);
    let first = first.dispute.unwrap();
    let again = record(&mut disputes, cb.clone()).await.unwrap();
    assert!(!again.applied && !again.created);
    assert_eq!(again.dispute.as_ref().unwrap().version, first.version);
    assert_eq!(get_dispute(&mut disputes, &id).await.version, first.version);
    // Redelivering the opening event neither applies nor opens a second dispute.
    let reopened = record(&mut disputes, rr).await.unwrap();
    assert!(!reopened.applied && !reopened.created);
    assert_eq!(reopened.dispute.unwrap().id, id);

    // 20 concurrent deliveries of one new event: exactly one applies.
    submit(&mut disputes, &id).await;
    let pre_arb = network_event(dpb::CardNetwork::Visa, case, "e3-pa", Net::PreArbitration);
    let mut calls = Vec::new();
    for _ in 0..20 {
        let mut client = disputes.clone();
        let request = pre_arb.clone();
        calls.push(tokio::spawn(async move {
            client.record_network_event(request).await
        }));
    }
    let mut applied = 0;
    for call in calls {
        if call.await.unwrap().unwrap().into_inner().applied {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    let current = get_dispute(&mut disputes, &id).await;
    assert_eq!(at(&current), (Stage::PreArbitration, Status::NeedsResponse));
    assert_eq!(
        history(&current)
            .iter()
            .filter(|(_, what)| what == "network:PRE_ARBITRATION")
            .count(),
        1
    );

    // Older events arriving late (new ids): stale, no move backwards, no money.
    for (event_id, kind) in [
        ("e0-notified", Net::ChargebackNotified),
        ("e2b-cb", Net::Chargeback),
        ("e0-rr", Net::RetrievalRequest),
        ("e2c-reversed", Net::ChargebackReversed),
    ] {
        let late = record(
            &mut disputes,
            network_event(dpb::CardNetwork::Visa, case, event_id, kind),
        )
        .await
        .unwrap();
        assert!(!late.applied, "{kind:?}");
        let after = get_dispute(&mut disputes, &id).await;
        assert_eq!(after.version, current.version, "{kind:?}");
        assert_eq!(at(&after), (Stage::PreArbitration, Status::NeedsResponse));
        assert_eq!(ledger(&after), ledger(&current));
    }
    // An event from further ahead with an earlier step missing is refused (redeliver later).
    let status = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, case, "e5-arb", Net::Arbitration),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "NETWORK_EVENT_NOT_APPLICABLE");

    // After the outcome: the same outcome again is a duplicate; the opposite is a conflict.
    let won = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, case, "e6-won", Net::Won),
    )
    .await
    .unwrap();
    assert!(won.applied);
    let won = won.dispute.unwrap();
    assert_eq!(at(&won), (Stage::PreArbitration, Status::Won));
    let dup = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, case, "e6b-won", Net::Won),
    )
    .await
    .unwrap();
    assert!(!dup.applied);
    let status = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, case, "e7-lost", Net::Lost),
    )
    .await
    .unwrap_err();
    assert_eq!(error_reason(&status), "CONFLICTING_OUTCOME");
    for (event_id, kind) in [
        ("e8-cb", Net::Chargeback),
        ("e8-rev", Net::ChargebackReversed),
    ] {
        let late = record(
            &mut disputes,
            network_event(dpb::CardNetwork::Visa, case, event_id, kind),
        )
        .await
        .unwrap();
        assert!(
            !late.applied,
            "{kind:?} does not reopen a dispute won in pre-arbitration"
        );
    }
    let after = get_dispute(&mut disputes, &id).await;
    assert_eq!(after.version, won.version);
    assert_eq!(ledger(&after), ledger(&won));
    assert_eq!(
        event_types(&stack, &id)
            .await
            .iter()
            .filter(|t| *t == "dispute.won")
            .count(),
        1
    );
    stack.stop().await;
}
