//! Issue 11, points 3 and 4: the issuer's filing gets the network's case id, and
//! RecordNetworkEvent uses what the network sends (`occur_time`, `network_reason_code`).

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

/// An issuer-side Mastercard dispute reported today (every Reg E window open), without a
/// network case id: the bank learns it only when it files the chargeback.
async fn issuer_without_case(
    client: &mut harness::DisputesClient,
    transaction: &str,
) -> dpb::Dispute {
    let mut request = issuer_dispute(transaction);
    request.date_customer_reported = today();
    create(client, request).await
}

/// CreateAction CHARGEBACK with the network's case id and reference.
fn chargeback_with_case(dispute_id: &str, case: &str, reference: &str) -> dpb::CreateActionRequest {
    dpb::CreateActionRequest {
        network_case_id: case.to_owned(),
        network_reference: reference.to_owned(),
        ..action_request(dispute_id, Action::Chargeback)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_3_chargeback_takes_the_network_case_id() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let case = "MC-P3-1";

    // Synctera: create (issuer side) → provisional credit → chargeback with the case id.
    let dispute = issuer_without_case(&mut disputes, "txn_p3_flow").await;
    assert!(dispute.network_case_id.is_empty());
    let credited = act(&mut disputes, &dispute.id, Action::ProvisionalCredit)
        .await
        .unwrap();
    assert_eq!(ledger(&credited), vec![(Txn::ProvisionalCredit, 4_200)]);

    // Before the filing the network's events for the case reach no dispute.
    let early = record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            case,
            "early",
            Net::Representment,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(early.code(), Code::InvalidArgument, "{early:?}");
    assert_eq!(violated_fields(&early), vec!["new_case"]);

    let charged = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            message: "filed with Mastercom".into(),
            ..chargeback_with_case(&dispute.id, case, "ARN-74-0001")
        },
    )
    .await
    .unwrap();
    assert_eq!(at(&charged), (Stage::Chargeback, Status::UnderReview));
    assert_eq!(charged.network_case_id, case);
    let entry = charged.action_history.last().unwrap();
    assert_eq!(entry.what, "CHARGEBACK");
    assert!(
        entry.message.contains("filed with Mastercom")
            && entry.message.contains("network case MC-P3-1")
            && entry.message.contains("network reference ARN-74-0001"),
        "{}",
        entry.message
    );
    assert_eq!(
        get_dispute(&mut disputes, &dispute.id)
            .await
            .network_case_id,
        case
    );

    // The network's REPRESENTMENT on that case reaches the dispute.
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
    .unwrap();
    assert!(represented.applied && !represented.created);
    let represented = represented.dispute.unwrap();
    assert_eq!(represented.id, dispute.id);
    assert_eq!(
        at(&represented),
        (Stage::Representment, Status::NeedsResponse)
    );
    assert!(available(&represented).contains(&Action::AcceptRepresentment));

    // ACCEPT_REPRESENTMENT → LOST with the provisional credit reversed.
    let lost = act(&mut disputes, &dispute.id, Action::AcceptRepresentment)
        .await
        .unwrap();
    assert_eq!(at(&lost), (Stage::Representment, Status::Lost));
    assert_eq!(lost.credit_status(), dpb::CreditStatus::Reversed);
    assert_eq!((lost.amount_won, lost.amount_lost), (0, 4_200));
    assert_eq!(
        ledger(&lost),
        vec![
            (Txn::ProvisionalCredit, 4_200),
            (Txn::ProvisionalCreditReversal, -4_200)
        ]
    );
    assert_eq!(net(&lost), 0, "the cardholder keeps nothing");
    assert_eq!(
        history(&lost)
            .iter()
            .map(|(_, what)| what.as_str())
            .collect::<Vec<_>>(),
        vec![
            "created",
            "PROVISIONAL_CREDIT",
            "CHARGEBACK",
            "network:REPRESENTMENT",
            "ACCEPT_REPRESENTMENT"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_3_network_case_id_is_unique_and_only_for_filings() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let first = issuer_without_case(&mut disputes, "txn_p3_a").await;
    let second = issuer_without_case(&mut disputes, "txn_p3_b").await;
    apply_action(
        &mut disputes,
        chargeback_with_case(&first.id, "MC-P3-U", ""),
    )
    .await
    .unwrap();

    // Another dispute holds the case: ALREADY_EXISTS, and nothing changes.
    let taken = apply_action(
        &mut disputes,
        chargeback_with_case(&second.id, "MC-P3-U", ""),
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let unchanged = get_dispute(&mut disputes, &second.id).await;
    assert_eq!(at(&unchanged), (Stage::Inquiry, Status::NeedsResponse));
    assert!(unchanged.network_case_id.is_empty());
    assert_eq!(unchanged.version, second.version);

    // The same case id under another tenant is that tenant's own.
    let mut other = stack.disputes_of("globex").await;
    let theirs = issuer_without_case(&mut other, "txn_p3_g").await;
    let filed = apply_action(&mut other, chargeback_with_case(&theirs.id, "MC-P3-U", ""))
        .await
        .unwrap();
    assert_eq!(filed.network_case_id, "MC-P3-U");

    // Only filings carry network identifiers.
    let deny = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            network_case_id: "MC-P3-X".into(),
            ..action_request(&second.id, Action::Deny)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(deny.code(), Code::InvalidArgument, "{deny:?}");
    assert_eq!(violated_fields(&deny), vec!["network_case_id"]);

    // A dispute keeps the case id it has: a later filing naming another is refused.
    let mut request = issuer_dispute("txn_p3_c");
    request.date_customer_reported = today();
    request.network_case_id = "MC-P3-C".into();
    let known = create(&mut disputes, request).await;
    let other_case = apply_action(
        &mut disputes,
        chargeback_with_case(&known.id, "MC-P3-D", ""),
    )
    .await
    .unwrap_err();
    assert_eq!(
        precondition_type(&other_case),
        "NETWORK_CASE_ID_MISMATCH",
        "{other_case:?}"
    );
    let same_case = apply_action(
        &mut disputes,
        chargeback_with_case(&known.id, "MC-P3-C", ""),
    )
    .await
    .unwrap();
    assert_eq!(at(&same_case), (Stage::Chargeback, Status::UnderReview));
}

/// The `valid_until` of an available action.
fn valid_until(dispute: &dpb::Dispute, action: Action) -> Option<prost_types::Timestamp> {
    dispute
        .available_actions
        .iter()
        .find(|a| a.action() == action)
        .and_then(|a| a.valid_until)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_4_occur_time_starts_the_network_window() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let case = "MC-P4-1";
    let dispute = issuer_without_case(&mut disputes, "txn_p4_window").await;
    apply_action(&mut disputes, chargeback_with_case(&dispute.id, case, ""))
        .await
        .unwrap();

    // A time in the future beyond the allowed clock skew: INVALID_ARGUMENT on occur_time.
    let mut future = network_event(
        dpb::CardNetwork::Mastercard,
        case,
        "rep-f",
        Net::Representment,
    );
    future.occur_time = Some(in_millis(10 * 60 * 1000));
    let refused = record(&mut disputes, future).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(violated_fields(&refused), vec!["occur_time"]);
    assert_eq!(
        at(&get_dispute(&mut disputes, &dispute.id).await),
        (Stage::Chargeback, Status::UnderReview),
        "nothing applied"
    );

    // A representment that occurred 40 days ago: the 45-day window counts from then.
    let occurred = chrono::Utc::now() - chrono::Duration::days(40);
    let mut late = network_event(
        dpb::CardNetwork::Mastercard,
        case,
        "rep-1",
        Net::Representment,
    );
    late.occur_time = Some(timestamp(occurred));
    let represented = record(&mut disputes, late).await.unwrap();
    assert!(represented.applied);
    let represented = represented.dispute.unwrap();
    assert_eq!(
        at(&represented),
        (Stage::Representment, Status::NeedsResponse)
    );
    let expected = dispute_core::domain::deadlines::issuer_pre_arbitration_due(occurred);
    assert_eq!(
        valid_until(&represented, Action::PreArbitration),
        Some(timestamp(expected))
    );
    let from_arrival =
        dispute_core::domain::deadlines::issuer_pre_arbitration_due(chrono::Utc::now());
    assert!(expected < from_arrival - chrono::Duration::days(39));

    // A little skew ahead of our clock is accepted and counts as now.
    let second = issuer_without_case(&mut disputes, "txn_p4_skew").await;
    apply_action(
        &mut disputes,
        chargeback_with_case(&second.id, "MC-P4-2", ""),
    )
    .await
    .unwrap();
    let before = chrono::Utc::now();
    let mut skewed = network_event(
        dpb::CardNetwork::Mastercard,
        "MC-P4-2",
        "rep-s",
        Net::Representment,
    );
    skewed.occur_time = Some(in_millis(2 * 60 * 1000));
    let skewed = record(&mut disputes, skewed)
        .await
        .unwrap()
        .dispute
        .unwrap();
    let after = chrono::Utc::now();
    let due = valid_until(&skewed, Action::PreArbitration).unwrap();
    let window = |t| {
        timestamp(dispute_core::domain::deadlines::issuer_pre_arbitration_due(
            t,
        ))
    };
    assert!(
        due == window(before) || due == window(after),
        "{due:?} counts from arrival"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_4_network_reason_code_updates_the_dispute_and_applies_h8() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // A Mastercard chargeback without a reason code: ARBITRATION needs pre-arbitration (H8).
    let mut opening = network_event(
        dpb::CardNetwork::Mastercard,
        "MC-P4-H8",
        "cb",
        Net::Chargeback,
    );
    opening.new_case = Some(merchant_case(5_000, "ch_p4_h8"));
    let opened = record(&mut disputes, opening)
        .await
        .unwrap()
        .dispute
        .unwrap();
    assert!(opened.network_reason_code.is_empty());
    submit(&mut disputes, &opened.id).await;
    let refused = record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            "MC-P4-H8",
            "arb-0",
            Net::Arbitration,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(
        precondition_type(&refused),
        "NETWORK_EVENT_NOT_APPLICABLE",
        "{refused:?}"
    );

    // The network's ARBITRATION carries 4808: the dispute takes the code and skips
    // pre-arbitration.
    let mut coded = network_event(
        dpb::CardNetwork::Mastercard,
        "MC-P4-H8",
        "arb-1",
        Net::Arbitration,
    );
    coded.network_reason_code = "4808".into();
    let arbitration = record(&mut disputes, coded).await.unwrap();
    assert!(arbitration.applied);
    let arbitration = arbitration.dispute.unwrap();
    assert_eq!(arbitration.stage(), Stage::Arbitration);
    assert_eq!(arbitration.network_reason_code, "4808");
    assert_eq!(
        get_dispute(&mut disputes, &opened.id)
            .await
            .network_reason_code,
        "4808"
    );

    // A new case takes the reason code of the event that opens it.
    let mut opening = network_event(dpb::CardNetwork::Visa, "VISA-P4-NEW", "cb", Net::Chargeback);
    opening.network_reason_code = "10.4".into();
    opening.new_case = Some(merchant_case(3_000, "ch_p4_new"));
    let created = record(&mut disputes, opening).await.unwrap();
    assert!(created.created);
    assert_eq!(created.dispute.unwrap().network_reason_code, "10.4");

    // Too long a code is INVALID_ARGUMENT naming it.
    let mut bad = network_event(dpb::CardNetwork::Visa, "VISA-P4-NEW", "x", Net::Won);
    bad.network_reason_code = "1".repeat(17);
    let refused = record(&mut disputes, bad).await.unwrap_err();
    assert_eq!(violated_fields(&refused), vec!["network_reason_code"]);
}
