//! Scopes beyond the one each RPC requires (auth.rs checks those): GetDispute without
//! `documents:read` returns the dispute without its documents and says they were omitted,
//! RecordNetworkEvent needs `disputes:network` (`disputes:write` is not enough), and a refusal
//! that document-store gives dispute-core names the caller's missing scope. The `point_8_`
//! prefix of the test names is issue 11's point 8.

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::NetworkEventType as Net;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::*;

/// The scope a `MISSING_SCOPE` answer names in its ErrorInfo metadata.
fn missing_scope(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get("scope").cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_8_get_dispute_without_documents_scope() {
    let stack = stack().await;
    let mut full = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let dispute = create(&mut full, merchant_dispute("", "ch_p8_docs")).await;
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let receipt = upload(&mut documents, h, &pdf_of_size(64)).await.unwrap();

    // With documents:read: the dispute and its document.
    let got = full
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.documents.len(), 1);
    assert_eq!(got.documents[0].id, receipt.id);
    assert!(!got.documents_omitted);

    // Without it: the dispute, no documents, and the response says they were omitted.
    let token = stack.token("acme", &["disputes:read"]);
    let mut read_only = stack.disputes(Some(&token)).await;
    let got = read_only
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.dispute.unwrap().id, dispute.id);
    assert!(got.documents.is_empty());
    assert!(got.documents_omitted);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_8_record_network_event_needs_network_scope() {
    let stack = stack().await;
    let mut event = network_event(dpb::CardNetwork::Visa, "VISA-P8", "e1", Net::Chargeback);
    event.new_case = Some(merchant_case(2_500, "ch_p8_net"));

    // disputes:write alone does not let a caller speak for the network.
    let writer = stack.token("acme", &["disputes:read", "disputes:write"]);
    let status = record(&mut stack.disputes(Some(&writer)).await, event.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "MISSING_SCOPE");
    assert_eq!(missing_scope(&status), "disputes:network");
    assert!(status.message().contains("disputes:network"), "{status:?}");
    let mut full = stack.disputes_of("acme").await;
    let listed = full
        .list_disputes(dpb::ListDisputesRequest {
            charge: "ch_p8_net".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.is_empty(), "a refused event opened a case");

    // disputes:network is enough on its own.
    let network = stack.token("acme", &["disputes:network"]);
    let opened = record(&mut stack.disputes(Some(&network)).await, event)
        .await
        .unwrap();
    assert!(opened.created && opened.applied);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_8_forwarded_refusal_names_the_missing_scope() {
    let stack = stack().await;
    let mut full = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let dispute = create(&mut full, merchant_dispute("", "ch_p8_fwd")).await;
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let receipt = upload(&mut documents, h, &pdf_of_size(64)).await.unwrap();
    let stage = dpb::UpdateDisputeRequest {
        id: dispute.id.clone(),
        evidence: Some(dpb::EvidenceUpdate {
            receipt: Some(receipt.id.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };

    // Staging a document checks it with BatchGetDocuments: documents:read is missing.
    let token = stack.token("acme", &["disputes:write"]);
    let status = stack
        .disputes(Some(&token))
        .await
        .update_dispute(stage.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "MISSING_SCOPE");
    assert_eq!(missing_scope(&status), "documents:read");
    assert!(status.message().contains("documents:read"), "{status:?}");

    // Staging then holds the document with LockDocuments (docs/api.md, DeleteDocument:
    // DOCUMENT_IN_USE): documents:write is missing, and the answer names that scope, not
    // documents:read.
    let token = stack.token("acme", &["disputes:write", "documents:read"]);
    let mut writer = stack.disputes(Some(&token)).await;
    let status = writer.update_dispute(stage).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "MISSING_SCOPE");
    assert_eq!(missing_scope(&status), "documents:write");
    assert!(status.message().contains("documents:write"), "{status:?}");
    assert!(!status.message().contains("documents:read"), "{status:?}");
    stack.stop().await;
}
