//! The seeds' flows end to end (issue #3): seed 000 (PSP retrieval request to won), Stripe's
//! staged and submitted evidence and close, Synctera's issuer flow, seed 004's money events;
//! concurrency (idempotent bursts, conflicting versions, sweeper replicas) and bad input on
//! every lifecycle RPC. Rule ids (M…, I…) are those of docs/lifecycle.md.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use domain_kit::ids::{DisputeId, DocumentId};
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
async fn synctera_issuer_flow() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let case = "MC-SYN-1";
    let mut request = issuer_dispute("txn_synctera");
    request.date_customer_reported = today();
    request.network_case_id = case.into();
    request.original_amount = 10_000;
    let dispute = create(&mut disputes, request).await;
    assert_eq!(dispute.side(), dpb::DisputeSide::Issuer);
    assert_eq!(dispute.stage(), dpb::DisputeStage::Inquiry);
    assert_eq!(dispute.status(), dpb::DisputeStatus::NeedsResponse);
    assert_eq!(dispute.credit_status(), dpb::CreditStatus::None);
    assert_eq!(
        dispute.applicable_regulation(),
        dpb::ApplicableRegulation::RegulationE
    );
    assert_eq!(
        available(&dispute),
        vec![
            Action::ProvisionalCredit,
            Action::WriteOff,
            Action::Deny,
            Action::Chargeback,
            Action::Close
        ]
    );
    assert!(
        dispute
            .available_actions
            .iter()
            .all(|a| a.valid_until.is_some()),
        "every issuer action shows its deadline: {:?}",
        dispute.available_actions
    );
    assert!(ledger(&dispute).is_empty());

    // Provisional credit (Reg E), once.
    let credited = act(&mut disputes, &dispute.id, Action::ProvisionalCredit)
        .await
        .unwrap();
    assert_eq!(credited.credit_status(), dpb::CreditStatus::Provisional);
    assert_eq!(
        (credited.stage(), credited.status()),
        (
            dpb::DisputeStage::Inquiry,
            dpb::DisputeStatus::NeedsResponse
        )
    );
    assert_eq!(ledger(&credited), vec![(Txn::ProvisionalCredit, 4_200)]);
    assert!(!available(&credited).contains(&Action::ProvisionalCredit));

    // Chargeback filed with the network.
    let charged = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            message: "Some things about chargeback".into(),
            ..action_request(&dispute.id, Action::Chargeback)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (charged.stage(), charged.status()),
        (
            dpb::DisputeStage::Chargeback,
            dpb::DisputeStatus::UnderReview
        )
    );
    let entry = charged.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::Tenant, "CHARGEBACK")
    );
    assert_eq!(entry.amount, 4_200);

    // The merchant represents with a document (I8).
    let mut h = header("merchant-rebuttal.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let rebuttal = upload(&mut documents, h, &pdf_of_size(3000)).await.unwrap();
    let mut event = network_event(
        dpb::CardNetwork::Mastercard,
        case,
        "mc-rep-1",
        Net::Representment,
    );
    event.document_ids = vec![rebuttal.id.clone()];
    event.message = "merchant provided proof of delivery".into();
    let represented = record(&mut disputes, event).await.unwrap();
    assert!(represented.applied && !represented.created);
    let represented = represented.dispute.unwrap();
    assert_eq!(
        (represented.stage(), represented.status()),
        (
            dpb::DisputeStage::Representment,
            dpb::DisputeStatus::NeedsResponse
        )
    );
    let entry = represented.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::Network, "network:REPRESENTMENT")
    );
    assert_eq!(entry.document_ids, vec![rebuttal.id.clone()]);
    assert_eq!(
        available(&represented),
        vec![
            Action::WriteOff,
            Action::AcceptRepresentment,
            Action::PreArbitration,
            Action::Close
        ]
    );

    // Accept the representment: lost, the provisional credit is reversed (I9, I5).
    let lost = act(&mut disputes, &dispute.id, Action::AcceptRepresentment)
        .await
        .unwrap();
    assert_eq!(
        (lost.stage(), lost.status()),
        (dpb::DisputeStage::Representment, dpb::DisputeStatus::Lost)
    );
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
    assert!(available(&lost).is_empty());
    let honored = dispute_core::domain::deadlines::regulation_e_reversal_honored_until(
        chrono::Utc::now().date_naive(),
    )
    .to_string();
    let entry = lost.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::Tenant, "ACCEPT_REPRESENTMENT")
    );
    assert!(
        entry
            .message
            .contains(&format!("honored through {honored}")),
        "{}",
        entry.message
    );
    let reversal = lost.balance_transactions.last().unwrap();
    assert!(
        reversal.description.contains(&honored),
        "{}",
        reversal.description
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_actions_have_one_effect() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = issuer_dispute("txn_burst");
    request.date_customer_reported = today();
    let dispute = create(&mut disputes, request).await;

    let mut calls = Vec::new();
    for _ in 0..50 {
        let mut client = disputes.clone();
        let request = dpb::CreateActionRequest {
            request_id: "credit-once".into(),
            amount: 4_000,
            ..action_request(&dispute.id, Action::ProvisionalCredit)
        };
        calls.push(tokio::spawn(
            async move { client.create_action(request).await },
        ));
    }
    let mut answers = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(response) => answers.push(response.into_inner().dispute.unwrap()),
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "every successful answer is the first one"
    );
    let after = get_dispute(&mut disputes, &dispute.id).await;
    assert_eq!(after.version, dispute.version + 1);
    assert_eq!(answers[0].version, after.version);
    assert_eq!(ledger(&after), vec![(Txn::ProvisionalCredit, 4_000)]);
    assert_eq!(
        history(&after),
        vec![
            (dpb::Actor::Tenant, "created".to_owned()),
            (dpb::Actor::Tenant, "PROVISIONAL_CREDIT".to_owned())
        ]
    );
    assert_eq!(
        event_types(&stack, &dispute.id).await,
        vec!["dispute.created", "dispute.updated"]
    );
    // A later retry replays too; the same key with another request is refused.
    let replay = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            request_id: "credit-once".into(),
            amount: 4_000,
            ..action_request(&dispute.id, Action::ProvisionalCredit)
        },
    )
    .await
    .unwrap();
    assert_eq!(replay, answers[0]);
    let status = disputes
        .create_action(dpb::CreateActionRequest {
            request_id: "credit-once".into(),
            amount: 4_100,
            ..action_request(&dispute.id, Action::ProvisionalCredit)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        get_dispute(&mut disputes, &dispute.id).await.version,
        after.version
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_actions_with_the_same_version_one_wins() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    for round in 0..5 {
        let dispute = create(
            &mut disputes,
            merchant_dispute("", &format!("ch_race_{round}")),
        )
        .await;
        let (mut a, mut b) = (disputes.clone(), disputes.clone());
        let accept = dpb::CreateActionRequest {
            expected_version: Some(dispute.version),
            ..action_request(&dispute.id, Action::Accept)
        };
        let defend = dpb::CreateActionRequest {
            expected_version: Some(dispute.version),
            ..action_request(&dispute.id, Action::SubmitEvidence)
        };
        let (accepted, defended) = tokio::join!(
            tokio::spawn(async move { a.create_action(accept).await }),
            tokio::spawn(async move { b.create_action(defend).await }),
        );
        let results = [accepted.unwrap(), defended.unwrap()];
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(loser.code(), Code::Aborted, "{loser:?}");
        assert_eq!(error_reason(loser), "VERSION_CONFLICT");

        let after = get_dispute(&mut disputes, &dispute.id).await;
        assert_eq!(after.version, dispute.version + 1);
        let tenant_actions: Vec<_> = history(&after)
            .into_iter()
            .filter(|(actor, what)| *actor == dpb::Actor::Tenant && what != "created")
            .collect();
        assert_eq!(tenant_actions.len(), 1, "{tenant_actions:?}");
        let winner = winners[0].get_ref().dispute.as_ref().unwrap();
        assert_eq!(winner.version, after.version);
        match tenant_actions[0].1.as_str() {
            "ACCEPT" => assert_eq!(after.status(), dpb::DisputeStatus::Lost),
            "SUBMIT_EVIDENCE" => assert_eq!(after.status(), dpb::DisputeStatus::UnderReview),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(ledger(&after), vec![(Txn::Withdrawal, -12_500)]);
        assert_eq!(fee(&after), FEE);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_replicas_apply_each_deadline_once() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    // Deadlines close together, each still in the future when its dispute is created (on a
    // busy machine the 20 creates may take longer than the first deadline's lead).
    let mut due = chrono::Utc::now() + chrono::Duration::milliseconds(1800);
    let mut ids = Vec::new();
    for i in 0..20 {
        due = due.max(chrono::Utc::now() + chrono::Duration::milliseconds(300));
        let mut request = merchant_dispute("", &format!("ch_sweep_{i}"));
        request.due_by = Some(timestamp(due));
        ids.push(create(&mut disputes, request).await.id);
    }

    // Two more replicas of the sweeper on the same database, racing the stack's own.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let replica = dispute_core::app::Disputes {
            pool: dispute_core::connect_database(&stack.dispute_db_url, 5)
                .await
                .unwrap(),
            documents: dispute_core::clients::documents::DocumentsClient::connect_lazy(&format!(
                "http://{}",
                stack.document_store_addr
            ))
            .unwrap(),
            policy: dispute_core::domain::MoneyPolicy::default(),
        }
        .with_snapshots(
            dispute_core::grpc::encode_dispute,
            dispute_core::grpc::status::encode_refusal,
        );
        replicas.push(tokio::spawn(async move {
            let stop = due + chrono::Duration::milliseconds(1500);
            let mut applied = 0;
            while chrono::Utc::now() < stop {
                applied += replica
                    .sweep_deadlines_once(chrono::Utc::now())
                    .await
                    .unwrap()
                    .applied as usize;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            replica.pool().close().await;
            applied
        }));
    }
    let mut applied_by_replicas = 0;
    for replica in replicas {
        applied_by_replicas += replica.await.unwrap();
    }
    assert!(applied_by_replicas <= ids.len(), "{applied_by_replicas}");

    for id in &ids {
        let dispute = get_dispute(&mut disputes, id).await;
        assert_eq!(dispute.status(), dpb::DisputeStatus::Lost, "{id}");
        let system: Vec<_> = history(&dispute)
            .into_iter()
            .filter(|(actor, _)| *actor == dpb::Actor::System)
            .collect();
        assert_eq!(
            system,
            vec![(dpb::Actor::System, "system:DEADLINE_PASSED".to_owned())],
            "{id}"
        );
        assert_eq!(ledger(&dispute), vec![(Txn::Withdrawal, -12_500)], "{id}");
        assert_eq!(fee(&dispute), FEE);
        assert_eq!(
            event_types(&stack, id).await,
            vec![
                "dispute.created",
                "dispute.funds_withdrawn",
                "dispute.defense_period_ended",
                "dispute.lost"
            ],
            "{id}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_every_field() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut other_disputes = stack.disputes_of("other").await;
    let mut other_documents = stack.documents_of("other").await;
    let mut request = merchant_dispute("", "ch_bad");
    request.network_case_id = "VISA-BAD".into();
    let dispute = create(&mut disputes, request).await;
    let foreign_dispute = create(&mut other_disputes, merchant_dispute("", "ch_theirs")).await;
    let foreign_document = upload(
        &mut other_documents,
        header("theirs.pdf", "application/pdf"),
        &pdf_of_size(64),
    )
    .await
    .unwrap();
    let unknown = DisputeId::generate().into_string();

    // UpdateDispute.
    let status = disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: "dispute-1".into(),
            request_id: "has spaces".into(),
            evidence: Some(dpb::EvidenceUpdate {
                customer_name: Some("bell\u{7}".into()),
                product_description: Some("nul\u{0}".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec![
            "evidence.customer_name",
            "evidence.product_description",
            "id",
            "request_id"
        ]
    );
    let status = disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                receipt: Some(foreign_document.id.clone()),
                refund_policy: Some("policy.pdf".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec!["evidence.receipt", "evidence.refund_policy"]
    );
    let status = disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            metadata: [
                ("k".repeat(41), "v".to_owned()),
                ("ok".to_owned(), "v".repeat(501)),
            ]
            .into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec![
            format!("metadata[{:?}]", "k".repeat(41)),
            "metadata[\"ok\"]".to_owned()
        ]
    );
    for id in [&unknown, &foreign_dispute.id] {
        let status = disputes
            .update_dispute(dpb::UpdateDisputeRequest {
                id: id.clone(),
                metadata: [("k".to_owned(), "v".to_owned())].into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(error_reason(&status), "DISPUTE_NOT_FOUND");
    }

    // CreateAction.
    let status = disputes
        .create_action(dpb::CreateActionRequest {
            dispute_id: "nope".into(),
            request_id: "\u{1}".into(),
            action: 99,
            amount: -5,
            message: "m".repeat(5001),
            document_ids: vec![
                "doc-1".into(),
                DocumentId::generate().into_string(),
                "x".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec![
            "action",
            "amount",
            "dispute_id",
            "document_ids[0]",
            "document_ids[2]",
            "message",
            "request_id"
        ]
    );
    let status = disputes
        .create_action(action_request(&dispute.id, Action::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(sorted_violated_fields(&status), vec!["action"]);
    let status = disputes
        .create_action(dpb::CreateActionRequest {
            document_ids: vec![foreign_document.id.clone()],
            ..action_request(&dispute.id, Action::SubmitEvidence)
        })
        .await
        .unwrap_err();
    assert_eq!(sorted_violated_fields(&status), vec!["document_ids[0]"]);
    let status = disputes
        .create_action(dpb::CreateActionRequest {
            amount: 100,
            ..action_request(&dispute.id, Action::Accept)
        })
        .await
        .unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec!["amount"],
        "ACCEPT takes no amount"
    );
    for id in [&unknown, &foreign_dispute.id] {
        let status = act(&mut disputes, id, Action::Accept).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    // Not in available_actions: refused, nothing changes.
    let before = get_dispute(&mut disputes, &dispute.id).await;
    for action in [Action::Deny, Action::ProvisionalCredit, Action::Arbitration] {
        let status = act(&mut disputes, &dispute.id, action).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(error_reason(&status), "ACTION_NOT_AVAILABLE");
        assert_eq!(precondition_type(&status), "ACTION_NOT_AVAILABLE");
    }
    assert_eq!(get_dispute(&mut disputes, &dispute.id).await, before);

    // RecordNetworkEvent.
    let status = disputes
        .record_network_event(dpb::RecordNetworkEventRequest {
            network: 0,
            network_case_id: " ".into(),
            event_id: "e".repeat(256),
            r#type: 42,
            due_by: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            amount: -1,
            amount_won: -2,
            amount_lost: -3,
            message: "m".repeat(5001),
            document_ids: vec!["nope".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec![
            "amount",
            "amount_lost",
            "amount_won",
            "document_ids[0]",
            "due_by",
            "event_id",
            "message",
            "network",
            "network_case_id",
            "type"
        ]
    );
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-NEW", "e1", Net::Chargeback);
    event.new_case = Some(dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Merchant.into(),
        amount: 0,
        currency: "dollars".into(),
        reason: 77,
        ..Default::default()
    });
    let status = disputes
        .record_network_event(event.clone())
        .await
        .unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec!["new_case.amount", "new_case.currency", "new_case.reason"]
    );
    event.new_case = None;
    let status = disputes.record_network_event(event).await.unwrap_err();
    assert_eq!(
        sorted_violated_fields(&status),
        vec!["new_case"],
        "a new case needs its dispute"
    );
    // WON must win something; won + lost must add up.
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-BAD", "w1", Net::Won);
    event.amount_won = 5_000;
    event.amount_lost = 5_000;
    let status = disputes.record_network_event(event).await.unwrap_err();
    assert_eq!(sorted_violated_fields(&status), vec!["amount_won"]);
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-BAD", "w1", Net::Won);
    event.amount_won = 12_501;
    let status = disputes.record_network_event(event).await.unwrap_err();
    assert_eq!(sorted_violated_fields(&status), vec!["amount_won"]);
    // Another tenant's case is a new case for us, never theirs.
    let status = other_disputes
        .record_network_event(network_event(
            dpb::CardNetwork::Visa,
            "VISA-BAD",
            "w1",
            Net::Won,
        ))
        .await
        .unwrap_err();
    assert_eq!(sorted_violated_fields(&status), vec!["new_case"]);
    assert_eq!(get_dispute(&mut disputes, &dispute.id).await, before);

    // GetEvidenceRequirements.
    let status = disputes
        .get_evidence_requirements(dpb::GetEvidenceRequirementsRequest {
            dispute_id: "dsp_".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(sorted_violated_fields(&status), vec!["dispute_id"]);
    for id in [&unknown, &foreign_dispute.id] {
        let status = disputes
            .get_evidence_requirements(dpb::GetEvidenceRequirementsRequest {
                dispute_id: id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(error_reason(&status), "DISPUTE_NOT_FOUND");
    }
    stack.stop().await;
}

/// Bad fields checked in different layers (transport, then the stored dispute) are not
/// reported together: a request with a bad `request_id`, a bad metadata key and evidence over
/// the text budget names only `request_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_dispute_names_every_bad_field_at_once() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_layers")).await;
    let status = disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            request_id: "has spaces".into(),
            evidence: Some(dpb::EvidenceUpdate {
                uncategorized_text: Some("x".repeat(150_001)),
                ..Default::default()
            }),
            metadata: [(String::new(), "v".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields = sorted_violated_fields(&status);
    assert_eq!(fields, vec!["evidence", "metadata[\"\"]", "request_id"]);
    stack.stop().await;
}

/// RecordNetworkEvent names a bad `new_case.due_by` as `due_by`, the event's own field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_case_due_by_is_named_with_its_prefix() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-DUE", "e1", Net::Chargeback);
    event.new_case = Some(dpb::CreateDisputeRequest {
        due_by: Some(prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        }),
        ..merchant_case(1_000, "ch_due")
    });
    let status = disputes.record_network_event(event).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["new_case.due_by"]);
    stack.stop().await;
}

/// SUBMIT_EVIDENCE through CreateAction with its own `document_ids`: the history entry keeps
/// only the evidence's documents, and the action's documents are not locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_action_keeps_and_locks_its_own_documents() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_action_docs")).await;
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let receipt = upload(&mut documents, h.clone(), &pdf_of_size(100))
        .await
        .unwrap();
    h.filename = "letter.pdf".into();
    let letter = upload(&mut documents, h, &pdf_of_size(200)).await.unwrap();
    disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                receipt: Some(receipt.id.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let submitted = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            document_ids: vec![letter.id.clone()],
            ..action_request(&dispute.id, Action::SubmitEvidence)
        },
    )
    .await
    .unwrap();
    let entry = submitted.action_history.last().unwrap();
    let recorded: HashSet<_> = entry.document_ids.iter().cloned().collect();
    let deleted = documents
        .delete_document(pb::DeleteDocumentRequest {
            id: letter.id.clone(),
        })
        .await;
    assert!(
        recorded == HashSet::from([receipt.id.clone(), letter.id.clone()])
            && deleted
                .as_ref()
                .is_err_and(|s| error_reason(s) == "DOCUMENT_LOCKED"),
        "history documents {recorded:?} (want {} and {}); deleting the action's document: {deleted:?}",
        receipt.id,
        letter.id
    );
    stack.stop().await;
}

/// Every event holds the dispute after the change encoded as `disputes.v1.Dispute`
/// (docs/api.md, "Events"; the `dispute_events.payload` column says so). Events written by CreateDispute hold a
/// `CreateDisputeResponse` instead (its encoder is reused for the events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_create_dispute_hold_the_dispute() {
    use prost::Message;
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_event_payload")).await;
    let events = event_payloads(&stack, &dispute.id).await;
    assert_eq!(
        events.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        vec!["dispute.created", "dispute.funds_withdrawn"]
    );
    for (kind, payload) in &events {
        let decoded = dpb::Dispute::decode(payload.as_slice());
        assert!(
            decoded.as_ref().is_ok_and(|d| d.id == dispute.id),
            "{kind}: {decoded:?}"
        );
    }
    stack.stop().await;
}
