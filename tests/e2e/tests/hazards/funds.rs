//! Hazards H2, H5, H6 and H7: funds and amounts. Funds events never change the status (H2);
//! provisional credit is given once, in any open issuer stage (H5); partial outcome amounts
//! are exact and the ledger follows them (H6); several disputes of one charge never exceed
//! its original amount (H7).

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
