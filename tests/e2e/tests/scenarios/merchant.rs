//! The merchant side's flows end to end: seed 000 (a PSP retrieval request, then a chargeback
//! defended with evidence, to won), Stripe's staged then submitted evidence, Stripe's close
//! (accept: lost), and seed 004's money events. Rule ids (M…) are those of docs/lifecycle.md.

use std::collections::BTreeMap;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use dpb::BalanceTransactionType as Txn;
use dpb::DisputeActionType as Action;
use dpb::NetworkEventType as Net;
use tonic::Code;

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_retrieval_request_to_won() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let case = "VISA-000";

    // Retrieval request: the case is new, so the event opens the dispute (M1); no funds move.
    let mut request = network_event(
        dpb::CardNetwork::Visa,
        case,
        "evt-rr",
        Net::RetrievalRequest,
    );
    request.new_case = Some(dpb::CreateDisputeRequest {
        reason: dpb::DisputeReason::ProductNotReceived.into(),
        ..merchant_case(12_500, "ch_000")
    });
    let opened = record(&mut disputes, request).await.unwrap();
    assert!(opened.created && opened.applied);
    let dispute = opened.dispute.unwrap();
    assert_eq!(dispute.side(), dpb::DisputeSide::Merchant);
    assert_eq!(dispute.stage(), dpb::DisputeStage::Inquiry);
    assert_eq!(dispute.status(), dpb::DisputeStatus::NeedsResponse);
    assert_eq!(dispute.network(), dpb::CardNetwork::Visa);
    assert_eq!(dispute.network_case_id, case);
    assert_eq!((dispute.amount, dispute.currency.as_str()), (12_500, "USD"));
    assert_eq!(dispute.reason(), dpb::DisputeReason::ProductNotReceived);
    assert!(
        ledger(&dispute).is_empty(),
        "a retrieval request moves no funds"
    );
    assert_eq!(
        history(&dispute),
        vec![(dpb::Actor::Network, "network:RETRIEVAL_REQUEST".to_owned())]
    );
    assert_eq!(available(&dispute), vec![Action::SubmitEvidence]);
    assert!(dispute.evidence_details.as_ref().unwrap().due_by.is_some());

    // Chargeback: funds withdrawn with the fee (M3).
    let charged = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, case, "evt-cb", Net::Chargeback),
    )
    .await
    .unwrap();
    assert!(!charged.created && charged.applied);
    let dispute = charged.dispute.unwrap();
    assert_eq!(dispute.stage(), dpb::DisputeStage::Chargeback);
    assert_eq!(dispute.status(), dpb::DisputeStatus::NeedsResponse);
    assert_eq!(ledger(&dispute), vec![(Txn::Withdrawal, -12_500)]);
    assert_eq!(fee(&dispute), FEE);
    assert_eq!(
        available(&dispute),
        vec![Action::Accept, Action::SubmitEvidence, Action::Close]
    );

    // Upload two documents, remove one before defending (allowed: nothing submitted yet).
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let receipt_bytes = pdf_of_size(4096);
    let receipt = upload(&mut documents, h.clone(), &receipt_bytes)
        .await
        .unwrap();
    h.filename = "draft.pdf".into();
    let draft = upload(&mut documents, h, &pdf_of_size(1000)).await.unwrap();
    documents
        .delete_document(pb::DeleteDocumentRequest {
            id: draft.id.clone(),
        })
        .await
        .unwrap();

    // Defend: text and the remaining document, submitted in one call.
    let submitted = update(
        &mut disputes,
        dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            expected_version: Some(dispute.version),
            evidence: Some(dpb::EvidenceUpdate {
                uncategorized_text: Some("Delivered on 2026-11-02, signed for by J. Doe.".into()),
                receipt: Some(receipt.id.clone()),
                ..Default::default()
            }),
            submit: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(submitted.stage(), dpb::DisputeStage::Chargeback);
    assert_eq!(submitted.status(), dpb::DisputeStatus::UnderReview);
    assert_eq!(submitted.version, dispute.version + 1);
    let details = submitted.evidence_details.unwrap();
    assert_eq!(details.submission_count, 1);
    assert!(details.has_evidence);
    assert!(details.due_by.is_none(), "nothing is due from us any more");
    assert_eq!(submitted.evidence.as_ref().unwrap().receipt, receipt.id);
    assert!(available(&submitted).is_empty());
    let entry = submitted.action_history.last().unwrap();
    assert_eq!(entry.actor(), dpb::Actor::Tenant);
    assert_eq!(entry.what, "SUBMIT_EVIDENCE");
    assert_eq!(entry.document_ids, vec![receipt.id.clone()]);
    let digest = sha256_hex(&receipt_bytes);
    assert!(
        entry
            .message
            .contains(&format!("{} sha256={digest}", receipt.id)),
        "{}",
        entry.message
    );
    assert_eq!(
        ledger(&submitted),
        ledger(&dispute),
        "submitting moves no money"
    );

    // The submitted document is locked.
    let status = documents
        .delete_document(pb::DeleteDocumentRequest {
            id: receipt.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "DOCUMENT_LOCKED");
    let locked = documents
        .get_document(pb::GetDocumentRequest {
            id: receipt.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert!(locked.lock_time.is_some());
    // Evidence is frozen once submitted.
    let status = disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                customer_name: Some("late".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "EVIDENCE_CLOSED");

    // The network decides for us: WON, the funds come back, the fee stays.
    let won = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, case, "evt-won", Net::Won),
    )
    .await
    .unwrap();
    assert!(won.applied);
    let won = won.dispute.unwrap();
    assert_eq!(
        won.stage(),
        dpb::DisputeStage::Chargeback,
        "the stage is kept"
    );
    assert_eq!(won.status(), dpb::DisputeStatus::Won);
    assert_eq!((won.amount_won, won.amount_lost), (12_500, 0));
    assert_eq!(
        ledger(&won),
        vec![(Txn::Withdrawal, -12_500), (Txn::Reinstatement, 12_500)]
    );
    assert_eq!(fee(&won), FEE);
    assert_eq!(net(&won), -FEE);
    assert!(available(&won).is_empty());
    assert_eq!(
        history(&won),
        vec![
            (dpb::Actor::Network, "network:RETRIEVAL_REQUEST".to_owned()),
            (dpb::Actor::Network, "network:CHARGEBACK".to_owned()),
            (dpb::Actor::Tenant, "SUBMIT_EVIDENCE".to_owned()),
            (dpb::Actor::Network, "network:WON".to_owned()),
        ]
    );
    let last = won.action_history.last().unwrap();
    assert_eq!(
        (last.stage(), last.status()),
        (dpb::DisputeStage::Chargeback, dpb::DisputeStatus::Won)
    );
    assert_eq!(last.amount, 12_500);

    // GetDispute lists the one document left.
    let got = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = got.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec![receipt.id.as_str()]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_staged_then_submitted() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_stripe_stage")).await;
    assert_eq!(ledger(&dispute), vec![(Txn::Withdrawal, -12_500)]);
    assert_eq!(fee(&dispute), FEE);

    // submit=false (the default) stages: visible, not submitted.
    let staged = update(
        &mut disputes,
        dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                customer_name: Some("Jane Doe".into()),
                shipping_tracking_number: Some("1Z999AA10123456784".into()),
                ..Default::default()
            }),
            metadata: [("order_id".to_owned(), "6735".to_owned())].into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(staged.status(), dpb::DisputeStatus::NeedsResponse);
    assert_eq!(
        staged.evidence_details.as_ref().unwrap().submission_count,
        0
    );
    assert!(staged.evidence_details.as_ref().unwrap().has_evidence);
    assert_eq!(
        staged.metadata.get("order_id").map(String::as_str),
        Some("6735")
    );
    assert_eq!(
        history(&staged).last().unwrap(),
        &(dpb::Actor::Tenant, "evidence_staged".to_owned())
    );
    assert_eq!(
        available(&staged),
        vec![Action::Accept, Action::SubmitEvidence, Action::Close]
    );
    // Staged evidence can still change, field by field.
    let staged = update(
        &mut disputes,
        dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                shipping_carrier: Some("UPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(staged.status(), dpb::DisputeStatus::NeedsResponse);

    // submit=true with no further change files what is staged.
    let submitted = update(
        &mut disputes,
        dpb::UpdateDisputeRequest {
            expected_version: Some(staged.version),
            ..submit_request(&dispute.id)
        },
    )
    .await;
    assert_eq!(submitted.status(), dpb::DisputeStatus::UnderReview);
    assert_eq!(submitted.stage(), dpb::DisputeStage::Chargeback);
    let evidence = submitted.evidence.clone().unwrap();
    assert_eq!(evidence.customer_name, "Jane Doe");
    assert_eq!(evidence.shipping_carrier, "UPS");
    assert_eq!(
        submitted
            .evidence_details
            .as_ref()
            .unwrap()
            .submission_count,
        1
    );
    assert_eq!(
        history(&submitted)
            .iter()
            .map(|(_, what)| what.as_str())
            .collect::<Vec<_>>(),
        vec![
            "created",
            "evidence_staged",
            "evidence_staged",
            "SUBMIT_EVIDENCE"
        ]
    );
    assert_eq!(ledger(&submitted), ledger(&dispute));
    let events = event_types(&stack, &dispute.id).await;
    assert_eq!(
        events,
        vec![
            "dispute.created",
            "dispute.funds_withdrawn",
            "dispute.updated",
            "dispute.updated",
            "dispute.evidence_submitted"
        ]
    );

    // Submitting twice is refused and changes nothing.
    let status = disputes
        .update_dispute(submit_request(&dispute.id))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "ACTION_NOT_AVAILABLE");
    assert_eq!(
        get_dispute(&mut disputes, &dispute.id).await.version,
        submitted.version
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_close_means_accept_and_lost() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    for (charge, action, what) in [
        ("ch_close", Action::Close, "CLOSE"),
        ("ch_accept", Action::Accept, "ACCEPT"),
    ] {
        let mut request = merchant_dispute("", charge);
        request.metadata = [
            ("order".to_owned(), "A-1".to_owned()),
            ("channel".to_owned(), "web".to_owned()),
        ]
        .into();
        let dispute = create(&mut disputes, request).await;
        let lost = apply_action(
            &mut disputes,
            dpb::CreateActionRequest {
                expected_version: Some(dispute.version),
                message: "not worth fighting".into(),
                ..action_request(&dispute.id, action)
            },
        )
        .await
        .unwrap();
        assert_eq!(lost.stage(), dpb::DisputeStage::Chargeback);
        assert_eq!(lost.status(), dpb::DisputeStatus::Lost);
        assert_eq!((lost.amount_won, lost.amount_lost), (0, 12_500));
        assert_eq!(
            ledger(&lost),
            vec![(Txn::Withdrawal, -12_500)],
            "the funds were already withdrawn; accepting moves nothing more"
        );
        assert_eq!(fee(&lost), FEE);
        assert!(available(&lost).is_empty());
        assert!(lost.evidence_details.as_ref().unwrap().due_by.is_none());
        let entry = lost.action_history.last().unwrap();
        assert_eq!(
            (entry.actor(), entry.what.as_str()),
            (dpb::Actor::Tenant, what)
        );
        assert!(
            entry.message.starts_with("not worth fighting"),
            "{}",
            entry.message
        );
        assert_eq!(entry.amount, 12_500);
        assert_eq!(
            event_types(&stack, &dispute.id).await,
            vec![
                "dispute.created",
                "dispute.funds_withdrawn",
                "dispute.defense_period_ended",
                "dispute.lost"
            ]
        );
        // Final: no more evidence, no other action; metadata still changes (unset one key,
        // then clear all; the full metadata rules are in evidence.rs).
        let status = act(&mut disputes, &dispute.id, Action::SubmitEvidence)
            .await
            .unwrap_err();
        assert_eq!(error_reason(&status), "ACTION_NOT_AVAILABLE");
        let unset = update(
            &mut disputes,
            dpb::UpdateDisputeRequest {
                id: dispute.id.clone(),
                metadata: [("order".to_owned(), String::new())].into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            unset.metadata,
            BTreeMap::from([("channel".to_owned(), "web".to_owned())])
        );
        let cleared = update(
            &mut disputes,
            dpb::UpdateDisputeRequest {
                id: dispute.id.clone(),
                clear_metadata: true,
                ..Default::default()
            },
        )
        .await;
        assert!(cleared.metadata.is_empty());
        assert_eq!(cleared.status(), dpb::DisputeStatus::Lost);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_money_events() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // DISPUTE_INITIATED: a chargeback opens the case; funds withdrawn with the fee.
    let mut initiated = network_event(dpb::CardNetwork::Visa, "VISA-004", "e1", Net::Chargeback);
    initiated.new_case = Some(dpb::CreateDisputeRequest {
        merchant_id: "8e44f962-36bf-4eef-b80c-fd6a23029800".into(),
        ..merchant_case(5_000, "ch_004")
    });
    let dispute = record(&mut disputes, initiated)
        .await
        .unwrap()
        .dispute
        .unwrap();
    assert_eq!(
        (dispute.stage(), dispute.status()),
        (
            dpb::DisputeStage::Chargeback,
            dpb::DisputeStatus::NeedsResponse
        )
    );
    assert_eq!(ledger(&dispute), vec![(Txn::Withdrawal, -5_000)]);
    assert_eq!(fee(&dispute), FEE);
    assert_eq!(net(&dispute), -6_500);
    let events = event_payloads(&stack, &dispute.id).await;
    let types: Vec<_> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, vec!["dispute.created", "dispute.funds_withdrawn"]);
    // The event holds the dispute after the change, with its balance transactions.
    let withdrawn = payload_dispute(&events[1].1);
    assert_eq!(withdrawn.id, dispute.id);
    assert_eq!(withdrawn.status(), dpb::DisputeStatus::NeedsResponse);
    assert_eq!(ledger(&withdrawn), ledger(&dispute));

    // DISPUTE_WON: reinstated.
    submit(&mut disputes, &dispute.id).await;
    let won = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, "VISA-004", "e2", Net::Won),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(won.status(), dpb::DisputeStatus::Won);
    assert_eq!(
        ledger(&won),
        vec![(Txn::Withdrawal, -5_000), (Txn::Reinstatement, 5_000)]
    );
    assert_eq!(fee(&won), FEE);
    let events = event_payloads(&stack, &dispute.id).await;
    let types: Vec<_> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "dispute.created",
            "dispute.funds_withdrawn",
            "dispute.evidence_submitted",
            "dispute.funds_reinstated",
            "dispute.won"
        ]
    );
    for (kind, payload) in &events[3..] {
        let payload = payload_dispute(payload);
        assert_eq!(payload.status(), dpb::DisputeStatus::Won, "{kind}");
        assert_eq!(ledger(&payload), ledger(&won), "{kind}");
    }

    // DISPUTE_LOST on another case: no second withdrawal, `dispute.lost`.
    let mut initiated = network_event(dpb::CardNetwork::Visa, "VISA-004-B", "e1", Net::Chargeback);
    initiated.new_case = Some(merchant_case(700, "ch_004_b"));
    let other = record(&mut disputes, initiated)
        .await
        .unwrap()
        .dispute
        .unwrap();
    let lost = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, "VISA-004-B", "e2", Net::Lost),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(lost.status(), dpb::DisputeStatus::Lost);
    assert_eq!((lost.amount_won, lost.amount_lost), (0, 700));
    assert_eq!(ledger(&lost), vec![(Txn::Withdrawal, -700)]);
    assert_eq!(fee(&lost), FEE);
    assert_eq!(
        event_types(&stack, &other.id).await,
        vec!["dispute.created", "dispute.funds_withdrawn", "dispute.lost"]
    );
    stack.stop().await;
}
