//! Issue 11, points 8 (scopes) and 9 (idempotency remembers decisions).

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::DisputeActionType as Action;
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

/// An issuer dispute with a chargeback filed on network case `case`.
async fn issuer_chargeback(disputes: &mut harness::DisputesClient, case: &str) -> dpb::Dispute {
    let mut request = issuer_dispute(&format!("txn_{case}"));
    request.date_customer_reported = today();
    request.network_case_id = case.into();
    let dispute = create(disputes, request).await;
    act(disputes, &dispute.id, Action::Chargeback)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_9_idempotency_remembers_business_refusals() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let case = "MC-P9-1";
    let charged = issuer_chargeback(&mut disputes, case).await;
    let accept = dpb::CreateActionRequest {
        request_id: "p9-accept".into(),
        ..action_request(&charged.id, Action::AcceptRepresentment)
    };

    // No representment yet: refused by a lifecycle rule.
    let first = apply_action(&mut disputes, accept.clone())
        .await
        .unwrap_err();
    assert_eq!(first.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&first), "ACTION_NOT_AVAILABLE");
    // The refusal changed nothing.
    let unchanged = get_dispute(&mut disputes, &charged.id).await;
    assert_eq!(unchanged.version, charged.version);

    // The network represents: ACCEPT_REPRESENTMENT is now available...
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
    assert!(available(&represented).contains(&Action::AcceptRepresentment));

    // ...but the retry with the same request_id gets the same refusal, details included,
    // and changes nothing.
    let retry = apply_action(&mut disputes, accept.clone())
        .await
        .unwrap_err();
    assert_eq!(retry.code(), first.code());
    assert_eq!(retry.message(), first.message());
    assert_eq!(retry.details(), first.details());
    assert_eq!(precondition_type(&retry), "ACTION_NOT_AVAILABLE");
    assert_eq!(error_reason(&retry), "ACTION_NOT_AVAILABLE");
    let after = get_dispute(&mut disputes, &charged.id).await;
    assert_eq!(after.version, represented.version);
    assert_eq!(after.stage(), dpb::DisputeStage::Representment);

    // The same request with another request_id is decided afresh.
    let accepted = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            request_id: "p9-accept-2".into(),
            ..accept.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(accepted.status(), dpb::DisputeStatus::Lost);
    // A different request under the refused request_id is still a reused key.
    let reused = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            request_id: "p9-accept".into(),
            ..action_request(&charged.id, Action::WriteOff)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(error_reason(&reused), "IDEMPOTENCY_KEY_REUSED");

    // NOT_FOUND is remembered too.
    let missing = dpb::CreateActionRequest {
        request_id: "p9-missing".into(),
        ..action_request(
            &domain_kit::ids::DisputeId::generate().into_string(),
            Action::Accept,
        )
    };
    let first = apply_action(&mut disputes, missing.clone())
        .await
        .unwrap_err();
    assert_eq!(first.code(), Code::NotFound);
    let retry = apply_action(&mut disputes, missing).await.unwrap_err();
    assert_eq!(
        (retry.code(), retry.message(), retry.details()),
        (first.code(), first.message(), first.details())
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_9_version_conflicts_and_validation_errors_are_not_remembered() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_p9_versions")).await;
    let metadata = |request_id: &str, version: Option<i64>| dpb::UpdateDisputeRequest {
        id: dispute.id.clone(),
        request_id: request_id.into(),
        expected_version: version,
        metadata: [("note".to_owned(), request_id.to_owned())].into(),
        ..Default::default()
    };

    // ABORTED: the caller saw a version the dispute does not have yet.
    let ahead = metadata("p9-ahead", Some(dispute.version + 1));
    let status = disputes.update_dispute(ahead.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    // Once the dispute reaches that version, the same request with the same request_id
    // goes through: the conflict was not remembered.
    update(&mut disputes, metadata("p9-bump", None)).await;
    let updated = update(&mut disputes, ahead.clone()).await;
    assert_eq!(
        updated.metadata.get("note").map(String::as_str),
        Some("p9-ahead")
    );
    // And from now on the success is what the request_id replays.
    let replayed = update(&mut disputes, ahead).await;
    assert_eq!(replayed.version, updated.version);

    // INVALID_ARGUMENT is not remembered either: the request_id stays free, so a different,
    // valid request under it goes through (not IDEMPOTENCY_KEY_REUSED).
    let mut invalid = metadata("p9-invalid", None);
    invalid.metadata = [("".to_owned(), "x".to_owned())].into();
    let status = disputes.update_dispute(invalid).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let valid = update(&mut disputes, metadata("p9-invalid", None)).await;
    assert_eq!(
        valid.metadata.get("note").map(String::as_str),
        Some("p9-invalid")
    );
    stack.stop().await;
}
