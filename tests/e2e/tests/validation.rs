//! Bad input on every lifecycle RPC (UpdateDispute, CreateAction, RecordNetworkEvent,
//! GetEvidenceRequirements): INVALID_ARGUMENT naming every bad field as its request spells it,
//! NOT_FOUND for another tenant's objects, FAILED_PRECONDITION for an action not available.

use disputes_proto::disputes_v1 as dpb;
use domain_kit::ids::{DisputeId, DocumentId};
use dpb::DisputeActionType as Action;
use dpb::NetworkEventType as Net;
use tonic::Code;

use crate::fixtures::*;

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

/// Bad fields checked in different layers (transport, then the stored dispute) are reported
/// together: a request with a bad `request_id`, a bad metadata key and evidence over the text
/// budget names all three.
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

/// RecordNetworkEvent names a bad `new_case.due_by` with its prefix, not as the event's own
/// `due_by`.
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
