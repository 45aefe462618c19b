//! Hazards H8 and H9: network events. Mastercard reason codes 4808, 4870 and 4871 go from
//! CHARGEBACK straight to ARBITRATION (H8); an event that is out of order, stale or repeated
//! changes nothing or is refused (H9).

use disputes_proto::disputes_v1 as dpb;
use dpb::DisputeActionType as Action;
use dpb::DisputeStage as Stage;
use dpb::DisputeStatus as Status;
use dpb::NetworkEventType as Net;
use tonic::Code;

use super::at;
use crate::fixtures::*;

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
